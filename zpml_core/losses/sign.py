"""Projective sign-consistency loss, semantics §5.3 (with decision #18)."""

from __future__ import annotations

import math

from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.losses import _common, _safe
from zpml_core.losses._safe import Limits

__all__ = ["sign_consistency_loss"]


def _unit(a: Array, b: Array, *, xp: Namespace, be: Backend, gamma: float, sqrt_g: float,
          cplx: bool) -> tuple[Array, Array, Array]:
    """``(a/m, b/m, q)`` with ``q = |a/m|² + |b/m|² + gamma/m²``, the squared norm
    ``‖(a, b)‖²_γ = |a|² + |b|² + gamma`` divided by ``m²``; always ``1 ≤ q ≤ 5``
    (up to rounding).

    ``m`` (a stop-gradient constant) is ``max(s, sqrt(gamma))`` with ``s`` the largest
    component magnitude (real/imaginary part for complex): the semantics' scale ``s``
    whenever ``s ≥ sqrt(gamma)``, and ``gamma/m² ≤ 1`` where ``s`` is tiny. ``sqrt_g = 0``
    (``gamma = 0``, or ``gamma`` below the square of the smallest normal): ``m = s``
    (``1`` where ``s = 0``) and ``q`` is floored at 1, which only changes the all-zero
    tuple (``q = 0``: it has no direction and gets ``cos = 0``, the ``gamma → 0`` limit).
    """
    sg = be.stop_gradient
    s = xp.maximum(_safe.maxabs(sg(a), xp=xp, cplx=cplx), _safe.maxabs(sg(b), xp=xp, cplx=cplx))
    # (NaN stays NaN in both)
    m = _common.clip(s, sqrt_g, None, xp=xp, be=be) if sqrt_g > 0 else xp.where(s == 0, 1.0, s)
    an = a / m
    bn = b / m
    q = _common.abs2(an, xp=xp) + _common.abs2(bn, xp=xp) if cplx else an * an + bn * bn
    if gamma > 0:
        q = q + gamma / m / m  # as the semantics rounds it
    elif sqrt_g > 0:  # gamma itself is subnormal in this dtype: (sqrt(gamma)/m)²
        w = sqrt_g / m
        q = q + w * w
    else:
        q = _common.clip(q, 1.0, None, xp=xp, be=be)
    return an, bn, q


def sign_elements(P: Array, Q: Array, Yn: Array, Yd: Array, m: Array | None, *,
                  xp: Namespace, be: Backend, gamma: float, sqrt_g: float, eps: float,
                  cplx: bool, lim: Limits) -> tuple[Array, Array]:
    """``(1 − cos, mask)`` per element (0 off the mask), operands in the computation
    dtype. Each tuple is scaled before the dot product, so nothing overflows.

    Subnormal operands count as zeros (:func:`_safe.daz`). The flush is needed only when
    ``sqrt(gamma)`` is below ``lim.sign_flush_root = tiny·2^(3p)`` (``gamma = 0``
    included; complex operands always flush): otherwise each tuple is divided by
    ``m ≥ sqrt(gamma)``, so a subnormal component becomes ``|x/m| < 2^(-3p)`` next to
    unit components ``≤ 1`` and a squared norm ``q ≥ 1``. Its products (``< 2^(-3p)``)
    vanish in the rounding of every sum they enter unless that sum is below
    ``2^(1-2p)``; then ``|cos| < 2^(-p-1)`` either way and ``1 − cos`` rounds to 1 —
    the value is bit for bit that of the flushed operands.
    """
    if cplx or sqrt_g < lim.sign_flush_root:
        P, Q, Yn, Yd = (_safe.daz(v, xp=xp, be=be, lim=lim, cplx=cplx) for v in (P, Q, Yn, Yd))
    if m is None:
        # fin(|Y_d|) & |Y_d| ≤ eps: the comparison is already False for NaN and ±inf
        m = xp.abs(be.stop_gradient(Yd)) <= eps
    p = xp.where(m, P, 0.0)
    q = xp.where(m, Q, 1.0)
    yn = xp.where(m, Yn, 0.0)
    yd = xp.where(m, Yd, 1.0)
    pn, qn, q_pred = _unit(p, q, xp=xp, be=be, gamma=gamma, sqrt_g=sqrt_g, cplx=cplx)
    ynn, ydn, q_targ = _unit(yn, yd, xp=xp, be=be, gamma=gamma, sqrt_g=sqrt_g, cplx=cplx)
    dot = xp.real(pn * xp.conj(ynn) + qn * xp.conj(ydn)) if cplx else pn * ynn + qn * ydn
    # NaN propagates; at exactly ±1 (possible once gamma/s² is below rounding) the
    # gradient passes, identically in torch and JAX. q_pred·q_targ ≤ 25: one square root
    cos = _common.clip(dot / xp.sqrt(q_pred * q_targ), -1.0, 1.0, xp=xp, be=be)
    return xp.where(m, 1.0 - cos, 0.0), m


