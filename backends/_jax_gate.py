"""The gradient-policy gate for JAX, in forward *and* reverse mode.

``gate(value, bottom, policy)`` is the identity on ``value``; what it does to
derivatives is defined once, as a **linear tangent map** (a ``jax.custom_jvp`` rule).
JAX derives reverse mode by transposing that map, so one definition serves ``jvp``,
``jacfwd``, ``grad``, ``jacrev``, ``vjp``, ``hessian``, ``vmap`` and ``jit``:

=============  ================================  ========================================
policy         tangent (forward mode)            cotangent (reverse mode, the transpose)
=============  ================================  ========================================
PROJECT        ``where(bottom, 0, t)``           ``where(bottom, 0, g)``
REJECT         ``0`` (a select)                  ``0`` (dense zeros: chain rule runs on)
CLAMP          ``where(bottom, 0, t)``           ``where(bottom, 0, clip(g, -1, 1))``
                                                 (complex: ``where(bottom, 0, g)``)
PASSTHROUGH    no gate                           no gate
=============  ================================  ========================================

CLAMP is not linear: clipping is defined on the cotangent (reverse mode). A JVP must be
linear in the tangent, so in forward mode CLAMP masks the tangent at bottom and passes
it unclipped elsewhere (PROJECT's rule). Its reverse mode keeps the exact clip: the
tangent map of CLAMP is a small linear primitive, ``zpml_clamp_tangent``, whose
evaluation is the masking and whose *transpose rule* is the CLAMP cotangent transform.
Consequence: under CLAMP, ``jacfwd`` and ``jacrev`` agree wherever no cotangent exceeds
1 in magnitude, and differ (by design) where the reverse pass clips.

The primitive carries its abstract evaluation, XLA lowering (the masking, via
``mlir.lower_fun``), batching rule (``vmap``), JVP rule (it is linear: higher-order
forward mode) and transpose rule. jax has no public ``custom_transpose``; this uses the
primitive extension API (``jax.extend.core.Primitive``, ``jax.interpreters``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from zpml_core.autodiff.policies import GradientPolicy
from zpml_core.autodiff.rules import policy_transform, tangent_transform

__all__ = ["clamp_tangent_p", "gate"]


def _mask(t: Any, bottom: Any) -> Any:
    """The forward-mode tangent map of PROJECT and CLAMP: 0 at bottom, ``t`` elsewhere."""
    return tangent_transform(t, bottom, GradientPolicy.PROJECT, xp=jnp)


clamp_tangent_p = Primitive("zpml_clamp_tangent")
clamp_tangent_p.def_impl(_mask)
clamp_tangent_p.def_abstract_eval(lambda t, bottom: t)  # bottom has t's shape
mlir.register_lowering(clamp_tangent_p, mlir.lower_fun(_mask, multiple_results=False))


def _clamp_tangent_jvp(primals: tuple[Any, Any], tangents: tuple[Any, Any]) -> tuple[Any, Any]:
    t, bottom = primals
    dt = tangents[0]
    out = clamp_tangent_p.bind(t, bottom)
    return out, clamp_tangent_p.bind(ad.instantiate_zeros(dt), bottom)  # linear in t


def _clamp_tangent_transpose(ct: Any, t: Any, bottom: Any) -> list[Any]:
    """The CLAMP cotangent transform (this is what makes reverse mode clip)."""
    if type(ct) is ad.Zero:
        return [ad.Zero(t.aval), None]
    return [policy_transform(ct, bottom, GradientPolicy.CLAMP, xp=jnp), None]


def _clamp_tangent_batch(args: tuple[Any, Any], dims: tuple[Any, Any]) -> tuple[Any, int]:
    t, bottom = args
    dt, db = dims
    size = t.shape[dt] if dt is not None else bottom.shape[db]
    t = batching.bdim_at_front(t, dt, size)
    bottom = batching.bdim_at_front(bottom, db, size)
    return clamp_tangent_p.bind(t, bottom), 0


ad.primitive_jvps[clamp_tangent_p] = _clamp_tangent_jvp
ad.primitive_transposes[clamp_tangent_p] = _clamp_tangent_transpose
batching.primitive_batchers[clamp_tangent_p] = _clamp_tangent_batch


def tangent_map(policy: GradientPolicy, t: Any, bottom: Any) -> Any:
    """The gate's linear tangent map for ``policy`` (``bottom`` broadcasts to ``t``)."""
    if policy is GradientPolicy.PASSTHROUGH:
        return t
    if policy is GradientPolicy.REJECT:
        # a selection, not a constant zero: transposed it yields a dense zero cotangent
        # that flows on through the kernel's chain rule (as the custom_vjp did, and
        # torch does), instead of a symbolic zero that JAX instantiates as +0
        return _mask(t, jnp.ones(t.shape, dtype=jnp.bool_))
    b = jnp.broadcast_to(bottom, t.shape)
    if policy is GradientPolicy.PROJECT or jnp.iscomplexobj(t):
        return _mask(t, b)
    if policy is GradientPolicy.CLAMP:
        return clamp_tangent_p.bind(t, b)
    raise TypeError(f"policy must be a GradientPolicy, got {policy!r}")


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def gate(value: Any, bottom: Any, policy: GradientPolicy) -> Any:
    """Identity on ``value``; derivatives follow ``policy`` (module docstring)."""
    return value


@gate.defjvp
def _gate_jvp(policy: GradientPolicy, primals: tuple[Any, Any],
              tangents: tuple[Any, Any]) -> tuple[Any, Any]:
    value, bottom = primals
    return value, tangent_map(policy, tangents[0], bottom)
