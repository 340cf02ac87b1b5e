"""Backend-neutral custom-gradient rules, written once against the array API.

The *gate* rule implements the gradient policies:

* forward: identity on the SCM value;
* residuals: the bottom mask;
* backward (reverse mode): an elementwise transform of the cotangent ``g`` flowing into
  the value — CLAMP → 0 at bottom, ``clip(g, -1, 1)`` elsewhere (complex: unchanged
  elsewhere); PROJECT → 0 at bottom; REJECT → 0 everywhere; PASSTHROUGH → ``g``;
* tangent (forward mode): the *linear* map ``T'`` — PROJECT and CLAMP → 0 at bottom,
  ``t`` elsewhere; REJECT → 0; PASSTHROUGH → ``t``. For PROJECT, REJECT and
  PASSTHROUGH it is the transpose of the backward transform (one linear map). CLAMP's
  clip is not linear, so it applies to cotangents only: ``jvp``/``jacfwd`` under CLAMP
  mask bottom and do not clip, ``grad``/``jacrev`` clip.

Adapters wrap the rules in their framework's mechanism (``torch.autograd.Function`` with
``backward`` and ``jvp``; a ``jax.custom_jvp`` whose CLAMP tangent map is a primitive
transposing to the CLAMP cotangent transform); forward-only adapters never call them.
:func:`gate_output` is the single place where library functions (SCM ops, ``decode``,
``strict_inference``) resolve the policy and hand their output to the adapter.
"""

from __future__ import annotations

from typing import Any

from zpml_core._xp import Array, Namespace
from zpml_core.autodiff.policies import GradientPolicy, resolve_policy

__all__ = ["gate_backward", "gate_forward", "gate_output", "policy_transform",
           "tangent_transform"]

_CLAMP = GradientPolicy.CLAMP
_PROJECT = GradientPolicy.PROJECT
_REJECT = GradientPolicy.REJECT
_PASS = GradientPolicy.PASSTHROUGH


def policy_transform(g: Array, bottom: Array, policy: GradientPolicy, *,
                     xp: Namespace) -> Array:
    """The policy's elementwise map of a gradient ``g`` given the bottom mask.

    ``bottom`` must broadcast to ``g``'s shape; the result has ``g``'s shape and dtype.
    NaN stays NaN under CLAMP off bottom (array ``clip`` semantics).
    """
    if policy is _PASS:
        return g
    if policy is _REJECT:
        return xp.zeros_like(g)
    if policy is _PROJECT or xp.isdtype(g.dtype, "complex floating"):
        return xp.where(bottom, xp.zeros_like(g), g)
    if policy is _CLAMP:
        return xp.where(bottom, 0.0, xp.clip(g, -1.0, 1.0))
    raise TypeError(f"policy must be a GradientPolicy, got {policy!r}")


def tangent_transform(t: Array, bottom: Array, policy: GradientPolicy, *,
                      xp: Namespace) -> Array:
    """The policy's forward-mode map of a tangent ``t`` (linear in ``t``).

    PROJECT and CLAMP → ``where(bottom, 0, t)``; REJECT → 0; PASSTHROUGH → ``t``.
    """
    if policy is _PASS:
        return t
    if policy is _REJECT:
        return xp.zeros_like(t)
    if policy is _PROJECT or policy is _CLAMP:
        return xp.where(bottom, xp.zeros_like(t), t)
    raise TypeError(f"policy must be a GradientPolicy, got {policy!r}")


def gate_forward(value: Array, bottom: Array) -> tuple[Array, tuple[Array]]:
    """Forward of the gate: the value unchanged, and the residuals for the backward."""
    return value, (bottom,)


def gate_backward(policy: GradientPolicy, residuals: tuple[Array], g: Array, *,
                  xp: Namespace) -> Array:
    """Backward of the gate: the cotangent of the value (the mask gets none)."""
    (bottom,) = residuals
    return policy_transform(g, bottom, policy, xp=xp)


def gate_output(backend: Any, value: Array, bottom: Array, layer: str, *,
                xp: Namespace) -> Array:
    """Gate a library output with the policy active now.

    ``layer`` names the registry entry consulted when no context is active. Inside
    traced code the policy comes from the per-thread mirror the compiled code is keyed
    on (see :mod:`zpml_core.autodiff.policies`). A bottom mask with fewer dimensions
    than ``value`` is expanded with trailing singleton axes (strict_inference's rule).
    Forward-only backends return ``value`` untouched.
    """
    if not backend.supports_autodiff:
        return value
    policy = resolve_policy(layer, traced=backend.is_tracing(value))
    k = value.ndim - bottom.ndim
    if k > 0:
        bottom = xp.reshape(bottom, (*bottom.shape, *([1] * k)))
    return backend.gate(value, bottom, policy, xp=xp)
