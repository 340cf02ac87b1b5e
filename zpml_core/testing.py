"""Property-testing tools for Signed Common Meadow code, for any array namespace.

Import it explicitly (``import zpml_core.testing``); ``import zpml_core`` does not load
it. It needs ``hypothesis`` and ``numpy`` (the ``test`` extra).

Strategies (all take the array namespace ``xp`` first and return arrays of ``xp``):

* :func:`scm_arrays` — ``SCMArray(value, bottom)`` operands with a controllable share
  of edge values (±0, ±inf, NaN, subnormals, the smallest normal, ``2**(emin/2)``,
  huge values, values next to the thresholds ``taus``) and a controllable share of
  masked (bottom) elements; the other values cover the dtype's whole finite range
  (log-uniform magnitudes from the smallest subnormal to ``max``, moderate values and
  hypothesis' own float mix).
* :func:`projective_tuples` — ``(N, D)`` pairs for ``decode`` / ``renormalize``.
* :func:`targets` — regression targets with finite and non-finite entries (optionally
  with status labels for ``lift_semantic_targets``).

Assertions: :func:`assert_scm_equal` (masks exact, values within ``ulps`` with an
absolute floor of the smallest normal, signed zeros, readable diff listing the first
differing indices) and :func:`assert_close` for plain arrays.

Reproductions: :func:`reproduction` renders a call as code a user can paste; pass it to
``hypothesis.note`` inside a property so the falsifying example prints it.

Profiles: :func:`register_profiles` registers ``dev``, ``ci`` and ``nightly``;
:func:`load_profile` picks one from an argument, ``$HYPOTHESIS_PROFILE`` or ``$CI``.

Dtypes: float16, bfloat16 (where the library has it; drawn and compared in numpy as
ml_dtypes' ``bfloat16``), float32, float64, complex64, complex128.

Arrays are drawn as numpy arrays (``hypothesis.extra.numpy``) and handed to the library
through its zpml_core backend adapter, which copies them exactly (subnormals included)
in one call. Namespaces without an adapter are drawn with
``hypothesis.extra.array_api.make_strategies_namespace(xp)`` instead.

Shares (``edge_fraction``, ``bottom_fraction``, ``nonfinite_fraction``) are drawn from
fair booleans, so they hold on average as asked (hypothesis' integers are skewed to
small values), and small arrays draw each element on its own.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zpml_core import _xp
from zpml_core._registry import GenericBackend, get_backend
from zpml_core.scm import SCMArray

__all__ = [
    "DEFAULT_TAUS",
    "PROFILES",
    "SMALL_SHAPES",
    "assert_close",
    "assert_scm_equal",
    "edge_values",
    "load_profile",
    "note_reproduction",
    "projective_tuples",
    "register_profiles",
    "reproduction",
    "scm_arrays",
    "small_shapes",
    "targets",
    "to_numpy",
]

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


# ---------------------------------------------------------------------------------------
# edge values


@functools.lru_cache(maxsize=256)
def _edge_values_cached(xp: Namespace, dtype: Any, taus: tuple[float, ...], allow_nan: bool,
                        allow_infinity: bool, allow_subnormal: bool) -> tuple[float, ...]:
    return _edge_values(xp, dtype, taus, allow_nan, allow_infinity, allow_subnormal)


def edge_values(
    xp: Namespace,
    dtype: Any,
    *,
    taus: Sequence[float] = DEFAULT_TAUS,
    allow_nan: bool = True,
    allow_infinity: bool = True,
    allow_subnormal: bool = True,
) -> tuple[float, ...]:
    """The edge values of a real floating ``dtype`` as Python floats (exact in ``dtype``).

    Both signs of: 0, the smallest, a mid-range and the largest subnormal, the smallest
    normal ``tiny`` and its successor, ``2**(emin/2)`` (the smallest ``|y|`` with a
    normal ``y*y``: the real-``div`` boundary) and its neighbours, ``1/sqrt(max)`` and
    neighbours (where ``1/(y*y)`` overflows), ``eps``, 1 and its neighbours, 0.5, 2, 3, π/2, ``sqrt(max)``,
    ``max`` and its predecessor, the ``exp`` overflow border and its successor, every
    threshold in ``taus`` (rounded to ``dtype``) and its neighbours; then ±inf and NaN.
    """
    name = _real_name(_np_dtype_name(xp, dtype))
    return _edge_values_cached(xp, name, tuple(float(t) for t in taus), allow_nan,
                               allow_infinity, allow_subnormal)


def _edge_values(xp: Namespace, name: str, taus: tuple[float, ...], allow_nan: bool,
                 allow_infinity: bool, allow_subnormal: bool) -> tuple[float, ...]:
    npdt = _np_dtype(name)
    fi = np.finfo(npdt)
    t = npdt.type
    tiny, fmax = t(fi.smallest_normal), t(fi.max)
    zero, one, inf = t(0.0), t(1.0), t(np.inf)

    def up(v: Any) -> Any:
        return np.nextafter(t(v), inf)

    def down(v: Any) -> Any:
        return np.nextafter(t(v), zero)

    emin = int(np.log2(float(tiny)))
    sqrt_tiny = t(2.0 ** (emin // 2)) if emin % 2 == 0 else t(math.sqrt(float(tiny)))
    inv_sqrt_max = t(1.0 / math.sqrt(float(fmax)))
    exp_max = t(_xp.consts(xp, getattr(xp, name)).exp_max)
    mags: list[Any] = [
        zero,
        np.nextafter(zero, one),  # smallest subnormal
        t(float(tiny) * 2.0**-8),  # a mid-range subnormal (exact power of two)
        down(tiny),  # largest subnormal
        tiny, up(tiny),
        down(sqrt_tiny), sqrt_tiny, up(sqrt_tiny),
        down(inv_sqrt_max), inv_sqrt_max, up(inv_sqrt_max),
        t(fi.eps), down(one), one, up(one), t(0.5), t(2.0), t(3.0), t(math.pi / 2),
        t(math.sqrt(float(fmax))), down(fmax), fmax, exp_max, up(exp_max),
    ]
    with np.errstate(all="ignore"):
        for tau in taus:
            tv = t(tau)
            if np.isfinite(tv) and tv > 0:
                mags += [down(tv), tv, up(tv)]
    out: list[float] = []
    seen: set[tuple[float, bool]] = set()
    for m in mags:
        for v in (float(m), -float(m)):
            key = (v, math.copysign(1.0, v) < 0)
            if key in seen:
                continue
            if not allow_subnormal and v != 0 and abs(v) < float(tiny):
                continue
            seen.add(key)
            out.append(v)
    if allow_infinity:
        out += [math.inf, -math.inf]
    if allow_nan:
        out.append(math.nan)
    return tuple(out)


#: binary digits of every share (``edge_fraction``, ``bottom_fraction``, ...): a share is
#: rounded to a multiple of ``2**-16``
_COIN_BITS = 16
_COIN_ONE = 1 << _COIN_BITS


def _flip(draw: st.DrawFn, k: int) -> bool:
    """True with probability ``k / 2**16`` (for fair coins), drawn from fair booleans.

    Hypothesis biases integer draws towards small values (``integers(0, 999) < 500``
    holds ~72 % of the time, not 50 %), so a share is not ``integers(...) < k``: instead
    ``U = 0.b1 b2 b3 …`` (binary digits ``b_i`` drawn lazily as booleans, two on average)
    is compared with the binary digits of ``k / 2**16``; ``U < k / 2**16`` holds with
    exactly that probability. All-False bits shrink ``U`` to 0, so the result shrinks
    towards True."""
    for i in range(_COIN_BITS - 1, -1, -1):
        digit = (k >> i) & 1
        if draw(_BOOL) != bool(digit):
            return digit == 1
        if k & ((1 << i) - 1) == 0:  # the remaining digits are 0: U >= k / 2**16
            return False
    return False


_BOOL = st.booleans()


def _share(fraction: float, what: str) -> int:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {fraction!r}")
    return round(fraction * _COIN_ONE)


Options = tuple[tuple[int, st.SearchStrategy[Any]], ...]


@st.composite
def _pick(draw: st.DrawFn, options: Options, last: st.SearchStrategy[Any]) -> Any:
    """The strategy of the first option whose coin (share ``k / 2**16``) comes up, else
    ``last`` (one composite per element, however many options: drawing is the cost)."""
    for k, strategy in options:
        if _flip(draw, k):
            return draw(strategy)
    return draw(last)


@st.composite
def _coin(draw: st.DrawFn, k: int) -> bool:
    return _flip(draw, k)


def _mixture(edges: Sequence[Any], general: st.SearchStrategy[Any],
             edge_fraction: float, what: str = "edge_fraction",
             options: Options = ()) -> st.SearchStrategy[Any]:
    """``edges`` with probability ``edge_fraction``, else the ``options`` (each with its
    share of the rest), else ``general``; shrinks to edges."""
    k = _share(edge_fraction, what)
    if edges and k == _COIN_ONE:
        return st.sampled_from(tuple(edges))
    if edges and k:
        options = ((k, st.sampled_from(tuple(edges))), *options)
    return _pick(options, general) if options else general


def _round_bf16(v: float) -> float:
    """``v`` rounded to a bfloat16 value (via float32, ties to even; the double rounding
    may pick the other neighbour at an exact float32 tie — immaterial here: drawn values
    only need to be exactly representable)."""
    with np.errstate(all="ignore"):
        f = np.asarray(v, dtype=np.float32)
    if not np.isfinite(f):
        return float(f)
    u = int(f.view(np.uint32))
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000  # overflow past max gives inf
    return float(np.asarray(u, dtype=np.uint32).view(np.float32))


def _rounder(name: str) -> Callable[[float], float]:
    if name == "bfloat16":
        return _round_bf16
    t = np.dtype(name).type

    def rnd(v: float) -> float:
        with np.errstate(all="ignore"):
            return float(t(v))

    return rnd


def _width(name: str) -> Literal[16, 32, 64]:
    """``floats(width=...)`` for a dtype (bfloat16: drawn as float32, then rounded)."""
    return {"float16": 16, "bfloat16": 32, "float32": 32}.get(name, 64)  # type: ignore[return-value]


def _fitter(name: str, allow_infinity: bool, allow_subnormal: bool) -> Callable[[float], float]:
    """Round to dtype ``name``; a finite value that rounds to ±inf becomes ±max unless
    infinities are allowed; a subnormal becomes the zero of its sign unless allowed."""
    rnd = _rounder(name)
    fi = np.finfo(_np_dtype(name))
    tiny, fmax = float(fi.smallest_normal), float(fi.max)

    def fit(v: float) -> float:
        r = rnd(v)
        if math.isinf(r) and not math.isinf(v) and not allow_infinity:
            return math.copysign(fmax, r)
        if not allow_subnormal and 0.0 < abs(r) < tiny:
            return math.copysign(0.0, r)
        return r

    return fit


# moderate values (before rounding to the dtype): the range everyday data lives in
_MODERATE = 1e3


def _full_range(
    dtype_name: str,
    *,
    allow_nan: bool = True,
    allow_infinity: bool = True,
    allow_subnormal: bool = True,
) -> tuple[Options, st.SearchStrategy[float]]:
    """Python floats exact in the real dtype ``dtype_name``, over its whole range.

    The default non-edge values of every strategy here: a mixture of

    * (half of the values) **log-uniform magnitudes over the whole finite range**: a
      binary exponent from the smallest subnormal's (the smallest normal's if
      ``allow_subnormal`` is False) to ``max``'s, a uniform mantissa, either sign — so
      ``1e-300`` and ``1e300`` (float64) are about as likely as ``1.0``;
    * (a quarter) **moderate values**: any float in ``[-1e3, 1e3]``, rounded to the dtype;
    * (a quarter) hypothesis' ``floats`` of the dtype's width (its own mix of simple and nasty values;
      ±inf and NaN where allowed).

    Shrinks towards 1.0 (exponent 0, mantissa 0). ``dtype_name``: float16, bfloat16,
    float32 or float64. Returns the options for :func:`_pick` (log-uniform, moderate)
    and the last strategy (hypothesis' floats).
    """
    fi = np.finfo(_np_dtype(dtype_name))
    nmant, emin, emax = int(fi.nmant), int(fi.minexp), int(fi.maxexp) - 1
    fit = _fitter(dtype_name, allow_infinity, allow_subnormal)
    lowest = emin - nmant if allow_subnormal else emin

    def build(e: int, m: int) -> float:
        # m: the sign (lowest bit) and the mantissa; exact in float64 (nmant <= 52),
        # rounding to the dtype only quantises subnormals
        v = fit(math.ldexp(1.0 + (m >> 1) / (1 << nmant), e))
        return -v if m & 1 else v

    log_uniform = st.builds(build, st.integers(lowest, emax),
                            st.integers(0, (1 << (nmant + 1)) - 1))
    moderate = st.floats(-_MODERATE, _MODERATE).map(fit)
    floats = st.floats(width=_width(dtype_name), allow_nan=allow_nan,
                       allow_infinity=allow_infinity, allow_subnormal=allow_subnormal)
    if dtype_name == "bfloat16":
        floats = floats.map(fit)
    # fair shares (one_of picks its first branch far more often than the others)
    half = _COIN_ONE // 2
    return ((half, log_uniform), (half, moderate)), floats


def _real_elements(
    xp: Namespace,
    name: str,
    *,
    elements: st.SearchStrategy[float] | Mapping[str, Any] | None,
    edge_fraction: float,
    taus: Sequence[float],
    allow_nan: bool,
    allow_infinity: bool,
    allow_subnormal: bool,
) -> st.SearchStrategy[float]:
    kw: dict[str, Any] = {
        "allow_nan": allow_nan,
        "allow_infinity": allow_infinity,
        "allow_subnormal": allow_subnormal,
    }
    general: st.SearchStrategy[float]
    options: Options = ()
    if isinstance(elements, st.SearchStrategy):
        # user values are rounded to the dtype (so any Python float strategy can be used)
        general = elements if name == "float64" else elements.map(_rounder(name))
    else:
        extra = dict(elements or {})
        if "min_value" in extra or "max_value" in extra:
            # bounded: let hypothesis infer NaN/inf unless the mapping says otherwise
            kw["allow_nan"] = kw["allow_infinity"] = kw["allow_subnormal"] = None
            kw.update(extra)
            general = st.floats(width=_width(name), **kw)
            if name == "bfloat16":
                general = general.map(_round_bf16)
        else:
            kw.update(extra)
            options, general = _full_range(name, **kw)
    edges = edge_values(xp, name, taus=taus, allow_nan=bool(kw["allow_nan"]),
                        allow_infinity=kw["allow_infinity"] is not False,
                        allow_subnormal=kw["allow_subnormal"] is not False)
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is not None or hi is not None:
        edges = tuple(
            v for v in edges
            if not math.isnan(v)
            and (lo is None or (v > lo if kw.get("exclude_min") else v >= lo))
            and (hi is None or (v < hi if kw.get("exclude_max") else v <= hi))
        )
    return _mixture(edges, general, edge_fraction, options=options)


def _elements(xp: Namespace, name: str, **kw: Any) -> st.SearchStrategy[Any]:
    el = kw.get("elements")
    if isinstance(el, Mapping):
        kw["elements"] = tuple(sorted(el.items()))
    try:
        return _elements_cached(xp, name, tuple(sorted(kw.items())))
    except TypeError:  # unhashable arguments: build uncached
        return _elements_uncached(xp, name, **kw)


@functools.lru_cache(maxsize=1024)
def _elements_cached(xp: Namespace, name: str, kw: tuple[tuple[str, Any], ...]
                     ) -> st.SearchStrategy[Any]:
    return _elements_uncached(xp, name, **dict(kw))


def _elements_uncached(xp: Namespace, name: str, **kw: Any) -> st.SearchStrategy[Any]:
    if isinstance(kw.get("elements"), tuple):
        kw["elements"] = dict(kw["elements"])
    if name in _COMPLEX_NAMES:
        part = _real_elements(xp, _real_name(name), **kw)
        return st.builds(complex, part, part)
    return _real_elements(xp, name, **kw)


# ---------------------------------------------------------------------------------------
# arrays of xp


def to_numpy(x: Array) -> np.ndarray:
    """An exact numpy copy of an array of any supported library (detached, on host).

    bfloat16 arrays become numpy arrays of ml_dtypes' ``bfloat16`` (exact)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return np.asarray(x)
    xp = _xp.namespace(x)
    be = get_backend(xp)
    if _is_bf16(x.dtype) or str(x.dtype).endswith("bfloat16"):
        # not every library exports bfloat16 to numpy: widen exactly, then narrow exactly
        return to_numpy(xp.astype(x, xp.float32)).astype(_bf16_type())
    if isinstance(be, GenericBackend):
        try:
            return np.from_dlpack(x).copy()
        except Exception:
            return np.asarray(x)
    return np.asarray(be.to_numpy(x))


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


# ---------------------------------------------------------------------------------------
# assertions


def _fmt(v: Any) -> str:
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if f == 0.0:
            return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
        return repr(f)
    if isinstance(v, (np.complexfloating, complex)):
        return repr(complex(v))
    return repr(v.item() if isinstance(v, np.generic) else v)


def _idx(i: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(k)) for k in i) + "]" if i else "[()]"


