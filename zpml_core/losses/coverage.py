"""Coverage and rejection signals, semantics §5.4–5.5 (with decisions #11, #12)."""

from __future__ import annotations

from typing import Any

from zpml_core import _xp
from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.autodiff.policies import GradientPolicy, resolve_policy
from zpml_core.losses import _common, _safe
from zpml_core.losses._safe import Limits

__all__ = ["coverage", "rejection_loss", "soft_coverage_loss"]

_DETACHED = (GradientPolicy.PROJECT, GradientPolicy.REJECT)
#: soft_coverage_loss: |z| = ||Q| − tau|/T is clipped at this (tanh(32) == 1 in float64)
_Z_MAX = 64.0


def value_dtype(xp: Namespace, h: Array, like: Array | None) -> Any:
    """The dtype of a coverage/rejection value: ``is_bottom``'s if it is floating, else
    the real dtype of ``like`` (the predictions) if floating, else the library's default
    float (on ``is_bottom``'s device)."""
    dt = h.dtype
    if dt != xp.bool and xp.isdtype(dt, "real floating"):
        return dt
    if like is not None and _xp.is_array(like) and _common.kind(xp, like.dtype)[0]:
        return _xp.real_dtype(xp, like.dtype)
    return _xp.default_float(xp, _xp.device(h))


def covered_fraction(h: Array, *, xp: Namespace, be: Backend, lim: Limits) -> Array:
    """``mean(1 − is_bottom)`` in ``lim.rdt`` (1 for an empty mask): the complement is
    taken per element, so ``1 − mean`` cannot cancel (XLA computes ``1 − sum/n`` as a
    fused ``1 − sum·(1/n)``, which gives ``−3e-8`` for ``n = 3`` in float32)."""
    floating = h.dtype != xp.bool
    if h.dtype != lim.rdt:
        h = xp.astype(h, lim.rdt)
    if floating:
        h = _common.clip(h, -lim.sat, lim.sat, xp=xp, be=be)
    n = _safe.numel(h.shape)
    if n is not None and n == 0:
        return xp.sum(h) + 1.0
    return xp.mean(1.0 - h)


def _k_coverage(h: Array, *, xp: Namespace, be: Backend, lim: Limits, detach: bool) -> Array:
    cov = covered_fraction(h, xp=xp, be=be, lim=lim)
    if lim.cast:
        cov = xp.astype(cov, lim.odt)
    return be.stop_gradient(cov) if detach else cov


def rejection_value(h: Array, *, xp: Namespace, be: Backend, lim: Limits, target: float,
                    policy: GradientPolicy) -> Array:
    """``relu(target − (1 − mean(h)))²`` in ``lim.rdt`` (``h`` detached); the shortfall
    is clipped at ``sqrt(S)`` (only a soft ``is_bottom`` outside ``[0, 1]`` reaches it)."""
    cov = covered_fraction(be.stop_gradient(h), xp=xp, be=be, lim=lim)
    if policy is GradientPolicy.REJECT:
        return xp.zeros_like(cov)
    short = _common.clip(target - cov, 0.0, lim.root, xp=xp, be=be)
    return short * short


def _k_rejection(h: Array, *, xp: Namespace, be: Backend, lim: Limits, target: float,
                 policy: GradientPolicy) -> Array:
    out = rejection_value(h, xp=xp, be=be, lim=lim, target=target, policy=policy)
    return xp.astype(out, lim.odt) if lim.cast else out


def coverage(outputs: Array | None, is_bottom: Array, *,
             policy: GradientPolicy | None = None) -> Array:
    """Finite-output rate ``1 − mean(is_bottom)`` over **all** elements (a 0-d array).

    ``is_bottom``: bool, integer (nonzero = bottom) or a floating "soft bottom" array.
    dtype: ``is_bottom``'s if floating, else the (real) dtype of ``outputs`` if floating,
    else the library's default float. ``outputs`` is otherwise ignored (kept for the
    reference signature; it must come from the same library). Policy ``policy or
    get_policy("coverage")``: PROJECT/REJECT return a detached value; CLAMP/PASSTHROUGH
    keep it attached (a floating ``is_bottom`` then receives the gradient ``−1/N`` per
    element). An empty ``is_bottom`` gives 1; soft values are clipped to ``[−S, S]``.
    """
    p = _common.optional_policy(policy)
    xp = _common.namespace(("outputs", "is_bottom"), (outputs, is_bottom))
    h = _common.soft_mask(xp, is_bottom, "is_bottom")
    be = get_backend(xp)
    if p is None:
        p = resolve_policy("coverage", traced=be.is_tracing(h))
    dt = value_dtype(xp, h, outputs)
    out = be.fuse(_k_coverage)(h, xp=xp, be=be, lim=_safe.limits(xp, dt),
                               detach=p in _DETACHED)
    return _common.as_0d(out, h, xp=xp)


