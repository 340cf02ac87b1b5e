"""Namespace detection, dtype/device helpers and argument validation.

Every public function calls :func:`namespace` exactly once on its array arguments and
passes the resulting ``xp`` (keyword-only) to kernels that use only the array API
standard. Nothing here imports numpy, torch or jax at module level.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat

Array = Any
Namespace = Any

_PY_SCALARS = (bool, int, float, complex)
_NS_BY_TYPE: dict[type, Namespace] = {}


def _type_name(obj: object) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _namespace_of(a: object, name: str | None = None) -> Namespace:
    t = type(a)
    ns = _NS_BY_TYPE.get(t)
    if ns is None:
        try:
            ns = array_api_compat.array_namespace(a)
        except TypeError:
            what = f"{name} must be" if name else "expected"
            raise TypeError(
                f"{what} an array from an array-API library (numpy, torch, jax, ...) "
                f"or a Python scalar, got {_type_name(a)}"
            ) from None
        _NS_BY_TYPE[t] = ns
    return ns


def is_array(a: object) -> bool:
    """True for anything that is neither None nor a Python scalar."""
    return a is not None and not isinstance(a, _PY_SCALARS)


def namespace(*arrays: object, names: Sequence[str] | None = None) -> Namespace:
    """Return the array-API namespace shared by ``arrays``.

    ``None`` and Python scalars are ignored. Arrays from two different libraries raise
    ``TypeError`` naming both types; a non-array raises ``TypeError`` naming the argument
    (``names``, parallel to ``arrays``, when given). With no arrays at all (only Python
    scalars) the numpy namespace is used, so scalars are evaluated as 0-d float64 arrays.
    """
    xp: Namespace = None
    first: object = None
    for i, a in enumerate(arrays):
        if a is None or isinstance(a, _PY_SCALARS):
            continue
        ns = _namespace_of(a, names[i] if names is not None and i < len(names) else None)
        if xp is None:
            xp, first = ns, a
        elif ns is not xp:
            raise TypeError(
                "arrays from different libraries cannot be mixed in one call: "
                f"got {_type_name(first)} and {_type_name(a)}"
            )
    if xp is None:
        import array_api_compat.numpy as np_xp

        xp = np_xp
    return xp


def device(x: Array) -> Any:
    return array_api_compat.device(x)


def is_lazy(x: Array) -> bool:
    """True for arrays whose values cannot be inspected eagerly (tracers, dask)."""
    return bool(array_api_compat.is_lazy_array(x))


# ---------------------------------------------------------------------------------------
# dtype helpers


@dataclass(frozen=True)
class FloatConsts:
    """Constants of a real floating dtype, as Python floats (exact in that dtype)."""

    tiny: float  # smallest normal
    max: float
    eps: float
    sqrt_tiny: float  # smallest |y| whose square y*y is still normal (exact: 2**(emin/2))
    exp_max: float  # largest x with exp(x) finite
    # quotient guard: |a| <= fl(|b| * ovf) guarantees fl(a / b) finite (ovf = max - ~4 ulp)
    ovf: float


_EXP_MAX = {
    # keyed by finfo.max; exact thresholds, identical to probing in numpy/torch/jax
    1.7976931348623157e308: 709.782712893384,
    3.4028234663852886e38: 88.72283172607422,
    65504.0: 11.0859375,
}
_BF16_MAX = 3.3895313892515355e38
_CONSTS: dict[tuple[int, Any], FloatConsts] = {}


def real_dtype(xp: Namespace, dtype: Any) -> Any:
    """The real dtype of a complex dtype; a real floating dtype unchanged."""
    if xp.isdtype(dtype, "complex floating"):
        return xp.float32 if dtype == xp.complex64 else xp.float64
    return dtype


def consts(xp: Namespace, dtype: Any) -> FloatConsts:
    """Per-dtype constants (cached). ``dtype`` must be real or complex floating."""
    key = (id(xp), dtype)
    c = _CONSTS.get(key)
    if c is None:
        fi = xp.finfo(real_dtype(xp, dtype))
        tiny = float(fi.smallest_normal)
        fmax = float(fi.max)
        exp_max = _EXP_MAX.get(fmax)
        if exp_max is None:
            # bfloat16 (8-bit mantissa): exp(88.5) finite, exp(89.0) overflows
            exp_max = 88.5 if fmax == _BF16_MAX else math.log(fmax)
        eps = float(fi.eps)
        c = FloatConsts(
            tiny=tiny,
            max=fmax,
            eps=eps,
            sqrt_tiny=math.sqrt(tiny),
            exp_max=exp_max,
            ovf=fmax * (1.0 - 2.0 * eps),
        )
        _CONSTS[key] = c
    return c


def is_floating(xp: Namespace, dtype: Any) -> bool:
    return bool(xp.isdtype(dtype, ("real floating", "complex floating")))


def is_complex(xp: Namespace, dtype: Any) -> bool:
    return bool(xp.isdtype(dtype, "complex floating"))


def default_float(xp: Namespace, dev: Any = None) -> Any:
    """The library's default real floating dtype (torch honours ``set_default_dtype``)."""
    info = xp.__array_namespace_info__()
    return info.default_dtypes(device=dev)["real floating"]


def default_int(xp: Namespace, dev: Any = None) -> Any:
    info = xp.__array_namespace_info__()
    return info.default_dtypes(device=dev)["integral"]