def _is_float(dtype: Any) -> bool:
    """Real floating numpy dtype, ml_dtypes' bfloat16 included."""
    return bool(np.issubdtype(dtype, np.floating)) or _is_bf16(dtype)


def _ulp_tolerance(a: np.ndarray, e: np.ndarray, ulps: float, atol: float,
                   dtype: Any = None) -> np.ndarray:
    """``max(ulps * spacing(max(|a|, |e|)), atol)`` in float64, the spacing of ``dtype``
    (default: that of ``a``; its real dtype for complex)."""
    mag = np.maximum(np.abs(a), np.abs(e))
    if np.iscomplexobj(mag):
        mag = np.abs(mag)
    rdt = np.finfo(mag.dtype if dtype is None else dtype).dtype
    with np.errstate(all="ignore"):
        m = mag.astype(rdt)
        spacing = np.spacing(m)
        # spacing(max) is inf: use the gap below instead
        spacing = np.where(np.isfinite(spacing), spacing, np.spacing(np.nextafter(m, 0)))
        return np.maximum(ulps * spacing.astype(np.float64), atol)


def _wide(v: np.ndarray) -> np.ndarray:
    """float64 (complex128) copy: differences of two values computed without rounding
    (except where a difference of huge values overflows, which then differs anyway)."""
    return v.astype(np.complex128 if np.iscomplexobj(v) else np.float64)


