"""Dtype helpers: which dtypes zpml_core accepts, per-dtype float constants
(:class:`FloatConsts`), default dtypes, type promotion and Python numbers as 0-d arrays
of a dtype (never silently changed: :class:`ScalarRangeError`).

Re-exported by :mod:`zpml_core._xp`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from zpml_core._xp_trace import tracing
from zpml_core._xp_validate import _what

Array = Any
Namespace = Any

# (namespace name, dtype) → whether zpml_core accepts arrays of that dtype
_DTYPE_OK: dict[tuple[str, Any], bool] = {}
_REAL_FLOATS = ("float16", "bfloat16", "float32", "float64")
_COMPLEX = ("complex64", "complex128")


class ScalarRangeError(ValueError, OverflowError):
    """A Python number argument that cannot be represented in the operation's dtype.

    Raised (naming the argument) for a Python ``int`` outside the integer dtype's range,
    an ``int`` too large for any float, or a finite ``float`` beyond the floating dtype's
    range (``1e5`` next to a float16 array). Both a ``ValueError`` and an
    ``OverflowError``.
    """


def dtype_supported(xp: Namespace, dtype: Any) -> bool:
    """Whether zpml_core accepts arrays of ``dtype``: bool, signed/unsigned integers,
    float16, bfloat16 (where the library has it), float32, float64, complex64,
    complex128. Extended types (``np.longdouble``, ml_dtypes' ``bfloat16`` in numpy,
    strings, objects) are not array-API dtypes and are rejected."""
    if tracing():
        return _dtype_supported(xp, dtype)
    key: tuple[str, Any] | None = (xp.__name__, dtype)
    try:
        ok = _DTYPE_OK.get(key)  # type: ignore[arg-type]
    except TypeError:  # unhashable dtype object
        ok, key = None, None
    if ok is None:
        ok = _dtype_supported(xp, dtype)
        if key is not None:
            _DTYPE_OK[key] = ok
    return ok


def _dtype_supported(xp: Namespace, dtype: Any) -> bool:
    try:
        if dtype == xp.bool:
            return True
        if xp.isdtype(dtype, "integral"):
            return True
        kinds = (_REAL_FLOATS if xp.isdtype(dtype, "real floating")
                 else _COMPLEX if xp.isdtype(dtype, "complex floating") else ())
    except (TypeError, ValueError, AttributeError):
        return False
    return any(hasattr(xp, k) and dtype == getattr(xp, k) for k in kinds)


def check_dtype(xp: Namespace, a: Array, name: str | None) -> None:
    """``TypeError`` naming the argument if ``a``'s dtype is not supported."""
    dt = a.dtype
    if not dtype_supported(xp, dt):
        raise TypeError(
            f"{_what(name)} an array of a supported dtype (bool, integer, float16, "
            f"bfloat16, float32, float64, complex64, complex128), got dtype {dt}"
        )


# ---------------------------------------------------------------------------------------
# dtype helpers


@dataclass(frozen=True)
class FloatConsts:
    """Constants of a real floating dtype, as Python floats (exact in the working dtype).

    16-bit dtypes (float16, bfloat16) are ``wide``: kernels compute them in float32 (see
    :mod:`zpml_core._precision`), so every constant here is exact in float32, and those
    compared with half-precision data (``tiny``, ``max``, ``sqrt_tiny``, ``exp_max``)
    are exact in the half dtype too.
    """

    tiny: float  # smallest normal, 2**emin
    max: float
    eps: float
    sqrt_tiny: float  # smallest |y| whose square y*y is still normal (exact: 2**(emin/2))
    exp_max: float  # largest x with exp(x) finite
    # quotient guard: |a| <= fl(|b| * ovf) guarantees fl(a / b) finite. float32/float64:
    # ovf = max·(1 − 2·eps) (~4 ulp below max, absorbs the rounding of the product);
    # wide dtypes: ovf = edge, and |b|·edge is exact in float32, so the guard is exactly
    # "a / b does not round to ±inf in the half dtype"
    ovf: float
    # the rounding edge: the smallest magnitude that rounds to ±inf in this dtype,
    # max + ulp(max)/2 (float16: 65520); inf where it exceeds the Python float range
    edge: float
    wide: bool  # computed in float32 (16-bit dtypes)
    digits: int  # significand bits, including the implicit bit (float16: 11)
    emin: int  # exponent of the smallest normal

    def round(self, v: float) -> float:
        """``v`` rounded to this dtype (to nearest, ties to even; subnormals kept;
        ±inf from the rounding edge on), computed exactly on Python floats.

        Thresholds compared with data of this dtype are rounded with it first, as the
        libraries do when they convert a Python scalar to the array's dtype; kernels
        that compute a half dtype in float32 need the rounding done explicitly.
        """
        # comparisons only (no math.isfinite/copysign): under torch.compile ``v`` may be
        # a symbolic float
        if v == 0.0 or not (-math.inf < v < math.inf):
            return v
        if abs(v) >= self.edge:
            return math.inf if v > 0 else -math.inf
        _, e = math.frexp(v)  # |v| = m·2**e, 0.5 <= m < 1
        q = max(e, self.emin + 1) - self.digits  # exponent of one ulp at |v|
        return math.ldexp(float(round(math.ldexp(v, -q))), q)


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
    traced = tracing()
    c = None if traced else _CONSTS.get(key)
    if c is None:
        fi = xp.finfo(real_dtype(xp, dtype))
        tiny = float(fi.smallest_normal)
        fmax = float(fi.max)
        exp_max = _EXP_MAX.get(fmax)
        if exp_max is None:
            # bfloat16 (8-bit mantissa): exp(88.5) finite, exp(89.0) overflows
            exp_max = 88.5 if fmax == _BF16_MAX else math.log(fmax)
        eps = float(fi.eps)
        digits = 1 - round(math.log2(eps))
        emax = math.frexp(fmax)[1] - 1
        try:  # (2 - eps/2)·2**emax, exact; overflows the Python float range for float64
            edge = math.ldexp(2.0 - eps / 2.0, emax)
        except OverflowError:
            edge = math.inf
        wide = int(fi.bits) < 32
        c = FloatConsts(
            tiny=tiny,
            max=fmax,
            eps=eps,
            sqrt_tiny=math.sqrt(tiny),
            exp_max=exp_max,
            ovf=edge if wide else fmax * (1.0 - 2.0 * eps),
            edge=edge,
            wide=wide,
            digits=digits,
            emin=round(math.log2(tiny)),
        )
        if not traced:
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


