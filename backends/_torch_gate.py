"""The policy gate as a ``torch.autograd.Function`` (imported by the torch adapter).

Kept in its own module, which imports torch at the top, so the Function classes exist
before Dynamo traces a call to them (Dynamo cannot trace a class definition). The torch
adapter imports it when it is constructed if torch is already loaded; otherwise the
first gated call imports it (Dynamo executes imports for real, outside the trace).

Three classes, one rule:

* :class:`EagerPolicyGate` — reverse mode in plain eager mode (no functorch transform,
  no forward mode): an old-style ``forward(ctx, ...)`` Function, because
  ``Function.apply`` binds the arguments of a ``setup_context``-style forward with
  ``inspect.signature`` on every call (~15 µs). Its backward computes the cotangent in
  one loop where it can (:func:`cotangent`).
* :class:`PolicyGate` — reverse mode (``backward``). Used under
  ``torch.func.grad``/``vmap`` (which require ``setup_context``) and by
  :func:`traced_gate`. It has no ``jvp``: Dynamo rejects an
  ``autograd.Function`` that defines one ("Unsupported custom jvp").
* :class:`PolicyGateJvp` — the same plus forward mode (``jvp``), used in eager mode when
  a forward-mode transform is active (``torch.func.jvp``/``jacfwd``/``hessian``, a
  ``torch.autograd.forward_ad`` dual level).
* :func:`traced_gate` — under ``torch.compile``: plain ``where``/``detach`` ops for the
  linear part, plus :class:`PolicyGate` for CLAMP's clip.

Forward mode applies the linear tangent map :func:`tangent_map`; reverse mode the
cotangent transform of ``zpml_core.autodiff.rules``. They coincide for PROJECT, REJECT
and PASSTHROUGH; CLAMP clips cotangents only (clipping is not linear).

The real SCM ops on plain CPU tensors do not use these classes in eager mode: their
fused autograd Functions apply the same rule inside their own backward
(``zpml_backends._torch_autograd_ops``).
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as _txp
import torch

from zpml_core.autodiff.policies import GradientPolicy, backward_override
from zpml_core.autodiff.rules import gate_backward, gate_forward, tangent_transform

__all__ = ["EagerPolicyGate", "PolicyGate", "PolicyGateJvp", "cotangent",
           "forward_mode_active", "gate", "tangent_map", "traced_gate"]


class PolicyGate(torch.autograd.Function):
    """Identity forward; the backward applies the gradient policy (rules.py).

    ``setup_context`` style, so it composes with ``torch.func`` and ``torch.compile``.
    In eager mode the backward honours a ``gradient_policy`` context active while
    ``.backward()`` runs; under ``torch.compile`` the forward-time policy
    is baked into the graph and guarded (the compiled backward cannot look at Python
    state when it runs).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(value: torch.Tensor, bottom: torch.Tensor,
                policy: GradientPolicy) -> torch.Tensor:
        out, _ = gate_forward(value, bottom)
        return out.view_as(out)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, bottom, policy = inputs
        ctx.save_for_backward(bottom)
        ctx.policy = policy

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, None, None]:
        (bottom,) = ctx.saved_tensors
        policy = ctx.policy
        if not torch.compiler.is_compiling():
            override = backward_override()
            if override is not None:
                policy = override
        return gate_backward(policy, (bottom,), g, xp=_txp), None, None


class EagerPolicyGate(torch.autograd.Function):
    """:class:`PolicyGate` for plain eager mode (see the module docstring): the same
    forward (a view of ``value``) and the same rule; the policy of a context active
    while ``.backward()`` runs overrides the forward-time one."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, bottom: torch.Tensor,
                policy: GradientPolicy) -> torch.Tensor:
        ctx.save_for_backward(bottom)
        ctx.policy = policy
        out, _ = gate_forward(value, bottom)
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, None, None]:
        (bottom,) = ctx.saved_tensors
        override = backward_override()
        return cotangent(ctx.policy if override is None else override, bottom, g), None, None


def cotangent(policy: GradientPolicy, bottom: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``rules.gate_backward(policy, (bottom,), g)``, bit for bit, in fewer passes.

    Recording a graph (``create_graph=True``: grad mode on in the backward) or on a
    batched cotangent (``autograd.grad(..., is_grads_batched=True)`` vmaps the backward)
    it *is* ``gate_backward`` (the same differentiable, batchable ops). Otherwise PASSTHROUGH returns ``g``,
    REJECT ``zeros_like(g)``, and CLAMP/PROJECT on a plain contiguous real
    float32/float64 ``g`` with a mask of its shape run one fused loop (``+0`` at ⊥,
    ``clamp(g, −1, 1)`` / ``g`` elsewhere; ``zpml_backends._torch_autograd_numba``,
    ``zpml-core[fast]``), else the same ``torch.where``/``torch.clamp`` calls as the
    array-API rule (``where`` with the Python scalar 0.0 writes ``+0``, as
    ``where(bottom, zeros_like(g), g)`` does).
    """
    if torch.is_grad_enabled() or policy is GradientPolicy.PASSTHROUGH or _batched(g):
        return gate_backward(policy, (bottom,), g, xp=_txp)
    if policy is GradientPolicy.REJECT:
        return torch.zeros_like(g)
    clip = policy is GradientPolicy.CLAMP and not g.is_complex()
    if policy is GradientPolicy.PROJECT or clip:
        out = _fused_gate(g, bottom, clip)
        if out is not None:
            return out
        return torch.where(bottom, 0.0, torch.clamp(g, -1.0, 1.0) if clip else g)
    return gate_backward(policy, (bottom,), g, xp=_txp)  # complex CLAMP; a bad policy


