"""Implicit (cross-product) fit loss, semantics §5.1."""

from __future__ import annotations

import math

from zpml_core._registry import Backend
from zpml_core._xp import Array, Namespace
from zpml_core.losses import _common, _policy, _safe
from zpml_core.losses._safe import Limits

__all__ = ["implicit_loss"]


def implicit_elements(P: Array, Q: Array, Yn: Array, Yd: Array, *, xp: Namespace,
                      be: Backend, gamma: float, detach: bool, cplx: bool,
                      lim: Limits) -> Array:
    """Per-element ``e / (s + gamma)`` in scaled form (operands in ``lim.cdt``).

    ``(P, Q)`` is divided by the power of two ``A`` and ``(Y_n, Y_d)`` by ``B``, subnormal
    components flushed (:func:`_safe.scaled_pair`); ``e`` and ``s`` are homogeneous of
    degree 2 in each tuple, so ``e/(s + gamma) = e'/(s' + gamma/(A·B)²)`` with the scaled ``e', s'``
    (exact: power-of-two scaling). The scaled gamma term is capped at ``lim.g_cap²``
    (finite for tiny tuples, whose element is ``≈ 0`` either way) and the scaled
    denominator is floored at ``lim.den_floor`` (``2^-499`` float64, ``2^-51`` float32;
    scaled tuples are of order 1 and ``e' + s' ≥ 1/2``): the element is the formula's
    value wherever that is below ``S/2^11`` (complex ``S/2^13``), and at most ``S``.
    Scales are stop-gradient constants: the gradient is that of the formula.
    """
    # subnormal operands are flushed (semantics: they count as signed zeros)
    p, q, a = _safe.scaled_pair(P, Q, xp=xp, be=be, lim=lim, cplx=cplx)
    yn, yd, b = _safe.scaled_pair(Yn, Yd, xp=xp, be=be, lim=lim, cplx=cplx)
    # e = |P·Y_d − Q·Y_n|²,  s = |Q·Y_d|² + |P·Y_n|²   (scaled)
    r = p * yd - q * yn
    u = q * yd
    v = p * yn
    if cplx:
        e = _common.abs2(r, xp=xp)
        s = _common.abs2(u, xp=xp) + _common.abs2(v, xp=xp)
    else:
        e = r * r
        s = u * u + v * v
    if detach:
        s = be.stop_gradient(s)
    if gamma > 0:
        # gamma/(A·B)² = (sqrt(gamma)/(A·B))² (stop-gradient), its base capped: A·B may
        # underflow to 0 for tiny tuples (the element is then ≈ 0 either way). One
        # division: XLA rewrites gamma/c/c as gamma/(c·c), which underflows earlier.
        t = _common.clip(math.sqrt(gamma) / (a * b), None, lim.g_cap, xp=xp, be=be)
        s = s + t * t
    floor = lim.den_floor_c if cplx else lim.den_floor
    f = e / _common.clip(s, floor, None, xp=xp, be=be)
    if lim.clip_out:
        f = _common.clip(f, None, lim.sat, xp=xp, be=be)
    return f


def _k_implicit(P: Array, Q: Array, Yn: Array, Yd: Array, tau_array: Array | None, *,
                xp: Namespace, be: Backend, gamma: float, detach: bool, cplx: bool,
                lim: Limits, gate: _policy.FitGate | None) -> Array:
    if lim.cast:
        P, Q, Yn, Yd = (xp.astype(v, lim.cdt) for v in (P, Q, Yn, Yd))
    if gate is not None:
        P, Q = gate.apply(P, Q, tau_array, xp=xp, be=be, lim=lim)
    f = implicit_elements(P, Q, Yn, Yd, xp=xp, be=be, gamma=gamma, detach=detach,
                          cplx=cplx, lim=lim)
    out = _safe.mean(f, xp=xp)
    return xp.astype(out, lim.odt) if lim.cast else out


def implicit_loss(P: Array, Q: Array, Y_n: Array, Y_d: Array, gamma: float = 1e-9, *,
                  detach_scale: bool = False,
                  tau_train: float | Array | None = None) -> Array:
    """Population mean of ``(P·Y_d − Q·Y_n)² / (Q²·Y_d² + P²·Y_n² + gamma)``.

    Fits ``P/Q`` to the lifted target ``(Y_n, Y_d)`` without dividing by ``Q``.
    ``detach_scale=True`` stops the gradient through the scale ``s`` (same value).
    Complex operands use moduli (``|·|²``); the result is real, in the operands' (real)
    dtype. ``gamma`` finite ``≥ 0``. Shapes: the package's one-way broadcasting rule.

    Finite for every finite input: computed in scaled form (each tuple divided by a
    power of two: exact), so every element equals the formula to rounding wherever it
    is below ``S/2^13`` and saturates at a finite value in ``[S/2^13, S]`` above
    (``x/0`` with ``gamma=0`` included); ``S`` is 1.7e153 (float64), 2.3e18 (float32),
    see the package docstring. ``0/0`` (an all-zero tuple with ``gamma=0``) gives 0;
    ``gamma`` below the smallest normal acts as 0. NaN and ±inf operands give NaN. An
    empty input gives 0.

    ``tau_train`` (a real ``≥ 0`` or a 0-d real array): elements with ``|Q| < tau_train``
    are the loss's singular paths, whose gradient follows the active gradient policy
    (layer ``"fit_loss"``, see :mod:`zpml_core.losses`); ``None`` (default): no gating.
    Real operands only.
    """
    g = _common.threshold("gamma", gamma)
    if not isinstance(detach_scale, bool):
        raise TypeError(f"detach_scale must be a bool, got {type(detach_scale).__name__}")
    o = _policy.fit_operands(P, Q, Y_n, Y_d, tau_train)
    out = o.be.fuse(_k_implicit)(
        o.P, o.Q, o.Y_n, o.Y_d, o.tau_array, xp=o.xp, be=o.be,
        gamma=_safe.gamma_value(g, o.lim), detach=detach_scale, cplx=o.cplx, lim=o.lim,
        gate=o.gate,
    )
    return _common.as_0d(out, o.P, xp=o.xp)
