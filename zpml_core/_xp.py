"""Namespace and device detection, and operands brought to one dtype/device.

Every public function calls :func:`namespace` exactly once on its array arguments and
passes the resulting ``xp`` (keyword-only) to kernels that use only the array API
standard. Nothing here imports numpy, torch or jax at module level.

This module is the one entry point (``from zpml_core import _xp``): it re-exports the
tracing probes (:mod:`zpml_core._xp_trace`), the dtype helpers
(:mod:`zpml_core._xp_dtypes`) and the Python-argument validation
(:mod:`zpml_core._xp_validate`), so ``_xp.<name>`` works for every helper.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat

from zpml_core._xp_dtypes import (  # noqa: F401  (re-exported: _xp.<name>)
    _BF16_MAX,
    _COMPLEX,
    _CONSTS,
    _DTYPE_OK,
    _EXP_MAX,
    _REAL_FLOATS,
    FloatConsts,
    ScalarRangeError,
    _dtype_supported,
    _overflow_edge,
    _real_value,
    _short,
    check_dtype,
    consts,
    default_float,
    default_int,
    dtype_supported,
    is_complex,
    is_floating,
    real_dtype,
    result_dtype,
    scalar_array,
)
from zpml_core._xp_trace import _TRACE_PROBES, add_trace_probe, tracing  # noqa: F401
from zpml_core._xp_validate import (  # noqa: F401  (re-exported: _xp.<name>)
    _PY_SCALARS,
    _is_numpy_generic,
    _is_real_scalar_like,
    _range_text,
    _type_name,
    _what,
    broadcast_shape,
    check_real,
    is_array,
    is_bool_scalar,
    is_py_scalar,
)

Array = Any
Namespace = Any

# Caches below are bypassed while a framework traces symbolically (see ``tracing``).
_NS_BY_TYPE: dict[type, Namespace] = {}
# array type → its device getter, for types served by an adapter's namespace hook
# (asked only for arrays without a ``.device``)
_DEVICE_BY_TYPE: dict[type, Callable[[Any], Any]] = {}


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
# operands: one dtype/device (promote or reject, never truncate), masks


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
