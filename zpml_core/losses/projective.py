"""Bounded projective fit loss: the squared sine of the angle between ``(P, Q)`` and
``(Y_n, Y_d)``.

``sin²∠((P, Q), (Y_n, Y_d)) = (P·Y_d − Q·Y_n)² / ((P² + Q²)·(Y_n² + Y_d²))``

Why a second fit loss: :func:`~zpml_core.losses.implicit_loss` divides the same residual
by ``Q²·Y_d² + P²·Y_n²``. For a finite target ``(y, 1)`` that normaliser is
``Q² + P²·y²``: near a zero prediction (``P ≈ 0``) of a large target it shrinks to
``Q²`` and the loss spikes to ``≈ y²``, while the opposite sign ``−y`` costs only
``≈ 4/y²`` — so large targets pull the denominator's zero set *away* from the singular
set and the sign of the prediction is almost free. The angle loss has neither defect:
it depends only on the two projective points (scale-invariant in each tuple), lies in
``[0, 1]`` for every input, is 0 exactly when ``P/Q = Y_n/Y_d`` (including the point at
infinity: ``Q = 0`` against ``Y_d = 0``), and an opposite sign costs as much as a
wrong value of the same angle.
"""

from __future__ import annotations

import numbers

from zpml_core._registry import Backend
from zpml_core._xp import Array, Namespace
from zpml_core.losses import _common, _policy, _safe
from zpml_core.losses._safe import Limits

__all__ = ["projective_distance_loss"]


def projective_elements(P: Array, Q: Array, Yn: Array, Yd: Array, *, xp: Namespace,
                        be: Backend, cplx: bool, lim: Limits, power: int = 2) -> Array:
    """Per-element ``|sin∠|^power`` in ``[0, 1]``: ``power = 2`` gives
    ``|P·Y_d − Q·Y_n|² / ((|P|² + |Q|²)·(|Y_n|² + |Y_d|²))``, ``power = 1`` its square
    root ``|P·Y_d − Q·Y_n| / sqrt((|P|² + |Q|²)·(|Y_n|² + |Y_d|²))`` (formed from the
    same scaled tuples; ``|r|`` differentiates to ``sign(r)``, so the derivative at a
    perfect fit is the subgradient 0 in every library, not an infinite square-root slope).

    Each tuple is divided by its power-of-two scale with subnormal components flushed
    (:func:`_safe.scaled_pair`): the ratio is homogeneous of degree 0 in each tuple, so
    the value is unchanged (exact scaling) and no product overflows. A nonzero scaled
    tuple has a component in ``[1, 4)``; one below ``2^p·tiny`` keeps components of at
    least ``2^-p`` (``p`` significand bits), so the scaled denominator of two nonzero
    tuples is a normal number. The denominator is floored at the smallest normal, which
    only acts when a tuple is all zero: its element is ``0/tiny = 0`` (no direction, no
    loss; gradient 0). Rounding can put the ratio a few ulps above 1: it is clipped to 1.
    """
    p, q, _ = _safe.scaled_pair(P, Q, xp=xp, be=be, lim=lim, cplx=cplx)
    yn, yd, _ = _safe.scaled_pair(Yn, Yd, xp=xp, be=be, lim=lim, cplx=cplx)
    r = p * yd - q * yn
    if cplx:
        e = _common.abs2(r, xp=xp)
        n1 = _common.abs2(p, xp=xp) + _common.abs2(q, xp=xp)
        n2 = _common.abs2(yn, xp=xp) + _common.abs2(yd, xp=xp)
    else:
        e = r * r
        n1 = p * p + q * q
        n2 = yn * yn + yd * yd
    den = _common.clip(n1 * n2, lim.tiny, None, xp=xp, be=be)
    if power == 1:
        # |r| with derivative sign(r), 0 at r = 0, in every library (_common.absval);
        # complex: sqrt(|r|²) off the zeros only
        if cplx:
            pos = e > 0
            a = xp.where(pos, xp.sqrt(xp.where(pos, e, xp.ones_like(e))), xp.zeros_like(e))
        else:
            a = _common.absval(r, xp=xp, be=be)
        f = a / xp.sqrt(den)
    else:
        f = e / den
    return _common.clip(f, None, 1.0, xp=xp, be=be)


