"""``SCMTrainer``'s batch preparation: what a batch may be, moved to the framework.

A batch is ``(inputs, targets)``, ``(inputs, targets, status_labels)`` or
``(inputs, SemanticTargets)``. :class:`BatchMixin` turns one into a
:class:`~zpml_core.training.engine.PreparedBatch` on the engine's framework/device
(status labels lifted to semantic targets) and refuses, before any step runs, labels
the loss or the model cannot handle: ``missing`` labels for a loss without
``semantic_targets=``, and bottom labels for a model whose denominator cannot enter the
strict bottom region (unless ``allow_bottom_unreachable``).
"""

from __future__ import annotations

from typing import Any

from zpml_core import _xp
from zpml_core.projective import SemanticTargets, lift_semantic_targets
from zpml_core.training.config import TrainingConfig
from zpml_core.training.engine import PreparedBatch, TrainingEngine
from zpml_core.training.losscall import LossCaller

__all__ = ["BatchMixin"]


class BatchMixin:
    """``_prepare`` of ``SCMTrainer`` (which defines the attributes below)."""

    config: TrainingConfig
    engine: TrainingEngine
    loss: LossCaller
    _capability: str | None

    def _prepare(self, batch: Any) -> PreparedBatch:
        # fast path: (inputs, targets) of plain arrays and a model without a declared
        # bottom capability (the hot loop of a jitted step cannot afford much Python)
        kind = type(batch)
        if (kind is tuple or kind is list) and len(batch) == 2 and self._capability is None:
            x, y = batch
            if not isinstance(y, SemanticTargets):
                # (an engine may hand its step host arrays it transfers itself)
                fw = getattr(self.engine, "step_input", None) or self.engine.to_framework
                inputs = fw(x)
                shape = getattr(inputs, "shape", None)
                return PreparedBatch(inputs, fw(y), None, int(shape[0]) if shape else 1)
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise TypeError(
                "SCMTrainer batches must be (inputs, targets), (inputs, targets, "
                f"status_labels) or (inputs, SemanticTargets); got {type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )
        fw = self.engine.to_framework
        inputs = fw(batch[0])
        payload = batch[1]
        semantic: SemanticTargets | None
        if isinstance(payload, SemanticTargets):
            if len(batch) != 2:
                raise TypeError("(inputs, SemanticTargets) batches take no status labels")
            targets = None
            semantic = SemanticTargets(*(fw(a) for a in payload))
        else:
            targets = fw(payload)
            semantic = lift_semantic_targets(targets, batch[2]) if len(batch) == 3 else None
        if semantic is not None and not self.loss.wants_semantic_targets:
            xp = _xp.namespace(semantic.mask_finite)
            if bool(xp.any(~semantic.mask_finite & ~semantic.mask_bottom)):
                raise ValueError(
                    "the batch has 'missing' status labels (neither finite nor bottom) but "
                    "loss_fn does not accept semantic_targets= to mask them"
                )
        cap = self._capability
        if cap == "unreachable_by_construction" and not self.config.allow_bottom_unreachable:
            if semantic is not None:
                xp = _xp.namespace(semantic.mask_bottom)
                has_bottom = bool(xp.any(semantic.mask_bottom))
            else:
                xp = _xp.namespace(targets)
                has_bottom = bool(xp.any(~xp.isfinite(targets)))
            if has_bottom:
                raise ValueError(
                    "bottom labels were found in the targets, but the model's denominator "
                    f"cannot enter the strict bottom region |Q| < tau_infer={self.config.tau_infer:g}; "
                    "filter them or set TrainingConfig(allow_bottom_unreachable=True)"
                )
        shape = tuple(getattr(inputs, "shape", ()))
        n = int(shape[0]) if len(shape) else 1
        return PreparedBatch(inputs, targets, semantic, n)
