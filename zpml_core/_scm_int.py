"""SCM kernels for integer and bool operands (``add``, ``sub``, ``mul``, ``neg``).

These ops keep the operands' dtype (the reference's no-promotion rule), and an overflow
is bottom like every other non-representable result: the value wraps in two's
complement, so the mask is decided by exact integer predicates instead of a finiteness
test (``r`` is the wrapped result, ``MIN``/``MAX`` the dtype's range):

* signed ``x + y`` overflows ⟺ ``x`` and ``y`` have one sign and ``r`` the other:
  ``((x ^ r) & (y ^ r)) < 0``; unsigned ⟺ ``r < x``;
* signed ``x − y`` overflows ⟺ ``((x ^ y) & (x ^ r)) < 0``; unsigned ⟺ ``x < y``;
* ``x · y`` overflows ⟺ ``x ∉ {0}`` and ``r`` is not ``x·y``, i.e.
  ``r // x ≠ y`` or ``r % x ≠ 0`` (signed ``x = −1``: ⟺ ``y = MIN``, whose quotient
  itself would overflow);
* signed ``−x`` overflows ⟺ ``x = MIN``; unsigned ⟺ ``x ≠ 0``.

Bool operands: ``add`` is logical or, ``mul`` logical and (never bottom); ``sub`` and
``neg`` of bools are rejected by the public functions. The value at bottom is 0.
"""

from __future__ import annotations

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


def _mul_overflow(x: Array, y: Array, r: Array, *, xp: Namespace, signed: bool) -> Array:
    if signed:
        low = xp.iinfo(x.dtype).min
        special = (x == 0) | (x == -1)
        xs = xp.where(special, xp.ones_like(x), x)
        wrong = (r // xs != y) | (r % xs != 0)
        return (x != 0) & xp.where(x == -1, y == low, wrong)
    xs = xp.where(x == 0, xp.ones_like(x), x)
    return (x != 0) & ((r // xs != y) | (r % xs != 0))


@layout(ELEMENTWISE)
def k_int_binary(x: Array, y: Array, mx: Array | None, my: Array | None, *, xp: Namespace,
                 op: str) -> tuple[Array, Array]:
    """``op`` ∈ {"add", "sub", "mul"} on integer or bool operands of one dtype."""
    if x.dtype == xp.bool:
        r = (x | y) if op == "add" else (x & y)
        return _masked(r, xp.zeros_like(r), mx, my, xp=xp)
    signed = xp.iinfo(x.dtype).min < 0
    if op == "add":
        r = x + y
        overflow = (((x ^ r) & (y ^ r)) < 0) if signed else (r < x)
    elif op == "sub":
        r = x - y
        overflow = (((x ^ y) & (x ^ r)) < 0) if signed else (x < y)
    else:
        r = x * y
        overflow = _mul_overflow(x, y, r, xp=xp, signed=signed)
    return _masked(r, overflow, mx, my, xp=xp)


@layout(ELEMENTWISE)
def k_int_neg(x: Array, m: Array | None, *, xp: Namespace) -> tuple[Array, Array]:
    """``−x`` on an integer operand (bool is rejected by ``scm.neg``)."""
    low = xp.iinfo(x.dtype).min
    overflow = (x == low) if low < 0 else (x != 0)
    return _masked(-x, overflow, m, None, xp=xp)
