"""Projective sign-consistency loss, SPEC §5.3 (with decision #18)."""

from __future__ import annotations

import math

from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.losses import _common

__all__ = ["sign_consistency_loss"]


def _scaled_norm(a: Array, b: Array, *, xp: Namespace, be: Backend, gamma: float,
                 cplx: bool) -> Array:
    """``sqrt(|a|² + |b|² + gamma)`` without overflow or underflow.

    SPEC: ``s·sqrt((a/s)² + (b/s)² + gamma/s²)`` with ``s = max(|a|, |b|)`` (``→ 1``
    where 0). The scale used here is ``m = max(s, sqrt(gamma))``: identical to the SPEC
    whenever ``s ≥ sqrt(gamma)``, and it keeps ``gamma/m²`` ≤ 1 where ``s`` is tiny, so
    the norm (and its gradient) stays finite where ``gamma/s²`` would overflow. The
    norm does not depend on ``m`` mathematically, so ``m`` is a stop-gradient constant:
    the gradient is the exact ``a/‖·‖``.
    """
    s = xp.maximum(xp.abs(a), xp.abs(b))
    if gamma > 0:
        m = _common.clip(s, math.sqrt(gamma), None, xp=xp, be=be)  # NaN stays NaN
    else:
        m = xp.where(s == 0, 1.0, s)
    m = be.stop_gradient(m)
    an = a / m
    bn = b / m
    q = _common.abs2(an, xp=xp) + _common.abs2(bn, xp=xp) if cplx else an * an + bn * bn
    if gamma > 0:
        q = q + gamma / m / m
    return m * xp.sqrt(q)


def _k_sign(P: Array, Q: Array, Yn: Array, Yd: Array, m: Array | None, *, xp: Namespace,
            be: Backend, gamma: float, eps: float, cplx: bool) -> Array:
    if m is None:
        # fin(|Y_d|) & |Y_d| ≤ eps: the comparison is already False for NaN and ±inf
        m = xp.abs(Yd) <= eps
    p = xp.where(m, P, 0.0)
    q = xp.where(m, Q, 1.0)
    yn = xp.where(m, Yn, 0.0)
    yd = xp.where(m, Yd, 1.0)
    n_pred = _scaled_norm(p, q, xp=xp, be=be, gamma=gamma, cplx=cplx)
    n_targ = _scaled_norm(yn, yd, xp=xp, be=be, gamma=gamma, cplx=cplx)
    dot = xp.real(p * xp.conj(yn) + q * xp.conj(yd)) if cplx else p * yn + q * yd
    # NaN propagates; at exactly ±1 (possible once gamma/s² is below rounding) the
    # gradient passes, identically in torch and JAX
    cos = _common.clip(dot / (n_pred * n_targ), -1.0, 1.0, xp=xp, be=be)
    return xp.mean(xp.where(m, 1.0 - cos, 0.0))


def sign_consistency_loss(P: Array, Q: Array, Y_n: Array, Y_d: Array, gamma: float = 1e-9,
                          mask_singular: Array | None = None,
                          epsilon_sing: float = 1e-3) -> Array:
    """Orientation loss ``1 − cos∠((P, Q), (Y_n, Y_d))`` on singular targets.

    * Singular mask: ``mask_singular`` (bool or 0/1 integer, broadcasting to the
      operands' shape) or by default ``fin(|Y_d|) & |Y_d| ≤ epsilon_sing``.
    * Off the mask the operands are replaced by safe values (``P→0, Q→1, Y_n→0,
      Y_d→1``) and contribute 0; the reduction is the **population** mean over all
      elements (diluted by the fraction of singular targets, as the reference).
    * ``cos = clip(Re(P·conj(Y_n) + Q·conj(Y_d)) / (‖(P,Q)‖_γ · ‖(Y_n,Y_d)‖_γ), −1, 1)``
      with overflow-safe scaled norms ``‖(a,b)‖_γ = sqrt(|a|²+|b|²+γ)`` in both the real
      and the complex branch (decision #18; the reference's complex branch is unscaled
      and unclamped). Complex inputs give a real result.

    ``gamma`` and ``epsilon_sing`` finite ``≥ 0``. With ``gamma=0`` an all-zero tuple on
    the mask gives NaN (as the reference).
    """
    g = _common.threshold("gamma", gamma)
    eps = _common.threshold("epsilon_sing", epsilon_sing)
    xp = _common.namespace(("P", "Q", "Y_n", "Y_d", "mask_singular"),
                          (P, Q, Y_n, Y_d, mask_singular))
    p, q, yn, yd = _common.float_arrays(xp, ("P", "Q", "Y_n", "Y_d"), (P, Q, Y_n, Y_d))
    shape = _common.common_shape([("P", p), ("Q", q), ("Y_n", yn), ("Y_d", yd)])
    m = _common.mask(xp, mask_singular, "mask_singular", shape, p, "the operands")
    be = get_backend(xp)
    out = be.fuse(_k_sign)(
        p, q, yn, yd, m, xp=xp, be=be, gamma=g, eps=eps, cplx=_common.is_complex(xp, p.dtype)
    )
    return _common.as_0d(out, p, xp=xp)
