"""Denominator margin loss, SPEC §5.2."""

from __future__ import annotations

from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.losses import _common

__all__ = ["margin_loss"]

_REDUCTIONS = ("population", "conditional")


def _k_margin(Q: Array, m: Array | None, tau_array: Array | None = None, *, xp: Namespace,
              be: Backend, tau: float, conditional: bool) -> Array:
    # ``tau_array`` (0-d, Q's real dtype) replaces the static ``tau`` when given
    thr = tau if tau_array is None else tau_array
    if m is None:
        t = _common.relu(thr - _common.absval(Q, xp=xp, be=be), xp=xp, be=be)
        return xp.mean(t * t)
    # substitute before abs: non-finite Q off the mask reaches neither value nor gradient;
    # at off-mask positions tau − |tau| is exactly 0 (tau rounded to Q's dtype both times)
    t = _common.relu(thr - _common.absval(xp.where(m, Q, thr), xp=xp, be=be), xp=xp, be=be)
    t2 = t * t
    if not conditional:
        return xp.mean(t2)
    if m.shape != t2.shape:
        m = xp.broadcast_to(m, t2.shape)
    count = xp.sum(xp.astype(m, t2.dtype))
    return xp.sum(t2) / xp.where(count > 0, count, 1.0)


def margin_loss(Q: Array, tau_train: float | Array = 1e-4, mask_finite: Array | None = None, *,
                reduction: str = "population") -> Array:
    """Penalty ``relu(tau − |Q|)²`` pushing denominators away from the threshold.

    * No mask: population mean over all elements (NaN in ``Q`` propagates).
    * ``mask_finite`` (bool or 0/1 integer, broadcasting *to* ``Q``'s shape): only
      masked elements contribute; non-finite ``Q`` elsewhere does not leak.
      ``reduction="population"`` divides by the number of all elements,
      ``"conditional"`` by the number of masked elements (``max(count, 1)``: an empty
      mask gives 0). ``reduction`` has no effect without a mask.

    ``tau_train``: a finite real ``≥ 0`` (0 allowed), or a 0-d real array (e.g. a
    threshold scheduled inside ``jax.jit``; not range-checked). ``|Q|`` is the modulus
    for complex ``Q``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'population' or 'conditional', got {reduction!r}")
    xp = _common.namespace(("Q", "mask_finite", "tau_train"), (Q, mask_finite, tau_train))
    (q,) = _common.float_arrays(xp, ("Q",), (Q,))
    tau, tau_a = _common.threshold_or_array("tau_train", tau_train, xp=xp, like=q)
    m = _common.mask(xp, mask_finite, "mask_finite", tuple(q.shape), q)
    be = get_backend(xp)
    out = be.fuse(_k_margin)(q, m, tau_a, xp=xp, be=be, tau=tau,
                             conditional=reduction == "conditional")
    return _common.as_0d(out, q, xp=xp)
