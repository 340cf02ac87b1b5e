"""Array strategies of :mod:`zpml_core.testing`: arrays of any namespace, drawn as
numpy arrays and copied through the namespace's adapter (:func:`scm_arrays`,
:func:`projective_tuples`, :func:`targets`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zpml_core._registry import GenericBackend, get_backend
from zpml_core.scm import SCMArray
from zpml_core.testing._assertions import to_numpy
from zpml_core.testing._dtypes import (
    DEFAULT_TAUS,
    Array,
    DtypeArg,
    Namespace,
    ShapeArg,
    _dtype_names,
    _shapes,
)
from zpml_core.testing._element_strategies import _COIN_ONE, _coin, _elements, _mixture, _share

# ---------------------------------------------------------------------------------------
# arrays of xp


_ARRAY_API_NS: dict[int, Any] = {}
_NO_FILL_MAX = 64


def _array_api_strategies(xp: Namespace) -> Any:
    ns = _ARRAY_API_NS.get(id(xp))
    if ns is None:
        from hypothesis.extra.array_api import make_strategies_namespace

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ns = make_strategies_namespace(xp)
        _ARRAY_API_NS[id(xp)] = ns
    return ns


def _draw_array(
    draw: st.DrawFn,
    xp: Namespace,
    name: str,
    shape: tuple[int, ...],
    elements: st.SearchStrategy[Any],
    device: Any,
) -> Array:
    """Draw an array of ``xp`` with dtype ``name`` (numpy name or ``"bool"``).

    With a zpml_core adapter for ``xp`` the data is drawn as a numpy array and copied
    exactly through the adapter in one call; otherwise it is drawn element by element
    with ``hypothesis.extra.array_api`` (which checks every element survived).
    """
    be = get_backend(xp)
    # Small arrays draw every element on its own: hypothesis' default ``fill`` sets most
    # elements of an array to one value, so arrays would hold fewer distinct values and
    # the shares (edge_fraction, bottom_fraction, ...) would hold per array far less
    # often. Large arrays keep the fill (drawing each element would be slow).
    fill = st.nothing() if math.prod(shape) <= _NO_FILL_MAX else None
    if isinstance(be, GenericBackend):
        if name == "bfloat16":
            raise TypeError(f"bfloat16 arrays of {xp.__name__} need a zpml_core adapter")
        xp_dtype = xp.bool if name == "bool" else getattr(xp, name)
        a = draw(_array_api_strategies(xp).arrays(xp_dtype, shape, elements=elements,
                                                   fill=fill))
        return a if device is None else a.to_device(device)
    if name == "bfloat16":
        # drawn as float32 (every element is a bfloat16 value), converted exactly by xp
        npa = draw(hnp.arrays(np.dtype(np.float32), shape, elements=elements, fill=fill))
        return xp.astype(be.asarray(npa, device=device), xp.bfloat16)
    npa = draw(hnp.arrays(np.dtype(name), shape, elements=elements, fill=fill))
    return be.asarray(npa, device=device)


def _bool_elements(fraction: float) -> st.SearchStrategy[bool]:
    k = _share(fraction, "bottom_fraction")
    if k == 0:
        return st.just(False)
    if k == _COIN_ONE:
        return st.just(True)
    return _coin(k)


class _ElementCache:
    """Element strategies per dtype name (built once per strategy object)."""

    def __init__(self, xp: Namespace, **kw: Any) -> None:
        self.xp, self.kw = xp, kw
        self.cache: dict[str, st.SearchStrategy[Any]] = {}

    def __call__(self, name: str) -> st.SearchStrategy[Any]:
        s = self.cache.get(name)
        if s is None:
            s = self.cache[name] = _elements(self.xp, name, **self.kw)
        return s


def scm_arrays(
    xp: Namespace,
    *,
    dtype: DtypeArg = None,
    shape: ShapeArg = None,
    elements: st.SearchStrategy[float] | Mapping[str, Any] | None = None,
    edge_fraction: float = 0.25,
    bottom_fraction: float = 0.1,
    taus: Sequence[float] = DEFAULT_TAUS,
    allow_nan: bool = True,
    allow_infinity: bool = True,
    allow_subnormal: bool = True,
    canonical: bool = False,
    device: Any = None,
) -> st.SearchStrategy[SCMArray]:
    """Strategy for SCM operands ``SCMArray(value, bottom)`` of namespace ``xp``.

    * ``dtype``: a real or complex floating dtype of ``xp`` (float16, bfloat16, float32,
      float64, complex64, complex128; or its name, or a strategy of either); default:
      float32 or float64 (those the namespace offers).
    * ``shape``: an int, a tuple or a strategy; default :func:`small_shapes`.
    * ``elements``: the non-edge values — a strategy of Python floats (rounded to the
      dtype), or keyword arguments for ``hypothesis.strategies.floats`` (``min_value``,
      ...; edge values outside that range are dropped). Default: the dtype's whole
      finite range — half log-uniform magnitudes from the smallest subnormal to
      ``max`` (either sign), a quarter moderate values (``|v| <= 1e3``), a quarter
      hypothesis' own floats of the dtype (±inf/NaN where allowed).
    * ``edge_fraction``: share of elements drawn from :func:`edge_values` (0 disables).
    * ``bottom_fraction``: share of elements whose ``bottom`` bit is set.
    * ``taus``: thresholds whose neighbourhoods are edge values.
    * ``allow_nan`` / ``allow_infinity`` / ``allow_subnormal``: as in hypothesis. Subnormals
      are on by default: zpml_core treats them as signed zero on every backend, which is
      exactly what a property should exercise.
    * ``canonical``: if True, the pair is a well-formed SCM value — non-finite elements
      become bottom and ``value`` is ``+0`` wherever ``bottom`` is set. If False (default),
      ``value`` holds arbitrary data under the mask (an op must ignore it).
    * ``device``: passed to the library when the arrays are created.

    Complex dtypes draw real and imaginary parts independently from the same values.
    """
    _share(edge_fraction, "edge_fraction")  # validated eagerly (elements are built lazily)
    elems = _ElementCache(xp, elements=elements, edge_fraction=edge_fraction,
                          taus=tuple(taus), allow_nan=allow_nan,
                          allow_infinity=allow_infinity, allow_subnormal=allow_subnormal)
    bools = _bool_elements(bottom_fraction)
    names = _dtype_names(xp, dtype)
    shapes = _shapes(shape)

    return _scm_pair(xp, names, shapes, elems, bools, canonical, device)


@st.composite
def _scm_pair(draw: st.DrawFn, xp: Namespace, names: st.SearchStrategy[str],
              shapes: st.SearchStrategy[tuple[int, ...]], elems: _ElementCache,
              bools: st.SearchStrategy[bool], canonical: bool, device: Any) -> SCMArray:
    name = draw(names)
    shp = draw(shapes)
    v = _draw_array(draw, xp, name, shp, elems(name), device)
    b = _draw_array(draw, xp, "bool", shp, bools, device)
    if canonical:
        b = b | ~xp.isfinite(v)
        v = xp.where(b, xp.zeros_like(v), v)
    return SCMArray(v, b)


def projective_tuples(
    xp: Namespace,
    *,
    dtype: DtypeArg = None,
    shape: ShapeArg = None,
    elements: st.SearchStrategy[float] | Mapping[str, Any] | None = None,
    edge_fraction: float = 0.25,
    taus: Sequence[float] = DEFAULT_TAUS,
    allow_nonfinite: bool = True,
    allow_subnormal: bool = True,
    device: Any = None,
) -> st.SearchStrategy[tuple[Array, Array]]:
    """Strategy for projective tuples ``(N, D)``: two arrays of one dtype and shape.

    Both components mix ordinary floats with :func:`edge_values` (so ``D`` is often
    ±0, subnormal or next to a threshold in ``taus``, and ``(0, 0)`` occurs).
    ``allow_nonfinite=False`` excludes ±inf and NaN. Other arguments as in
    :func:`scm_arrays`.
    """
    _share(edge_fraction, "edge_fraction")
    elems = _ElementCache(xp, elements=elements, edge_fraction=edge_fraction,
                          taus=tuple(taus), allow_nan=allow_nonfinite,
                          allow_infinity=allow_nonfinite, allow_subnormal=allow_subnormal)
    names = _dtype_names(xp, dtype)
    shapes = _shapes(shape)

    return _tuple_pair(xp, names, shapes, elems, device)


@st.composite
def _tuple_pair(draw: st.DrawFn, xp: Namespace, names: st.SearchStrategy[str],
                shapes: st.SearchStrategy[tuple[int, ...]], elems: _ElementCache,
                device: Any) -> tuple[Array, Array]:
    name = draw(names)
    shp = draw(shapes)
    n = _draw_array(draw, xp, name, shp, elems(name), device)
    d = _draw_array(draw, xp, name, shp, elems(name), device)
    return n, d


_LABELS = ("finite", "bottom", "censored_below", "censored_above", "domain_invalid",
           "fault", "missing")
_NONFINITE_LABELS = _LABELS[1:]


@overload
def targets(
    xp: Namespace, *, dtype: DtypeArg = ..., shape: ShapeArg = ...,
    nonfinite_fraction: float = ..., edge_fraction: float = ...,
    elements: st.SearchStrategy[float] | Mapping[str, Any] | None = ...,
    status_labels: Literal[False] = ..., device: Any = ...,
) -> st.SearchStrategy[Array]: ...


@overload
def targets(
    xp: Namespace, *, dtype: DtypeArg = ..., shape: ShapeArg = ...,
    nonfinite_fraction: float = ..., edge_fraction: float = ...,
    elements: st.SearchStrategy[float] | Mapping[str, Any] | None = ...,
    status_labels: Literal[True], device: Any = ...,
) -> st.SearchStrategy[tuple[Array, Any]]: ...


def targets(
    xp: Namespace,
    *,
    dtype: DtypeArg = None,
    shape: ShapeArg = None,
    nonfinite_fraction: float = 0.2,
    edge_fraction: float = 0.25,
    elements: st.SearchStrategy[float] | Mapping[str, Any] | None = None,
    status_labels: bool = False,
    device: Any = None,
) -> st.SearchStrategy[Any]:
    """Strategy for regression targets ``y`` with finite and non-finite labels.

    About ``nonfinite_fraction`` of the elements are ``+inf``, ``-inf`` or NaN (which
    ``lift_targets`` maps to ``(±1, 0)``); the rest are finite values mixed with finite
    edge values (±0, subnormals, huge, next to the default taus).

    With ``status_labels=True`` the strategy yields ``(y, labels)``: ``labels`` is a
    nested list of strings with ``y``'s shape (a string for 0-d ``y``) for
    ``lift_semantic_targets`` — finite elements get any label (mostly ``"finite"``),
    non-finite ones any label except ``"finite"``.
    """
    _share(nonfinite_fraction, "nonfinite_fraction")
    _share(edge_fraction, "edge_fraction")
    names = _dtype_names(xp, dtype)
    shapes = _shapes(shape)
    finite = _ElementCache(xp, elements=elements, edge_fraction=edge_fraction,
                           taus=DEFAULT_TAUS, allow_nan=False, allow_infinity=False,
                           allow_subnormal=True)

    return _targets(xp, names, shapes, finite, nonfinite_fraction, status_labels, device)


_NONFINITE = st.sampled_from([math.inf, -math.inf, math.nan])
_LABELS_FINITE = _mixture(["finite"], st.sampled_from(_LABELS), 0.7)
_LABELS_NONFINITE = st.sampled_from(_NONFINITE_LABELS)


@st.composite
def _targets(draw: st.DrawFn, xp: Namespace, names: st.SearchStrategy[str],
             shapes: st.SearchStrategy[tuple[int, ...]], finite: _ElementCache,
             nonfinite_fraction: float, status_labels: bool, device: Any) -> Any:
    name = draw(names)
    shp = draw(shapes)
    if nonfinite_fraction < 1.0:
        el = _mixture([math.inf, -math.inf, math.nan], finite(name), nonfinite_fraction,
                      "nonfinite_fraction")
    else:
        el = _NONFINITE
    y = _draw_array(draw, xp, name, shp, el, device)
    if not status_labels:
        return y
    fin = to_numpy(xp.isfinite(y)).reshape(-1)
    labs = [draw(_LABELS_FINITE if f else _LABELS_NONFINITE) for f in fin]
    return y, _nest(labs, shp)


def _nest(flat: list[str], shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]
