"""Overflow-safe building blocks of the loss kernels (scaled forms, saturation, dtypes).

Every loss is finite for every finite input up to ``finfo.max`` (value, and gradient
wherever the true gradient is representable), by three rules:

* **Computation dtype.** float16 / bfloat16 operands are computed in float32 and the
  result is cast back (mixed-precision practice; the half types have too few bits and
  too little range for the intermediate products). Every other floating dtype is
  computed in itself.
* **Scaled forms.** A tuple ``(a, b)`` (``(P, Q)`` or ``(Y_n, Y_d)``) is divided by a
  power of two ``r`` next to its largest component magnitude (:func:`pair_scale`, a
  stop-gradient constant). The division is exact, so every product and square of the
  scaled tuple rounds exactly like the unscaled formula (bit for bit, unless the
  unscaled formula over- or underflows), and the loss — homogeneous in each tuple —
  is unchanged. :func:`scaled_pair` scales a tuple and flushes its subnormal
  components (:func:`daz`) in one pass.
* **Saturation.** Every element of every loss is at most ``S`` (:attr:`Limits.sat`):
  ``2^⌊E/2⌋⁻²`` with ``E = ⌊log2 finfo.max⌋`` of the computation dtype —
  ``2^509 ≈ 1.7e153`` (float64), ``2^61 ≈ 2.3e18`` (float32, bfloat16) — and
  ``finfo(float16).max`` for float16. A mean of at most ``2^(E/2)`` such elements cannot
  overflow, and the local derivatives inside a kernel stay below ``finfo.max``, so
  gradients never hold ``inf · 0 = NaN``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from zpml_core import _daz, _xp
from zpml_core._registry import Backend
from zpml_core._xp import Array, Namespace

__all__ = ["Limits", "clamp", "daz", "gamma_value", "limits", "maxabs", "mean", "numel",
           "pair_scale", "scaled_pair"]


@dataclass(frozen=True)
class Limits:
    """Constants of one loss computation (Python floats; hashable: a static jit argument).

    ``cdt``: computation dtype (real or complex); ``rdt``: its real dtype; ``odt``: the
    real dtype of the loss value; ``cast``: operands are cast to ``cdt`` (half types).
    """

    cdt: Any
    rdt: Any
    odt: Any
    cast: bool
    max: float  # finfo(rdt).max
    tiny: float  # finfo(rdt).smallest_normal
    sat: float  # S: the largest value of one loss element
    root: float  # sqrt(S): bound of t in the squared terms t²
    out_max: float  # finfo(odt).max
    clip_out: bool  # S of the computation exceeds the output range (float16)
    # pair_scale: r = (y − y·ufp_k)·ufp_mul with y = max(|a|, |b|) + lo
    lo: float
    ufp_k: float
    ufp_mul: float
    # implicit_loss: the normalised denominator is floored at ``den_floor`` (real /
    # complex) so that e/den <= S; the normalised gamma term (sqrt(gamma)/(A·B))² is
    # capped at ``g_cap²`` (``g_cap`` bounds the base)
    den_floor: float
    den_floor_c: float
    g_cap: float
    # sign_consistency_loss: with sqrt(gamma) at least ``sign_flush_root`` (2^(3p) smallest
    # normals) a subnormal operand cannot change the value, so no flush is needed
    sign_flush_root: float


_LIMITS: dict[tuple[int, Any, Any], Limits] = {}


def _is_half(xp: Namespace, dt: Any) -> bool:
    return int(xp.finfo(dt).bits) < 32


def limits(xp: Namespace, dtype: Any, out: Any = None) -> Limits:
    """The :class:`Limits` of a loss over operands of floating ``dtype`` whose value has
    the real dtype ``out`` (default: the real dtype of ``dtype``). Cached."""
    key = (id(xp), dtype, out)
    traced = _xp.tracing()  # no cache use while Dynamo records a graph
    lim = None if traced else _LIMITS.get(key)
    if lim is not None:
        return lim
    cplx = _xp.is_complex(xp, dtype)
    rd = _xp.real_dtype(xp, dtype)
    odt = rd if out is None else out
    cast = _is_half(xp, rd)
    rdt = xp.float32 if cast else rd
    cdt = (xp.complex64 if cplx else xp.float32) if cast else dtype
    fi = xp.finfo(rdt)
    fmax, tiny, eps = float(fi.max), float(fi.smallest_normal), float(fi.eps)
    big_e = math.floor(math.log2(fmax))
    sat = math.ldexp(1.0, big_e // 2 - 2)
    out_max = float(xp.finfo(odt).max)
    clip_out = out_max < sat
    if clip_out:
        sat = out_max
    p = round(-math.log2(eps)) + 1  # significand bits (53, 24)
    # scaled components are below 4 (complex: 4·sqrt(2)): e < (2·4·4)² = 2^10 real, 2^12
    # complex; e + s >= 1/2, so a floored denominator gives at least S/2^11 (S/2^13)
    e_max, e_max_c = math.ldexp(1.0, 10), math.ldexp(1.0, 12)
    s_calc = math.ldexp(1.0, big_e // 2 - 2)  # S of the computation dtype
    lim = Limits(
        cdt=cdt, rdt=rdt, odt=odt, cast=cast, max=fmax, tiny=tiny, sat=sat,
        root=math.sqrt(sat), out_max=out_max, clip_out=clip_out,
        lo=math.ldexp(tiny, p), ufp_k=1.0 - math.ldexp(1.0, 1 - p),
        ufp_mul=math.ldexp(1.0, p - 2),
        den_floor=e_max / s_calc, den_floor_c=e_max_c / s_calc, g_cap=math.sqrt(fmax / 4),
        sign_flush_root=math.ldexp(tiny, 3 * p),
    )
    if not traced:
        _LIMITS[key] = lim
    return lim


def clamp(value: float, lim: Limits) -> float:
    """A validated Python threshold brought into the computation dtype's finite range
    (a threshold beyond ``finfo.max`` acts as ``finfo.max``; no "overflow in cast")."""
    return value if value <= lim.max else lim.max


def gamma_value(value: float, lim: Limits) -> float:
    """A validated ``gamma`` for the computation dtype: clamped to ``finfo.max``, and 0
    below the smallest normal (a subnormal constant would be flushed on some backends)."""
    return 0.0 if value < lim.tiny else clamp(value, lim)


def numel(shape: Any) -> int | None:
    """Number of elements of ``shape``; None if a dimension is unknown (lazy arrays)."""
    n = 1
    for d in shape:
        if d is None or isinstance(d, float):  # dask: NaN for unknown chunk sizes
            return None
        n = n * d
    return n


def mean(x: Array, *, xp: Namespace) -> Array:
    """``xp.mean`` over all elements; an empty array gives 0 (no "Mean of empty slice")."""
    n = numel(x.shape)
    if n is not None and n == 0:
        return xp.sum(x)
    return xp.mean(x)


def maxabs(a: Array, *, xp: Namespace, cplx: bool) -> Array:
    if cplx:
        return xp.maximum(xp.abs(xp.real(a)), xp.abs(xp.imag(a)))
    return xp.abs(a)


def _scale(m: Array, *, xp: Namespace, lim: Limits) -> Array:
    """The power of two ``r`` of :func:`pair_scale` from the (detached) largest component
    magnitude ``m``; NaN where ``m`` is NaN or ``+inf``."""
    y = m + lim.lo
    r = (y - xp.abs(y * lim.ufp_k)) * lim.ufp_mul
    # ``min(r, y)`` is ``r`` (``r <= y``; NaN for y = inf) and keeps XLA from folding
    # ``ufp_mul`` into later products (``a·b·a·b`` would become ``(u·v)²·ufp_mul⁴``, whose
    # ``(u·v)²`` underflows)
    return xp.minimum(r, y)


def pair_scale(a: Array, b: Array, *, xp: Namespace, be: Backend, lim: Limits,
               cplx: bool) -> Array:
    """A power of two ``r`` with ``max(|a|, |b|)/r ∈ [1, 4)`` (a stop-gradient constant).

    ``|·|`` is the largest real/imaginary part for complex tuples. With
    ``y = max(|a|, |b|) + lo = m·2^e`` (``m ∈ [1, 2)``) and ``k = 1 − 2^(1-p)`` (``p`` the
    significand width: 53 float64, 24 float32), ``y·k = y − m·ulp(y)`` rounds to
    ``y − ulp(y)`` or ``y − 2·ulp(y)``, so ``y − fl(y·k)`` is ``ulp(y)`` or ``2·ulp(y)``
    — a power of two from plain arithmetic (no ``log2``/``frexp``) — and
    ``r = (y − fl(y·k))·2^(p-2)``. A multiplication, not a division by ``1/k``: XLA
    turns a division by a constant into a multiplication by its rounded reciprocal, so
    every backend computes the same ``r``. The ``abs`` around ``y·k`` is a no-op that
    keeps compilers from contracting ``y − y·k`` into a fused multiply-add (XLA does),
    which would not round. ``lo = tiny·2^p`` keeps ``r``
    normal: tuples below it (about 2e-292 float64, 2e-31 float32; zero tuples included)
    are divided by ``r ≈ lo`` and keep smaller scaled components. ``lo`` also absorbs a
    subnormal component (it is below ``ulp(lo)/2``), so a tuple and its :func:`daz`
    flushed copy have the same scale. NaN or ``±inf`` components give ``r = NaN``.
    """
    sg = be.stop_gradient
    return _scale(xp.maximum(maxabs(sg(a), xp=xp, cplx=cplx), maxabs(sg(b), xp=xp, cplx=cplx)),
                  xp=xp, lim=lim)


def scaled_pair(a: Array, b: Array, *, xp: Namespace, be: Backend, lim: Limits,
                cplx: bool) -> tuple[Array, Array, Array]:
    """``(a'/r, b'/r, r)``: the tuple with subnormal components flushed (``a'``,
    :func:`daz`) divided by its :func:`pair_scale` ``r``.

    Real tuples in one pass: each component's ``|·|`` serves both the scale and the
    subnormal test ``|a| < tiny``, and the flush acts on the scaled value — on autodiff
    backends ``a/r − sg(a/r)`` (zero, with the derivative ``1/r`` of ``a/r``: the
    gradient of ``a`` that :func:`daz` keeps), on forward-only backends a selected 0.
    The flushed zero is ``+0`` (the losses only use it in products and squares).
    """
    if cplx:
        a, b = (daz(v, xp=xp, be=be, lim=lim, cplx=True) for v in (a, b))
        r = pair_scale(a, b, xp=xp, be=be, lim=lim, cplx=True)
        return a / r, b / r, r
    sg = be.stop_gradient
    ma, mb = xp.abs(sg(a)), xp.abs(sg(b))
    r = _scale(xp.maximum(ma, mb), xp=xp, lim=lim)
    an, bn = a / r, b / r
    if be.supports_autodiff:
        an = an - xp.where(ma < lim.tiny, sg(an), 0.0)
        bn = bn - xp.where(mb < lim.tiny, sg(bn), 0.0)
    else:
        an = xp.where(ma < lim.tiny, 0.0, an)
        bn = xp.where(mb < lim.tiny, 0.0, bn)
    return an, bn, r


def daz(x: Array, *, xp: Namespace, be: Backend, lim: Limits, cplx: bool) -> Array:
    """``x`` with subnormal elements (real or imaginary parts below the smallest normal of
    the computation dtype ``lim.rdt``) as signed zeros: JAX flushes them on CPU, so
    without this a loss of subnormal operands would differ between backends. (float16 and
    bfloat16 operands are computed in float32, where their subnormals are normal numbers
    that every backend keeps.)
    The flushed element keeps the gradient of ``x`` (the adapter's ``signed_zero``, formed
    on a finite substitute so no branch holds inf/NaN); ±inf/NaN are kept."""
    if cplx:
        return _daz.flush_complex(x, lim.tiny, xp=xp, sg=be.stop_gradient)
    sub = xp.abs(be.stop_gradient(x)) < lim.tiny
    return xp.where(sub, be.signed_zero(xp.where(sub, x, 0.0)), x)