def _as_pair(x: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(x, tuple) and len(x) == 2):
        raise TypeError(f"{what} must be an SCMArray or a (value, bottom) pair, got "
                        f"{type(x).__name__}")
    return to_numpy(x[0]), to_numpy(x[1])


def _ulps_between(a: Any, e: Any) -> str:
    """`` (N ulp)`` for two finite real values, measured at the larger magnitude."""
    try:
        fa, fe = complex(a), complex(e)
    except (TypeError, ValueError):
        return ""
    if fa.imag or fe.imag or not (math.isfinite(fa.real) and math.isfinite(fe.real)):
        return ""
    with np.errstate(all="ignore"):
        mag = np.maximum(np.abs(np.asarray(a)), np.abs(np.asarray(e)))
        sp = float(np.spacing(mag)) if _is_float(mag.dtype) else 0.0
    if not (sp > 0 and math.isfinite(sp)):
        return ""
    return f" ({abs(fa.real - fe.real) / sp:.3g} ulp)"


def assert_scm_equal(
    actual: Any,
    expected: Any,
    *,
    ulps: float = 4,
    atol: float | None = None,
    signed_zeros: bool = True,
    carrier: bool = True,
    check_dtype: bool = True,
    max_report: int = 10,
    msg: str = "",
) -> None:
    """Assert that two SCM results agree; ``AssertionError`` with a readable diff if not.

    ``actual`` and ``expected`` are ``SCMArray`` s or ``(value, bottom)`` pairs from any
    libraries (e.g. torch against numpy). Checks, in order: shapes; dtypes (the numpy
    name, unless ``check_dtype=False``); **masks exactly**; values where neither is
    bottom — finite and ``|a - e| <= max(ulps * spacing(max(|a|, |e|)), atol)`` with
    ``atol`` defaulting to the smallest normal of the dtype (libraries that flush
    subnormal results, such as JAX on CPU, then still compare equal); with
    ``signed_zeros`` the sign of zero results must match where both are exactly 0; with
    ``carrier`` the value at bottom positions must be ``+0`` in both.
    The message lists the first ``max_report`` differing indices with both values.
    """
    av, ab = _as_pair(actual, "actual")
    ev, eb = _as_pair(expected, "expected")
    head = (msg + "\n") if msg else ""
    if av.shape != ev.shape or ab.shape != eb.shape or av.shape != ab.shape:
        raise AssertionError(
            f"{head}shapes differ: actual value {av.shape} / bottom {ab.shape}, "
            f"expected value {ev.shape} / bottom {eb.shape}"
        )
    if ab.dtype != np.bool_ or eb.dtype != np.bool_:
        raise AssertionError(f"{head}bottom masks must be bool, got actual {ab.dtype}, "
                             f"expected {eb.dtype}")
    if check_dtype and av.dtype != ev.dtype:
        raise AssertionError(f"{head}value dtypes differ: actual {av.dtype}, "
                             f"expected {ev.dtype}")
    problems: list[tuple[tuple[int, ...], str]] = []

    def add(mask: np.ndarray, why: str) -> None:
        for i in np.argwhere(mask):
            problems.append((tuple(int(k) for k in i), why))

    add(ab != eb, "mask differs")
    both = ~ab & ~eb
    with np.errstate(all="ignore"):
        fin_a = np.isfinite(av)
        fin_e = np.isfinite(ev)
        add(both & ~fin_a, "actual value not finite")
        add(both & fin_a & ~fin_e, "expected value not finite")
        cmp_ok = both & fin_a & fin_e
        floor = atol
        if floor is None:
            floor = _smallest_normal(av.dtype)
        a_c = np.where(cmp_ok, av, 0)
        e_c = np.where(cmp_ok, ev, 0).astype(a_c.dtype)
        diff = np.abs(_wide(a_c) - _wide(e_c))
        tol = _ulp_tolerance(a_c, e_c, ulps, floor)
        add(cmp_ok & ~(diff <= tol), f"values differ by more than {ulps} ulp (floor {floor:g})")
        if signed_zeros:
            z = cmp_ok & (av == 0) & (ev == 0)
            add(z & (_signbit(av) != _signbit(ev)), "signs of zero differ")
        if carrier:
            add(ab & ~((av == 0) & ~_signbit(av)), "actual value at bottom is not +0")
            add(eb & ~((ev == 0) & ~_signbit(ev)), "expected value at bottom is not +0")
    if not problems:
        return
    problems.sort()
    lines = [f"{head}SCM results differ at {len({p[0] for p in problems})} of "
             f"{max(av.size, 1)} positions (shape {av.shape}):"]
    shown: set[tuple[int, ...]] = set()
    for i, _ in problems:
        if i in shown:
            continue
        if len(shown) >= max_report:
            lines.append("  ...")
            break
        shown.add(i)
        reasons = "; ".join(w for j, w in problems if j == i)
        a_val, e_val, a_bot, e_bot = av[i], ev[i], ab[i], eb[i]
        lines.append(
            f"  at {_idx(i)}: actual (value={_fmt(a_val)}, bottom={bool(a_bot)})  "
            f"expected (value={_fmt(e_val)}, bottom={bool(e_bot)}){_ulps_between(a_val, e_val)}"
            f"  <- {reasons}"
        )
    raise AssertionError("\n".join(lines))


