"""Dtype and shape helpers of :mod:`zpml_core.testing`: dtype names (bfloat16 via
ml_dtypes), the dtype/shape arguments of the strategies, :func:`small_shapes` and the
defaults (:data:`DEFAULT_TAUS`, :data:`SMALL_SHAPES`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

Array = Any
Namespace = Any
ShapeArg = int | tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None
DtypeArg = Any  # a dtype of xp, a dtype name, or a strategy of either; None = float32/float64

#: Thresholds whose neighbourhoods are edge values by default: ``InferenceConfig`` 's
#: ``tau_infer`` and the default ``tau_train``.
DEFAULT_TAUS: tuple[float, ...] = (1e-6, 1e-4)

#: The default shapes: a small fixed set, so jit-compiling libraries (JAX) compile each
#: kernel a handful of times instead of once per example.
SMALL_SHAPES: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (3,), (8,), (2, 3))

_REAL_NAMES = ("float16", "bfloat16", "float32", "float64")
_COMPLEX_NAMES = ("complex64", "complex128")


# ---------------------------------------------------------------------------------------
# dtypes


def _bf16_type() -> Any:
    """numpy's bfloat16 scalar type (from ``ml_dtypes``, installed with jax)."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError(
            "bfloat16 arrays are drawn and compared as numpy arrays of ml_dtypes' "
            "bfloat16: pip install ml_dtypes"
        ) from None
    return ml_dtypes.bfloat16


def _np_dtype(name: str) -> np.dtype:
    """The numpy dtype for a dtype name (bfloat16: ml_dtypes' bfloat16)."""
    return np.dtype(_bf16_type()) if name == "bfloat16" else np.dtype(name)


def _is_bf16(dtype: Any) -> bool:
    return getattr(dtype, "name", None) == "bfloat16"


def _np_dtype_name(xp: Namespace, dtype: Any) -> str:
    """The numpy name (``"float64"``) of a floating dtype of ``xp`` or of a dtype name;
    ``TypeError`` if it is not a floating dtype ``xp`` offers."""
    name = ""
    if isinstance(dtype, str):
        name = dtype
    else:
        for n in _REAL_NAMES + _COMPLEX_NAMES:
            cand = getattr(xp, n, None)
            try:
                same = cand is not None and bool(cand == dtype)
            except Exception:  # incomparable dtype objects
                same = False
            if same:
                name = n
                break
        if not name:
            name = getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]
    if name not in _REAL_NAMES + _COMPLEX_NAMES:
        raise TypeError(
            f"dtype must be a real or complex floating dtype of {xp.__name__} "
            f"({', '.join(_REAL_NAMES + _COMPLEX_NAMES)}), got {dtype!r}"
        )
    if not hasattr(xp, name):
        raise TypeError(f"dtype {name} is not offered by {xp.__name__}")
    if name == "bfloat16":
        _bf16_type()
    return name


def _default_dtype_names(xp: Namespace) -> list[str]:
    try:
        avail = list(xp.__array_namespace_info__().dtypes(kind="real floating"))
    except Exception:
        avail = [n for n in ("float32", "float64") if hasattr(xp, n)]
    names = [n for n in ("float32", "float64") if n in avail]
    if not names:
        raise TypeError(f"{xp.__name__} offers no float32/float64 dtype")
    return names


def _dtype_names(xp: Namespace, dtype: DtypeArg) -> st.SearchStrategy[str]:
    if dtype is None:
        return st.sampled_from(_default_dtype_names(xp))
    if isinstance(dtype, st.SearchStrategy):
        return dtype.map(lambda d: _np_dtype_name(xp, d))
    return st.just(_np_dtype_name(xp, dtype))


def _real_name(name: str) -> str:
    return {"complex64": "float32", "complex128": "float64"}.get(name, name)


def _shapes(shape: ShapeArg) -> st.SearchStrategy[tuple[int, ...]]:
    if shape is None:
        return small_shapes()
    if isinstance(shape, st.SearchStrategy):
        return shape
    if isinstance(shape, int):
        return st.just((shape,))
    return st.just(tuple(shape))


def small_shapes(*, min_dims: int = 0, max_dims: int = 2,
                 min_size: int = 0) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes from :data:`SMALL_SHAPES` (a fixed set: few jit compilations)."""
    pool = [
        s for s in SMALL_SHAPES
        if min_dims <= len(s) <= max_dims and math.prod(s) >= min_size
    ]
    if not pool:
        raise ValueError("no shape in SMALL_SHAPES satisfies the constraints")
    return st.sampled_from(pool)