def sign_value(P: Array, Q: Array, Yn: Array, Yd: Array, m: Array | None, *, xp: Namespace,
               be: Backend, gamma: float, sqrt_g: float, eps: float, cplx: bool,
               lim: Limits) -> Array:
    per, _ = sign_elements(P, Q, Yn, Yd, m, xp=xp, be=be, gamma=gamma, sqrt_g=sqrt_g,
                           eps=eps, cplx=cplx, lim=lim)
    return _safe.mean(per, xp=xp)


def sign_params(gamma: float, eps: float, lim: Limits) -> tuple[float, float, float]:
    """``(gamma, sqrt_g, eps)`` for the kernel, in the computation dtype's range:
    ``gamma`` (0 if below the smallest normal), ``sqrt(gamma)`` (0 if below the
    smallest normal: ``gamma`` then acts as 0), ``eps`` clamped to ``finfo.max`` (so
    that ``|Y_d| ≤ eps`` stays False for ``±inf``)."""
    sqrt_g = math.sqrt(_safe.clamp(gamma, lim))
    if sqrt_g < lim.tiny:
        return 0.0, 0.0, _safe.clamp(eps, lim)
    return _safe.gamma_value(gamma, lim), sqrt_g, _safe.clamp(eps, lim)


def _k_sign(P: Array, Q: Array, Yn: Array, Yd: Array, m: Array | None, *, xp: Namespace,
            be: Backend, gamma: float, sqrt_g: float, eps: float, cplx: bool,
            lim: Limits) -> Array:
    if lim.cast:
        P, Q, Yn, Yd = (xp.astype(v, lim.cdt) for v in (P, Q, Yn, Yd))
    out = sign_value(P, Q, Yn, Yd, m, xp=xp, be=be, gamma=gamma, sqrt_g=sqrt_g, eps=eps,
                     cplx=cplx, lim=lim)
    return xp.astype(out, lim.odt) if lim.cast else out


def sign_consistency_loss(P: Array, Q: Array, Y_n: Array, Y_d: Array, gamma: float = 1e-9,
                          mask_singular: Array | None = None,
                          epsilon_sing: float = 1e-3) -> Array:
    """Orientation loss ``1 − cos∠((P, Q), (Y_n, Y_d))`` on singular targets.

    * Singular mask: ``mask_singular`` (bool or 0/1 integer, broadcasting to the
      operands' common shape without enlarging it) or by default
      ``fin(|Y_d|) & |Y_d| ≤ epsilon_sing``.
    * Off the mask the operands are replaced by safe values (``P→0, Q→1, Y_n→0,
      Y_d→1``) and contribute 0; the reduction is the **population** mean over all
      elements (diluted by the fraction of singular targets, as the reference). An
      empty input gives 0.
    * ``cos = clip(Re(P·conj(Y_n) + Q·conj(Y_d)) / (‖(P,Q)‖_γ · ‖(Y_n,Y_d)‖_γ), −1, 1)``
      with ``‖(a,b)‖_γ = sqrt(|a|²+|b|²+γ)``, in both the real and the complex branch
      (decision #18). Each tuple is divided by its scale ``m = max(|a|, |b|,
      sqrt(γ))`` *before* the dot product, so the loss (in ``[0, 2]``) and its gradient
      are finite for every finite input up to ``finfo.max``. Complex inputs give a
      real result; the value has the operands' (real) dtype.

    ``gamma`` and ``epsilon_sing`` finite ``≥ 0``. With ``gamma=0`` an all-zero tuple
    on the mask has no direction: ``cos = 0`` (the limit ``gamma → 0``; the reference
    gave NaN).
    """
    g = _common.threshold("gamma", gamma)
    eps = _common.threshold("epsilon_sing", epsilon_sing)
    xp = _common.namespace(("P", "Q", "Y_n", "Y_d", "mask_singular"),
                          (P, Q, Y_n, Y_d, mask_singular))
    p, q, yn, yd = _common.float_arrays(xp, ("P", "Q", "Y_n", "Y_d"), (P, Q, Y_n, Y_d))
    shape = _common.common_shape([("P", p), ("Q", q), ("Y_n", yn), ("Y_d", yd)])
    m = _common.mask(xp, mask_singular, "mask_singular", shape, p, "the operands")
    be = get_backend(xp)
    lim = _safe.limits(xp, p.dtype)
    g, sqrt_g, e = sign_params(g, eps, lim)
    out = be.fuse(_k_sign)(p, q, yn, yd, m, xp=xp, be=be, gamma=g, sqrt_g=sqrt_g, eps=e,
                           cplx=_common.is_complex(xp, p.dtype), lim=lim)
    return _common.as_0d(out, p, xp=xp)