def _smallest_normal(dtype: Any) -> float:
    if not (np.issubdtype(dtype, np.inexact) or _is_bf16(dtype)):
        return 0.0
    return float(np.finfo(dtype).smallest_normal)


def _signbit(v: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(v):
        return np.signbit(v.real) | np.signbit(v.imag)
    if _is_float(v.dtype):
        return np.signbit(v)
    return np.zeros(v.shape, dtype=bool)


def assert_close(
    actual: Any,
    expected: Any,
    *,
    ulps: float = 4,
    atol: float | None = None,
    equal_nan: bool = True,
    signed_zeros: bool = False,
    check_dtype: bool = True,
    max_report: int = 10,
    msg: str = "",
) -> None:
    """Assert two plain arrays (any libraries) agree within ``ulps`` (floor ``atol``,
    default the dtype's smallest normal). NaN positions must coincide (``equal_nan``),
    infinities must be equal; with ``signed_zeros`` the sign of exact zeros must match."""
    a, e = to_numpy(actual), to_numpy(expected)
    head = (msg + "\n") if msg else ""
    if a.shape != e.shape:
        raise AssertionError(f"{head}shapes differ: actual {a.shape}, expected {e.shape}")
    if check_dtype and a.dtype != e.dtype:
        raise AssertionError(f"{head}dtypes differ: actual {a.dtype}, expected {e.dtype}")
    if _is_bf16(a.dtype) or _is_bf16(e.dtype):
        tdt = _np_dtype("bfloat16")  # compared in float32 (exact), tolerances in bfloat16
        fa, fe = (np.asarray(v, dtype=tdt).astype(np.float32) for v in (a, e))
    else:
        fa = np.asarray(a, dtype=np.result_type(a.dtype, e.dtype, np.float16))
        fe = np.asarray(e, dtype=fa.dtype)
        tdt = fa.dtype
    floor = atol if atol is not None else _smallest_normal(tdt)
    na, ne = np.isnan(fa), np.isnan(fe)
    bad = (na != ne) if equal_nan else (na | ne)
    fin = np.isfinite(fa) & np.isfinite(fe)
    bad |= ~fin & ~na & ~ne & (fa != fe)  # infinities must match exactly
    with np.errstate(all="ignore"):
        diff = np.abs(_wide(np.where(fin, fa, 0)) - _wide(np.where(fin, fe, 0)))
        tol = _ulp_tolerance(np.where(fin, fa, 0), np.where(fin, fe, 0), ulps, floor, tdt)
    bad |= fin & ~(diff <= tol)
    if signed_zeros and np.issubdtype(fa.dtype, np.floating):
        bad |= fin & (fa == 0) & (fe == 0) & (np.signbit(fa) != np.signbit(fe))
    if not bad.any():
        return
    idx = [tuple(int(k) for k in i) for i in np.argwhere(bad)]
    lines = [f"{head}arrays differ at {len(idx)} of {max(a.size, 1)} positions "
             f"(shape {a.shape}, tolerance {ulps} ulp, floor {floor:g}):"]
    for i in idx[:max_report]:
        lines.append(f"  at {_idx(i)}: actual {_fmt(a[i])}  expected {_fmt(e[i])}"
                     f"{_ulps_between(a[i], e[i])}")
    if len(idx) > max_report:
        lines.append("  ...")
    raise AssertionError("\n".join(lines))


# ---------------------------------------------------------------------------------------
# reproductions


_IMPORTS = {
    "array_api_compat.numpy": "import array_api_compat.numpy as xp",
    "numpy": "import array_api_compat.numpy as xp",
    "array_api_compat.torch": "import array_api_compat.torch as xp",
    "jax.numpy": 'import jax\njax.config.update("jax_enable_x64", True)\nimport jax.numpy as xp',
    "array_api_strict": "import array_api_strict as xp",
}


def _is_arr(a: Any) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, type)


