"""Gradient policies and the backend-neutral custom-gradient rules that implement them."""

from zpml_core.autodiff.policies import (
    GradientPolicy,
    GradientPolicyConfig,
    apply_policy,
    get_policy,
    gradient_policy,
    policy_registry_snapshot,
    register_policy,
    restore_policy_registry,
)

__all__ = [
    "GradientPolicy",
    "GradientPolicyConfig",
    "apply_policy",
    "get_policy",
    "gradient_policy",
    "policy_registry_snapshot",
    "register_policy",
    "restore_policy_registry",
]