def _batched(g: torch.Tensor) -> bool:
    """A batched or functorch-wrapped cotangent, or a functorch transform active (e.g.
    the vmapped backward of ``autograd.grad(..., is_grads_batched=True)``)."""
    ft = torch._C._functorch
    return bool(ft.is_legacy_batchedtensor(g) or ft.is_functorch_wrapped_tensor(g)
                or torch._C._are_functorch_transforms_active())


def _fused_gate(g: torch.Tensor, bottom: torch.Tensor, clip: bool) -> torch.Tensor | None:
    nb = _NUMBA[0]
    if nb is None:
        try:
            from zpml_backends import _torch_autograd_numba

            nb = _torch_autograd_numba
        except Exception:  # numba/numpy broken: torch ops
            nb = False
        _NUMBA[0] = nb
    if nb is False:
        return None
    out: torch.Tensor | None = nb.gate(g, bottom, clip)
    return out


_NUMBA: list[Any] = [None]


class PolicyGateJvp(PolicyGate):
    """:class:`PolicyGate` with forward mode (eager only).

    The forward returns a copy, not a view: ``forward_ad`` requires the tangent of a
    view output to be a view of the input's tangent, which a masked tangent is not.
    """

    @staticmethod
    def forward(value: torch.Tensor, bottom: torch.Tensor,
                policy: GradientPolicy) -> torch.Tensor:
        out, _ = gate_forward(value, bottom)
        return out.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, bottom, policy = inputs
        ctx.save_for_backward(bottom)
        ctx.save_for_forward(bottom)
        ctx.policy = policy

    @staticmethod
    def jvp(ctx: Any, t: torch.Tensor | None, *_: Any) -> torch.Tensor | None:
        """Forward mode: the policy's linear tangent map (forward-time policy)."""
        if t is None:
            return None
        (bottom,) = ctx.saved_tensors
        return tangent_map(ctx.policy, t, bottom)


def tangent_map(policy: GradientPolicy, t: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """The forward-mode (tangent) rule of the gate, ``rules.tangent_transform``: linear
    in ``t``; CLAMP masks and does not clip (clipping is a rule for cotangents)."""
    return tangent_transform(t, bottom, policy, xp=_txp)


def forward_mode_active() -> bool:
    """Whether forward-mode AD may be running (eager): a ``forward_ad`` dual level or a
    ``torch.func`` jvp transform on the functorch interpreter stack."""
    if torch.autograd.forward_ad._current_level >= 0:
        return True
    from torch._C import _functorch

    if _functorch.peek_interpreter_stack() is None:
        return False
    jvp = _functorch.TransformType.Jvp
    return any(i.key() == jvp for i in _functorch.get_interpreter_stack() or ())


def gate(value: torch.Tensor, bottom: torch.Tensor, policy: GradientPolicy) -> torch.Tensor:
    """The eager gate (the torch adapter calls :func:`traced_gate` under compile):
    :class:`PolicyGateJvp` when forward mode may run, :class:`PolicyGate` under another
    functorch transform, else :class:`EagerPolicyGate`."""
    if forward_mode_active():
        return PolicyGateJvp.apply(value, bottom, policy)
    if torch._C._are_functorch_transforms_active():
        return PolicyGate.apply(value, bottom, policy)
    return EagerPolicyGate.apply(value, bottom, policy)


def traced_gate(value: torch.Tensor, bottom: torch.Tensor,
                policy: GradientPolicy) -> torch.Tensor:
    """The gate inside ``torch.compile`` (the forward-time policy is baked in).

    Dynamo silently drops an ``autograd.Function`` under ``torch.func.jvp`` (and rejects
    one with a ``jvp``), so the linear part of every policy is written with plain ops,
    which both modes differentiate correctly: ``where(bottom, detach(v), v)`` (PROJECT;
    REJECT with an all-true mask — a selection, so the zero cotangent is dense and the
    chain rule runs on, as in eager mode). CLAMP adds its clip as :class:`PolicyGate`
    on top of the masked value when a gradient can flow (``where(bottom, 0, ·)`` of its
    backward is idempotent with the mask's). Values are unchanged: both ``where``
    branches are ``v``.
    """
    if policy is GradientPolicy.PASSTHROUGH:
        return value
    keep = bottom if policy is not GradientPolicy.REJECT else torch.ones_like(bottom)
    masked = torch.where(keep, value.detach(), value)
    if policy is GradientPolicy.CLAMP and value.requires_grad and torch.is_grad_enabled():
        return PolicyGate.apply(masked, bottom, policy)
    return masked