def _literal(v: Any, imports: dict[str, None]) -> str:
    """Python source for an argument: arrays written out, named tuples (``SCMArray``)
    rebuilt from their fields, other objects from their ``repr`` (class imported)."""
    if _is_arr(v):
        return _array_code(v)
    if isinstance(v, float):
        return _fmt(v)
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        t = type(v)
        imports[f"from {t.__module__} import {t.__qualname__}"] = None
        return f"{t.__qualname__}({', '.join(_literal(u, imports) for u in v)})"
    if isinstance(v, (list, tuple)):
        inner = ", ".join(_literal(u, imports) for u in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner}{',' if len(v) == 1 else ''})"
    if v is None or isinstance(v, (bool, int, complex, str)):
        return repr(v)
    t = type(v)
    if t.__module__ != "builtins":
        imports[f"from {t.__module__} import {t.__qualname__.split('.')[0]}"] = None
    return repr(v)


def _array_code(x: Array) -> str:
    a = to_numpy(x)
    dt = "bool" if a.dtype == np.bool_ else a.dtype.name
    return f"xp.asarray({_literal(a.tolist(), {})}, dtype=xp.{dt})"


def _arrays_in(v: Any) -> list[Any]:
    if _is_arr(v):
        return [v]
    if isinstance(v, (list, tuple)):
        return [a for u in v for a in _arrays_in(u)]
    return []


