"""Denormals-are-zero (SPEC §10 #1): subnormal operands count as signed zero everywhere.

JAX on CPU flushes subnormals in hardware (in arithmetic *and* comparisons); numpy and
torch do not. Kernels therefore flush explicitly, selecting elements by ``|x| < tiny``
(robust under JAX's DAZ, unlike ``x != 0``), so every backend computes the same masks and
values. The flushed value ``sg(x)·0 − (sg(x) − x)`` equals ``copysign(0, x)`` in value
while its gradient is that of ``x`` (1): exact zeros and subnormals keep the analytic
gradient, consistently on torch and JAX, and no ``0 · inf`` can arise.
"""

from __future__ import annotations

from collections.abc import Callable

from zpml_core._xp import Array, Namespace

Detach = Callable[[Array], Array]


def signed_zero(x: Array, *, sg: Detach) -> Array:
    """``copysign(0, x)`` in value with ``∂/∂x = 1`` (``x`` finite where it is used)."""
    d = sg(x)
    return d * 0.0 - (d - x)


def flush(x: Array, ax: Array, tiny: float, *, xp: Namespace, sg: Detach) -> Array:
    """``x`` with every ``|x| < tiny`` element (subnormals, ±0) as a signed zero."""
    return xp.where(ax < tiny, signed_zero(x, sg=sg), x)


def flush_complex(z: Array, tiny: float, *, xp: Namespace, sg: Detach) -> Array:
    """Complex ``z`` with subnormal real and imaginary parts set to zero."""
    re, im = xp.real(z), xp.imag(z)
    re_sub = xp.where(xp.abs(re) < tiny, sg(re), 0.0)
    im_sub = xp.where(xp.abs(im) < tiny, sg(im), 0.0)
    return z - xp.astype(re_sub, z.dtype) - xp.astype(im_sub, z.dtype) * 1j
