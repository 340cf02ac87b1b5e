"""Conversion and comparison helpers of the conformance runner: tolerances, the
conformance device of a backend, inputs converted to the backend, outputs flattened to
named arrays, and array comparison (:func:`compare_arrays`, native-array checks).

Re-exported by :mod:`zpml_conformance.runner`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import zpml_core
from zpml_core import Backend

_RTOL = {"float64": 1e-12, "float32": 1e-6}
_GRAD_RTOL = {"float64": 1e-9, "float32": 1e-4}
_FD_RTOL = {"float64": 1e-6, "float32": 1e-3}


def _grad_atol(dtype: str) -> float:
    # gradients below ~2**24 smallest normals count as zero: JAX flushes subnormal
    # intermediates of backward formulas (e.g. x**(e-1) in d(x**e)/dx)
    return float(np.finfo(dtype).smallest_normal) * 2.0**24


def default_tolerance(dtype: str) -> tuple[float, float]:
    """``(rtol, atol)`` for floating outputs of ``dtype`` cases."""
    return _RTOL[dtype], float(np.finfo(dtype).smallest_normal)



# ---------------------------------------------------------------------------------------
# conversion helpers


def _flatten(out: Any, prefix: str = "") -> dict[str, Any]:
    """Named leaves of a function result (NamedTuple fields, InferenceResult attributes,
    tuple positions, dict keys; a bare array is ``out``)."""
    from zpml_core.inference import InferenceResult

    def key(k: str) -> str:
        return f"{prefix}.{k}" if prefix else k

    if isinstance(out, InferenceResult):
        return {
            key("decoded"): out.decoded,
            key("bottom_mask"): out.bottom_mask,
            key("gap_mask"): out.gap_mask,
            key("fault_mask"): out.fault_mask,
            key("semantic_bottom_mask"): out.semantic_bottom_mask,
            key("bottom_provenance"): out.bottom_provenance,
        }
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        res: dict[str, Any] = {}
        for f in out._fields:
            res.update(_flatten(getattr(out, f), key(f)))
        return res
    if isinstance(out, (tuple, list)):
        res = {}
        for i, v in enumerate(out):
            res.update(_flatten(v, key(str(i))))
        return res
    if isinstance(out, Mapping):
        res = {}
        for k, v in out.items():
            res.update(_flatten(v, key(str(k))))
        return res
    return {prefix or "out": out}


def _xp_dtype(xp: Any, np_dtype: np.dtype) -> Any:
    return getattr(xp, np.dtype(np_dtype).name)


def _dtype_name(dt: Any) -> str:
    return str(dt).rsplit(".", 1)[-1].strip("'>")


def _device_of(x: Any) -> Any:
    from zpml_core import _xp

    return _xp.device(x)


_BUILTIN_DEVICES: dict[str, Callable[[Any], Any]] = {
    # array-api-strict's multi-device mode: a non-default device makes every array the
    # core creates without device= fail (strict refuses to mix devices)
    "array_api_strict": lambda xp: xp.Device("device1"),
}


def conformance_device(backend: Backend) -> Any:
    """The device the suite places inputs on (None: the backend's default).

    An adapter may set ``conformance_device`` (a value or a zero-argument callable)."""
    hook = getattr(backend, "conformance_device", None)
    if hook is not None:
        return hook() if callable(hook) else hook
    xp = backend.namespace()
    for name in backend.namespace_names:
        if name in _BUILTIN_DEVICES:
            return _BUILTIN_DEVICES[name](xp)
    return None


def resolve_device(backend: Backend, name: str) -> Any:
    """The device of ``backend`` called ``name`` (matched against ``str``/``repr`` of
    ``__array_namespace_info__().devices()``); ``"auto"`` → :func:`conformance_device`,
    ``"default"`` → None (the library's default device)."""
    if name == "auto":
        return conformance_device(backend)
    if name == "default":
        return None
    devices = list(backend.namespace().__array_namespace_info__().devices())
    for d in devices:
        if name == str(d) or f"'{name}'" in repr(d):
            return d
    for d in devices:
        if name.lower() in repr(d).lower():
            return d
    raise ValueError(
        f"backend {backend.name!r} has no device {name!r}; devices: "
        + ", ".join(str(d) for d in devices)
    )


def prepare_backend(backend: Backend) -> None:
    """Per-backend set-up before any array exists: JAX runs with float64 enabled
    (``jax_enable_x64``; semantics §9 #2). Adapters may define ``conformance_setup()``."""
    hook = getattr(backend, "conformance_setup", None)
    if callable(hook):
        hook()
    if "jax.numpy" in backend.namespace_names:
        import jax

        jax.config.update("jax_enable_x64", True)


def _convert(backend: Backend, xp: Any, inputs: Mapping[str, Any], dev: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in inputs.items():
        if isinstance(v, np.ndarray):
            out[k] = backend.asarray(v, dtype=_xp_dtype(xp, v.dtype), device=dev)
        elif isinstance(v, tuple) and v and all(isinstance(t, np.ndarray) for t in v):
            out[k] = tuple(
                backend.asarray(t, dtype=_xp_dtype(xp, t.dtype), device=dev) for t in v
            )
        else:
            out[k] = v
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    if isinstance(v, (np.floating, float)):
        return repr(float(v))
    return repr(v)


def _first_diff(bad: np.ndarray, a: np.ndarray, e: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    n = int(np.count_nonzero(bad))
    return (
        f"{n} of {bad.size} element(s) differ; first differing element at index {idx}: "
        f"actual {_fmt(a[idx])}, expected {_fmt(e[idx])}"
    )


def _value_mismatch(a: np.ndarray, e: np.ndarray, rtol: float, atol: float,
                    signed_zeros: bool) -> np.ndarray:
    """Elementwise "differs" mask for floating arrays (both already the same shape)."""
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    an, en = np.isnan(a64), np.isnan(e64)
    bad = an != en
    both = ~an & ~en
    ainf, einf = np.isinf(a64), np.isinf(e64)
    bad |= both & (ainf | einf) & (a64 != e64)
    fin = both & ~ainf & ~einf
    with np.errstate(all="ignore"):
        bad |= fin & ~(np.abs(a64 - e64) <= atol + rtol * np.abs(e64))
    if signed_zeros:
        zero = fin & (a64 == 0) & (e64 == 0)
        bad |= zero & (np.signbit(a64) != np.signbit(e64))
    return bad


def compare_arrays(actual: np.ndarray, expected: np.ndarray, *, rtol: float, atol: float,
                   signed_zeros: bool = True) -> str | None:
    """None if equal under the suite's rules, else a description of the first difference."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        return f"shape {a.shape}, expected {e.shape}"
    if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
        if a.dtype.kind not in "biu":
            return f"converted dtype {a.dtype}, expected {e.dtype}"
        bad = a != e
    elif np.issubdtype(e.dtype, np.complexfloating):
        bad = _value_mismatch(np.real(a), np.real(e), rtol, atol, signed_zeros) | \
            _value_mismatch(np.imag(a), np.imag(e), rtol, atol, signed_zeros)
    else:
        if a.dtype.kind not in "fc":
            return f"converted dtype {a.dtype}, expected {e.dtype}"
        bad = _value_mismatch(a, e, rtol, atol, signed_zeros)
    if bad.any():
        return _first_diff(bad, a, e)
    return None


def _check_native(backend: Backend, xp: Any, x: Any, dtype: np.dtype, shape: tuple[int, ...],
                  dev: Any) -> list[str]:
    """Library / dtype / shape / device of a backend array."""
    problems = []
    try:
        ns = zpml_core.namespace(x)
        ok = ns is xp or ns.__name__ in backend.namespace_names
        if not ok or not hasattr(x, "dtype"):
            problems.append(f"is a {type(x).__module__}.{type(x).__qualname__} "
                            f"(namespace {ns.__name__}), not an array of {backend.name}")
            return problems
    except TypeError:
        problems.append(f"is a {type(x).__module__}.{type(x).__qualname__}, not an array")
        return problems
    want = _xp_dtype(xp, dtype)
    if x.dtype != want:
        problems.append(f"has dtype {_dtype_name(x.dtype)}, expected {np.dtype(dtype).name}")
    if tuple(x.shape) != tuple(shape):
        problems.append(f"has shape {tuple(x.shape)}, expected {tuple(shape)}")
    if dev is not None:
        d = _device_of(x)
        if d != dev:
            problems.append(f"is on device {d!r}, expected the inputs' device {dev!r}")
    return problems
