"""Denormals-are-zero (SPEC §10 #1): subnormal operands count as signed zero everywhere.

JAX on CPU flushes subnormals in hardware (in arithmetic *and* comparisons); numpy and
torch do not. Kernels therefore flush explicitly, selecting elements by ``|x| < tiny``
(robust under JAX's DAZ, unlike ``x != 0``), so every backend computes the same masks and
values. The flushed value is the adapter's ``signed_zero(x)``: ``copysign(0, x)`` in
value, and on autodiff backends with the gradient of ``x`` (1), so exact zeros and
subnormals keep the analytic gradient, consistently on torch and JAX, and no ``0 · inf``
can arise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zpml_core._xp import Array, Namespace

Detach = Callable[[Array], Array]


def flush(x: Array, ax: Array, tiny: float, *, xp: Namespace, be: Any) -> Array:
    """``x`` with every ``|x| < tiny`` element (subnormals, ±0) as a signed zero."""
    return xp.where(ax < tiny, be.signed_zero(x), x)


def flush_complex(z: Array, tiny: float, *, xp: Namespace, sg: Detach) -> Array:
    """Complex ``z`` with subnormal real and imaginary parts set to zero."""
    re, im = xp.real(z), xp.imag(z)
    re_sub = xp.where(xp.abs(re) < tiny, sg(re), 0.0)
    im_sub = xp.where(xp.abs(im) < tiny, sg(im), 0.0)
    return z - xp.astype(re_sub, z.dtype) - xp.astype(im_sub, z.dtype) * 1j
