"""SCM kernels for integer and bool operands (``add``, ``sub``, ``mul``, ``neg``).

These ops keep the operands' dtype (the reference's no-promotion rule), and an overflow
is bottom like every other non-representable result. The mask is decided by exact
integer predicates that never overflow themselves, and the value is computed on
operands that are 0 at bottom, so no operation ever wraps (signed overflow is undefined
behaviour in the C++ that compilers such as inductor generate). With ``MIN``/``MAX`` the
dtype's range, ``y⁺ = max(y, 0)`` and ``y⁻ = min(y, 0)``:

* ``x + y`` overflows ⟺ ``x > MAX − y⁺`` or ``x < MIN − y⁻``;
* ``x − y`` overflows ⟺ ``x > MAX + y⁻`` or ``x < MIN + y⁺`` (unsigned: ``x < y``);
* ``x · y`` overflows ⟺ ``x ∉ [lo(y), hi(y)]`` with, for ``y > 0``,
  ``lo = ⌈MIN/y⌉``, ``hi = ⌊MAX/y⌋``; for ``y < −1``, ``lo = ⌈MAX/y⌉``, ``hi = ⌊MIN/y⌋``;
  for ``y = −1``, ``[−MAX, MAX]``; for ``y = 0`` never (floor division ``//`` and the
  remainder ``%`` give the ceilings);
* ``−x`` overflows ⟺ ``x = MIN`` (unsigned: ``x ≠ 0``).

Bool operands: ``add`` is logical or, ``mul`` logical and (never bottom); ``sub`` and
``neg`` of bools are rejected by the public functions. The value at bottom is 0.
"""

from __future__ import annotations

from zpml_core import _xp
from zpml_core._layout import ELEMENTWISE, layout
from zpml_core._xp import Array, Namespace

__all__ = ["k_int_binary", "k_int_neg"]


def _masked(r: Array, overflow: Array, mx: Array | None, my: Array | None, *,
            xp: Namespace) -> tuple[Array, Array]:
    bottom = overflow
    if mx is not None:
        bottom = bottom | mx
    if my is not None:
        bottom = bottom | my
    return xp.where(bottom, xp.zeros_like(r), r), bottom


def _mul_overflow(x: Array, y: Array, *, xp: Namespace, low: Array, high: Array,
                  signed: bool) -> Array:
    one = xp.ones_like(y)
    if not signed:
        d = xp.where(y == 0, one, y)
        return (y != 0) & (x > high // d)
    d = xp.where((y == 0) | (y == -1), one, y)
    q_max, r_max = high // d, high % d
    q_min, r_min = low // d, low % d
    ceil_min = xp.where(r_min != 0, q_min + 1, q_min)  # ⌈MIN/y⌉ for y > 0
    ceil_max = xp.where(r_max != 0, q_max + 1, q_max)  # ⌈MAX/y⌉ for y < 0
    pos, neg1 = y > 0, y == -1
    lo = xp.where(pos, ceil_min, xp.where(neg1, -high, ceil_max))
    hi = xp.where(pos, q_max, xp.where(neg1, high, q_min))
    return (y != 0) & ((x < lo) | (x > hi))


@layout(ELEMENTWISE)
def k_int_binary(x: Array, y: Array, mx: Array | None, my: Array | None, *, xp: Namespace,
                 op: str) -> tuple[Array, Array]:
    """``op`` ∈ {"add", "sub", "mul"} on integer or bool operands of one dtype."""
    if x.dtype == xp.bool:
        r = (x | y) if op == "add" else (x & y)
        return _masked(r, xp.zeros_like(r), mx, my, xp=xp)
    info = xp.iinfo(x.dtype)
    signed = int(info.min) < 0
    # the range as arrays of x's dtype (JAX cannot convert 2**64 - 1 as a Python int)
    low = xp.asarray(info.min, dtype=x.dtype, device=_xp.device(x))
    high = xp.asarray(info.max, dtype=x.dtype, device=_xp.device(x))
    zero = xp.zeros_like(x)
    if op == "mul":
        overflow = _mul_overflow(x, y, xp=xp, low=low, high=high, signed=signed)
    elif not signed:
        overflow = (x > high - y) if op == "add" else (x < y)
    else:
        y_pos = xp.where(y > 0, y, zero)
        y_neg = xp.where(y < 0, y, zero)
        if op == "add":
            overflow = (x > high - y_pos) | (x < low - y_neg)
        else:
            overflow = (x > high + y_neg) | (x < low + y_pos)
    xs, ys = xp.where(overflow, zero, x), xp.where(overflow, xp.zeros_like(y), y)
    r = xs + ys if op == "add" else (xs - ys if op == "sub" else xs * ys)
    return _masked(r, overflow, mx, my, xp=xp)


@layout(ELEMENTWISE)
def k_int_neg(x: Array, m: Array | None, *, xp: Namespace) -> tuple[Array, Array]:
    """``−x`` on an integer operand (bool is rejected by ``scm.neg``)."""
    low = int(xp.iinfo(x.dtype).min)
    overflow = (x == low) if low < 0 else (x != 0)
    return _masked(-xp.where(overflow, xp.zeros_like(x), x), overflow, m, None, xp=xp)
