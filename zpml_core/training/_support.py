"""Which backend trains a ``(model, optimizer)`` pair: ``SCMTrainer``'s backend choice.

:func:`select_training_support` asks the registered autodiff backends (or the one
named) for their :class:`~zpml_core.training.engine.TrainingSupport` and returns the
first that claims the pair; frameworks that are not imported are not asked, so choosing
never imports one.
"""

from __future__ import annotations

import sys
from typing import Any

from zpml_core.training.engine import TrainingSupport

__all__ = ["select_training_support"]


def select_training_support(model: Any, optimizer: Any, backend: str | None = None) -> TrainingSupport:
    """The backend whose ``training()`` support claims ``(model, optimizer)``.

    With ``backend=None`` every registered autodiff backend whose framework module is
    already imported is asked (a torch model implies torch is imported), in registry
    order. ``backend="jax"`` forces one.
    """
    from zpml_core._registry import get_backend_by_name, registered_backends

    if backend is not None:
        candidates = [get_backend_by_name(backend)]
    else:
        candidates = [
            b for b in registered_backends().values() if b.supports_autodiff and b.name in sys.modules
        ]
    for b in candidates:
        factory = getattr(b, "training", None)
        support = None
        if factory is not None:
            try:
                support = factory()
            except NotImplementedError:
                support = None
        if support is None:
            if backend is not None:
                raise NotImplementedError(f"backend {b.name!r} has no training support")
            continue
        if support.claims(model, optimizer):
            return support
        if backend is not None:
            raise TypeError(
                f"backend {b.name!r} cannot train model {type(model).__name__} with optimizer "
                f"{type(optimizer).__name__}"
            )
    raise TypeError(
        f"SCMTrainer found no backend for model {type(model).__name__} and optimizer "
        f"{type(optimizer).__name__}: pass a torch.nn.Module with a torch.optim optimizer, "
        "or model=(apply_fn, params) with an optax optimizer for JAX"
    )
