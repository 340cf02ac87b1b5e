"""``SCMTrainer``: the one training loop (semantics §7.3), shared by every backend.

The loop is written once here; the backend adapter supplies the step
(:mod:`zpml_core.training.engine`). This module holds ``SCMTrainer``'s construction and
its public methods; their private helpers are mixins next to it: batch preparation
(``_batches``), per-step bookkeeping (``_steps``), validation and calibration arithmetic
(``_evaluation``), the backend choice (``_support``) and checkpoints (``resume``).
The step per backend:

* **PyTorch** — ``model`` is an ``nn.Module`` returning ``(P, Q)`` (or a decoded
  tensor) and ``optimizer`` a ``torch.optim`` optimizer; the step runs eagerly: forward
  and loss under autocast (if enabled), ``backward`` inside
  ``gradient_policy(config.gradient_policy)``.
* **JAX** — ``model=(apply_fn, params)`` with a pure ``apply_fn(params, x) -> (P, Q)`` and
  a params pytree (or a ``zpml_backends.jax_training.FunctionalModel``, or an equinox
  module if equinox is installed), ``optimizer`` an optax ``GradientTransformation``.
  The step is one ``jax.jit`` function (value_and_grad + optax update + metrics); the
  sampled threshold, epoch, step and loss weights are traced arguments, so nothing
  recompiles per step. Trained parameters: ``trainer.params`` / ``trainer.model``.

Per step: draw ``tau ~ U[tau_train_min, tau_train_max]`` from the trainer's seedable
generator, run the step, convert its metrics vector to Python floats (one device→host
transfer), stop with ``FloatingPointError`` naming the step if the loss is not finite
(before the optimizer update is committed), log a ``phase="train"`` record. An update
whose gradients are not all finite (with a finite loss) is skipped on the device —
parameters and optimizer state unchanged — its record gets ``update_skipped = 1.0`` (a
key present only in such records),
``NonFiniteGradientWarning`` names the step, and training continues; the gradient flag
travels in the same metrics vector (no extra host sync).

Data-parallel: with a torch ``DistributedDataParallel`` model on a multi-rank process
group every step computes on the global batch (all ranks' rows; see
``zpml_backends._torch_ddp``): the loss, every train and validation metric and the
gradient are those of one process on the global batch; all ranks draw the same
``tau_train``; an ``ArrayLoader`` serves each rank its shard; only rank 0 calls
``log_hook`` and writes checkpoints. On JAX, ``TrainingConfig(device=mesh)`` with a
multi-device ``jax.sharding.Mesh`` splits each batch over the devices and replicates the
parameters (see ``zpml_backends.jax_training``). A sampler with ``set_epoch`` (torch's
``DistributedSampler``) is given the epoch at the start of each.
"""

from __future__ import annotations

import numbers
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from zpml_core import _xp
from zpml_core.inference import InferenceConfig
from zpml_core.training._evaluation import EvaluationMixin
from zpml_core.training._steps import _END, StepMixin, _InFlight
from zpml_core.training._support import select_training_support
from zpml_core.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_SCHEMA_VERSION,
    CheckpointError,
    read_checkpoint_metadata,
)
from zpml_core.training.config import (
    TrainingConfig,
    check_reiterable,
)
from zpml_core.training.engine import (
    StepArgs,
    TrainingEngine,
)
from zpml_core.training.losscall import LossCaller
from zpml_core.training.metrics import (
    RAW_KEYS,
    STRICT_SUM_KEYS,
    TRAIN_KEYS,
    check_shapes,
    finish_metrics,
)
from zpml_core.training.parallel import set_epoch, setup_data_parallel, shard_loader
from zpml_core.training.resume import CheckpointMixin
from zpml_core.training.sampler import perturbed_threshold

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SCHEMA_VERSION",
    "CheckpointError",
    "SCMTrainer",
    "read_checkpoint_metadata",
    "select_training_support",
]


