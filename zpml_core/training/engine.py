"""The contract between the one training loop (``SCMTrainer``) and a backend's step.

The loop — tau sampling, batch preparation, gradient-accumulation bookkeeping, the NaN
guard, logging, validation aggregation, early stopping, checkpoint metadata — lives in
``zpml_core.training.trainer`` and is written once. A backend adapter contributes only
what needs its framework (design rule 3): forward + loss + gradients + optimizer
update, device moves, serialisation of parameters and optimizer state.

An adapter exposes it through ``Backend.training()`` returning a :class:`TrainingSupport`;
``SCMTrainer`` asks each autodiff backend whose framework is imported whether it
``claims`` the ``(model, optimizer)`` pair. The built-in ones are
``zpml_backends.torch_training`` (``nn.Module`` + ``torch.optim``) and
``zpml_backends.jax_training`` (``(apply_fn, params)`` + optax).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any, NamedTuple

from zpml_core._xp import Array, Namespace
from zpml_core.projective import SemanticTargets, lift_targets

__all__ = [
    "LoadedCheckpoint",
    "NonFiniteGradientWarning",
    "PreparedBatch",
    "TrainingEngine",
    "TrainingSupport",
    "lifted_targets",
]


class NonFiniteGradientWarning(RuntimeWarning):
    """An optimizer update was skipped because its gradients were not all finite.

    ``SCMTrainer`` checks the gradients of every optimizer update (the accumulated,
    averaged gradients of the group) on the device, inside the step. If any element is
    NaN or ±inf while the loss is finite, the update is not applied — parameters and
    optimizer state keep their values, the group's gradients are discarded — the train
    record of that step gets ``update_skipped = 1.0`` (a key present only in such
    records), this warning names the step, and training continues. (A non-finite *loss* stops training with ``FloatingPointError``.)
    """


class PreparedBatch(NamedTuple):
    """A batch moved to the framework/device; targets not yet lifted.

    ``targets`` are the raw targets (None for ``(inputs, SemanticTargets)`` batches),
    ``semantic`` the semantic targets if the batch has them, ``n`` the sample count.
    """

    inputs: Any
    targets: Any
    semantic: SemanticTargets | None
    n: int


def lifted_targets(targets: Array | None, semantic: SemanticTargets | None) -> tuple[Array, Array]:
    """``(Y_n, Y_d)`` of a prepared batch (traceable: steps call it inside jit)."""
    if semantic is not None:
        return semantic.Y_n, semantic.Y_d
    assert targets is not None
    return lift_targets(targets)


class LoadedCheckpoint(NamedTuple):
    """A checkpoint read and parsed by an engine, not yet applied.

    ``state`` is backend-specific. :meth:`TrainingEngine.check_checkpoint` validates it
    against the live model/optimizer; :meth:`TrainingEngine.apply_checkpoint` then
    installs it (and cannot fail on a checked checkpoint).
    """

    path: str
    metadata: dict[str, Any]
    state: Any
    weights_only: bool


class StepArgs(NamedTuple):
    """Per-step values the loop hands the backend step (all host-side Python values)."""

    tau: float
    epoch: int
    global_step: int
    loss_weights: Mapping[str, float] | None


class TrainingEngine:
    """One trainer's backend state and compiled/eager steps. Subclasses implement all."""

    #: backend name ("torch", "jax", ...)
    name: str = "generic"
    #: array-API namespace of the framework's arrays (for the shared metric kernels)
    xp: Namespace = None
    #: data-parallel position: this process's rank among ``world_size`` processes that
    #: train one model together (torch DDP); 0 of 1 otherwise. Only rank 0 logs and
    #: writes checkpoints
    rank: int = 0
    world_size: int = 1

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (identity with one process)."""
        return obj

    def gather_host(self, a: Any) -> Any:
        """Every rank's host (numpy) array ``a`` (None: nothing from this rank)
        concatenated along axis 0 in rank order; None if no rank has one (``a`` itself
        with one process)."""
        return a

    def sample_count(self, n: int) -> int:
        """Samples of the last step's global batch, given this rank's ``n`` (the step's
        metrics are over the global batch)."""
        return n

    # -- data ---------------------------------------------------------------------------
    def to_framework(self, a: Any) -> Any:
        """A batch element (numpy or framework array) → framework array on the device."""
        raise NotImplementedError

    # -- steps --------------------------------------------------------------------------
    #: how many train steps may be in flight before the loop reads metrics back: 1 =
    #: synchronous (eager torch); larger values let a jitted backend run ahead (JAX):
    #: the loop then reads the older half of the in-flight steps (one host transfer per
    #: :meth:`to_host_many` call) while the newer half keeps the device busy
    pipeline_depth: int = 1

    def train_step(self, batch: PreparedBatch, args: StepArgs, *, update: bool, group_size: int) -> Array:
        """Forward, loss, gradients (accumulated), and — if ``update`` — the optimizer
        update on the gradients averaged over ``group_size`` batches. Returns the
        ``RAW_KEYS`` metrics vector of the batch, computed before the update, followed by
        one ``grads_nonfinite`` entry: exactly 0.0 if every element of the update's
        gradients is finite (always 0.0 for a step that applies no update), anything
        else (1.0, NaN) if not. It is computed on the device and travels with the
        metrics (no extra host sync).

        An update whose gradients are not finite is never applied: pipelined engines
        keep the old parameters/optimizer state on device (a select inside the step);
        eager engines skip it in :meth:`finalize`.

        The loop calls :meth:`finalize` for every step, in order, once it has read the
        step's metrics. ``finalize(True, grads_finite)`` (``grads_finite`` is
        ``grads_nonfinite == 0``): the step stands (its update is applied if the
        gradients were finite). ``finalize(False, ...)`` (its loss was not
        finite): the engine must be left with the parameters and optimizer state from
        before that step, with any later in-flight step without effect — eager engines
        apply updates only in ``finalize``; pipelined engines either restore a state
        kept from before that step or (JAX) never change it: a non-finite loss freezes
        the state on the device for that step and every later one."""
        raise NotImplementedError

    def finalize(self, ok: bool, grads_finite: bool = True) -> None:
        raise NotImplementedError

    def state_note(self) -> str:
        """After a rolled-back step: a true remark about the restored model state
        (e.g. "some parameters are not finite"), or "". May sync with the device (only
        called on the error path)."""
        return ""

    def eval_step(self, batch: PreparedBatch, args: StepArgs) -> Array:
        """``RAW_KEYS`` metrics followed by ``STRICT_SUM_KEYS`` sums, no gradients."""
        raise NotImplementedError

    def predict(self, inputs: Any) -> Any:
        """Model outputs in evaluation mode without gradients."""
        raise NotImplementedError

    def to_host(self, vec: Array) -> list[float]:
        """One device→host transfer of a metrics vector."""
        raise NotImplementedError

    def to_host_many(self, vecs: list[Array]) -> list[list[float]]:
        """Several metrics vectors with as few synchronisations as the framework allows."""
        return [self.to_host(v) for v in vecs]

    # -- mode, randomness, schedules ----------------------------------------------------
    def set_training(self, mode: bool) -> None:
        pass

    def begin_fit(self) -> None:
        """Called at the start of every ``fit()`` (e.g. zero stale gradients)."""

    def seed(self, seed: int) -> None:
        """Seed the framework's RNG used by the model / data loaders."""

    def scheduler_step(self, metric: float | None = None) -> None:
        pass

    def optimizer_lrs(self) -> list[float]:
        return []

    def bottom_capability(self, tau_infer: float) -> str | None:
        return None

    # -- checkpoints --------------------------------------------------------------------
    def framework_version(self) -> str:
        return "unknown"

    def save(self, stream: IO[bytes], metadata: Mapping[str, Any], *, include_optimizer: bool = True) -> None:
        """Write parameters, optimizer state and ``metadata`` as ONE zip container to the
        write-only ``stream`` (sealing and atomic replacement are done by the caller)."""
        raise NotImplementedError

    def read_checkpoint(self, stream: IO[bytes], path: str, *, weights_only: bool = False) -> LoadedCheckpoint:
        """Parse a (seal-verified) checkpoint from ``stream`` without modifying anything.
        Unparsable content → ``CheckpointError`` naming ``path``."""
        raise NotImplementedError

    def check_checkpoint(self, ckpt: LoadedCheckpoint) -> None:
        """Validate the parsed state against the live model and optimizer (keys, shapes,
        dtypes); ``CheckpointError`` naming the file on any mismatch. Modifies nothing."""
        raise NotImplementedError

    def apply_checkpoint(self, ckpt: LoadedCheckpoint) -> None:
        """Install a checked checkpoint (parameters; unless ``weights_only`` also
        optimizer/scheduler state and the framework RNG)."""
        raise NotImplementedError

    @property
    def model(self) -> Any:
        raise NotImplementedError


class TrainingSupport:
    """What ``Backend.training()`` returns: model detection and engine construction."""

    name: str = "generic"

    def claims(self, model: Any, optimizer: Any) -> bool:
        raise NotImplementedError

    def engine(
        self,
        model: Any,
        optimizer: Any,
        loss: Any,
        config: Any,
        *,
        scheduler: Any = None,
    ) -> TrainingEngine:
        raise NotImplementedError

    def read_metadata(self, path: str) -> dict[str, Any]:
        from zpml_core.training.checkpoint import read_checkpoint_metadata

        return read_checkpoint_metadata(path)
