"""Backend-neutral custom-gradient rules, written once against the array API.

The *gate* rule implements the gradient policies (SPEC §6.1, decision #8):

* forward: identity on the SCM value;
* residuals: the bottom mask;
* backward: an elementwise transform of the cotangent ``g`` flowing into the value —
  CLAMP → 0 at bottom, ``clip(g, -1, 1)`` elsewhere (complex: unchanged elsewhere);
  PROJECT → 0 at bottom; REJECT → 0 everywhere; PASSTHROUGH → ``g``.

Adapters wrap it in their framework's mechanism (``torch.autograd.Function``,
``jax.custom_vjp``); forward-only adapters never call it. :func:`gate_output` is the
single place where library functions (SCM ops, ``decode``, ``strict_inference``)
resolve the policy and hand their output to the adapter.
"""

from __future__ import annotations

from typing import Any

from zpml_core._xp import Array, Namespace
from zpml_core.autodiff.policies import GradientPolicy, resolve_policy

__all__ = ["gate_backward", "gate_forward", "gate_output", "policy_transform"]

_CLAMP = GradientPolicy.CLAMP
_PROJECT = GradientPolicy.PROJECT
_REJECT = GradientPolicy.REJECT
_PASS = GradientPolicy.PASSTHROUGH


def policy_transform(g: Array, bottom: Array, policy: GradientPolicy, *,
                     xp: Namespace) -> Array:
    """The policy's elementwise map of a gradient ``g`` given the bottom mask.

    ``bottom`` must broadcast to ``g``'s shape; the result has ``g``'s shape and dtype.
    NaN stays NaN under CLAMP off bottom (array ``clip`` semantics, decision #9).
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
    """Gate a library output with the policy active now (SPEC §6.2, decision #8).

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