class SCMTrainer(StepMixin, EvaluationMixin, CheckpointMixin):
    """Reference training loop for SCM models (semantics §7.3; see the module docstring).

    ``fit()`` runs until ``config.max_epochs``, ``fit(epochs=k)`` exactly ``k`` more
    epochs (fewer only if coverage early stopping triggers); both return the train
    metric dicts of this call. ``validate()`` evaluates
    ``config.val_loader`` with the fixed ``tau_eval = (tau_train_min + tau_train_max)/2``
    plus strict inference at ``config.tau_infer`` (the masks production uses).
    ``save_checkpoint``/``load_checkpoint`` use safe formats (no arbitrary pickle).
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        loss_fn: Callable[..., Any],
        train_loader: Iterable[Any],
        config: TrainingConfig | None = None,
        *,
        scheduler: Any = None,
        backend: str | None = None,
    ) -> None:
        cfg = TrainingConfig() if config is None else config
        if not isinstance(cfg, TrainingConfig):
            raise TypeError(f"config must be a TrainingConfig, got {type(cfg).__name__}")
        if not isinstance(train_loader, Iterable):
            raise TypeError(f"train_loader must be an iterable of batches, got {type(train_loader).__name__}")
        check_reiterable("train_loader", train_loader)
        if cfg.val_loader is not None:  # the config may have been mutated after construction
            check_reiterable("val_loader", cfg.val_loader)
        self.config = cfg
        self.loss_fn = loss_fn
        self.loss = LossCaller(loss_fn)
        self.loss.check_controls(cfg)
        self.train_loader = train_loader
        self.support = select_training_support(model, optimizer, backend)
        self.engine: TrainingEngine = self.support.engine(
            model, optimizer, self.loss, cfg, scheduler=scheduler
        )
        self.backend = self.engine.name
        self.inference_config = InferenceConfig(tau_infer=cfg.tau_infer, tau_train=cfg.tau_train_max)
        self.metric_reducers: dict[str, Callable[[list[tuple[float, int]]], float]] = {}
        self.current_epoch = 0
        self.global_step = 0
        self.last_thresholds: list[float] = []
        self.history: list[dict[str, float]] = []
        self.val_history: list[dict[str, float]] = []
        self.tau_infer: float = cfg.tau_infer
        #: True once ``tau_infer`` was calibrated (``calibrate_tau_infer``) or loaded from a
        #: checkpoint that carries a calibrated or explicitly saved one; ``predict`` needs it
        self.tau_infer_calibrated = False
        self._best_metric: float | None = None
        self._bad_epochs = 0
        self._seeded = False
        import numpy as np

        self._tau_rng = np.random.default_rng(cfg.seed)
        self._capability = self.engine.bottom_capability(cfg.tau_infer)
        if self.engine.world_size > 1:
            setup_data_parallel(self.engine, self._tau_rng, self.train_loader, cfg)
        perturbed_threshold(cfg.tau_train_min, cfg.tau_train_max)  # validates the range
        lrs = self.engine.optimizer_lrs()
        # (an optax optimizer does not expose its rate: a non-default value is unused too)
        if cfg.learning_rate != 1e-3 and (not lrs or any(r != cfg.learning_rate for r in lrs)):
            warnings.warn(
                "TrainingConfig.learning_rate is metadata only; the optimizer's learning "
                "rates are authoritative",
                DeprecationWarning,
                stacklevel=2,
            )
        self._check_validation_controls(scheduler)

    def _check_validation_controls(self, scheduler: Any) -> None:
        """Controls that act only through ``val_loader`` must not be set without one."""
        cfg = self.config
        if cfg.val_loader is not None:
            return
        if scheduler is not None and cfg.scheduler_cadence == "per_validation_metric":
            raise ValueError(
                "scheduler_cadence='per_validation_metric' steps the scheduler with the "
                "validation coverage, but TrainingConfig.val_loader is None: the scheduler "
                "would never step; set val_loader or another cadence"
            )
        changed = [
            name
            for name, default in (("coverage_threshold", 0.95), ("coverage_patience", 3))
            if getattr(cfg, name) != default
        ]
        if changed:
            warnings.warn(
                f"TrainingConfig.{' and '.join(changed)} set, but coverage early stopping "
                "needs validation metrics and TrainingConfig.val_loader is None: it will not "
                "stop training",
                UserWarning,
                stacklevel=3,
            )

    # ---------------------------------------------------------------------------------
    # model access

    @property
    def model(self) -> Any:
        """The trained model: the ``nn.Module`` (torch) or ``(apply_fn, params)`` (JAX)."""
        return self.engine.model

    @property
    def params(self) -> Any:
        """Current parameters (JAX params pytree; torch: the module's ``state_dict``)."""
        return getattr(self.engine, "params", None)

    @property
    def optimizer(self) -> Any:
        """The optimizer: the ``torch.optim`` optimizer (torch) or the optax
        ``GradientTransformation`` (JAX; its state is ``trainer.engine.opt_state``)."""
        return getattr(self.engine, "optimizer", None)

    @property
    def scheduler(self) -> Any:
        """The torch LR scheduler passed as ``scheduler=`` (None without one; always None
        on JAX, where a schedule is part of the optax optimizer)."""
        return getattr(self.engine, "scheduler", None)

    @property
    def device(self) -> Any:
        """Where the model runs: a ``torch.device`` (torch) or a ``jax.Device`` (JAX)."""
        eng = self.engine
        return getattr(eng, "resolved_device", getattr(eng, "device", None))

    @property
    def scaler(self) -> Any:
        """The ``torch.amp.GradScaler`` of float16 mixed precision on CUDA; None wherever
        no loss scaling runs (CPU, bfloat16, float32 training, JAX)."""
        return getattr(self.engine, "scaler", None)

    def model_outputs(self, inputs: Any) -> Any:
        """The model's raw outputs (``(P, Q)``) on ``inputs``, in evaluation mode, without
        gradients."""
        return self.engine.predict(self.engine.to_framework(inputs))

    def predict(self, inputs: Any, *, tau_infer: float | None = None) -> Any:
        """Decode the model's ``(P, Q)`` on ``inputs`` strictly at the calibrated
        ``tau_infer``: ``strict_inference(P, Q, config=InferenceConfig(tau_infer,
        tau_train))`` with ``tau_train = config.tau_train_max`` (no gap band if that is
        below ``tau_infer``). Returns the :class:`~zpml_core.InferenceResult`
        ``(decoded, bottom_mask, gap_mask)``: ``decoded = P/Q``, NaN where
        ``|Q| < tau_infer`` or not finite.

        ``tau_infer`` overrides the trainer's. Without it, the trainer's ``tau_infer``
        must have been calibrated (:meth:`calibrate_tau_infer`, or loaded from a
        checkpoint that carries one): otherwise ``RuntimeError``. A model that does not
        return ``(P, Q)`` → ``TypeError``. :meth:`model_outputs` gives the raw outputs.
        """
        from zpml_core.inference import strict_inference

        if tau_infer is None:
            if not self.tau_infer_calibrated:
                raise RuntimeError(
                    "trainer.predict decodes with the calibrated tau_infer, but none was "
                    "calibrated: call trainer.calibrate_tau_infer(held_out_batches) first, "
                    "load a checkpoint that carries one, or pass predict(x, tau_infer=...); "
                    "trainer.model_outputs(x) gives the raw (P, Q)"
                )
            tau = self.tau_infer
        else:
            checked = _xp.check_real("tau_infer", tau_infer, gt=0.0)
            assert checked is not None
            tau = checked
        out = self.model_outputs(inputs)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(
                f"trainer.predict needs a model returning (P, Q); it returned {type(out).__name__}"
            )
        tt = self.config.tau_train_max
        cfg = InferenceConfig(tau_infer=tau, tau_train=tt if tt >= tau else None)
        return strict_inference(out[0], out[1], config=cfg)

    def train_step(self, batch: Any) -> dict[str, float]:
        """One training step on ``batch`` outside :meth:`fit` — forward, loss, backward and
        the optimizer update, exactly as a step of ``fit`` (sampled ``tau_train``,
        gradient policy, mixed precision, non-finite checks, metric log) — and return its
        train metrics (``loss``, ``coverage``, ``tau_train``, ``bottom_frac``,
        ``denom_abs_*``). Every call updates the parameters
        (``gradient_accumulation_steps`` groups the steps of :meth:`fit` only); the
        epoch is ``current_epoch``; ``global_step`` advances by one.
        """
        self._seed_once()
        engine = self.engine
        engine.set_training(True)
        engine.begin_fit()
        prepared = self._prepare(batch)
        self.global_step += 1
        tau = self._draw_tau()
        epoch = self.current_epoch
        args = StepArgs(tau, epoch, self.global_step, self.config.weights_at(epoch))
        try:
            vec = engine.train_step(prepared, args, update=True, group_size=1)
        except BaseException:
            self.global_step -= 1
            self.last_thresholds.pop()
            raise
        logs: list[dict[str, float]] = []
        rec = _InFlight(vec, tau, self.global_step, epoch, 0, True)
        self._finalize(rec, engine.to_host(vec), logs)
        return logs[0]

    # ---------------------------------------------------------------------------------
    # the loop (per-step bookkeeping: zpml_core.training._steps)

    def fit(self, epochs: int | None = None) -> list[dict[str, float]]:
        """Train: ``fit()`` runs the epochs ``current_epoch .. config.max_epochs - 1``;
        ``fit(epochs=k)`` runs exactly ``k`` more epochs, whatever ``max_epochs`` says
        (``max_epochs`` bounds only ``fit()`` without argument). Coverage early stopping
        may end either sooner.

        ``fit()`` once ``current_epoch >= max_epochs`` runs nothing, returns ``[]`` and
        warns (``UserWarning``). Returns this call's train metric dicts (one per batch).
        Raises ``ValueError`` naming the epoch if ``train_loader`` (or a configured
        ``val_loader``) yields no batch in an epoch, ``ValueError`` on the first step if
        the targets' shape does not match the model's outputs (see
        :mod:`zpml_core.training.losscall`), and ``FloatingPointError`` naming the global
        step and epoch if a loss is not finite: that step's update is not applied, and the
        parameters and optimizer state are those from before the step. A step with a
        finite loss but non-finite gradients is skipped instead (no update, a
        ``NonFiniteGradientWarning``, ``update_skipped: 1.0`` in its train record) and
        training continues.
        """
        cfg = self.config
        if epochs is not None:
            if _xp.is_bool_scalar(epochs) or not isinstance(epochs, numbers.Integral):
                raise TypeError(f"epochs must be an int >= 1 or None, got {type(epochs).__name__}")
            if epochs < 1:
                raise ValueError(f"epochs must be an int >= 1 or None, got {epochs!r}")
            end = self.current_epoch + int(epochs)
        elif self.current_epoch >= cfg.max_epochs:
            warnings.warn(
                f"fit() ran no epoch: the trainer is at epoch {self.current_epoch} and "
                f"config.max_epochs={cfg.max_epochs} is reached; call fit(epochs=k) to train "
                "k more epochs",
                UserWarning,
                stacklevel=2,
            )
            return []
        else:
            end = cfg.max_epochs
        self._seed_once()
        engine = self.engine
        engine.set_training(True)
        engine.begin_fit()
        accumulation = cfg.gradient_accumulation_steps
        depth = max(1, int(engine.pipeline_depth))
        logs: list[dict[str, float]] = []
        inflight: deque[_InFlight] = deque()
        epoch = self.current_epoch
        for epoch in range(self.current_epoch, end):
            self.current_epoch = epoch
            weights = cfg.weights_at(epoch)
            n = 0
            set_epoch(self.train_loader, epoch)
            it = iter(self.train_loader)
            batch = next(it, _END)
            index = 0
            while batch is not _END:
                started = False
                try:
                    nxt = next(it, _END)
                    prepared = self._prepare(batch)
                    self.global_step += 1
                    tau = self._draw_tau()
                    started = True
                    update = n + 1 >= accumulation or nxt is _END
                    args = StepArgs(tau, epoch, self.global_step, weights)
                    vec = engine.train_step(prepared, args, update=update, group_size=n + 1)
                except BaseException:
                    # this step did not run (bad batch, shape error at trace time, ...):
                    # undo its counters; the steps before it stand (checked and logged)
                    if started:
                        self.global_step -= 1
                        self.last_thresholds.pop()
                    self._drain(inflight, logs)
                    raise
                n += 1
                inflight.append(_InFlight(vec, tau, self.global_step, epoch, index, update))
                if update:
                    n = 0
                if len(inflight) >= depth:
                    # the older half: the newer steps keep the device busy meanwhile
                    self._drain(inflight, logs, count=(depth + 1) // 2)
                batch = nxt
                index += 1
            self._drain(inflight, logs)
            if index == 0:
                raise ValueError(
                    f"train_loader yielded no batches in epoch {epoch}; an empty loader "
                    "(or one exhausted after its first pass) cannot train"
                )
            v = self.validate()
            if v is None and cfg.val_loader is not None:
                raise ValueError(
                    f"val_loader yielded no batches after epoch {epoch}: validation, "
                    "early stopping and validation-metric schedules would silently not run"
                )
            if v:
                e = {"val_" + k: val for k, val in v.items()}
                e["epoch"] = float(epoch)
                self.val_history.append(e)
                self._log(e, phase="eval", step=self.global_step, epoch=epoch)
                if cfg.scheduler_cadence == "per_validation_metric":
                    engine.scheduler_step(v["coverage"])
            if cfg.scheduler_cadence == "per_epoch":
                engine.scheduler_step()
            if self._early_stop():
                break
        self.current_epoch = epoch + 1
        return logs

    # ---------------------------------------------------------------------------------
    # validation

    def validate(self, loader: Iterable[Any] | None = None) -> dict[str, float] | None:
        """Metrics over ``loader`` (default ``config.val_loader``); None if there is none
        or it is empty.

        Parity metrics (loss, coverage, bottom_frac, tau_eval, denom_abs_*) are
        sample-weighted means of the batch values (or ``metric_reducers[key]``). Strict
        metrics decode with ``strict_inference(P, Q, tau_infer)``: ``strict_coverage``,
        ``strict_bottom_frac``, ``gap_frac`` (per sample), ``accepted_frac`` (accepted
        share of finite targets), ``rmse_accepted`` (over accepted finite-target elements)
        and ``false_finite_frac`` (bottom targets decoded as finite; NaN without any).
        A ``metric_reducers`` key that is not one of the reduced metrics (``loss``,
        ``coverage``, ``bottom_frac``, ``denom_abs_min/mean/available``) → ``ValueError``.
        """
        unknown = [k for k in self.metric_reducers if k not in TRAIN_KEYS]
        if unknown:
            raise ValueError(
                f"metric_reducers has the key {unknown[0]!r}, which is not a reduced "
                f"validation metric; use one of {', '.join(map(repr, TRAIN_KEYS))}"
            )
        loader = self.config.val_loader if loader is None else loader
        shard_loader(loader, self.engine)
        if loader is None:
            return None
        tau = self.config.tau_eval
        args = StepArgs(tau, self.current_epoch, self.global_step, self.config.weights_at(self.current_epoch))
        engine = self.engine
        engine.set_training(False)
        k = len(RAW_KEYS)
        per_key: dict[str, list[tuple[float, int]]] = {key: [] for key in TRAIN_KEYS}
        sums = [0.0] * len(STRICT_SUM_KEYS)
        try:
            for batch in loader:
                prepared = self._prepare(batch)
                values = engine.to_host(engine.eval_step(prepared, args))
                count = engine.sample_count(prepared.n)  # (DDP: of the global batch)
                for key, val in zip(TRAIN_KEYS, finish_metrics(values[:k]), strict=True):
                    per_key[key].append((val, count))
                for i, val in enumerate(values[k:]):
                    sums[i] += val
        finally:
            engine.set_training(True)
        if not per_key["loss"]:
            return None
        return self._validation_metrics(per_key, sums, tau)

    # ---------------------------------------------------------------------------------
    # export helpers

    def calibrate_tau_infer(self, loader: Iterable[Any], **kwargs: Any) -> Any:
        """Pick ``tau_infer`` on held-out batches (see
        :func:`zpml_core.training.calibration.calibrate_tau_infer`), store it as
        ``self.tau_infer`` (written to checkpoint metadata) and return the report.

        Every batch's targets must have the shape of the model's ``P`` and ``Q`` ``P``'s
        leading shape (``ValueError`` naming the batch and the shapes otherwise). With
        semantic targets, samples with a ``missing`` label are left out. The candidates
        span the observed ``|Q|`` (not capped at ``tau_train_max``: a model whose
        denominator settles at ``|Q| ~ 1e-2`` on the singular set gets a threshold
        there); pass ``tau_train=`` to cap them. A ``tau_infer`` above
        ``tau_train_max`` decodes without a gap band (:meth:`predict`, checkpoints).

        Data-parallel (torch DDP): every rank calls it with its shard (an ``ArrayLoader``
        is sharded by rank); the samples of all ranks are gathered and every rank gets
        the same ``tau_infer``."""
        import numpy as np

        from zpml_core.training.calibration import calibrate_tau_infer

        shard_loader(loader, self.engine)
        P_all, Q_all, Y_all = [], [], []
        for i, batch in enumerate(loader):
            prepared = self._prepare(batch)
            out = self.engine.predict(prepared.inputs)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("calibrate_tau_infer needs a model returning (P, Q)")
            y = prepared.semantic.Y_n if prepared.semantic is not None else prepared.targets
            check_shapes(out[0], out[1], [(f"the targets of batch {i}", y)],
                         p_name=f"the model's P on batch {i}", q_name=f"the model's Q on batch {i}")
            p, q, y = self._calibration_rows(prepared, out)
            P_all.append(p)
            Q_all.append(q)
            Y_all.append(y)
        arrays = [np.concatenate(a) if a else None for a in (P_all, Q_all, Y_all)]
        if self.engine.world_size > 1:  # every rank's samples, in rank order
            arrays = [self.engine.gather_host(a) for a in arrays]
        P, Q, Y = arrays
        if P is None or Q is None or Y is None:
            raise ValueError("calibrate_tau_infer: loader yielded no batches")
        report = calibrate_tau_infer(P, Q, Y, **kwargs)
        self.tau_infer = report.tau_infer
        self.tau_infer_calibrated = True
        return report

