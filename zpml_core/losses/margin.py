"""Denominator margin loss, semantics §5.2."""

from __future__ import annotations

from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.losses import _common, _safe
from zpml_core.losses._safe import Limits

__all__ = ["margin_loss"]

_REDUCTIONS = ("population", "conditional")


def margin_value(Q: Array, m: Array | None, tau_array: Array | None, *, xp: Namespace,
                 be: Backend, tau: float, conditional: bool, saturate: bool,
                 lim: Limits) -> Array:
    """The margin loss of ``Q`` (in ``lim.cdt``) as a 0-d array of ``lim.rdt``.

    ``tau_array`` (0-d, ``lim.rdt``) replaces the static ``tau`` when given. With
    ``saturate`` the shortfall ``t = relu(tau − |Q|)`` is clipped at ``sqrt(S)`` in the
    same ``clip`` (no extra op), so ``t² ≤ S``.
    """
    thr = tau if tau_array is None else tau_array
    hi = lim.root if saturate else None
    if m is None:
        t = _common.clip(thr - _common.absval(Q, xp=xp, be=be), 0.0, hi, xp=xp, be=be)
        return _safe.mean(t * t, xp=xp)
    # substitute before abs: non-finite Q off the mask reaches neither value nor gradient;
    # at off-mask positions tau − |tau| is exactly 0 (tau rounded to Q's dtype both times)
    a = _common.absval(xp.where(m, Q, thr), xp=xp, be=be)
    t = _common.clip(thr - a, 0.0, hi, xp=xp, be=be)
    t2 = t * t
    if not conditional:
        return _safe.mean(t2, xp=xp)
    if m.shape != t2.shape:
        m = xp.broadcast_to(m, t2.shape)
    count = xp.sum(xp.astype(m, t2.dtype))
    return xp.sum(t2) / xp.where(count > 0, count, 1.0)


def needs_saturation(tau: float, tau_array: Array | None, lim: Limits) -> bool:
    """Whether ``relu(tau − |Q|)²`` can exceed ``S`` (a static decision)."""
    return tau_array is not None or tau > lim.root


def _k_margin(Q: Array, m: Array | None, tau_array: Array | None = None, *, xp: Namespace,
              be: Backend, tau: float, conditional: bool, saturate: bool,
              lim: Limits) -> Array:
    if lim.cast:
        Q = xp.astype(Q, lim.cdt)
        if tau_array is not None:
            tau_array = xp.astype(tau_array, lim.rdt)
    out = margin_value(Q, m, tau_array, xp=xp, be=be, tau=tau, conditional=conditional,
                       saturate=saturate, lim=lim)
    return xp.astype(out, lim.odt) if lim.cast else out


def margin_loss(Q: Array, tau_train: float | Array = 1e-4, mask_finite: Array | None = None, *,
                reduction: str = "population") -> Array:
    """Penalty ``relu(tau − |Q|)²`` pushing denominators away from the threshold.

    * No mask: population mean over all elements (NaN in ``Q`` propagates).
    * ``mask_finite`` (bool or 0/1 integer, broadcasting *to* ``Q``'s shape): only
      masked elements contribute; non-finite ``Q`` elsewhere does not leak.
      ``reduction="population"`` divides by the number of all elements,
      ``"conditional"`` by the number of masked elements (``max(count, 1)``: an empty
      mask gives 0). ``reduction`` has no effect without a mask. An empty ``Q`` gives 0.

    ``tau_train``: a finite real ``≥ 0`` (0 allowed; beyond the dtype's range it acts as
    ``finfo.max``), or a 0-d real array (e.g. a threshold scheduled inside ``jax.jit``;
    not range-checked). ``|Q|`` is the modulus for complex ``Q``. The value has ``Q``'s
    (real) dtype; each element saturates at ``S`` (``t = relu(tau − |Q|)`` is clipped at
    ``sqrt(S)``, see the package docstring), so the loss is finite for finite input.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'population' or 'conditional', got {reduction!r}")
    xp = _common.namespace(("Q", "mask_finite", "tau_train"), (Q, mask_finite, tau_train))
    (q,) = _common.float_arrays(xp, ("Q",), (Q,))
    tau, tau_a = _common.threshold_or_array("tau_train", tau_train, xp=xp, like=q)
    m = _common.mask(xp, mask_finite, "mask_finite", tuple(q.shape), q)
    be = get_backend(xp)
    lim = _safe.limits(xp, q.dtype)
    tau = _safe.clamp(tau, lim)
    out = be.fuse(_k_margin)(q, m, tau_a, xp=xp, be=be, tau=tau,
                             conditional=reduction == "conditional",
                             saturate=needs_saturation(tau, tau_a, lim), lim=lim)
    return _common.as_0d(out, q, xp=xp)
