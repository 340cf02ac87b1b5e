"""The fit losses' pair gate (``zpml_core.autodiff.fit_rules``) for eager PyTorch.

Reverse mode in plain eager mode uses :class:`EagerPairGate`, an ``autograd.Function``
whose backward applies ``fit_rules.pair_gate_backward`` with the policy of a
``gradient_policy`` context active while ``.backward()`` runs (else the forward-time
one) — so ``with gradient_policy(GradientPolicy.REJECT): loss.backward()`` acts on a fit
loss computed outside the context, as it does on the SCM ops. Under ``torch.compile``,
forward mode and other functorch transforms the array-API default
(``fit_rules.pair_gate_default``, the forward-time policy) applies: the same rule.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as _txp
import torch

from zpml_core.autodiff.fit_rules import pair_gate_backward, pair_gate_default
from zpml_core.autodiff.policies import GradientPolicy, backward_override

__all__ = ["EagerPairGate", "pair_gate"]


class EagerPairGate(torch.autograd.Function):
    """Identity on ``(p, q)``; the backward maps ``(g_p, g_q)`` by the pair rule."""

    @staticmethod
    def forward(ctx: Any, p: torch.Tensor, q: torch.Tensor, bottom: torch.Tensor,
                policy: GradientPolicy) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(bottom, p, q)
        ctx.policy = policy
        return p.view_as(p), q.view_as(q)

    @staticmethod
    def backward(ctx: Any, gp: torch.Tensor, gq: torch.Tensor) -> tuple[Any, ...]:
        bottom, p, q = ctx.saved_tensors
        override = backward_override()
        policy = ctx.policy if override is None else override
        rp, rq = pair_gate_backward(policy, bottom, p.detach(), q.detach(), gp, gq, xp=_txp)
        return rp, rq, None, None


def pair_gate(backend: Any, p: torch.Tensor, q: torch.Tensor, bottom: torch.Tensor,
              policy: GradientPolicy) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`EagerPairGate` in plain eager reverse mode, else the array-API default."""
    from zpml_backends._torch_gate import forward_mode_active

    if forward_mode_active() or torch._C._are_functorch_transforms_active():
        return pair_gate_default(backend, p, q, bottom, policy, xp=_txp)
    out: tuple[torch.Tensor, torch.Tensor] = EagerPairGate.apply(p, q, bottom, policy)
    return out