def to_float(xp: Namespace, x: Array) -> Array:
    """Integer/bool arrays → the library's default float; floating arrays unchanged."""
    if is_floating(xp, x.dtype):
        return x
    return xp.astype(x, default_float(xp, device(x)))


def as_array(xp: Namespace, v: object, like: Array | None) -> Array:
    """Python scalars → 0-d arrays with ``like``'s dtype and device (or the default float)."""
    if is_array(v):
        return v
    if like is None:
        if isinstance(v, complex):
            return xp.asarray(v)
        return xp.asarray(float(v), dtype=default_float(xp))  # type: ignore[arg-type]
    return xp.asarray(v, dtype=like.dtype, device=device(like))


def float_operands(
    xp: Namespace, names: Sequence[str], values: Sequence[object], *, promote: bool
) -> list[Array]:
    """Bring operands to one dtype/device.

    Array operands decide the dtype by the library's type promotion (``result_type``);
    Python scalars adopt it. With ``promote``, integer/bool results become the default
    float. Bool/int inputs without ``promote`` keep their dtype (add/sub/mul/neg rule).
    """
    arrays: list[Array] = [v for v in values if is_array(v)]
    for name, v in zip(names, values, strict=True):
        if not (is_array(v) or isinstance(v, numbers.Number)):
            raise TypeError(f"{name} must be an array or a real number, got {_type_name(v)}")
    if arrays:
        dt = arrays[0].dtype if len(arrays) == 1 else xp.result_type(*arrays)
        dev = device(arrays[0])
    else:
        is_cplx = any(isinstance(v, complex) for v in values)
        dt = xp.complex128 if is_cplx else xp.float64
        dev = None
    if promote and not is_floating(xp, dt):
        dt = default_float(xp, dev)
    if any(isinstance(v, complex) for v in values) and not is_complex(xp, dt):
        dt = xp.complex64 if dt == xp.float32 else xp.complex128
    out = []
    for v in values:
        if is_array(v):
            a: Array = v
            out.append(a if a.dtype == dt else xp.astype(a, dt))
        else:
            out.append(xp.asarray(v, dtype=dt, device=dev))
    return out


# ---------------------------------------------------------------------------------------
# shape and mask validation


def broadcast_shape(named_shapes: Sequence[tuple[str, tuple[int | None, ...]]]) -> tuple:
    """Broadcast shapes by the standard's rules; ``ValueError`` naming the culprits."""
    result: list[int | None] = []
    owner: list[str] = []
    for name, shape in named_shapes:
        shape = tuple(shape)
        n = max(len(result), len(shape))
        pad: list[int | None] = [1] * (n - len(result))
        result = pad + result
        owner = [""] * (n - len(owner)) + owner
        padded = (1,) * (n - len(shape)) + shape
        for i, d in enumerate(padded):
            r = result[i]
            if d == 1:
                continue
            if r == 1 or r is None or d is None or r == d:
                if r == 1 or r is None:
                    result[i] = d
                    owner[i] = name
                continue
            raise ValueError(
                f"shapes cannot be broadcast together: {owner[i]} has size {r} and {name} "
                f"has size {d} in dimension {i - n} "
                f"(shapes {', '.join(f'{k}={tuple(s)}' for k, s in named_shapes)})"
            )
    return tuple(result)


def as_mask(xp: Namespace, m: object, name: str, like: Array) -> Array | None:
    """Validate an optional mask: None, a Python bool, a bool array or a 0/1 integer array."""
    if m is None:
        return None
    if isinstance(m, bool):
        return xp.asarray(m, dtype=xp.bool, device=device(like))
    if not is_array(m):
        raise TypeError(f"{name} must be a boolean array or None, got {_type_name(m)}")
    dt = m.dtype  # type: ignore[attr-defined]
    if dt == xp.bool:
        return m
    if xp.isdtype(dt, "integral"):
        return m != 0
    raise TypeError(f"{name} must be a boolean (or 0/1 integer) array, got dtype {dt}")


# ---------------------------------------------------------------------------------------
# Python-scalar argument validation (eager, before any array work)


def check_real(
    name: str,
    value: object,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    allow_none: bool = False,
) -> float | None:
    """Validate a Python real number argument and return it as ``float``.

    bool, str and non-real objects → ``TypeError``; NaN/±inf or out of range →
    ``ValueError``; both messages name the argument and the allowed range.
    """
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a real number, got None")
    # Python and numpy real scalars only (bool is not a number here)
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Real) or _is_real_scalar_like(value)
    ):
        raise TypeError(f"{name} must be a real number, got {_type_name(value)}")
    v = float(value)  # type: ignore[arg-type]
    rng = _range_text(ge, gt, le)
    # comparisons, not math.isfinite: under torch.compile v is a symbolic float
    if not (v == v and -math.inf < v < math.inf):
        raise ValueError(f"{name} must be finite{' and ' + rng if rng else ''}, got {v!r}")
    if (
        (ge is not None and not v >= ge)
        or (gt is not None and not v > gt)
        or (le is not None and not v <= le)
    ):
        raise ValueError(f"{name} must be {rng}, got {v!r}")
    return v


def _is_real_scalar_like(value: object) -> bool:
    mod = type(value).__module__
    return mod == "numpy" and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0


def _range_text(ge: float | None, gt: float | None, le: float | None) -> str:
    parts = []
    if ge is not None:
        parts.append(f">= {ge:g}")
    if gt is not None:
        parts.append(f"> {gt:g}")
    if le is not None:
        parts.append(f"<= {le:g}")
    return " and ".join(parts)
