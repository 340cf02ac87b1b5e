"""Edge values of :mod:`zpml_core.testing`: :func:`edge_values`, the values of a
floating dtype where SCM rules switch (signed zeros, subnormals, thresholds, overflow
borders).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from zpml_core import _xp
from zpml_core.testing._dtypes import DEFAULT_TAUS, Namespace, _np_dtype, _np_dtype_name, _real_name


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
