"""Argument handling shared by the losses (eager Python; kernels never call these)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array, Namespace
from zpml_core.autodiff.policies import GradientPolicy

_KINDS: dict[tuple[str, Any], tuple[bool, bool]] = {}


def kind(xp: Namespace, dtype: Any) -> tuple[bool, bool]:
    """``(is_floating, is_complex)`` of ``dtype`` (cached: ``isdtype`` is slow in compat)."""
    key = (xp.__name__, dtype)
    if _xp.tracing():  # no cache use while Dynamo records a graph
        return _xp.is_floating(xp, dtype), _xp.is_complex(xp, dtype)
    try:
        k = _KINDS.get(key)
    except TypeError:  # unhashable dtype object
        return _xp.is_floating(xp, dtype), _xp.is_complex(xp, dtype)
    if k is None:
        k = _KINDS[key] = (_xp.is_floating(xp, dtype), _xp.is_complex(xp, dtype))
    return k


def is_complex(xp: Namespace, dtype: Any) -> bool:
    return kind(xp, dtype)[1]


def threshold(name: str, value: object, *, gt: bool = False, le: float | None = None) -> float:
    """A finite real ``≥ 0`` (``> 0`` with ``gt``), optionally ``≤ le``, as ``float``.

    bool, str, None and non-real objects → ``TypeError``; NaN/±inf or out of range →
    ``ValueError``; both name the argument and the allowed range. Written with plain
    comparisons (no ``math.isfinite``), so it also accepts the symbolic floats that
    ``torch.compile`` passes once a threshold argument has changed: the checks become
    guards and the threshold stays a graph input (no recompilation per value).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_xp._type_name(value)}")
    v = float(value)
    lo = f"> {0.0:g}" if gt else f">= {0.0:g}"
    rng = lo if le is None else f"{lo} and <= {le:g}"
    if not (v == v and v - v == 0.0):  # NaN or ±inf
        raise ValueError(f"{name} must be finite and {rng}, got {v!r}")
    if (gt and not v > 0.0) or (not gt and not v >= 0.0) or (le is not None and not v <= le):
        raise ValueError(f"{name} must be {rng}, got {v!r}")
    return v


def threshold_or_array(name: str, value: object, *, xp: Namespace,
                       like: Array) -> tuple[float, Array | None]:
    """A threshold given as a Python real (validated, → ``(v, None)``) or as a 0-d real
    array (→ ``(0.0, array in like's real dtype)``).

    Array thresholds let a jitted caller schedule the value without retracing (scheduled
    thresholds); their value is not range-checked (that would need a host sync).
    """
    if not _xp.is_array(value) or isinstance(value, numbers.Real):
        return threshold(name, value), None
    # (the caller's namespace() call included ``value``: same library as ``like``)
    dt = value.dtype  # type: ignore[attr-defined]
    if dt == xp.bool or not xp.isdtype(dt, ("real floating", "integral")):
        raise TypeError(f"{name} must be a real number or a 0-d real array, got dtype {dt}")
    if value.shape != ():  # type: ignore[attr-defined]
        raise ValueError(
            f"{name} must be a real number or a 0-d array, got shape "
            f"{tuple(value.shape)}"  # type: ignore[attr-defined]
        )
    rdt = _xp.real_dtype(xp, like.dtype)
    return 0.0, value if dt == rdt else xp.astype(value, rdt)


def namespace(names: Sequence[str], values: Sequence[object]) -> Namespace:
    """``_xp.namespace(*values)`` with the argument names (errors name the argument)."""
    return _xp.namespace(*values, names=names)


def float_arrays(xp: Namespace, names: Sequence[str], values: Sequence[object]) -> list[Array]:
    """Operands in one floating dtype (integer/bool → the library's default float).

    Fast path when all operands already are arrays of one floating dtype.
    """
    first = values[0]
    if _xp.is_array(first):
        dt = first.dtype  # type: ignore[attr-defined]
        same = True
        for v in values[1:]:
            if not _xp.is_array(v) or v.dtype != dt:  # type: ignore[attr-defined]
                same = False
                break
        if same and kind(xp, dt)[0]:
            return list(values)
    for name, v in zip(names, values, strict=True):
        if v is None:
            raise TypeError(f"{name} must be an array, got None")
    return _xp.float_operands(xp, names, values, promote=True)


def common_shape(named: Sequence[tuple[str, Array]]) -> tuple[Any, ...]:
    """The common shape of the named operands, by the losses' one broadcasting rule.

    Operands may broadcast one way only: the result has the shape of the largest
    operand, and every other operand must broadcast *to* that shape without enlarging
    it (fewer or size-1 dimensions, 0-d operands included). Shapes whose broadcast is
    larger than every operand — ``(B,)`` next to ``(B, 1)`` gives ``(B, B)`` and would
    turn an elementwise loss into an all-pairs loss — raise ``ValueError`` naming every
    argument and its shape, as do shapes that do not broadcast at all. A ``(B, 1)``
    denominator next to ``(B, k)`` numerators stays valid.
    """
    # unknown sizes (None; dask: NaN) compare equal to each other, as in broadcast_shape
    shapes = [(n, tuple(None if d is None or (isinstance(d, float) and d != d) else d
                        for d in a.shape)) for n, a in named]
    shape = shapes[0][1]
    if all(s == shape for _, s in shapes[1:]):
        return shape
    result = _xp.broadcast_shape(shapes)
    if any(s == result for _, s in shapes):
        return result
    listing = ", ".join(f"{n} has shape {s}" for n, s in shapes)
    names = ", ".join(n for n, _ in shapes)
    raise ValueError(
        f"{names} must have the shape of the largest of them or broadcast to it without "
        f"enlarging it: {listing}, which broadcast to {result} — an elementwise loss "
        "would become an all-pairs loss (e.g. targets of shape (B, 1) next to "
        "predictions of shape (B,)); reshape them to one shape"
    )


