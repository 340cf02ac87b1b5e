"""Element strategies of :mod:`zpml_core.testing`: fair shares drawn from booleans
(``edge_fraction``, ``bottom_fraction``, ...), rounding to a dtype and the per-dtype
element mixtures (edge values, log-uniform full range, moderate values, hypothesis'
floats).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st

from zpml_core.testing._dtypes import _COMPLEX_NAMES, Namespace, _np_dtype, _real_name
from zpml_core.testing._edges import edge_values

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
