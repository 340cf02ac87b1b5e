"""Training: one loop (``SCMTrainer``) for every autodiff backend.

``import zpml_core.training`` imports no array framework; the backend step is loaded
when a trainer is built for a torch ``nn.Module`` or a JAX ``(apply_fn, params)`` model.
"""

# lift_targets_{jax,numpy,torch}: zeroproofml's names, deprecated aliases of lift_targets
from zpml_core._compat_names import lift_targets_jax as lift_targets_jax
from zpml_core._compat_names import lift_targets_numpy as lift_targets_numpy
from zpml_core._compat_names import lift_targets_torch as lift_targets_torch
from zpml_core.metrics.tau_sweep import tau_infer_sweep_from_q_abs, write_tau_infer_sweep
from zpml_core.training.calibration import TauCalibration, calibrate_tau_infer, evaluate_tau
from zpml_core.training.checkpoint import CheckpointError, load_checkpoint_mapping
from zpml_core.training.config import SCHEDULER_CADENCES, TrainingConfig
from zpml_core.training.curriculum import LinearRamp, LossWeightsCurriculum
from zpml_core.training.data import ArrayLoader
from zpml_core.training.engine import NonFiniteGradientWarning
from zpml_core.training.sampler import (
    AdaptiveSampler,
    AdaptiveSamplerConfig,
    ema_update,
    perturbed_threshold,
    sampling_weights,
    singularity_prob,
)
from zpml_core.training.targets import SemanticTargets, lift_semantic_targets, lift_targets
from zpml_core.training.trainer import SCMTrainer, read_checkpoint_metadata

__all__ = [
    "SCHEDULER_CADENCES",
    "AdaptiveSampler",
    "AdaptiveSamplerConfig",
    "ArrayLoader",
    "CheckpointError",
    "LinearRamp",
    "LossWeightsCurriculum",
    "NonFiniteGradientWarning",
    "SCMTrainer",
    "SemanticTargets",
    "TauCalibration",
    "TrainingConfig",
    "calibrate_tau_infer",
    "ema_update",
    "evaluate_tau",
    "lift_semantic_targets",
    "lift_targets",
    "load_checkpoint_mapping",
    "perturbed_threshold",
    "read_checkpoint_metadata",
    "sampling_weights",
    "singularity_prob",
    "tau_infer_sweep_from_q_abs",
    "write_tau_infer_sweep",
]