def mask(xp: Namespace, m: object, name: str, target: tuple[Any, ...], like: Array,
         target_name: str = "Q") -> Array | None:
    """Validate an optional mask: bool (or 0/1 integer) array that broadcasts *to* ``target``.

    One-way: the mask may have fewer or size-1 dimensions, but must not enlarge the
    target shape. Python bools are accepted as 0-d masks.
    """
    a = _xp.as_mask(xp, m, name, like)
    if a is None:
        return None
    shape = tuple(a.shape)
    if shape != tuple(target):
        n, k = len(shape), len(target)
        # unknown sizes (dask NaN): equal to each other, refused against known ones
        full = _xp.broadcast_shape([(target_name, tuple(target)), (name, shape)])
        ok = n <= k and all(
            d == 1 or d == t or (f is None and (d is None or d != d))
            for d, t, f in zip(shape, target[k - n:], full[k - n:], strict=True)
        )
        if not ok:
            raise ValueError(
                f"{name} of shape {shape} must broadcast to {target_name}'s shape "
                f"{tuple(target)} (a mask cannot enlarge it)"
            )
    return a


def soft_mask(xp: Namespace, m: object, name: str) -> Array:
    """``is_bottom`` for coverage/rejection: a bool, integer (nonzero = bottom) or real
    floating array. Integer masks are converted to bool."""
    if isinstance(m, bool):
        return xp.asarray(m)
    if not _xp.is_array(m):
        raise TypeError(
            f"{name} must be a boolean (or 0/1 integer, or floating) array, got "
            f"{_xp._type_name(m)}"
        )
    dt = m.dtype  # type: ignore[attr-defined]
    if dt == xp.bool or xp.isdtype(dt, "real floating"):
        return m
    if xp.isdtype(dt, "integral"):
        return m != 0
    raise TypeError(f"{name} must be a boolean, integer or real floating array, got dtype {dt}")


def as_0d(out: Any, like: Array, *, xp: Namespace) -> Array:
    """Reductions of numpy return numpy scalars; the API promises 0-d arrays.

    ``scalar[...]`` is numpy's cheap scalar → 0-d array conversion (~10x faster than
    compat's ``asarray``); anything else goes through ``asarray``.
    """
    if type(out) is type(like):
        return out
    try:
        arr = out[...]
    except (TypeError, IndexError):
        return xp.asarray(out)
    return arr if type(arr) is type(like) else xp.asarray(out)


def optional_policy(policy: object) -> GradientPolicy | None:
    if policy is None or isinstance(policy, GradientPolicy):
        return policy
    raise TypeError(f"policy must be a GradientPolicy or None, got {_xp._type_name(policy)}")


def clip(x: Array, lo: float | None, hi: float | None, *, xp: Namespace, be: Any) -> Array:
    """Clip to Python-scalar bounds; NaN propagates; at a bound the gradient passes.

    Adapters may supply a faster ``clip_scalar(x, lo, hi)`` (torch: ``clamp``; compat's
    ``maximum`` with a scalar allocates a tensor per call and Dynamo cannot trace it).
    The default uses ``maximum``/``minimum`` with scalars (one native call each on numpy
    and array-api-strict, where compat's ``clip`` costs several).
    """
    f = getattr(be, "clip_scalar", None)
    if f is not None:
        return f(x, lo, hi)
    if lo is not None:
        x = xp.maximum(x, lo)
    if hi is not None:
        x = xp.minimum(x, hi)
    return x


def absval(x: Array, *, xp: Namespace, be: Any) -> Array:
    """``|x|`` with derivative ``sign(x)`` (0 at 0) on every autodiff backend.

    torch's ``abs`` already differentiates to ``sgn(x)``; JAX's to +1 at 0, so the jax
    adapter supplies ``abs_symmetric``. Keeps loss gradients equal across backends at
    ``Q == 0``.
    """
    f = getattr(be, "abs_symmetric", None)
    return xp.abs(x) if f is None else f(x)


def relu(x: Array, *, xp: Namespace, be: Any) -> Array:
    """``max(x, 0)``; NaN propagates."""
    return clip(x, 0.0, None, xp=xp, be=be)


def abs2(z: Array, *, xp: Namespace) -> Array:
    """``|z|²`` for a complex array, as a real array (no square root)."""
    re, im = xp.real(z), xp.imag(z)
    return re * re + im * im
