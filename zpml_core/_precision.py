"""Working precision of the kernels: float16 and bfloat16 are decided in float32.

Rule (every kernel, every backend, eager or compiled):

* Kernels whose masks depend on a computed result (``add``/``sub``, ``mul``, ``div``,
  ``pow``, ``tan``, ``decode``, ``strict_inference``, ``renormalize``,
  ``projectively_equal``) widen 16-bit floating operands to float32 (exact) at the
  start, evaluate every predicate in float32 with the **half dtype's** constants
  (:class:`zpml_core._xp.FloatConsts`), and round the value to the half dtype once, at
  the output.
* "The half-precision result overflows" is the exact float32 test ``|r| >= edge`` with
  ``edge = max + ulp(max)/2`` (float16: 65520), the smallest magnitude that rounds to
  ±inf. It is exact because ``+ − × ÷`` of half operands computed in float32 and then
  rounded to the half dtype are correctly rounded (double rounding is innocuous when the
  wide precision has at least ``2p + 2`` bits: 24 ≥ 2·11 + 2), and ``edge`` is a float32
  number. So these values equal the libraries' own half-precision results bit for bit,
  and the masks equal the exact rule. ``div``'s guard compares ``|x|`` with
  ``fl32(y·y)·edge`` (``y·y`` is exact in float32); ``decode`` and ``strict_inference``
  compare ``|N|`` with ``|D|·edge``, which is exact: ⊥ iff ``N/D`` rounds to ±inf.
* Kernels whose masks are exact predicates on the input and whose value is one op
  (``inv``, ``log``, ``exp``, ``sqrt``, ``sin``, ``cos``, ``neg``) evaluate that op in the
  half dtype itself: every library computes a half-precision op in float32 and rounds
  once, eager or compiled, so nothing is gained by widening — and torch's eager float32
  ``sqrt`` is not correctly rounded while its float16 ``sqrt`` is.
* Thresholds compared with half data are rounded to the half dtype first
  (:meth:`FloatConsts.round`), as the libraries do with a Python scalar in eager mode.
* DAZ in half precision: an operand with ``|x| < finfo(half).smallest_normal``
  (float16: ``2**-14``, bfloat16: ``2**-126``) counts as a signed zero. Subnormal
  half-precision *results* are returned as computed (JAX flushes bfloat16 ones, which are
  float32 subnormals, as it does for float32).

Why: compilers compute half-precision elementwise code in float32 without the
intermediate roundings of eager mode (inductor's fused kernels, XLA's
``xla_allow_excess_precision``), so a kernel that read ``isfinite`` of a rounded half
intermediate, or compared rounded half intermediates, gave different masks eager and
compiled. Computing in float32 on purpose leaves the compilers nothing to elide: eager
torch, inductor, the user's ``torch.compile``, JAX eager, ``jax.jit`` and numpy give the
same masks and (for ``+ − × ÷ sqrt``) the same value bits. Transcendental values may
differ by a float32 libm ulp between libraries before rounding, rarely after.
"""

from __future__ import annotations

from typing import Any

from zpml_core._xp import Array, FloatConsts, Namespace


def widen(xp: Namespace, c: FloatConsts, x: Array) -> Array:
    """``x`` in the working dtype: float32 for a wide (16-bit) dtype, else unchanged."""
    return xp.astype(x, xp.float32) if c.wide else x


def narrow(xp: Namespace, dtype: Any, v: Array) -> Array:
    """A kernel's value rounded once to the operands' dtype (a no-op unless wide)."""
    return v if v.dtype == dtype else xp.astype(v, dtype)


def finite(xp: Namespace, c: FloatConsts, r: Array) -> Array:
    """Whether a working-precision result is finite *in the operands' dtype*:
    ``isfinite(r)``, or the exact ``|r| < edge`` for a wide dtype (NaN is not finite)."""
    return xp.abs(r) < c.edge if c.wide else xp.isfinite(r)


def detached(xp: Namespace, be: Any, c: FloatConsts, x: Array) -> Array:
    """The stop-gradient copy of ``x`` in the working dtype: every predicate reads these,
    so no differentiated intermediate is formed while deciding a mask."""
    return widen(xp, c, be.stop_gradient(x))


def attached(xp: Namespace, c: FloatConsts, ok: Array, x: Array, safe: float) -> Array:
    """``x`` where ``ok``, else the constant ``safe`` (gradient 0), in the working dtype.

    Selecting *before* widening or any arithmetic keeps every differentiated
    intermediate finite for any input (±inf, NaN included)."""
    return widen(xp, c, xp.where(ok, x, safe))
