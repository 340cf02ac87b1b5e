"""The policy gate as a ``torch.autograd.Function`` (imported lazily by the torch adapter).

Kept in its own module, which imports torch at the top, so the Function class exists
before Dynamo traces a call to it (Dynamo cannot trace a class definition; it can run
the import of this module from inside a compiled function).
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as _txp
import torch

from zpml_core.autodiff.policies import GradientPolicy, backward_override
from zpml_core.autodiff.rules import gate_backward, gate_forward


class PolicyGate(torch.autograd.Function):
    """Identity forward; the backward applies the gradient policy (rules.py).

    ``setup_context`` style, so it composes with ``torch.func`` and ``torch.compile``.
    In eager mode the backward honours a ``gradient_policy`` context active while
    ``.backward()`` runs (decision #8); under ``torch.compile`` the forward-time policy
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


def gate(value: torch.Tensor, bottom: torch.Tensor, policy: GradientPolicy) -> torch.Tensor:
    return PolicyGate.apply(value, bottom, policy)
