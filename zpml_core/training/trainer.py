"""``SCMTrainer``: the one training loop (SPEC §7.3), shared by every backend.

The loop is written once here; the backend adapter supplies the step
(:mod:`zpml_core.training.engine`):

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
(before the optimizer update is committed), log a ``phase="train"`` record.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from zpml_core import _xp
from zpml_core.inference import InferenceConfig
from zpml_core.projective import SemanticTargets, lift_semantic_targets
from zpml_core.training.config import TrainingConfig, config_hash, config_identity
from zpml_core.training.engine import PreparedBatch, StepArgs, TrainingEngine, TrainingSupport
from zpml_core.training.losscall import LossCaller
from zpml_core.training.metrics import RAW_KEYS, STRICT_SUM_KEYS, TRAIN_KEYS, finish_metrics
from zpml_core.training.sampler import perturbed_threshold
from zpml_core.utils.logging import metric_log_record

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_SCHEMA_VERSION", "SCMTrainer", "select_training_support"]

CHECKPOINT_FORMAT = "zpml_core.checkpoint"
CHECKPOINT_SCHEMA_VERSION = 2
_END = object()


class _InFlight(NamedTuple):
    vec: Any
    tau: float
    step: int
    epoch: int
    batch: int
    update: bool


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


def _versions(engine: TrainingEngine) -> dict[str, str]:
    import numpy as np

    import zpml_core

    return {
        "zpml_core": zpml_core.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        engine.name: engine.framework_version(),
    }


class SCMTrainer:
    """Reference training loop for SCM models (SPEC §7.3; see the module docstring).

    ``fit(epochs=None)`` runs until ``config.max_epochs`` (or at most ``epochs`` more
    epochs) and returns the train metric dicts of this call. ``validate()`` evaluates
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
        self.config = cfg
        self.loss_fn = loss_fn
        self.loss = LossCaller(loss_fn)
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
        self._best_metric: float | None = None
        self._bad_epochs = 0
        self._seeded = False
        import numpy as np

        self._tau_rng = np.random.default_rng(cfg.seed)
        self._capability = self.engine.bottom_capability(cfg.tau_infer)
        perturbed_threshold(cfg.tau_train_min, cfg.tau_train_max)  # validates the range
        lrs = self.engine.optimizer_lrs()
        if cfg.learning_rate != 1e-3 and lrs and any(r != cfg.learning_rate for r in lrs):
            warnings.warn(
                "TrainingConfig.learning_rate is metadata only; the optimizer's learning "
                "rates are authoritative",
                DeprecationWarning,
                stacklevel=2,
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

    def predict(self, inputs: Any) -> Any:
        """Model outputs in evaluation mode, without gradients."""
        return self.engine.predict(self.engine.to_framework(inputs))

    # ---------------------------------------------------------------------------------
    # batches

    def _prepare(self, batch: Any) -> PreparedBatch:
        # fast path: (inputs, targets) of plain arrays and a model without a declared
        # bottom capability (the hot loop of a jitted step cannot afford much Python)
        if (
            type(batch) in (tuple, list)
            and len(batch) == 2
            and self._capability is None
            and not isinstance(batch[1], SemanticTargets)
        ):
            fw = self.engine.to_framework
            inputs = fw(batch[0])
            shape: tuple[Any, ...] = tuple(getattr(inputs, "shape", ()))
            return PreparedBatch(inputs, fw(batch[1]), None, int(shape[0]) if len(shape) else 1)
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

    # ---------------------------------------------------------------------------------
    # the loop

    def _draw_tau(self) -> float:
        lo, hi = self.config.tau_train_min, self.config.tau_train_max
        # same draw as perturbed_threshold(lo, hi, rng=...) without re-validating per step
        tau = lo if lo == hi else float(self._tau_rng.uniform(lo, hi))
        self.last_thresholds.append(tau)
        return tau

    def _log(self, metrics: Mapping[str, Any], *, phase: str, step: int, epoch: int) -> None:
        hook = self.config.log_hook
        if hook is not None:
            hook(metric_log_record(metrics, phase=phase, step=step, epoch=epoch))

    def _seed_once(self) -> None:
        seed = self.config.seed
        if seed is None or self._seeded or self.global_step:
            return
        self._seeded = True
        self.engine.seed(seed)
        loader = self.train_loader
        if hasattr(loader, "set_seed") and not getattr(loader, "seeded", True):
            loader.set_seed(seed)

    def fit(self, epochs: int | None = None) -> list[dict[str, float]]:
        """Train until ``config.max_epochs`` (or for at most ``epochs`` more epochs).

        Returns this call's train metric dicts (one per batch). Raises
        ``FloatingPointError`` naming the global step and epoch if a loss is not finite;
        the model and optimizer are left as they were before that step.
        """
        cfg = self.config
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"epochs must be an int >= 1 or None, got {epochs!r}")
        if self.current_epoch >= cfg.max_epochs:
            return []
        end = cfg.max_epochs if epochs is None else min(cfg.max_epochs, self.current_epoch + epochs)
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
            it = iter(self.train_loader)
            batch = next(it, _END)
            index = 0
            while batch is not _END:
                nxt = next(it, _END)
                prepared = self._prepare(batch)
                self.global_step += 1
                tau = self._draw_tau()
                n += 1
                update = n >= accumulation or nxt is _END
                args = StepArgs(tau, epoch, self.global_step, weights)
                vec = engine.train_step(prepared, args, update=update, group_size=n)
                inflight.append(_InFlight(vec, tau, self.global_step, epoch, index, update))
                if update:
                    n = 0
                if len(inflight) >= depth:
                    self._drain(inflight, logs)
                batch = nxt
                index += 1
            self._drain(inflight, logs)
            v = self.validate()
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

    def _drain(self, inflight: deque[_InFlight], logs: list[dict[str, float]]) -> None:
        """Read the in-flight steps' metrics (one host transfer), check, log, in order."""
        if not inflight:
            return
        engine = self.engine
        recs = list(inflight)
        inflight.clear()
        all_values = engine.to_host_many([r.vec for r in recs])
        for rec, values in zip(recs, all_values, strict=True):
            self._finalize(rec, values, logs)

    def _finalize(self, rec: _InFlight, values: list[float], logs: list[dict[str, float]]) -> None:
        engine = self.engine
        loss = values[0]
        if not math.isfinite(loss):
            engine.finalize(False)
            self.global_step = rec.step - 1
            raise FloatingPointError(
                f"non-finite loss ({loss!r}) at step {rec.step} (epoch {rec.epoch}, batch "
                f"{rec.batch} of the epoch, tau_train={rec.tau:g}); training stopped and the "
                "model keeps the parameters from before this step"
            )
        engine.finalize(True)
        cadence = self.config.scheduler_cadence
        if rec.update and cadence == "per_optimizer_update":
            engine.scheduler_step()
        values = finish_metrics(values)
        m = {
            "loss": loss,
            "coverage": values[1],
            "tau_train": rec.tau,
            "bottom_frac": values[2],
            "denom_abs_min": values[3],
            "denom_abs_mean": values[4],
            "denom_abs_available": values[5],
        }
        logs.append(m)
        self.history.append(m)
        self._log(m, phase="train", step=rec.step, epoch=rec.epoch)
        if cadence == "per_batch":
            engine.scheduler_step()

    def _early_stop(self) -> bool:
        if not self.val_history:
            return False
        c = self.val_history[-1]["val_coverage"]
        if self._best_metric is None or c > self._best_metric:
            self._best_metric = c
        if c < self.config.coverage_threshold:
            self._bad_epochs += 1
        else:
            self._bad_epochs = 0
        return self._bad_epochs >= self.config.coverage_patience

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
        """
        loader = self.config.val_loader if loader is None else loader
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
                for key, val in zip(TRAIN_KEYS, finish_metrics(values[:k]), strict=True):
                    per_key[key].append((val, prepared.n))
                for i, val in enumerate(values[k:]):
                    sums[i] += val
        finally:
            engine.set_training(True)
        if not per_key["loss"]:
            return None
        out: dict[str, float] = {}
        for key in TRAIN_KEYS:
            out[key] = self._reduce(key, per_key[key])
        out = {
            "loss": out["loss"],
            "coverage": out["coverage"],
            "tau_eval": tau,
            "bottom_frac": out["bottom_frac"],
            "denom_abs_min": out["denom_abs_min"],
            "denom_abs_mean": out["denom_abs_mean"],
            "denom_abs_available": out["denom_abs_available"],
        }
        s = dict(zip(STRICT_SUM_KEYS, sums, strict=True))
        nan = float("nan")
        n = s["n_samples"]
        out["strict_coverage"] = 1.0 - s["n_strict_bottom"] / n if n else nan
        out["strict_bottom_frac"] = s["n_strict_bottom"] / n if n else nan
        out["gap_frac"] = s["n_gap"] / n if n else nan
        out["accepted_frac"] = (
            s["n_accepted_finite"] / s["n_finite_targets"] if s["n_finite_targets"] else nan
        )
        out["rmse_accepted"] = (
            math.sqrt(s["sse_accepted_finite"] / s["n_accepted_finite"]) if s["n_accepted_finite"] else nan
        )
        out["false_finite_frac"] = (
            s["n_false_finite"] / s["n_bottom_targets"] if s["n_bottom_targets"] else nan
        )
        return out

    def _reduce(self, key: str, items: list[tuple[float, int]]) -> float:
        reducer = self.metric_reducers.get(key)
        if reducer is not None:
            return float(reducer(items))
        total = sum(w for _, w in items)
        if total == 0:
            return float("nan")
        return sum(v * w for v, w in items) / total

    # ---------------------------------------------------------------------------------
    # checkpoints

    def _identity(self) -> dict[str, Any]:
        return config_identity(self.config, optimizer_lrs=self.engine.optimizer_lrs())

    def checkpoint_metadata(self, *, tau_infer: float | None = None) -> dict[str, Any]:
        """JSON-safe metadata written into every checkpoint."""
        identity = self._identity()
        policy = self.config.gradient_policy
        loader_state = None
        if hasattr(self.train_loader, "state_dict") and hasattr(self.train_loader, "load_state_dict"):
            try:
                loader_state = json.loads(json.dumps(self.train_loader.state_dict()))
            except (TypeError, ValueError):
                loader_state = None
        return {
            "format": CHECKPOINT_FORMAT,
            "schema_version": CHECKPOINT_SCHEMA_VERSION,
            "backend": self.engine.name,
            "versions": _versions(self.engine),
            "tau_train_min": self.config.tau_train_min,
            "tau_train_max": self.config.tau_train_max,
            "tau_infer": float(self.tau_infer if tau_infer is None else tau_infer),
            "gradient_policy": None if policy is None else str(policy.value),
            "mixed_precision": self.config.amp_enabled,
            "config_identity": identity,
            "config_hash": config_hash(identity),
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "best_metric": self._best_metric,
            "coverage_bad_epochs": self._bad_epochs,
            "seeded": self._seeded,
            "tau_rng_state": self._tau_rng.bit_generator.state,
            "loader_state": loader_state,
        }

    def save_checkpoint(self, path: str | os.PathLike[str], *, tau_infer: float | None = None,
                        metadata: Mapping[str, Any] | None = None) -> None:
        """Write model + optimizer state and metadata (atomically: temp file + rename).

        torch: ``torch.save`` of state dicts/tensors, read back with
        ``torch.load(weights_only=True)``. JAX: ``.npz`` of the parameter and optimizer
        leaves plus JSON metadata, read back with ``allow_pickle=False``. ``epoch`` is the
        next epoch to run: checkpoints resume at epoch boundaries.
        """
        meta = self.checkpoint_metadata(tau_infer=tau_infer)
        if metadata:
            meta["user"] = json.loads(json.dumps(dict(metadata)))
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="zpml_ckpt_", suffix=".tmp", dir=directory)
        os.close(fd)
        try:
            self.engine.save(tmp, meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Restore a checkpoint written by :meth:`save_checkpoint` on the same backend.

        Restores parameters, optimizer state, epoch/step counters, early-stopping state,
        the tau generator, the framework RNG and a zpml loader's order state. A schema
        newer than this version → ``ValueError``; another backend → ``ValueError``; a
        different config hash → ``RuntimeWarning``. Returns the metadata.
        """
        meta = self.engine.load(os.fspath(path))
        self._restore(meta)
        return meta

    def _restore(self, meta: Mapping[str, Any]) -> None:
        schema = meta.get("schema_version")
        if not isinstance(schema, int) or schema > CHECKPOINT_SCHEMA_VERSION:
            raise ValueError(f"unsupported checkpoint schema_version {schema!r}")
        if meta.get("backend") != self.engine.name:
            raise ValueError(
                f"checkpoint was written by the {meta.get('backend')!r} backend, this trainer "
                f"runs on {self.engine.name!r}"
            )
        self.current_epoch = int(meta["epoch"])
        self.global_step = int(meta["global_step"])
        self._best_metric = meta.get("best_metric")
        self._bad_epochs = int(meta.get("coverage_bad_epochs", 0))
        self._seeded = bool(meta.get("seeded", False)) or self.global_step > 0
        if meta.get("tau_rng_state") is not None:
            self._tau_rng.bit_generator.state = meta["tau_rng_state"]
        state = meta.get("loader_state")
        if state is not None and hasattr(self.train_loader, "load_state_dict"):
            self.train_loader.load_state_dict(state)
        if meta.get("tau_infer") is not None:
            self.tau_infer = float(meta["tau_infer"])
        expected = config_hash(self._identity())
        if meta.get("config_hash") != expected:
            warnings.warn(
                "checkpoint config_hash differs from this trainer's configuration "
                f"({meta.get('config_hash')} vs {expected}); resuming anyway",
                RuntimeWarning,
                stacklevel=3,
            )

    def load_model_state(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Load only the model parameters of a checkpoint; returns its metadata."""
        return self.engine.load(os.fspath(path), weights_only=True)

    # ---------------------------------------------------------------------------------
    # export helpers

    def calibrate_tau_infer(self, loader: Iterable[Any], **kwargs: Any) -> Any:
        """Pick ``tau_infer`` on held-out batches (see
        :func:`zpml_core.training.calibration.calibrate_tau_infer`), store it as
        ``self.tau_infer`` (written to checkpoint metadata) and return the report."""
        import numpy as np

        from zpml_core.training.calibration import calibrate_tau_infer

        P_all, Q_all, Y_all = [], [], []
        for batch in loader:
            prepared = self._prepare(batch)
            out = self.engine.predict(prepared.inputs)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("calibrate_tau_infer needs a model returning (P, Q)")
            be = self._np
            P_all.append(be(out[0]))
            Q_all.append(be(out[1]))
            if prepared.semantic is not None:
                yn, yd = be(prepared.semantic.Y_n), be(prepared.semantic.Y_d)
                Y_all.append(np.where(yd != 0, yn / np.where(yd != 0, yd, 1), np.inf))
            else:
                Y_all.append(be(prepared.targets))
        kwargs.setdefault("tau_train", self.config.tau_train_max)
        report = calibrate_tau_infer(
            np.concatenate(P_all), np.concatenate(Q_all), np.concatenate(Y_all), **kwargs
        )
        self.tau_infer = report.tau_infer
        return report

    def _np(self, a: Any) -> Any:
        import numpy as np

        from zpml_core._registry import get_backend

        return np.asarray(get_backend(_xp.namespace(a)).to_numpy(a))


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of a checkpoint without building a trainer (JAX ``.npz`` needs only
    numpy; a torch checkpoint is read with ``torch.load(weights_only=True)``)."""
    import zipfile

    p = os.fspath(path)
    with zipfile.ZipFile(p) as z:
        names = z.namelist()
    if "__meta__.npy" in names:
        import numpy as np

        with np.load(p, allow_pickle=False) as data:
            return json.loads(bytes(data["__meta__"]).decode("utf-8"))
    from zpml_backends.torch_training import read_metadata

    return read_metadata(p)
