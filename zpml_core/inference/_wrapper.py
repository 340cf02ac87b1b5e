"""``SCMInferenceWrapper``: a model returning ``(P, Q)``, decoded strictly at a frozen
``tau_infer`` (array API; the torch ``nn.Module`` front lives in ``zpml_backends``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from importlib import import_module
from typing import Any

from zpml_core._xp import Array
from zpml_core.inference.mode import InferenceConfig, InferenceResult, strict_inference

__all__ = ["SCMInferenceWrapper"]

#: (module, class) of a framework's model type → the module holding its wrapper front
#: (``Front``, the wrapper as that framework's model type)
_FRONTS = ((("torch.nn", "Module"), "zpml_backends.torch_inference"),)


def _front_for(model: Any) -> type | None:
    """The framework front for ``model``: only frameworks already imported are asked (a
    torch model implies torch is imported), by a type check that imports nothing, so a
    callable model can be wrapped inside traced code."""
    for (module, name), front in _FRONTS:
        mod = sys.modules.get(module)
        if mod is not None and isinstance(model, getattr(mod, name)):
            return import_module(front).Front
    return None


class SCMInferenceWrapper:
    """Wrap a model that returns the projective tuple ``(P, Q)`` for deployment.

    ``wrapper(x)`` calls the model and returns ``strict_inference(P, Q, config)`` — an
    :class:`InferenceResult` ``(decoded, bottom_mask, gap_mask)`` with ``fault_mask``,
    ``semantic_bottom_mask`` and ``bottom_provenance`` — at the thresholds frozen at
    construction (``config``, default ``InferenceConfig()``; exposed as ``tau_infer``,
    ``tau_train`` (0.0 without a gap band), ``use_gap`` and ``metadata``).

    * ``model``: a torch ``nn.Module`` (the wrapper is then an ``nn.Module`` too, and —
      like any module — starts in training mode, where it returns the model's raw
      ``(P, Q)``; call ``.eval()`` to decode), or any callable returning ``(P, Q)``
      (a JAX function, an equinox module) or ``(apply_fn, params)`` meaning
      ``apply_fn(params, x)``; these decode unless ``.train()`` was called.
    * ``wrapper(x, y)`` passes both to the model; ``wrapper((x, q_valid))`` passes ``x``
      and gates with the extra validity denominator ``q_valid`` (``Q``'s shape): bottom
      also where ``q_valid`` is non-finite (fault) or ``|q_valid| < tau_infer``
      (semantic), and the gap band is read on ``|q_valid|``.
    * :meth:`from_checkpoint` takes ``tau_infer`` (and ``tau_train`` = the training
      range's upper end) from a zpml_core checkpoint's metadata.

    Works under ``jax.jit``, ``torch.compile(fullgraph=True)`` and ``torch.export``.
    """

    training: bool = False

    def __new__(
        cls,
        model: Any,
        *,
        config: InferenceConfig | None = None,
        experimental_provenance: bool | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        # a framework's model gets that framework's front (e.g. an ``nn.Module``)
        if cls is SCMInferenceWrapper:
            front = _front_for(model)
            if front is not None:
                return object.__new__(front)
        return object.__new__(cls)

    def __getnewargs__(self) -> tuple[Any]:  # pickling / copying: __new__ needs the model
        return (self.model,)

    def __init__(
        self,
        model: Any,
        *,
        config: InferenceConfig | None = None,
        experimental_provenance: bool | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._setup(model, config, experimental_provenance, metadata)

    def _setup(
        self,
        model: Any,
        config: InferenceConfig | None,
        experimental_provenance: bool | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        cfg = InferenceConfig() if config is None else config
        if not isinstance(cfg, InferenceConfig):
            raise TypeError(f"config must be an InferenceConfig or None, got {type(cfg).__name__}")
        if experimental_provenance is not None and not isinstance(experimental_provenance, bool):
            raise TypeError("experimental_provenance must be a bool or None")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
        self._check_model(model)
        self.model = model
        self.config = cfg
        self.tau_infer: float = cfg.tau_infer
        self.tau_train: float = cfg.tau_train if cfg.tau_train is not None else 0.0
        self.use_gap: bool = cfg.tau_train is not None and cfg.tau_train > cfg.tau_infer
        self.experimental_provenance: bool = (
            cfg.provenance == "experimental" if experimental_provenance is None
            else experimental_provenance
        )
        hazard = cfg.numerical_hazard_threshold
        self.numerical_hazard_threshold: float = -1.0 if hazard is None else hazard
        self.use_numerical_hazard_threshold: bool = hazard is not None
        self.provenance_fault_threshold: float = self.numerical_hazard_threshold
        self.use_provenance_fault_threshold: bool = hazard is not None
        self.use_enum_provenance: bool = cfg.provenance_representation == "bottom_provenance"
        self.metadata: dict[str, Any] = {
            **(dict(metadata) if metadata is not None else {}),
            "tau_infer": cfg.tau_infer,
            "tau_train": cfg.tau_train,
        }

    @staticmethod
    def _check_model(model: Any) -> None:
        if callable(model):
            return
        if isinstance(model, tuple) and len(model) == 2 and callable(model[0]):
            return
        raise TypeError(
            "model must be callable (returning (P, Q)) or a pair (apply_fn, params), got "
            f"{type(model).__name__}"
        )

    @classmethod
    def from_checkpoint(
        cls, model: Any, path: str | os.PathLike[str], *, experimental_provenance: bool | None = None
    ) -> Any:
        """Wrap ``model`` with the thresholds a checkpoint was saved with: ``tau_infer``
        from its metadata and ``tau_train`` = its ``tau_train_max`` (no gap band if that is
        below ``tau_infer``). The checkpoint's seal is verified; weights are not loaded
        (load them into ``model`` as usual). ``metadata`` keeps the checkpoint's
        ``tau_infer``, ``tau_train_min``, ``tau_train_max`` and ``config_hash``."""
        from zpml_core.training.checkpoint import CheckpointError, read_checkpoint_metadata

        meta = read_checkpoint_metadata(path)
        tau = meta.get("tau_infer")
        if tau is None:
            raise CheckpointError(os.fspath(path), "metadata has no tau_infer")
        hi = meta.get("tau_train_max")
        try:
            cfg = InferenceConfig(tau_infer=tau)  # validates (a str or bool is refused)
            if hi is not None and InferenceConfig(tau_infer=hi).tau_infer >= cfg.tau_infer:
                cfg = InferenceConfig(tau_infer=cfg.tau_infer, tau_train=hi)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(os.fspath(path), f"metadata thresholds are unusable ({exc})") from exc
        keep: dict[str, Any] = {k: meta[k] for k in ("tau_train_min", "tau_train_max", "config_hash") if k in meta}
        return cls(model, config=cfg, experimental_provenance=experimental_provenance,
                   metadata={**keep, "checkpoint": os.fspath(path)})

    def _call_model(self, *args: Any) -> Any:
        m = self.model
        if isinstance(m, tuple):
            return m[0](m[1], *args)
        return m(*args)

    def forward(self, x: Any, y: Any = None) -> Any:
        """``model(x)`` (or ``model(x, y)``) decoded strictly; the raw output in training
        mode. ``x = (inputs, q_valid)`` adds a validity denominator (class docstring)."""
        q_valid = None
        if y is None and isinstance(x, (tuple, list)) and len(x) == 2:
            x, q_valid = x
        out = self._call_model(x) if y is None else self._call_model(x, y)
        if self.training:
            return out
        P, Q = out[0], out[1]
        if q_valid is None:
            return strict_inference(P, Q, config=self.config)
        return self._with_validity(P, Q, q_valid)

    def _with_validity(self, P: Array, Q: Array, q_valid: Array) -> InferenceResult:
        from zpml_core import _xp

        r = strict_inference(P, Q, config=self.config, validity_factors=(q_valid,),
                             validity_taus=self.tau_infer)
        xp = _xp.namespace(r.bottom_mask)
        if self.use_gap:
            a = xp.abs(_xp.to_float(xp, _xp.as_input(xp, q_valid)))
            gap = (a >= self.tau_infer) & (a < self.tau_train) & ~r.bottom_mask
        else:
            gap = xp.zeros_like(r.bottom_mask)
        return InferenceResult(r.decoded, r.bottom_mask, gap, r.fault_mask, r.semantic_bottom_mask)

    def __call__(self, x: Any, y: Any = None) -> Any:
        return self.forward(x, y)

    def train(self, mode: bool = True) -> SCMInferenceWrapper:
        """Training mode: return the model's raw ``(P, Q)`` (for a loss)."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be a bool, got {type(mode).__name__}")
        self.training = mode
        return self

    def eval(self) -> SCMInferenceWrapper:
        """Deployment mode: decode strictly (the default for non-torch models)."""
        return self.train(False)

    def __repr__(self) -> str:
        return (f"SCMInferenceWrapper(model={self.model!r}, tau_infer={self.tau_infer!r}, "
                f"tau_train={self.config.tau_train!r})")
