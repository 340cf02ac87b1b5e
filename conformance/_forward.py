"""Reference and forward check of the conformance runner: the numpy reference of a
case (cached) and the checks of a backend's forward outputs against it.

Re-exported by :mod:`zpml_conformance.runner`.
"""

from __future__ import annotations

import traceback as _tb
import warnings
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from zpml_conformance._compare import (
    _check_native,
    _convert,
    _device_of,
    _dtype_name,
    _flatten,
    compare_arrays,
    default_tolerance,
)
from zpml_conformance.cases import Case

from zpml_core import Backend

# ---------------------------------------------------------------------------------------
# reference


@dataclass(frozen=True)
class _Raised:
    name: str
    text: str


_REF: dict[str, dict[str, np.ndarray] | _Raised] = {}


def reference(case: Case) -> dict[str, np.ndarray] | _Raised:
    """The numpy reference outputs of ``case`` (cached per case id)."""
    r = _REF.get(case.id)
    if r is None:
        inputs = case.inputs()
        try:
            with np.errstate(all="ignore"), _policy_context(case):
                out = case.fn(**case.call_args(inputs))
            r = {k: np.array(v, copy=True) for k, v in _flatten(out).items()}
        except Exception as exc:
            r = _Raised(type(exc).__name__, str(exc))
        _REF[case.id] = r
    return r


# ---------------------------------------------------------------------------------------
# forward check


def _policy_context(case: Case) -> AbstractContextManager[Any]:
    pol = case.grad.policy if case.grad is not None and case.grad.policy else case.policy
    if pol is None:
        return nullcontext()
    from zpml_core.autodiff.policies import GradientPolicy, gradient_policy

    return gradient_policy(GradientPolicy[pol])


def _check_forward(case: Case, backend: Backend, xp: Any, dev: Any) -> list[str]:
    ref = reference(case)
    if isinstance(ref, _Raised) and ref.name != case.raises:
        return [f"the numpy reference raised {ref.name}: {ref.text}"
                + (f" (the case expects {case.raises})" if case.raises else "")]
    inputs_np = case.inputs()
    arrays = _convert(backend, xp, inputs_np, dev)
    problems = _check_inputs(backend, xp, inputs_np, arrays, dev)
    if problems:
        return problems
    in_dev = _input_device(arrays)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _policy_context(case):
                out = case.fn(**case.call_args(arrays))
            flat = _flatten(out)
        except Exception as exc:
            if isinstance(ref, _Raised):
                if type(exc).__name__ == ref.name:
                    return []
                return [f"raised {type(exc).__name__}: {exc}; expected {ref.name} "
                        f"like the reference{_trace(exc)}"]
            if case.raises:
                return [f"raised {type(exc).__name__}: {exc}; expected {case.raises}"
                        f"{_trace(exc)}"]
            return [f"raised {type(exc).__name__}: {exc}{_trace(exc)}"]
        converted: dict[str, Any] = {}
        conversion: dict[str, str] = {}
        for k, v in flat.items():
            try:
                converted[k] = backend.to_numpy(v)
            except Exception as exc:
                conversion[k] = f"to_numpy raised {type(exc).__name__}: {exc}"
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if isinstance(ref, _Raised):
        return [f"returned normally; the reference raised {ref.name}: {ref.text}"]
    if case.raises:
        return [f"returned normally; expected {case.raises}"]
    if runtime:
        problems.append(f"emitted RuntimeWarning: {runtime[0].message}")
    if set(flat) != set(ref):
        return [f"outputs {sorted(flat)}, expected {sorted(ref)}"]
    for name, e in ref.items():
        x = flat[name]
        want = e.dtype
        case_dtype = case.dtype
        if name in case.default_float:
            from zpml_core import _xp

            want = np.dtype(_dtype_name(_xp.default_float(xp, in_dev)))
            case_dtype = want.name if want.name in ("float32", "float64") else case.dtype
        elif e.dtype.kind in "iu" and name.rsplit(".", 1)[-1] in case.default_int:
            from zpml_core import _xp

            want = np.dtype(_dtype_name(_xp.default_int(xp, in_dev)))
        d_rtol, d_atol = default_tolerance(case_dtype)
        msgs = [f"output {name!r} {p}" for p in
                _check_native(backend, xp, x, want, e.shape, in_dev)]
        rtol, atol = case.tol.get(name, (
            max(case.rtol, d_rtol) if case.rtol is not None else d_rtol,
            case.atol if case.atol is not None else d_atol))
        if name in conversion:
            msgs.append(f"output {name!r}: {conversion[name]}")
            problems.extend(msgs)
            continue
        diff = compare_arrays(converted[name], e, rtol=rtol, atol=atol,
                              signed_zeros=case.signed_zeros)
        if diff is not None:
            msgs.append(f"output {name!r}: {diff}")
        problems.extend(msgs)
    return problems


def _check_inputs(backend: Backend, xp: Any, inputs_np: Mapping[str, Any],
                  arrays: Mapping[str, Any], dev: Any) -> list[str]:
    problems: list[str] = []
    for k, v in inputs_np.items():
        vs = v if isinstance(v, tuple) else (v,)
        xs = arrays[k] if isinstance(v, tuple) else (arrays[k],)
        for i, (a, x) in enumerate(zip(vs, xs, strict=True)):
            if not isinstance(a, np.ndarray):
                continue
            name = k if len(vs) == 1 else f"{k}[{i}]"
            problems.extend(f"asarray({name}) {p}" for p in
                            _check_native(backend, xp, x, a.dtype, a.shape, dev))
    return problems


def _input_device(arrays: Mapping[str, Any]) -> Any:
    for v in arrays.values():
        for x in v if isinstance(v, tuple) else (v,):
            if hasattr(x, "shape") and hasattr(x, "dtype"):
                return _device_of(x)
    return None




_TRACEBACKS = [False]


def _trace(exc: BaseException) -> str:
    """The traceback of ``exc`` (appended to failure messages with ``traceback=True``)."""
    if not _TRACEBACKS[0]:
        return ""
    return "\n" + "".join(_tb.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
