"""SCM kernels for real floating dtypes (the public ops live in :mod:`zpml_core.scm`).

Every kernel follows one evaluation order:

1. **Masks from detached operands.** Every predicate reads ``stop_gradient`` copies in
   the working precision (``_precision.detached``): exact predicates on the inputs, and
   where a result can overflow, the result itself evaluated detached ("probe").
2. **The value from sanitised operands.** The differentiated operands are replaced by
   safe constants at ⊥ *before* any arithmetic (``_precision.attached``), so no
   differentiated intermediate ever holds inf/NaN, for any input (±inf and NaN
   included), and no gradient rule — neither a ``where`` whose backward multiplies by the
   mask nor a comparison that is differentiated — can meet ``0 · inf``. Gradients are
   exactly 0 at ⊥ and the analytic ones elsewhere.

On forward-only backends (``not be.supports_autodiff``; also torch's fused no-grad
calls) step 2 reuses the detached result where the op would otherwise be evaluated twice
(add/sub, mul, div, pow), nothing is sanitised where the result at ⊥ is discarded, and
DAZ is a product with the 0/1 mask (:func:`scale`: ``v·1 = v``, ``v·0`` the signed zero
of a finite ``v``) instead of a selection between ``v`` and ``v·0`` — fewer passes, the
same bits.

float16/bfloat16: a kernel whose mask depends on a result computes in float32 with the
half dtype's constants and rounds once at the output; a single-op kernel with an exact
input predicate (inv, log, exp, sqrt, sin, cos, neg) evaluates in the half dtype
(``zpml_core._precision``). DAZ (``zpml_core._daz``) uses the operands' dtype's smallest
normal.
"""

from __future__ import annotations

from zpml_core import _xp
from zpml_core._daz import flush, flush_attached
from zpml_core._layout import ELEMENTWISE, layout
from zpml_core._precision import attached, detached, finite, narrow
from zpml_core._registry import Backend
from zpml_core._xp import Array, Namespace


def keep(ok: Array, m1: Array | None, m2: Array | None = None) -> Array:
    """``ok & ~m1 & ~m2`` for optional masks."""
    if m1 is not None:
        ok = ok & ~m1
    if m2 is not None:
        ok = ok & ~m2
    return ok


def scale(xp: Namespace, big: Array, like: Array) -> Array:
    """The mask ``big`` as 1.0/0.0 in ``like``'s dtype: for a finite ``v``, ``v·scale``
    is ``v`` where ``big`` and the signed zero ``v·0`` elsewhere (one product instead
    of a selection between ``v`` and ``v·0``; forward-only kernels)."""
    return xp.astype(big, like.dtype)


def flush_scaled(xp: Namespace, c: _xp.FloatConsts, v: Array) -> Array:
    """DAZ for forward-only kernels: ``v·1`` where ``|v| ≥ tiny``, else ``v·0`` (the
    signed zero). Equals :func:`~zpml_core._daz.flush` for finite ``v``; a non-finite
    ``v`` stays non-finite (``inf·1``, ``NaN·0``)."""
    return v * scale(xp, xp.abs(v) >= c.tiny, v)


