"""Coverage and rejection signals, SPEC §5.4–5.5 (with decisions #11, #12)."""

from __future__ import annotations

from typing import Any

from zpml_core import _xp
from zpml_core._registry import Backend, get_backend
from zpml_core._xp import Array, Namespace
from zpml_core.autodiff.policies import GradientPolicy, resolve_policy
from zpml_core.losses import _common

__all__ = ["coverage", "rejection_loss", "soft_coverage_loss"]

_DETACHED = (GradientPolicy.PROJECT, GradientPolicy.REJECT)


def _k_coverage(h: Array, *, xp: Namespace, be: Backend, dtype: Any, detach: bool) -> Array:
    cov = 1.0 - _common.mean_of(h, dtype, xp=xp)
    return be.stop_gradient(cov) if detach else cov


def _k_rejection(h: Array, *, xp: Namespace, be: Backend, dtype: Any, target: float,
                 policy: GradientPolicy) -> Array:
    frac_bottom = _common.mean_of(be.stop_gradient(h), dtype, xp=xp)
    if policy is GradientPolicy.REJECT:
        return xp.zeros_like(frac_bottom)
    short = _common.relu(target - (1.0 - frac_bottom), xp=xp, be=be)
    return short * short


def coverage(outputs: Array | None, is_bottom: Array, *,
             policy: GradientPolicy | None = None) -> Array:
    """Finite-output rate ``1 − mean(is_bottom)`` over **all** elements (a 0-d array).

    Computed in the library's default floating dtype (decision #12). ``outputs`` is
    ignored (kept for the reference signature; it must come from the same library).
    ``is_bottom``: bool, 0/1 integer or a floating "soft bottom" array. Policy
    ``policy or get_policy("coverage")``: PROJECT/REJECT return a detached value;
    CLAMP/PASSTHROUGH keep it attached (a floating ``is_bottom`` then receives the
    gradient ``−1/N`` per element).
    """
    p = _common.optional_policy(policy)
    xp = _common.namespace(("outputs", "is_bottom"), (outputs, is_bottom))
    h = _common.soft_mask(xp, is_bottom, "is_bottom")
    be = get_backend(xp)
    if p is None:
        p = resolve_policy("coverage", traced=be.is_tracing(h))
    out = be.fuse(_k_coverage)(h, xp=xp, be=be, dtype=_xp.default_float(xp, _xp.device(h)),
                               detach=p in _DETACHED)
    return _common.as_0d(out, h, xp=xp)


def rejection_loss(is_bottom: Array, target_coverage: float = 0.95, *,
                   policy: GradientPolicy | None = None) -> Array:
    """``relu(target_coverage − coverage)²``: penalises coverage below the target.

    Never carries a gradient (``is_bottom`` is detached); computed in the library's
    default floating dtype (decision #11). Policy ``policy or
    get_policy("rejection_loss")``: REJECT returns 0. ``target_coverage`` must be finite
    in ``[0, 1]`` (``ValueError``; the reference did not validate it). For a trainable
    coverage signal use :func:`soft_coverage_loss`.
    """
    p = _common.optional_policy(policy)
    target = _common.threshold("target_coverage", target_coverage, le=1.0)
    xp = _common.namespace(("is_bottom",), (is_bottom,))
    h = _common.soft_mask(xp, is_bottom, "is_bottom")
    be = get_backend(xp)
    if p is None:
        p = resolve_policy("rejection_loss", traced=be.is_tracing(h))
    out = be.fuse(_k_rejection)(h, xp=xp, be=be, dtype=_xp.default_float(xp, _xp.device(h)), target=target,
                                policy=p)
    return _common.as_0d(out, h, xp=xp)


def _k_soft_coverage(Q: Array, *, xp: Namespace, be: Backend, tau: float,
                     temperature: float, target: float) -> Array:
    # sigmoid(z) = (1 + tanh(z/2)) / 2: no overflow anywhere, finite gradient everywhere
    z = (_common.absval(Q, xp=xp, be=be) - tau) / temperature
    p_mean = 0.5 + 0.5 * xp.mean(xp.tanh(0.5 * z))
    short = _common.relu(target - p_mean, xp=xp, be=be)
    return short * short


def soft_coverage_loss(Q: Array, tau: float, temperature: float, target: float,
                       mode: str = "under") -> Array:
    """Differentiable coverage penalty ``relu(target − mean(sigmoid((|Q| − tau)/T)))²``.

    ``mode`` must be ``"under"`` (penalise coverage below ``target``); ``tau`` finite
    ``≥ 0``; ``temperature`` finite ``> 0``; ``target`` finite in ``[0, 1]`` — all
    ``ValueError``. No defaults for ``tau``/``temperature``/``target`` (SPEC §5.5).
    """
    if mode != "under":
        raise ValueError(f"mode must be 'under', got {mode!r}")
    t = _common.threshold("tau", tau)
    temp = _common.threshold("temperature", temperature, gt=True)
    tgt = _common.threshold("target", target, le=1.0)
    xp = _common.namespace(("Q",), (Q,))
    (q,) = _common.float_arrays(xp, ("Q",), (Q,))
    be = get_backend(xp)
    out = be.fuse(_k_soft_coverage)(q, xp=xp, be=be, tau=t, temperature=temp, target=tgt)
    return _common.as_0d(out, q, xp=xp)