def note_reproduction(func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> None:
    """``hypothesis.note(reproduction(func, *args, **kwargs))``, rendered only when
    hypothesis will report it (the final, minimal failing example, or verbose runs)."""
    from hypothesis import note

    try:
        from hypothesis.control import should_note

        if not should_note():
            return
    except Exception:  # outside a test, or a hypothesis without should_note
        pass
    note(reproduction(func, *args, **kwargs))


def reproduction(func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> str:
    """Render ``func(*args, **kwargs)`` as a self-contained snippet a user can paste.

    Arrays are written out exactly (``xp.asarray([...], dtype=xp.float32)``, with
    ``nan``/``inf`` and signed zeros preserved) for the namespace they belong to; other
    arguments by their ``repr`` (their class is imported). ``func`` is a function
    (imported by its module) or a dotted path such as ``"zpml_core.scm.div"``. Use it with
    ``hypothesis.note`` (or :func:`note_reproduction`) inside a property.
    """
    path = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    module = path.rsplit(".", 1)[0] if "." in path else ""
    arrays = _arrays_in([*args, *kwargs.values()])
    ns = _xp.namespace(*arrays).__name__ if arrays else "array_api_compat.numpy"
    imports: dict[str, None] = {_IMPORTS.get(ns, f"import {ns} as xp"): None}
    if module:
        imports[f"import {module}"] = None
    body = ['nan, inf = float("nan"), float("inf")']
    names: list[str] = []
    for i, a in enumerate(args):
        if _arrays_in(a):
            body.append(f"a{i} = {_literal(a, imports)}")
            names.append(f"a{i}")
        else:
            names.append(_literal(a, imports))
    for k, v in kwargs.items():
        if _arrays_in(v):
            body.append(f"{k} = {_literal(v, imports)}")
            names.append(f"{k}={k}")
        else:
            names.append(f"{k}={_literal(v, imports)}")
    body.append(f"result = {path}({', '.join(names)})")
    body.append("print(result)")
    return "\n".join([*imports, *body])


# ---------------------------------------------------------------------------------------
# profiles

#: The hypothesis profiles :func:`register_profiles` registers (settings keyword args).
PROFILES: dict[str, dict[str, Any]] = {
    # fast local feedback, reproducible: the same examples on every run (a plain
    # ``pytest`` must never pass on one run and fail on the next); explore with nightly
    # (no wall-clock checks: a loaded machine must not fail a run)
    "dev": {"max_examples": 20, "derandomize": True, "database": None, "deadline": None,
            "print_blob": True, "suppress_health_check": [HealthCheck.too_slow]},
    # CI: reproducible, >= 200 examples per property
    "ci": {
        "max_examples": 200,
        "derandomize": True,
        "database": None,
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    },
    # nightly: >= 10,000 random examples per property
    "nightly": {
        "max_examples": 10_000,
        "deadline": None,
        "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow],
    },
}


def register_profiles() -> None:
    """Register the ``dev``, ``ci`` and ``nightly`` hypothesis profiles (idempotent).

    Each derives from hypothesis' own ``default`` profile, not from the profile loaded
    at the time (which would leak, e.g., dev's ``derandomize`` into nightly)."""
    base = settings.get_profile("default")
    for name, kw in PROFILES.items():
        settings.register_profile(name, base, **kw)


def load_profile(name: str | None = None) -> str:
    """Register the profiles and load one: ``name``, else ``$HYPOTHESIS_PROFILE``, else
    ``ci`` when ``$CI`` is set to a true value, else ``dev``. Returns the loaded name."""
    register_profiles()
    if name is None:
        name = os.environ.get("HYPOTHESIS_PROFILE", "").strip() or None
    if name is None:
        ci = os.environ.get("CI", "").strip().lower()
        name = "ci" if ci not in ("", "0", "false", "no") else "dev"
    settings.load_profile(name)
    return name
