"""torch front of :class:`zpml_core.inference.SCMInferenceWrapper`: the same wrapper as an
``nn.Module`` (the wrapped model is a registered submodule, so ``.to()``, ``.eval()``,
``state_dict()`` and ``torch.export`` see it). The decoding is the core's."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.utils import _pytree

from zpml_core.inference.mode import InferenceConfig, InferenceResult
from zpml_core.inference.mode import SCMInferenceWrapper as _Base

__all__ = ["Front"]


def _flatten(r: InferenceResult) -> tuple[list[Any], None]:
    return [*r, r.fault_mask, r.semantic_bottom_mask], None


def _unflatten(leaves: Any, _: None) -> InferenceResult:
    return InferenceResult(*leaves)


# torch.export returns pytrees: teach torch the result's five leaves (as jax_adapter does)
with contextlib.suppress(ValueError):
    _pytree.register_pytree_node(
        InferenceResult, _flatten, _unflatten,
        serialized_type_name="zpml_core.inference.InferenceResult",
    )


class Front(nn.Module, _Base):
    """``SCMInferenceWrapper`` for a torch ``nn.Module`` (see the base class)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        config: InferenceConfig | None = None,
        experimental_provenance: bool | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        nn.Module.__init__(self)
        self._setup(model, config, experimental_provenance, metadata)

    forward = _Base.forward

    def extra_repr(self) -> str:
        return f"tau_infer={self.tau_infer!r}, tau_train={self.config.tau_train!r}"


Front.__name__ = "SCMInferenceWrapper"  # its repr; pickle finds it by __qualname__ ("Front")
