"""Target lifting helpers, re-exported where the training guide looks for them."""

from zpml_core.projective import (
    BOTTOM_KIND_FAULT,
    BOTTOM_KIND_NONE,
    BOTTOM_KIND_SEMANTIC,
    ORIENTATION_ABOVE,
    ORIENTATION_BELOW,
    ORIENTATION_NONE,
    STATUS_LABELS,
    SemanticTargets,
    lift_semantic_targets,
    lift_targets,
)

__all__ = [
    "BOTTOM_KIND_FAULT",
    "BOTTOM_KIND_NONE",
    "BOTTOM_KIND_SEMANTIC",
    "ORIENTATION_ABOVE",
    "ORIENTATION_BELOW",
    "ORIENTATION_NONE",
    "STATUS_LABELS",
    "SemanticTargets",
    "lift_semantic_targets",
    "lift_targets",
]
