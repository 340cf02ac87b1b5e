"""Gradient check of the conformance runner: a backend's gradients against central
finite differences of the numpy float64 reference and against every other available
autodiff backend (pairwise); gradients and finite differences are cached.

Re-exported by :mod:`zpml_conformance.runner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from zpml_conformance import _grad
from zpml_conformance._compare import (
    _FD_RTOL,
    _GRAD_RTOL,
    _check_native,
    _convert,
    _first_diff,
    _grad_atol,
    compare_arrays,
    conformance_device,
    prepare_backend,
)
from zpml_conformance._forward import _input_device, _policy_context, _trace
from zpml_conformance.cases import Case

from zpml_core import Backend, registered_backends
from zpml_core._registry import is_builtin

# ---------------------------------------------------------------------------------------
# gradient check


_GradResult = tuple[dict[str, np.ndarray] | str, list[str]]
_GRADS: dict[tuple[int, str], _GradResult] = {}


def _backend_grads(case: Case, backend: Backend, xp: Any, dev: Any) -> _GradResult:
    """numpy copies of the gradients of ``case`` on ``backend`` (or an error text), and
    the problems with the native gradient arrays (library, dtype, shape, device);
    cached per backend object and case id."""
    key = (id(backend), case.id)
    cached = _GRADS.get(key)
    if cached is None:
        problems: list[str] = []
        cached = (_compute_grads(case, backend, xp, dev, problems), problems)
        _GRADS[key] = cached
    return cached


def _compute_grads(case: Case, backend: Backend, xp: Any, dev: Any,
                   problems: list[str]) -> dict[str, np.ndarray] | str:
    assert case.grad is not None
    spec = case.grad
    inputs_np = case.inputs()
    arrays = _convert(backend, xp, inputs_np, dev)
    in_dev = _input_device(arrays)

    def f(*wrt_arrays: Any) -> Any:
        a = dict(arrays)
        a.update(zip(spec.wrt, wrt_arrays, strict=True))
        out = case.fn(**case.call_args(a))
        return spec.scalar(out, a, xp)

    try:
        with _policy_context(case), np.errstate(all="ignore"):
            _, grads = _grad.value_and_grad(backend, f, [arrays[k] for k in spec.wrt])
        res = {}
        for k, g in zip(spec.wrt, grads, strict=True):
            a = inputs_np[k]
            problems.extend(f"gradient d/d{k} {p}" for p in
                            _check_native(backend, xp, g, a.dtype, a.shape, in_dev))
            res[k] = np.array(backend.to_numpy(g), copy=True)
        return res
    except Exception as exc:
        return f"gradient computation raised {type(exc).__name__}: {exc}{_trace(exc)}"


_FD: dict[str, dict[str, np.ndarray]] = {}


def _fd_grads(case: Case) -> dict[str, np.ndarray]:
    """Central finite differences of the numpy float64 reference (cached per case)."""
    assert case.grad is not None
    spec = case.grad
    cached = _FD.get(case.id)
    if cached is not None:
        return cached
    import array_api_compat.numpy as npx

    raw = case.inputs()
    if spec.fd_inputs is not None:
        raw = spec.fd_inputs(raw)
    inputs = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                  else v) for k, v in raw.items()}

    def scalar(a: Mapping[str, Any]) -> float:
        with np.errstate(all="ignore"):
            return float(spec.scalar(case.fn(**case.call_args(a)), a, npx))

    out = {}
    for k in spec.wrt:
        x = inputs[k]
        g = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            h = 1e-6 * max(spec.fd_floor, abs(float(x[i]))) if np.isfinite(x[i]) else 0.0
            if h == 0.0:
                g[i] = np.nan
                continue
            xp_, xm_ = x.copy(), x.copy()
            xp_[i] += h
            xm_[i] -= h
            g[i] = (scalar({**inputs, k: xp_}) - scalar({**inputs, k: xm_})) / (2 * h)
        out[k] = g
    _FD[case.id] = out
    return out


def _peer_backends(backend: Backend) -> list[Backend]:
    """The reference autodiff backends for ``backend``'s gradients: the *built-in*
    ones (torch, jax) that are installed, except ``backend`` itself and any serving the
    same namespace. A third-party adapter is never a reference, so its wrong gradient
    cannot fail another backend's cases."""
    peers = []
    mine = set(backend.namespace_names)
    for name, b in sorted(registered_backends().items()):
        if name == backend.name or not b.supports_autodiff or b is backend:
            continue
        if not is_builtin(b) or mine & set(b.namespace_names):
            continue
        if _grad.grad_fn_for(b) is None or not b.available():
            continue
        peers.append(b)
    return peers


def _peer_grads(case: Case, b: Backend) -> dict[str, np.ndarray] | str:
    prepare_backend(b)
    return _backend_grads(case, b, b.namespace(), conformance_device(b))[0]


def _check_grad(case: Case, backend: Backend, xp: Any, dev: Any) -> list[str]:
    assert case.grad is not None
    spec = case.grad
    got, native_problems = _backend_grads(case, backend, xp, dev)
    if isinstance(got, str):
        return [got]
    problems = list(native_problems)
    inputs_np = case.inputs()
    g_rtol = spec.rtol if spec.rtol is not None else _GRAD_RTOL[case.dtype]
    g_atol = spec.atol if spec.atol is not None else _grad_atol(case.dtype)
    if spec.zero_at is not None:
        for k, m in spec.zero_at(inputs_np).items():
            g = got[k]
            bad = np.broadcast_to(m, g.shape) & (g != 0)
            if bad.any():
                problems.append(f"gradient d/d{k} is not 0 at a bottom position: "
                                + _first_diff(bad, g, np.zeros_like(g)))
    if spec.fd:
        fd = _fd_grads(case)
        f_rtol = _FD_RTOL[case.dtype]
        where = spec.fd_at(inputs_np) if spec.fd_at is not None else None
        for k in spec.wrt:
            at = np.ones(got[k].shape, bool) if where is None else \
                np.broadcast_to(where[k], got[k].shape)
            fin = np.abs(fd[k][at & np.isfinite(fd[k])])
            scale = float(fin.max()) if fin.size else 1.0
            diff = compare_arrays(np.where(at, got[k], 0), np.where(at, fd[k], 0),
                                  rtol=f_rtol, atol=f_rtol * max(scale, 1.0),
                                  signed_zeros=False)
            if diff is not None:
                problems.append(f"gradient d/d{k} vs central finite differences of the "
                                f"numpy reference: {diff}")
    cmp_at = spec.compare_at(inputs_np) if spec.compare_at is not None else None
    for peer in _peer_backends(backend):
        other = _peer_grads(case, peer)
        if isinstance(other, str):  # the reference could not compute: no comparison
            continue
        for k in spec.wrt:
            a, e = got[k], other[k]
            if cmp_at is not None:
                at = np.broadcast_to(cmp_at[k], a.shape)
                a, e = np.where(at, a, 0), np.where(at, e, 0)
            atol = g_atol
            if spec.scaled_atol:
                fin = np.abs(e[np.isfinite(e)])
                if fin.size:
                    atol = max(atol, 4 * float(np.finfo(case.dtype).eps) * float(fin.max()))
            diff = compare_arrays(a, e, rtol=g_rtol, atol=atol, signed_zeros=False)
            if diff is not None:
                problems.append(f"gradient d/d{k} differs from the built-in reference "
                                f"{peer.name}'s: {diff}")
    return problems
