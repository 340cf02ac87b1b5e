"""Gradient policies on the fit loss's singular paths (the *pair gate*), written once.

A fit loss (:func:`~zpml_core.losses.implicit_loss`,
:func:`~zpml_core.losses.projective_distance_loss`) given ``tau_train`` gates the pair
``(P, Q)`` before it computes anything: identity in value, and the gradient of each
element pair ``(g_P, g_Q)`` on a singular path (``|Q| < tau_train``) transformed by the
policy in effect (layer ``"fit_loss"``, registered as PASSTHROUGH):

=============  ===============================================  ======================
policy         singular path (``|Q| < tau_train``)              elsewhere
=============  ===============================================  ======================
PASSTHROUGH    unchanged                                        unchanged
REJECT         0 (such samples learn only through the            unchanged
               margin/sign/coverage terms)
PROJECT        the radial component along ``(P, Q)`` removed:    unchanged
               ``g − u·⟨u, g⟩`` with ``u = (P, Q)/‖(P, Q)‖``
CLAMP          0                                                clipped to ``[−1, 1]``
=============  ===============================================  ======================

(The SCM-op gate of :mod:`zpml_core.autodiff.rules` maps REJECT to 0 *everywhere*: an SCM
op's REJECT removes its whole derivative, a fit loss's REJECT only the singular
samples' fit gradient. PROJECT removes exactly the gradient that changes the scale of
``(P, Q)``: the part that would push ``|Q|`` across the threshold without turning the
predicted projective point.)

Forward mode applies the linear map: PROJECT the same projection, REJECT and CLAMP 0 on
the singular paths (no clipping), PASSTHROUGH the identity.

Two implementations of the one rule:

* :func:`pair_gate_default` — array-API code with ``stop_gradient`` (REJECT: the
  stopped value on singular paths; PROJECT: ``v − u·⟨u, v − sg(v)⟩``, whose value is
  ``v`` and whose derivative is ``I − u·uᵀ``) plus the adapter's op gate for CLAMP's
  clip. The policy is the one in effect when the forward pass runs (or is traced).
* an adapter hook ``pair_gate(p, q, bottom, policy, *, xp) -> (p, q)`` (looked up with
  ``getattr``): the torch adapter's eager ``autograd.Function`` applies
  :func:`pair_gate_backward` and honours a policy context active while
  ``.backward()`` runs, as the op gate does.
"""

from __future__ import annotations

from typing import Any

from zpml_core._xp import Array, Namespace
from zpml_core.autodiff.policies import GradientPolicy

__all__ = ["pair_gate", "pair_gate_backward", "pair_gate_default", "radial_unit"]

_CLAMP = GradientPolicy.CLAMP
_PROJECT = GradientPolicy.PROJECT
_REJECT = GradientPolicy.REJECT
_PASS = GradientPolicy.PASSTHROUGH


def radial_unit(p: Array, q: Array, *, xp: Namespace) -> tuple[Array, Array]:
    """``(p, q)/‖(p, q)‖`` per element, without overflow; ``(0, 0)`` for a zero pair.

    ``m = max(|p|, |q|)`` (1 where it is 0), ``(a, b) = (p, q)/m`` (components in
    ``[−1, 1]``), ``n = sqrt(a² + b²)`` (``≥ 1`` for a nonzero pair, 1 for the zero pair).
    Non-finite pairs give NaN (their loss is NaN too). Call it on stopped values.
    """
    m = xp.maximum(xp.abs(p), xp.abs(q))
    m = xp.where(m > 0, m, 1.0)
    a = p / m
    b = q / m
    n = xp.sqrt(a * a + b * b)
    n = xp.where(n > 0, n, 1.0)
    return a / n, b / n


def pair_gate_backward(policy: GradientPolicy, bottom: Array, p: Array, q: Array,
                       gp: Array, gq: Array, *, xp: Namespace) -> tuple[Array, Array]:
    """The policy's map of the cotangents ``(g_P, g_Q)`` (see the module table).

    ``bottom``, ``p``, ``q``, ``gp``, ``gq`` have one shape; ``p``, ``q`` are the pair's
    (real) values. NaN cotangents stay NaN off the singular paths.
    """
    if policy is _PASS:
        return gp, gq
    if policy is _REJECT:
        return xp.where(bottom, 0.0, gp), xp.where(bottom, 0.0, gq)
    if policy is _CLAMP:
        return (xp.where(bottom, 0.0, xp.clip(gp, -1.0, 1.0)),
                xp.where(bottom, 0.0, xp.clip(gq, -1.0, 1.0)))
    if policy is _PROJECT:
        ua, ub = radial_unit(p, q, xp=xp)
        d = ua * gp + ub * gq
        # ``+ 0.0``: a zero cotangent is +0, as the stop-gradient form's derivative is
        # (a sum with a +0 term), so both implementations agree in the sign of zero
        return (xp.where(bottom, gp - ua * d, gp) + 0.0,
                xp.where(bottom, gq - ub * d, gq) + 0.0)
    raise TypeError(f"policy must be a GradientPolicy, got {policy!r}")


def pair_gate_default(backend: Any, p: Array, q: Array, bottom: Array,
                      policy: GradientPolicy, *, xp: Namespace) -> tuple[Array, Array]:
    """The pair gate from ``stop_gradient`` and the op gate (any autodiff adapter).

    Values are returned unchanged (PROJECT: ``v − u·0``, with ``u`` finite for finite
    ``v``); the derivative is the rule of :func:`pair_gate_backward`.
    """
    if policy is _PASS:
        return p, q
    sg = backend.stop_gradient
    if policy is _REJECT:
        return xp.where(bottom, sg(p), p), xp.where(bottom, sg(q), q)
    if policy is _CLAMP:
        return (backend.gate(p, bottom, _CLAMP, xp=xp), backend.gate(q, bottom, _CLAMP, xp=xp))
    if policy is _PROJECT:
        sp, sq = sg(p), sg(q)
        ua, ub = radial_unit(sp, sq, xp=xp)
        d = ua * (p - sp) + ub * (q - sq)
        return xp.where(bottom, p - ua * d, p), xp.where(bottom, q - ub * d, q)
    raise TypeError(f"policy must be a GradientPolicy, got {policy!r}")


def pair_gate(backend: Any, p: Array, q: Array, bottom: Array, policy: GradientPolicy, *,
              xp: Namespace) -> tuple[Array, Array]:
    """Gate the pair: the adapter's ``pair_gate`` hook if it has one, else
    :func:`pair_gate_default`; forward-only adapters return the pair unchanged."""
    if not backend.supports_autodiff:
        return p, q
    hook = getattr(backend, "pair_gate", None)
    if hook is not None:
        out: tuple[Array, Array] = hook(p, q, bottom, policy, xp=xp)
        return out
    return pair_gate_default(backend, p, q, bottom, policy, xp=xp)
