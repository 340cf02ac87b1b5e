"""Python-level argument validation: scalar classification, error-message helpers, the
broadcast rule and eager checks of Python-number arguments.

Nothing here needs an array namespace. Re-exported by :mod:`zpml_core._xp`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

_PY_SCALARS = (bool, int, float, complex)


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
