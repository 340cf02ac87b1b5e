"""Mask plumbing shared by the deployment helpers (array API; no framework imports).

Masks are bool arrays or 0/1 integer arrays (``zpml_core._xp.as_mask``). A mask is
*aligned* to a reference shape when it has that shape, or when it is a batch vector
``(B,)`` (or ``(B, 1)``) and the reference is ``(B, ...)``: its trailing axes are then
added as singletons. Anything else is a ``ValueError`` naming the argument — never a
silent broadcast or reshape.
"""

from __future__ import annotations

from zpml_core import _xp
from zpml_core._xp import Array, Namespace
from zpml_core.inference.mode import (
    BOTTOM_PROVENANCE_FAULT,
    BOTTOM_PROVENANCE_MIXED,
    BOTTOM_PROVENANCE_SEMANTIC,
)


def mask(xp: Namespace, m: object, name: str, like: Array) -> Array:
    """``m`` as a bool array (bool, or 0/1 integer array; a Python bool broadcasts)."""
    out = _xp.as_mask(xp, m, name, like)
    if out is None:
        raise TypeError(f"{name} must be a boolean array, got None")
    return out


def provenance(xp: Namespace, p: object, name: str = "bottom_provenance") -> Array:
    """An integer array of provenance codes (0..3)."""
    if not _xp.is_array(p):
        raise TypeError(f"{name} must be an integer array, got {type(p).__name__}")
    p = _xp.as_input(xp, p)
    if not xp.isdtype(p.dtype, "integral"):  # type: ignore[attr-defined]
        raise TypeError(f"{name} must be an integer array, got dtype {p.dtype}")  # type: ignore[attr-defined]
    return p


def unknown(d: object) -> bool:
    """An unknown size: None (array API) or NaN (dask with unknown chunks)."""
    return d is None or (isinstance(d, float) and d != d)


def dim_eq(a: object, b: object) -> bool:
    """Sizes that may be equal: equal, or either unknown (checked when computed)."""
    return unknown(a) or unknown(b) or a == b


def shape_eq(s: tuple[object, ...], t: tuple[object, ...]) -> bool:
    return len(s) == len(t) and all(dim_eq(a, b) for a, b in zip(s, t, strict=True))


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if unknown(d) else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def align(a: Array, shape: tuple[int | None, ...], name: str, ref: str, *, xp: Namespace) -> Array:
    """``a`` with ``shape``'s rank: same shape, or a batch vector given trailing axes."""
    s = tuple(a.shape)
    if shape_eq(s, tuple(shape)):
        return a
    if len(s) == 2 and s[1] == 1 and len(shape) >= 1 and dim_eq(s[0], shape[0]):
        a = a[:, 0]
        s = (s[0],)
    if len(s) == 1 and len(shape) >= 1 and dim_eq(s[0], shape[0]):
        return a[(..., *([None] * (len(shape) - 1)))]
    raise ValueError(
        f"{name} has shape {_shape_text(s)}; it must have {ref}'s shape {_shape_text(tuple(shape))} "
        f"or be a batch vector of length {shape[0] if shape else '?'}"
    )


def expand_to(m: Array, ndim: int, *, xp: Namespace) -> Array:
    """``m`` with trailing singleton axes up to ``ndim`` axes."""
    k = ndim - m.ndim
    return m if k <= 0 else m[(..., *([None] * k))]


def split_from_provenance(bottom: Array, code: Array) -> tuple[Array, Array]:
    """``(fault, semantic)`` of provenance codes: ``code ∈ {1, 3}``, ``code ∈ {2, 3}``,
    both restricted to ``bottom``."""
    mixed = code == BOTTOM_PROVENANCE_MIXED
    return (bottom & ((code == BOTTOM_PROVENANCE_FAULT) | mixed),
            bottom & ((code == BOTTOM_PROVENANCE_SEMANTIC) | mixed))


def batch_vector(xp: Namespace, a: Array, name: str, batch: int | None) -> Array:
    """``a`` as a ``(B,)`` vector: ``(B,)`` or ``(B, 1)``, else ``ValueError``."""
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or not dim_eq(a.shape[0], batch):
        raise ValueError(
            f"{name} must have shape (batch,) with batch={batch}, got {_shape_text(tuple(a.shape))}"
        )
    return a


def batch_any(xp: Namespace, m: Array, name: str, batch: int | None) -> Array:
    """A per-sample decision ``(B,)`` from a ``(B,)``/``(B, 1)``/``(B, ...)`` mask (any
    over the trailing axes)."""
    if m.ndim == 2 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 0 or not dim_eq(m.shape[0], batch):
        raise ValueError(
            f"{name} must have shape (batch,) or (batch, ...) with batch={batch}, "
            f"got {_shape_text(tuple(m.shape))}"
        )
    if m.ndim > 1:
        m = xp.any(m, axis=tuple(range(1, m.ndim)))
    return m


def agree(xp: Namespace, a: Array, b: Array, message: str, outputs: tuple[Array, ...]) -> tuple[Array, ...]:
    """Require ``a == b`` elementwise (the backend's ``require``: raises on concrete
    arrays, poisons floating outputs with NaN while traced)."""
    from zpml_core._registry import get_backend

    return tuple(get_backend(xp).require(a != b, message, outputs, xp=xp))


def host_list(v: Array) -> list[int]:
    """A 1-D integer/bool array → Python ints, in one transfer (lazy arrays: one compute)."""
    compute = getattr(v, "compute", None)
    if compute is not None:
        v = compute()
    tolist = getattr(v, "tolist", None)
    if tolist is not None:
        return [int(t) for t in tolist()]
    return [int(v[i]) for i in range(int(v.shape[0]))]


def host_ints(xp: Namespace, values: list[Array]) -> list[int]:
    """0-d integer arrays → Python ints, in one transfer (stacked first)."""
    if not values:
        return []
    return host_list(xp.stack(values))


def wide_float(xp: Namespace, dev: object) -> object:
    """float64 where the library offers it on ``dev`` (JAX in x32 mode does not), else
    the default float: rates and counts as exact as the library allows."""
    try:
        kinds = xp.__array_namespace_info__().dtypes(device=dev, kind="real floating")
    except (AttributeError, TypeError, ValueError):
        kinds = {}
    return kinds["float64"] if "float64" in kinds else _xp.default_float(xp, dev)