def rejection_loss(is_bottom: Array, target_coverage: float = 0.95, *,
                   policy: GradientPolicy | None = None) -> Array:
    """``relu(target_coverage − coverage)²``: penalises coverage below the target.

    Never carries a gradient (``is_bottom`` is detached). dtype: ``is_bottom``'s if it is
    floating, else the library's default float (decision #11). Policy ``policy or
    get_policy("rejection_loss")``: REJECT returns 0. ``target_coverage`` must be finite
    in ``[0, 1]`` (``ValueError``; the reference did not validate it). An empty
    ``is_bottom`` gives 0. For a trainable coverage signal use
    :func:`soft_coverage_loss`.
    """
    p = _common.optional_policy(policy)
    target = _common.threshold("target_coverage", target_coverage, le=1.0)
    xp = _common.namespace(("is_bottom",), (is_bottom,))
    h = _common.soft_mask(xp, is_bottom, "is_bottom")
    be = get_backend(xp)
    if p is None:
        p = resolve_policy("rejection_loss", traced=be.is_tracing(h))
    lim = _safe.limits(xp, value_dtype(xp, h, None))
    out = be.fuse(_k_rejection)(h, xp=xp, be=be, lim=lim, target=target, policy=p)
    return _common.as_0d(out, h, xp=xp)


def _k_soft_coverage(Q: Array, *, xp: Namespace, be: Backend, tau: float,
                     temperature: float, target: float, lim: Limits) -> Array:
    if lim.cast:
        Q = xp.astype(Q, lim.cdt)
    n = _safe.numel(Q.shape)
    if n is not None and n == 0:  # nothing to cover: coverage 1, penalty 0
        return xp.zeros((), dtype=lim.odt, device=_xp.device(Q))
    # sigmoid(z) = (1 + tanh(z/2)) / 2: no overflow anywhere, finite gradient everywhere;
    # |Q| − tau is clipped at ±64·T first, so z stays in [−64, 64] (same values)
    lim_x = min(_Z_MAX * temperature, lim.max)
    x = _common.clip(_common.absval(Q, xp=xp, be=be) - tau, -lim_x, lim_x, xp=xp, be=be)
    z = x / temperature
    p_mean = 0.5 + 0.5 * xp.mean(xp.tanh(0.5 * z))
    short = _common.relu(target - p_mean, xp=xp, be=be)
    out = short * short
    return xp.astype(out, lim.odt) if lim.cast else out


def soft_coverage_loss(Q: Array, tau: float, temperature: float, target: float,
                       mode: str = "under") -> Array:
    """Differentiable coverage penalty ``relu(target − mean(sigmoid((|Q| − tau)/T)))²``.

    ``mode`` must be ``"under"`` (penalise coverage below ``target``); ``tau`` finite
    ``≥ 0``; ``temperature`` finite ``> 0``; ``target`` finite in ``[0, 1]`` — all
    ``ValueError``. No defaults for ``tau``/``temperature``/``target`` (semantics §5.5).
    The value has ``Q``'s (real) dtype; ``tau`` beyond the dtype's range acts as
    ``finfo.max``, ``temperature`` below its smallest normal as the smallest normal.
    An empty ``Q`` gives 0.
    """
    if mode != "under":
        raise ValueError(f"mode must be 'under', got {mode!r}")
    t = _common.threshold("tau", tau)
    temp = _common.threshold("temperature", temperature, gt=True)
    tgt = _common.threshold("target", target, le=1.0)
    xp = _common.namespace(("Q",), (Q,))
    (q,) = _common.float_arrays(xp, ("Q",), (Q,))
    be = get_backend(xp)
    lim = _safe.limits(xp, q.dtype)
    temp = min(max(temp, lim.tiny), lim.max)
    out = be.fuse(_k_soft_coverage)(q, xp=xp, be=be, tau=_safe.clamp(t, lim),
                                    temperature=temp, target=tgt, lim=lim)
    return _common.as_0d(out, q, xp=xp)