@layout(ELEMENTWISE)
def _k_add(x: Array, y: Array, mx: Array | None, my: Array | None, *, xp: Namespace,
          be: Backend, subtract: bool) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(xs ± ys) with xs, ys DAZ-flushed (a non-finite operand makes the
    # sum non-finite); d(x ± y) has no singular factor. DAZ: two subnormals could sum to
    # a normal.
    c = _xp.consts(xp, x.dtype)
    xd, yd = detached(xp, be, c, x), detached(xp, be, c, y)
    if not be.supports_autodiff:
        # forward only: the flush is a product with 1 or 0 (x·1 = x; x·0 is the signed
        # zero where |x| < tiny); NaN/inf operands give a non-finite sum either way
        xf, yf = flush_scaled(xp, c, xd), flush_scaled(xp, c, yd)
        rd = xf - yf if subtract else xf + yf
        ok = keep(finite(xp, c, rd), mx, my)
        return narrow(xp, x.dtype, xp.where(ok, rd, 0.0)), ~ok
    xsub, ysub = xp.abs(xd) < c.tiny, xp.abs(yd) < c.tiny
    xf, yf = flush(xd, xsub, xp=xp), flush(yd, ysub, xp=xp)
    rd = xf - yf if subtract else xf + yf
    ok = keep(finite(xp, c, rd), mx, my)
    xs = flush_attached(attached(xp, c, ok, x, 0.0), xsub, xp=xp, be=be)
    ys = flush_attached(attached(xp, c, ok, y, 0.0), ysub, xp=xp, be=be)
    # at ⊥ both operands are +0: +0 ± +0 = +0, the carrier
    return narrow(xp, x.dtype, xs - ys if subtract else xs + ys), ~ok


@layout(ELEMENTWISE)
def _k_mul(x: Array, y: Array, mx: Array | None, my: Array | None, *,
          xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x·y) (a non-finite factor makes the product non-finite: inf·0 is
    # NaN). DAZ: a factor with |·| < tiny makes the product a signed zero.
    c = _xp.consts(xp, x.dtype)
    xd, yd = detached(xp, be, c, x), detached(xp, be, c, y)
    rd = xd * yd
    ok = keep(finite(xp, c, rd), mx, my)
    small = xp.minimum(xp.abs(xd), xp.abs(yd))
    if not be.supports_autodiff:
        # where ok, rd is finite: rd·1 = rd, and rd·0 is the signed zero (DAZ)
        return narrow(xp, x.dtype, xp.where(ok, rd * scale(xp, small >= c.tiny, rd), 0.0)), ~ok
    sub = small < c.tiny
    r = attached(xp, c, ok, x, 0.0) * attached(xp, c, ok, y, 0.0)
    return narrow(xp, x.dtype, flush_attached(r, sub, xp=xp, be=be)), ~ok


@layout(ELEMENTWISE)
def _k_div(x: Array, y: Array, mx: Array | None, my: Array | None, *,
          xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ ¬fin(y) ∨ y≈0 ∨ |x|/(y·y) overflows  (the reference rule)
    # * DAZ: y·y below the smallest normal counts as 0 (⟺ |y| < sqrt(tiny) = 2**(emin/2)).
    # * The |x|/(y·y) probe is the multiplication |x| ≤ fl(y·y)·ovf, which guarantees
    #   the quotient is finite when not ⊥ and needs no second division (DEVIATIONS §2).
    #   For |y| ≥ sqrt(tiny), a finite |x|/(y·y) implies a finite x/y.
    # * fin(|x| − |y|) ⟺ both operands finite (one pass instead of two comparisons).
    c = _xp.consts(xp, x.dtype)
    xd, yd = detached(xp, be, c, x), detached(xp, be, c, y)
    ax, ay = xp.abs(xd), xp.abs(yd)
    yy = yd * yd
    ok = keep((yy >= c.tiny) & (ax <= yy * c.ovf) & xp.isfinite(ax - ay), mx, my)
    if not be.supports_autodiff:
        # forward only: the division at ⊥ is discarded; where ok, x/y is finite, so the
        # DAZ numerator is a product: (x/y)·1, or (x/y)·0 = (x·0)/y, the signed zero
        q = (xd / yd) * scale(xp, ax >= c.tiny, xd)
        return narrow(xp, x.dtype, xp.where(ok, q, 0.0)), ~ok
    # numerator a signed zero where subnormal (DAZ); at ⊥ the quotient is +0/1 = +0
    num = flush_attached(attached(xp, c, ok, x, 0.0), ax < c.tiny, xp=xp, be=be)
    return narrow(xp, x.dtype, num / attached(xp, c, ok, y, 1.0)), ~ok


# inv, log, exp, sqrt, sin, cos: the masks are exact predicates on the input, and the
# value is one op, evaluated in the operands' dtype also for float16/bfloat16 (the
# libraries evaluate a half-precision op in float32 and round once, eager or compiled;
# torch's eager float32 sqrt is not correctly rounded, its float16 sqrt is).


@layout(ELEMENTWISE)
def _k_inv(x: Array, m: Array | None, *, xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ x≈0 (DAZ); 1/x cannot overflow for |x| ≥ tiny.
    c = _xp.consts(xp, x.dtype)
    ax = xp.abs(be.stop_gradient(x))
    ok = keep((ax >= c.tiny) & (ax <= c.max), m)
    r = 1.0 / xp.where(ok, x, 1.0)
    return xp.where(ok, r, 0.0), ~ok


@layout(ELEMENTWISE)
def _k_neg(x: Array, m: Array | None, *, xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) (floating dtypes; negation is exact, no widening)
    ok = keep(xp.isfinite(be.stop_gradient(x)), m)
    # −(−0) is the +0 carrier at ⊥
    safe = complex(-0.0, -0.0) if _xp.is_complex(xp, x.dtype) else -0.0
    return -xp.where(ok, x, safe), ~ok


@layout(ELEMENTWISE)
def _k_log(x: Array, m: Array | None, *, xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ x ≤ 0 ∨ x subnormal (DAZ) ∨ ¬fin(x); log of a positive normal is finite.
    c = _xp.consts(xp, x.dtype)
    xd = be.stop_gradient(x)
    ok = keep((xd >= c.tiny) & (xd <= c.max), m)
    # log(1) = +0 exactly (every library, every float dtype): no second selection
    return xp.log(xp.where(ok, x, 1.0)), ~ok


@layout(ELEMENTWISE)
def _k_exp(x: Array, m: Array | None, *, xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ x > exp_max(dtype)   (the exact overflow border)
    c = _xp.consts(xp, x.dtype)
    xd = be.stop_gradient(x)
    ok = keep((xd <= c.exp_max) & (xd >= -c.max), m)
    return xp.where(ok, xp.exp(xp.where(ok, x, 0.0)), 0.0), ~ok


@layout(ELEMENTWISE)
def _k_sqrt(x: Array, m: Array | None, *, xp: Namespace, be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ x ≤ -tiny.  |x| < tiny is a signed zero: sqrt(±0) = ±0,
    # computed as a detached copysign(0, x) (gradient 0 there, DEVIATIONS §1).
    # ok = -tiny < x ≤ max (= x ≥ tiny ∨ |x| < tiny, for finite and non-finite x alike);
    # where ok, x < tiny is the signed zero.
    c = _xp.consts(xp, x.dtype)
    xd = be.stop_gradient(x)
    below = xd <= c.max
    ok = keep((xd > -c.tiny) & below, m)
    if not be.supports_autodiff:
        # forward only: sqrt(x·1) = sqrt(x); sqrt(x·0) = sqrt(±0) = ±0 (IEEE), the
        # signed zero; sqrt(+0) = +0 at ⊥
        return xp.sqrt(xp.where(ok, xd * scale(xp, xd >= c.tiny, xd), 0.0)), ~ok
    pos = keep((xd >= c.tiny) & below, m)
    r = xp.sqrt(xp.where(pos, x, 1.0))
    return xp.where(pos, r, xp.where(ok, xd * 0.0, 0.0)), ~ok


_F16_MAX = 65504.0


@layout(ELEMENTWISE)
def _k_trig(x: Array, m: Array | None, *, xp: Namespace, be: Backend,
           fn: str) -> tuple[Array, Array]:
    # sin/cos never overflow; tan of a finite input overflows only in float16
    # (tan(±177.5) = ∓66347 in float32, beyond the rounding edge 65520): in the 16-bit
    # dtypes tan is computed in float32 and the mask read from the detached result.
    c = _xp.consts(xp, x.dtype)
    ok = keep(xp.isfinite(be.stop_gradient(x)), m)
    if not (fn == "tan" and c.wide):
        return xp.where(ok, getattr(xp, fn)(xp.where(ok, x, 0.0)), 0.0), ~ok
    r = xp.tan(attached(xp, c, ok, x, 0.0))
    ok = ok & finite(xp, c, be.stop_gradient(r))
    return narrow(xp, x.dtype, xp.where(ok, r, 0.0)), ~ok


@layout(ELEMENTWISE)
def _k_pow(x: Array, e: Array, m: Array | None, *, xp: Namespace,
          be: Backend) -> tuple[Array, Array]:
    # ⊥ ⟺ mask ∨ ¬fin(x) ∨ ¬fin(e) ∨ (x≈0 ∧ e<0) ∨ (x<0 ∧ e∉ℤ) ∨ ¬fin(x**e)
    # DAZ on base and exponent. 0**0 = 1 is computed as 1**0, so both partial
    # derivatives are 0 there on every backend. The overflow probe runs detached; the
    # attached result uses operands re-substituted at the extended mask.
    c = _xp.consts(xp, x.dtype)
    xd, ed = detached(xp, be, c, x), detached(xp, be, c, e)
    ax, ae = xp.abs(xd), xp.abs(ed)
    xsub, esub = ax < c.tiny, ae < c.tiny
    xf, ef = flush(xd, xsub, xp=xp), flush(ed, esub, xp=xp)
    ok = keep((ax <= c.max) & (ae <= c.max), m)
    ok = ok & ~(xsub & (ed <= -c.tiny))
    ok = ok & ~((xd <= -c.tiny) & (ef != xp.floor(ef)))
    base_ok = ok & ~(xsub & esub)
    rd = xp.where(base_ok, xf, 1.0) ** xp.where(ok, ef, 0.0)
    ok = ok & finite(xp, c, rd)
    # IEEE: (−0)**e is −0 only for an odd integral e > 0. numpy's 0-d fast path computes
    # x**0.5 as sqrt(x) (−0), so the sign is canonicalised: |r| (in value) where the base
    # is zero and e is not an odd integer.
    half = ef * 0.5
    odd = (ef == xp.floor(ef)) & (half != xp.floor(half))
    fix = xsub & ~odd
    if not be.supports_autodiff:
        return narrow(xp, x.dtype, xp.where(ok, xp.where(fix, xp.abs(rd), rd), 0.0)), ~ok
    base_ok = base_ok & ok
    xs = flush_attached(attached(xp, c, base_ok, x, 1.0), xsub & base_ok, xp=xp, be=be)
    es = flush_attached(attached(xp, c, ok, e, 0.0), esub, xp=xp, be=be)
    r = xs ** es
    # r + sg(|r| − r) turns −0 into +0 while keeping the gradient of r (the correction
    # is formed detached and only where fix: |r| − r overflows for r = −max)
    rs = be.stop_gradient(r)
    r = xp.where(fix, r + xp.where(fix, xp.abs(rs) - rs, 0.0), r)
    return narrow(xp, x.dtype, xp.where(ok, r, 0.0)), ~ok