def _k_projective(P: Array, Q: Array, Yn: Array, Yd: Array, tau_array: Array | None, *,
                  xp: Namespace, be: Backend, cplx: bool, lim: Limits,
                  gate: _policy.FitGate | None, power: int = 2) -> Array:
    if lim.cast:
        P, Q, Yn, Yd = (xp.astype(v, lim.cdt) for v in (P, Q, Yn, Yd))
    if gate is not None:
        P, Q = gate.apply(P, Q, tau_array, xp=xp, be=be, lim=lim)
    f = projective_elements(P, Q, Yn, Yd, xp=xp, be=be, cplx=cplx, lim=lim, power=power)
    out = _safe.mean(f, xp=xp)
    return xp.astype(out, lim.odt) if lim.cast else out


def projective_distance_loss(P: Array, Q: Array, Y_n: Array, Y_d: Array, *,
                             tau_train: float | Array | None = None, power: int = 2) -> Array:
    """Mean of ``sin²∠((P, Q), (Y_n, Y_d)) = (P·Y_d − Q·Y_n)² / ((P² + Q²)·(Y_n² + Y_d²))``
    (``power=2``, default) or of ``|sin∠|`` (``power=1``).

    The bounded projective fit loss: each element is the squared sine of the angle
    between the predicted projective point ``(P, Q)`` and the lifted target
    ``(Y_n, Y_d)`` — in ``[0, 1]``, 0 exactly at ``P/Q = Y_n/Y_d`` (poles included:
    ``(P, 0)`` against ``(±1, 0)``), invariant under ``(P, Q) → c·(P, Q)`` and
    ``(Y_n, Y_d) → c·(Y_n, Y_d)`` for every ``c ≠ 0``. Unlike :func:`implicit_loss` it
    gives a large target no spike near a zero prediction and charges an opposite sign
    like any other wrong direction (see the module docstring), so the denominator's
    zero set is pulled onto the singular set. Use it as the fit term where targets are
    large near poles; ``implicit_loss`` stays the reference-compatible default.

    Complex operands use moduli (``|·|²``); the result is real, in the operands' (real)
    dtype (float16/bfloat16 computed in float32). Shapes: the package's one-way
    broadcasting rule (a ``(B, 1)`` denominator next to ``(B, k)`` numerators: one angle
    per numerator). Finite for every finite input (each tuple is rescaled by an exact
    power of two first); an all-zero tuple contributes 0; NaN or ±inf operands give NaN;
    an empty input gives 0.

    ``power=1`` (the L1 form, ``|P·Y_d − Q·Y_n| / sqrt((P² + Q²)·(Y_n² + Y_d²))``): the
    same zero set, bounds and invariances, but the gradient keeps its size as the angle
    shrinks (``sin²`` flattens quadratically), so the zeros of ``Q`` settle much closer
    to the singular set and small targets are fitted to a smaller absolute error; the
    price is a kink at a perfect fit (subgradient 0 there). ``power`` must be the integer
    1 or 2 (``TypeError`` for other types, ``ValueError`` for other values).

    ``tau_train`` (a real ``≥ 0`` or a 0-d real array): elements with ``|Q| < tau_train``
    are the loss's singular paths, whose gradient follows the active gradient policy
    (layer ``"fit_loss"``, see :mod:`zpml_core.losses`); ``None`` (default): no gating.
    """
    if isinstance(power, bool) or not isinstance(power, numbers.Integral):
        raise TypeError(f"power must be the integer 1 or 2, got {type(power).__name__}")
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power!r}")
    o = _policy.fit_operands(P, Q, Y_n, Y_d, tau_train)
    out = o.be.fuse(_k_projective)(o.P, o.Q, o.Y_n, o.Y_d, o.tau_array, xp=o.xp, be=o.be,
                                   cplx=o.cplx, lim=o.lim, gate=o.gate, power=int(power))
    return _common.as_0d(out, o.P, xp=o.xp)