def _overflow_edge(xp: Namespace, dtype: Any) -> float:
    """The smallest magnitude that rounds to infinity in real floating ``dtype``
    (``max + ulp(max)/2``; ``inf`` for float64, whose edge is no Python float)."""
    fi = xp.finfo(dtype)
    fmax, eps = float(fi.max), float(fi.eps)
    if fmax >= 1.7976931348623157e308:
        return math.inf
    return fmax + eps * fmax / (2.0 - eps) / 2.0


def _short(v: object) -> str:
    """``repr`` of a scalar argument, abbreviated for huge Python ints."""
    r = repr(v)
    return r if len(r) <= 40 else f"{r[:12]}...({len(r)} digits)"


def _real_value(name: str, v: object, xp: Namespace, dtype: Any) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except OverflowError:
        raise ScalarRangeError(
            f"{name}={_short(v)} is too large for any floating dtype (operands are {dtype})"
        ) from None
    if math.isfinite(f) and abs(f) >= _overflow_edge(xp, dtype):
        raise ScalarRangeError(
            f"{name}={_short(v)} is out of the range of the operands' dtype {dtype}"
        )
    return f


def scalar_array(xp: Namespace, name: str, v: object, dtype: Any, dev: Any) -> Array:
    """A Python number as a 0-d array of ``dtype`` on ``dev``, never silently changed:

    * integer dtypes: a Python ``int``/``bool`` outside ``iinfo(dtype)`` →
      :class:`ScalarRangeError` naming the argument;
    * floating dtypes: rounded to the dtype; a finite value beyond its range (or an
      ``int`` beyond every float) → :class:`ScalarRangeError`; ±inf/NaN are kept (they
      are bottom operands);
    * complex dtypes: each part as for the real dtype.
    """
    if dtype == xp.bool:
        return xp.asarray(bool(v), dtype=dtype, device=dev)
    if xp.isdtype(dtype, "integral"):
        info = xp.iinfo(dtype)
        iv = int(v)  # type: ignore[call-overload]
        if not info.min <= iv <= info.max:
            raise ScalarRangeError(
                f"{name}={_short(v)} does not fit the operands' dtype {dtype} "
                f"(range {info.min}..{info.max})"
            )
        return xp.asarray(iv, dtype=dtype, device=dev)
    if xp.isdtype(dtype, "complex floating"):
        z = complex(v)  # type: ignore[call-overload]
        rdt = real_dtype(xp, dtype)
        z = complex(_real_value(name, z.real, xp, rdt), _real_value(name, z.imag, xp, rdt))
        return xp.asarray(z, dtype=dtype, device=dev)
    return xp.asarray(_real_value(name, v, xp, dtype), dtype=dtype, device=dev)


def result_dtype(xp: Namespace, *arrays_or_dtypes: Any) -> Any:
    """The library's type promotion (``result_type``) of arrays and/or dtypes.

    Equal dtypes need no promotion (no call into the library). Otherwise the adapter
    decides (``Backend.result_type``, by default the namespace's ``result_type``): torch's
    ``result_type`` of float16/bfloat16 (not array-API dtypes) is a tensor operation
    Dynamo cannot trace, so the torch adapter promotes the dtypes with
    ``torch.promote_types``.
    """
    dts = [getattr(a, "dtype", a) for a in arrays_or_dtypes]
    if all(d == dts[0] for d in dts[1:]):
        return dts[0]
    from zpml_core._registry import get_backend

    return get_backend(xp).result_type(xp, *arrays_or_dtypes)


