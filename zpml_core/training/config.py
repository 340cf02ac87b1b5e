"""``TrainingConfig``: every knob of the training guide, validated as semantics §7.1 says.

Invalid values raise ``TypeError`` (wrong kind: bool for a number, str, non-callable
hook, ...) or ``ValueError`` (out of range); every message names the argument.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from zpml_core import _xp
from zpml_core.training.curriculum import LossWeightsCurriculum

__all__ = [
    "SCHEDULER_CADENCES",
    "TrainingConfig",
    "check_reiterable",
    "config_hash",
    "config_identity",
]

SCHEDULER_CADENCES = ("per_batch", "per_optimizer_update", "per_epoch", "per_validation_metric")
_AMP_DTYPES = ("float16", "bfloat16")


def check_reiterable(name: str, loader: object) -> None:
    """``TypeError`` naming ``name`` if ``loader`` is a one-shot iterator (``iter(x) is x``,
    e.g. a generator): it would yield batches in the first epoch only."""
    if isinstance(loader, Iterator) and iter(loader) is loader:
        raise TypeError(
            f"{name} is a one-shot iterator ({type(loader).__name__}): it would be exhausted "
            "after the first epoch and later epochs would run no batch; pass a "
            "re-iterable (a list, an ArrayLoader, a torch DataLoader, or an object whose "
            "__iter__ returns a new iterator each epoch)"
        )


def _real(name: str, value: object, *, gt: float | None = None, ge: float | None = None,
          le: float | None = None) -> float:
    if _xp.is_bool_scalar(value) or isinstance(value, str) or not (
        isinstance(value, numbers.Real)
        or (type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0)
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if gt is not None and not v > gt:
        raise ValueError(f"{name} must be > {gt:g}, got {v!r}")
    if ge is not None and not v >= ge:
        raise ValueError(f"{name} must be >= {ge:g}, got {v!r}")
    if le is not None and not v <= le:
        raise ValueError(f"{name} must be <= {le:g}, got {v!r}")
    return v


def _int(name: str, value: object, *, ge: int) -> int:
    if _xp.is_bool_scalar(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    v = int(value)
    if v < ge:
        raise ValueError(f"{name} must be >= {ge}, got {v!r}")
    return v


def _bool(name: str, value: object, *, allow_none: bool = False) -> bool | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        kind = "a bool or None" if allow_none else "a bool"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    return value


def _amp_dtype_name(value: object) -> str:
    # strings, or torch.float16, jnp.bfloat16, numpy dtypes, ...
    name = value if isinstance(value, str) else getattr(value, "__name__", None) or str(value)
    name = name.rsplit(".", 1)[-1].strip("'<>")
    if name not in _AMP_DTYPES:
        raise ValueError(f"amp_dtype must be float16 or bfloat16, got {value!r}")
    return name


def _policy(value: object) -> Any:
    if value is None:
        return None
    try:
        from zpml_core.autodiff.policies import GradientPolicy
    except ImportError as exc:  # pragma: no cover - the policies module ships with the core
        raise TypeError(
            f"gradient_policy must be a GradientPolicy or None (policies unavailable: {exc})"
        ) from None
    if not isinstance(value, GradientPolicy):
        raise TypeError(
            f"gradient_policy must be a GradientPolicy or None, got {type(value).__name__}"
        )
    return value


@dataclass
class TrainingConfig:
    """Configuration of :class:`~zpml_core.training.SCMTrainer` (semantics §7.1).

    ======================================  ==============================================
    ``max_epochs`` (1)                      int ≥ 1
    ``gradient_accumulation_steps`` (1)     int ≥ 1; gradients of a group are averaged
                                            over the group's actual size
    ``mixed_precision`` (False)             bool; ``use_amp`` (None), if a bool, sets it
    ``amp_dtype`` ("float16")               float16 | bfloat16 (strings or framework
                                            dtypes); float16 becomes bfloat16 on CPU
    ``tau_train_min/max`` (1e-4, 1e-4)      finite, > 0, ≥ ``tau_infer``, min ≤ max; the
                                            per-step threshold is uniform in [min, max]
    ``tau_infer`` (1e-6)                    finite, > 0 (strict-inference threshold used
                                            by validation)
    ``coverage_threshold`` (0.95)           finite in [0, 1]
    ``coverage_patience`` (3)               int ≥ 1
    ``gradient_policy`` (None)              GradientPolicy or None
    ``log_hook`` (None)                     callable(record) or None, e.g. JsonlLogger
    ``val_loader`` (None)                   re-iterable of batches or None (a one-shot
                                            iterator → ``TypeError``)
    ``loss_weights`` (None)                 mapping str → finite real ≥ 0; passed to the
                                            loss as ``loss_weights=`` (keys of an
                                            ``SCMTrainingLoss``: fit, margin, sign,
                                            rejection, lambda_margin, lambda_sign,
                                            lambda_rej; checked by ``SCMTrainer``)
    ``loss_curriculum`` (None)              LossWeightsCurriculum or None (per-epoch
                                            values over ``loss_weights``)
    ``scheduler_cadence``                   per_batch | per_optimizer_update (default) |
                                            per_epoch | per_validation_metric
    ``seed`` (None)                         int ≥ 0 or None: makes a whole fit
                                            reproducible on one backend (tau draws, the
                                            framework RNG at fit start, data order of
                                            zpml loaders)
    ``learning_rate`` (1e-3)                metadata only; the optimizer is authoritative
    ``device`` (None)                       framework device (or its name) or None
    ``allow_bottom_unreachable`` (False)    bool
    ======================================  ==============================================
    """

    learning_rate: float = 1e-3
    max_epochs: int = 1
    gradient_accumulation_steps: int = 1
    mixed_precision: bool = False
    use_amp: bool | None = None
    amp_dtype: Any = "float16"
    tau_train_min: float = 1e-4
    tau_train_max: float = 1e-4
    tau_infer: float = 1e-6
    allow_bottom_unreachable: bool = False
    coverage_threshold: float = 0.95
    coverage_patience: int = 3
    gradient_policy: Any = None
    log_hook: Callable[[dict[str, Any]], Any] | None = None
    val_loader: Iterable[Any] | None = None
    device: Any = None
    loss_weights: Mapping[str, float] | None = None
    loss_curriculum: LossWeightsCurriculum | None = None
    scheduler_cadence: str = "per_optimizer_update"
    seed: int | None = None

    def __post_init__(self) -> None:
        self.learning_rate = _real("learning_rate", self.learning_rate, gt=0.0)
        self.max_epochs = _int("max_epochs", self.max_epochs, ge=1)
        self.gradient_accumulation_steps = _int(
            "gradient_accumulation_steps", self.gradient_accumulation_steps, ge=1
        )
        _bool("mixed_precision", self.mixed_precision)
        _bool("use_amp", self.use_amp, allow_none=True)
        if self.use_amp is not None:  # the reference: use_amp sets mixed_precision
            self.mixed_precision = self.use_amp
        _bool("allow_bottom_unreachable", self.allow_bottom_unreachable)
        self.amp_dtype = _amp_dtype_name(self.amp_dtype)
        self.tau_infer = _real("tau_infer", self.tau_infer, gt=0.0)
        self.tau_train_min = _real("tau_train_min", self.tau_train_min, gt=0.0)
        self.tau_train_max = _real("tau_train_max", self.tau_train_max, gt=0.0)
        for name in ("tau_train_min", "tau_train_max"):
            if getattr(self, name) < self.tau_infer:
                raise ValueError(
                    f"{name} must be >= tau_infer ({self.tau_infer!r}), got {getattr(self, name)!r}"
                )
        if self.tau_train_min > self.tau_train_max:
            raise ValueError(
                f"tau_train_min ({self.tau_train_min!r}) must be <= tau_train_max "
                f"({self.tau_train_max!r})"
            )
        self.coverage_threshold = _real(
            "coverage_threshold", self.coverage_threshold, ge=0.0, le=1.0
        )
        self.coverage_patience = _int("coverage_patience", self.coverage_patience, ge=1)
        self.gradient_policy = _policy(self.gradient_policy)
        if self.log_hook is not None and not callable(self.log_hook):
            raise TypeError(f"log_hook must be callable or None, got {type(self.log_hook).__name__}")
        if self.val_loader is not None and not isinstance(self.val_loader, Iterable):
            raise TypeError(
                f"val_loader must be an iterable of batches or None, got {type(self.val_loader).__name__}"
            )
        if self.val_loader is not None:
            check_reiterable("val_loader", self.val_loader)
        if self.device is not None and (
            _xp.is_bool_scalar(self.device) or isinstance(self.device, numbers.Number)
        ):
            raise TypeError(f"device must be a device, a device name or None, got {self.device!r}")
        if self.loss_weights is not None:
            if not isinstance(self.loss_weights, Mapping):
                raise TypeError(
                    f"loss_weights must be a mapping of str → float or None, got {type(self.loss_weights).__name__}"
                )
            weights = {}
            for k, v in self.loss_weights.items():
                if not isinstance(k, str) or not k:
                    raise ValueError(f"loss_weights keys must be non-empty strings, got {k!r}")
                weights[k] = _real(f"loss_weights[{k!r}]", v, ge=0.0)
            self.loss_weights = weights
        if self.loss_curriculum is not None and not isinstance(
            self.loss_curriculum, LossWeightsCurriculum
        ):
            raise TypeError(
                "loss_curriculum must be a LossWeightsCurriculum or None, got "
                f"{type(self.loss_curriculum).__name__}"
            )
        if self.scheduler_cadence not in SCHEDULER_CADENCES:
            raise ValueError(
                f"scheduler_cadence must be one of {SCHEDULER_CADENCES}, got {self.scheduler_cadence!r}"
            )
        if self.seed is not None:
            self.seed = _int("seed", self.seed, ge=0)

    @property
    def amp_enabled(self) -> bool:
        """``use_amp`` if it is a bool, else ``mixed_precision`` (equal after construction:
        a bool ``use_amp`` sets ``mixed_precision``)."""
        return bool(self.mixed_precision if self.use_amp is None else self.use_amp)

    @property
    def tau_eval(self) -> float:
        """The fixed threshold validation uses: the middle of the training range."""
        return (self.tau_train_min + self.tau_train_max) / 2.0

    def weights_at(self, epoch: int) -> dict[str, float] | None:
        """Loss weights for ``epoch`` (curriculum over the base ``loss_weights``)."""
        if self.loss_curriculum is not None:
            return self.loss_curriculum.weights(epoch, self.loss_weights)
        return None if self.loss_weights is None else dict(self.loss_weights)


def config_identity(config: TrainingConfig, *, optimizer_lrs: list[float] | None = None) -> dict[str, Any]:
    """JSON-safe identity of the behavioural fields (loaders, hooks, device excluded)."""
    policy = config.gradient_policy
    return {
        "schema_version": 1,
        "training": {
            "max_epochs": config.max_epochs,
            "gradient_accumulation_steps": config.gradient_accumulation_steps,
            "mixed_precision": config.amp_enabled,
            "amp_dtype": config.amp_dtype,
            "tau_train_min": config.tau_train_min,
            "tau_train_max": config.tau_train_max,
            "tau_infer": config.tau_infer,
            "allow_bottom_unreachable": config.allow_bottom_unreachable,
            "coverage_threshold": config.coverage_threshold,
            "coverage_patience": config.coverage_patience,
            "gradient_policy": None if policy is None else str(policy.value),
            "loss_weights": None if config.loss_weights is None else dict(sorted(config.loss_weights.items())),
            "loss_curriculum": None if config.loss_curriculum is None else config.loss_curriculum.identity(),
            "scheduler_cadence": config.scheduler_cadence,
            "seed": config.seed,
        },
        "resume_contract": {"optimizer_param_group_lrs": [float(r) for r in optimizer_lrs or []]},
    }


def config_hash(identity: Mapping[str, Any]) -> str:
    """``"cfg:sha256:" + sha256(canonical JSON)`` (sorted keys, compact separators)."""
    payload = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "cfg:sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()
