"""Namespace detection, dtype/device helpers and argument validation.

Every public function calls :func:`namespace` exactly once on its array arguments and
passes the resulting ``xp`` (keyword-only) to kernels that use only the array API
standard. Nothing here imports numpy, torch or jax at module level.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat

Array = Any
Namespace = Any

_PY_SCALARS = (bool, int, float, complex)
# Caches below are bypassed while a framework traces symbolically (see ``tracing``).
_NS_BY_TYPE: dict[type, Namespace] = {}
# array type → its device getter, for types served by an adapter's namespace hook
# (asked only for arrays without a ``.device``)
_DEVICE_BY_TYPE: dict[type, Callable[[Any], Any]] = {}
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


# ---------------------------------------------------------------------------------------
# symbolic tracing: caches are neither read nor written while a trace is being recorded

_TRACE_PROBES: list[Callable[[], bool]] = []


def add_trace_probe(probe: Callable[[], bool]) -> None:
    """Register an adapter's "is a symbolic trace being recorded right now?" check.

    Idempotent. Adapters whose tracer *guards* on the Python state it reads register one
    (torch: Dynamo); JAX traces by running Python normally and needs none.
    """
    if probe not in _TRACE_PROBES:
        _TRACE_PROBES.append(probe)


def tracing() -> bool:
    """True while a tracer with guards (Dynamo under ``torch.compile``) records a graph.

    Rule for every cache in zpml_core: while this is True, neither read nor write it,
    compute the value instead. Under Dynamo a cache miss installs a guard ("key absent")
    that the first eager fill invalidates (a recompile), and a write is a side effect
    Dynamo must replay; a cold first call inside ``torch.compile`` would depend on both.
    """
    return any(probe() for probe in _TRACE_PROBES)


def _type_name(obj: object) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _what(name: str | None) -> str:
    return f"{name} must be" if name else "expected"


def _is_numpy_generic(a: object) -> bool:
    """numpy scalars (``np.float64(1)``, ``np.True_``): treated as 0-d numpy arrays."""
    import sys

    np = sys.modules.get("numpy")
    return np is not None and isinstance(a, np.generic)


def _check_array_type(a: object, name: str | None) -> None:
    """Reject numpy array subclasses whose semantics the array API does not describe.

    ``np.matrix`` (``*`` is a matrix product) and masked arrays (the mask would be
    ignored) raise ``TypeError`` naming the argument; ``np.memmap`` is a plain array.
    """
    import sys

    np = sys.modules.get("numpy")
    if np is None or type(a) is np.ndarray or not isinstance(a, np.ndarray):
        return
    if isinstance(a, np.memmap):
        return
    raise TypeError(
        f"{_what(name)} a plain array, got {_type_name(a)}: "
        + ("np.matrix uses matrix-product semantics; pass np.asarray(...)"
           if isinstance(a, np.matrix) else
           "masked arrays carry a mask zpml_core would ignore; pass the data with "
           "mask=/mask_x= (SCM ops) or fill it"
           if isinstance(a, np.ma.MaskedArray) else
           "array subclasses are not supported; pass np.asarray(...)")
    )


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


def _namespace_of(a: object, name: str | None = None) -> Namespace:
    traced = tracing()
    ns = None if traced else _NS_BY_TYPE.get(type(a))
    if ns is None:
        ns = _resolve_namespace(a, name, traced)
    check_dtype(ns, a, name)
    return ns


def _resolve_namespace(a: object, name: str | None, traced: bool) -> Namespace:
    """The namespace of a not yet cached array type (cached unless ``traced``)."""
    _check_array_type(a, name)
    try:
        # an adapter's namespace hook first (Backend.array_namespace); while tracing,
        # every adapter answers directly: array-api-compat's lru_cache'd helpers make
        # Dynamo warn
        ns = _hooked_namespace(a, traced) or array_api_compat.array_namespace(a)
    except TypeError:
        raise TypeError(
            f"{_what(name)} an array from an array-API library (numpy, torch, jax, ...) "
            f"or a Python scalar, got {_type_name(a)}"
        ) from None
    if not traced:
        _NS_BY_TYPE[type(a)] = ns
    return ns


def _hooked_namespace(a: object, traced: bool) -> Namespace | None:
    """The namespace an adapter supplies for ``a`` (``Backend.array_namespace``): the
    adapter declaring ``type(a)`` in ``array_types``; while tracing, also any adapter
    declaring no ``array_types`` (it checks the type itself: torch's)."""
    from zpml_core._registry import _BY_NAMESPACE, registered_backends, type_backend

    t = type(a)
    b = type_backend(t)
    if b is not None:
        ns = b.array_namespace(a)
        if ns is not None:
            if not traced:
                _DEVICE_BY_TYPE[t] = b.array_device
                _BY_NAMESPACE.setdefault(ns.__name__, b)
            return ns
    if not traced:
        return None
    for b in registered_backends().values():  # built-in adapters first
        if b.array_types:  # asked for its declared types only (above)
            continue
        ns = b.array_namespace(a)
        if ns is not None:
            return ns
    return None


def forget_types() -> None:
    """Forget the per-type namespace and device caches (an adapter was (un)registered)."""
    _NS_BY_TYPE.clear()
    _DEVICE_BY_TYPE.clear()


def is_bool_scalar(value: object) -> bool:
    """True for Python ``bool`` and numpy's ``bool_`` scalars (``np.True_``).

    Every validator that rejects ``True`` as a number uses this, so ``np.True_`` is
    rejected the same way.
    """
    if isinstance(value, bool):
        return True
    t = type(value)
    return t.__module__ == "numpy" and t.__name__ in ("bool_", "bool")


def is_py_scalar(a: object) -> bool:
    """A Python ``bool``/``int``/``float``/``complex`` (numpy scalars are arrays here)."""
    return isinstance(a, _PY_SCALARS) and type(a).__module__ == "builtins"


def is_array(a: object) -> bool:
    """True for anything that is neither None nor a Python scalar (a numpy scalar such
    as ``np.float64(1)`` counts as a 0-d array)."""
    return a is not None and not is_py_scalar(a)


def as_input(xp: Namespace, a: Array) -> Array:
    """An array argument as the kernels take it: numpy scalars become 0-d arrays."""
    return xp.asarray(a) if _is_numpy_generic(a) else a


def namespace(*arrays: object, names: Sequence[str] | None = None) -> Namespace:
    """Return the array-API namespace shared by ``arrays``.

    ``None`` and Python scalars are ignored (numpy scalars count as numpy arrays).
    Arrays from two different libraries raise ``TypeError`` naming both types; a
    non-array, an unsupported array type (``np.matrix``, masked arrays) or an
    unsupported dtype (``np.longdouble``, ...) raises ``TypeError`` naming the argument
    (``names``, parallel to ``arrays``, when given). With no arrays at all (only Python
    scalars) the numpy namespace is used, so scalars are evaluated as 0-d float64 arrays.
    """
    xp: Namespace = None
    first: object = None
    first_name: str | None = None
    for i, a in enumerate(arrays):
        if a is None or is_py_scalar(a):
            continue
        name = names[i] if names is not None and i < len(names) else None
        ns = _namespace_of(a, name)
        if xp is None:
            xp, first, first_name = ns, a, name
        elif ns is not xp:
            what = (f"{first_name} is {_type_name(first)} and {name} is {_type_name(a)}"
                    if first_name and name else f"got {_type_name(first)} and {_type_name(a)}")
            raise TypeError(f"arrays from different libraries cannot be mixed in one call: {what}")
    if xp is None:
        import array_api_compat.numpy as np_xp

        xp = np_xp
    return xp


def device(x: Array) -> Any:
    """The array's device (while Dynamo traces, the tensor's own ``.device``: compat's
    helper runs lru_cache'd type checks that Dynamo warns about). Arrays without a
    ``.device`` served by an adapter's namespace hook: ``Backend.array_device``."""
    if tracing():
        return x.device
    try:
        return array_api_compat.device(x)
    except AttributeError:  # no .device: an array served by an adapter's namespace hook
        get = _DEVICE_BY_TYPE.get(type(x))
        if get is None:  # a type namespace() has not met yet: resolve it now
            _resolve_namespace(x, None, False)
            get = _DEVICE_BY_TYPE.get(type(x))
        if get is None:
            raise
        return get(x)


def is_lazy(x: Array) -> bool:
    """True for arrays whose values cannot be inspected eagerly (tracers, dask)."""
    return bool(array_api_compat.is_lazy_array(x))


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


def to_float(xp: Namespace, x: Array) -> Array:
    """Integer/bool arrays → the library's default float; floating arrays unchanged
    (numpy scalars become 0-d arrays)."""
    x = as_input(xp, x)
    if is_floating(xp, x.dtype):
        return x
    return xp.astype(x, default_float(xp, device(x)))


def as_array(xp: Namespace, v: object, like: Array | None) -> Array:
    """Python scalars → 0-d arrays with ``like``'s dtype and device (or the default float)."""
    if is_array(v):
        return as_input(xp, v)
    if like is None:
        if isinstance(v, complex):
            return xp.asarray(v)
        return xp.asarray(float(v), dtype=default_float(xp))  # type: ignore[arg-type]
    return scalar_array(xp, "value", v, like.dtype, device(like))


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


def float_operands(
    xp: Namespace, names: Sequence[str], values: Sequence[object], *, promote: bool
) -> list[Array]:
    """Bring operands to one dtype/device: promote or reject, never truncate.

    * Array operands (numpy scalars included) decide the dtype by the library's type
      promotion (``result_type``).
    * Python scalars adopt it, unless they need a wider kind: a ``float`` next to
      bool/integer arrays promotes to the default float (``mul(int_array, 0.5)`` is
      ``0.5·x``), a ``complex`` to complex, an ``int`` next to a bool array to the
      default integer. A number that does not fit the dtype raises
      :class:`ScalarRangeError` naming the argument.
    * With ``promote``, integer/bool results become the default float. Without it
      (add/sub/mul/neg) integer and bool operands keep their dtype.
    """
    for name, v in zip(names, values, strict=True):
        if not (is_array(v) or isinstance(v, numbers.Number)):
            raise TypeError(f"{name} must be an array or a real number, got {_type_name(v)}")
    arrays: list[Array] = [as_input(xp, v) for v in values if is_array(v)]
    scalars = [v for v in values if not is_array(v)]
    if arrays:
        dt = result_dtype(xp, *arrays)
        dev = device(arrays[0])
    else:
        is_cplx = any(isinstance(v, complex) for v in scalars)
        dt = xp.complex128 if is_cplx else xp.float64
        dev = None
    if not is_floating(xp, dt):
        if promote or any(isinstance(v, (float, complex)) for v in scalars):
            dt = default_float(xp, dev)
        elif dt == xp.bool and any(not isinstance(v, bool) for v in scalars):
            dt = default_int(xp, dev)
    if any(isinstance(v, complex) for v in scalars) and not is_complex(xp, dt):
        dt = xp.complex64 if dt == xp.float32 else xp.complex128
    out = []
    it = iter(arrays)
    for name, v in zip(names, values, strict=True):
        if is_array(v):
            a: Array = next(it)
            out.append(a if a.dtype == dt else xp.astype(a, dt))
        else:
            out.append(scalar_array(xp, name, v, dt, dev))
    return out


# ---------------------------------------------------------------------------------------
# shape and mask validation


def broadcast_shape(named_shapes: Sequence[tuple[str, tuple[int | None, ...]]]) -> tuple:
    """Broadcast shapes by the standard's rules; ``ValueError`` naming the culprits.

    Per dimension (shapes right-aligned, missing leading dimensions count as 1): a size
    1 broadcasts to the other size; equal sizes match; anything else → ``ValueError``
    naming both arguments and all shapes.

    *Unknown* sizes (``None``, the standard's spelling, or NaN, dask's spelling for an
    array with unknown chunk sizes such as ``x[x > 0]``) are accepted where the rule can
    still hold: unknown against unknown or against 1 (the library checks the real sizes
    when it computes; the result size is ``None``). Unknown against a known size > 1
    cannot be checked before computing → ``ValueError`` naming the argument of unknown
    size and telling to call its ``compute_chunk_sizes()`` first.
    """
    def unknown(d: Any) -> bool:
        return d is None or (isinstance(d, float) and d != d)

    result: list[Any] = []
    owner: list[str] = []
    for name, raw in named_shapes:
        shape = tuple(None if unknown(d) else d for d in raw)
        n = max(len(result), len(shape))
        result = [1] * (n - len(result)) + result
        owner = [""] * (n - len(owner)) + owner
        padded = (1,) * (n - len(shape)) + shape
        for i, d in enumerate(padded):
            r = result[i]
            if d == 1 or (d is None and r is None):
                continue
            if r == 1:
                result[i], owner[i] = d, name
                continue
            if d is None or r is None:
                unk, kn, size = (name, owner[i], r) if d is None else (owner[i], name, d)
                raise ValueError(
                    f"cannot check that {unk} and {kn} broadcast together: {unk} has an "
                    f"unknown size in dimension {i - n} and {kn} has size {size} "
                    f"(shapes {', '.join(f'{k}={tuple(s)}' for k, s in named_shapes)}); "
                    f"for a dask array with unknown chunk sizes call "
                    f"{unk}.compute_chunk_sizes() first"
                )
            if r == d:
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
    m = as_input(xp, m)
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
    # Python and numpy real scalars only (bool and np.bool_ are not numbers here)
    if is_bool_scalar(value) or not (
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
    """A numpy real scalar or 0-d real array (not bool, not complex)."""
    if type(value).__module__ != "numpy" or getattr(value, "ndim", 1) != 0:
        return False
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    return kind in ("i", "u", "f")


def _range_text(ge: float | None, gt: float | None, le: float | None) -> str:
    parts = []
    if ge is not None:
        parts.append(f">= {ge:g}")
    if gt is not None:
        parts.append(f"> {gt:g}")
    if le is not None:
        parts.append(f"<= {le:g}")
    return " and ".join(parts)
