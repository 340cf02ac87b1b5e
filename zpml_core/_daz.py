"""Denormals-are-zero: subnormal operands count as signed zero everywhere.

JAX on CPU flushes subnormals in hardware (in arithmetic *and* comparisons); numpy and
torch do not. Kernels therefore flush explicitly, selecting elements by ``|x| < tiny``
(robust under JAX's DAZ, unlike ``x != 0``), so every backend computes the same masks and
values. ``tiny`` is the smallest normal of the operands' dtype — for float16/bfloat16 the
half dtype's, although those are computed in float32 (``zpml_core._precision``).

Two forms: :func:`flush` on the detached copies the predicates read (value only), and
:func:`flush_attached` on the already sanitised differentiated operand, where the flushed
value is the adapter's ``signed_zero(x)``: ``copysign(0, x)`` in value and, on autodiff
backends, the gradient of ``x`` (1), so exact zeros and subnormals keep the analytic
gradient, consistently on torch and JAX, and no ``0 · inf`` can arise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zpml_core._xp import Array, Namespace

Detach = Callable[[Array], Array]


def flush(x: Array, sub: Array, *, xp: Namespace) -> Array:
    """``x`` with the ``sub`` (``|x| < tiny``) elements as signed zeros — for detached
    values (no gradient is formed; a non-finite ``x`` is never selected by ``sub``)."""
    return xp.where(sub, x * 0.0, x)


def flush_attached(x: Array, sub: Array, *, xp: Namespace, be: Any) -> Array:
    """The differentiated operand ``x`` (finite: sanitised first) with the ``sub``
    elements as signed zeros that keep the gradient of ``x``."""
    return xp.where(sub, be.signed_zero(x), x)


def flush_complex(z: Array, tiny: float, *, xp: Namespace, sg: Detach) -> Array:
    """Complex ``z`` with subnormal real and imaginary parts set to zero (gradient 1);
    ``z`` must be finite where it is differentiated (sanitised first)."""
    re, im = xp.real(z), xp.imag(z)
    re_sub = xp.where(xp.abs(re) < tiny, sg(re), 0.0)
    im_sub = xp.where(xp.abs(im) < tiny, sg(im), 0.0)
    return z - xp.astype(re_sub, z.dtype) - xp.astype(im_sub, z.dtype) * 1j
