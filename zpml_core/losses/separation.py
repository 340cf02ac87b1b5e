"""Censored / finite separation losses, semantics §5.6 (sync-free, decision #10)."""

from __future__ import annotations

from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.losses import _common, _safe
from zpml_core.losses._safe import Limits

__all__ = ["scm_separation_losses"]


def _k_separation(Q: Array, m: Array, *, xp: Namespace, be: Backend, tau_bot: float,
                  tau_finite: float, lim: Limits) -> tuple[Array, Array]:
    if lim.cast:
        Q = xp.astype(Q, lim.cdt)
    if m.shape != Q.shape:  # broadcast elementwise: broadcast_to needs known sizes
        m = m & xp.ones_like(Q, dtype=xp.bool)
    # substitute before abs: each group's non-finite values stay out of the other group
    a_cens = _common.absval(xp.where(m, Q, tau_bot), xp=xp, be=be)
    a_fin = _common.absval(xp.where(m, tau_finite, Q), xp=xp, be=be)
    # relu, saturated at sqrt(S) in the same clip: each squared term is at most S
    down = _common.clip(a_cens - tau_bot, 0.0, lim.root, xp=xp, be=be)
    up_hi = lim.root if tau_finite > lim.root else None
    up = _common.clip(tau_finite - a_fin, 0.0, up_hi, xp=xp, be=be)
    down2 = down * down
    n_cens = xp.sum(xp.astype(m, down2.dtype))
    n_fin = xp.sum(xp.astype(~m, down2.dtype))
    push_down = xp.sum(down2) / xp.where(n_cens > 0, n_cens, 1.0)
    push_up = xp.sum(up * up) / xp.where(n_fin > 0, n_fin, 1.0)
    if lim.cast:
        return xp.astype(push_down, lim.odt), xp.astype(push_up, lim.odt)
    return push_down, push_up


def scm_separation_losses(Q: Array, *, mask_censored: Array, tau_bot: float = 1e-2,
                          tau_finite: float = 5e-2) -> tuple[Array, Array]:
    """``(push_down, push_up)`` separating censored from finite targets by ``|Q|``.

    ``push_down`` = mean over censored elements of ``relu(|Q| − tau_bot)²`` (drive ``Q``
    towards 0); ``push_up`` = mean over the other elements of ``relu(tau_finite − |Q|)²``
    (keep ``Q`` away from 0). An empty group (or an empty ``Q``) gives 0
    (``sum / max(count, 1)``, no host sync). ``mask_censored``: bool or 0/1 integer,
    broadcasting to ``Q``'s shape without enlarging it. Thresholds finite ``≥ 0`` with
    ``tau_finite ≥ tau_bot`` (``ValueError``). Values have ``Q``'s (real) dtype; each
    squared term saturates at ``S`` (the ``relu`` is clipped at ``sqrt(S)``, see the
    package docstring), so both are finite for every finite ``Q``.
    """
    tb = _common.threshold("tau_bot", tau_bot)
    tf = _common.threshold("tau_finite", tau_finite)
    if tf < tb:
        raise ValueError(f"tau_finite must be >= tau_bot, got tau_finite={tf!r} < tau_bot={tb!r}")
    if mask_censored is None:
        raise TypeError("mask_censored must be a boolean array, got None")
    xp = _common.namespace(("Q", "mask_censored"), (Q, mask_censored))
    (q,) = _common.float_arrays(xp, ("Q",), (Q,))
    m = _common.mask(xp, mask_censored, "mask_censored", tuple(q.shape), q)
    assert m is not None
    be = get_backend(xp)
    lim = _safe.limits(xp, q.dtype)
    down, up = be.fuse(_k_separation)(q, m, xp=xp, be=be, tau_bot=_safe.clamp(tb, lim),
                                      tau_finite=_safe.clamp(tf, lim), lim=lim)
    return _common.as_0d(down, q, xp=xp), _common.as_0d(up, q, xp=xp)
