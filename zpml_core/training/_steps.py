"""``SCMTrainer``'s per-step bookkeeping: threshold draws, in-flight steps, metric checks.

:class:`StepMixin` holds what ``fit`` and ``train_step`` do around each backend step:
draw ``tau ~ U[tau_train_min, tau_train_max]`` from the trainer's seeded generator,
seed the engine and loader once, read the metrics of in-flight steps back in one host
transfer (:meth:`StepMixin._drain`), check each step's loss and gradient flag and settle
its update with the engine (:meth:`StepMixin._finalize`: ``FloatingPointError`` for a
non-finite loss, a skipped update and ``NonFiniteGradientWarning`` for non-finite
gradients), log the records, and decide coverage early stopping.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from zpml_core.training.config import TrainingConfig
from zpml_core.training.engine import NonFiniteGradientWarning, TrainingEngine
from zpml_core.training.metrics import RAW_KEYS, finish_metrics
from zpml_core.utils.logging import metric_log_record

__all__ = ["StepMixin"]

#: end-of-loader marker of ``fit``'s one-batch look-ahead
_END = object()
#: index of the ``grads_nonfinite`` entry of a train step's metrics vector
_NRAW = len(RAW_KEYS)


class _InFlight(NamedTuple):
    """A step whose metrics vector has not been read back yet."""

    vec: Any
    tau: float
    step: int
    epoch: int
    batch: int
    update: bool


class StepMixin:
    """Step bookkeeping of ``SCMTrainer`` (which defines the attributes below)."""

    config: TrainingConfig
    engine: TrainingEngine
    train_loader: Iterable[Any]
    global_step: int
    last_thresholds: list[float]
    history: list[dict[str, float]]
    val_history: list[dict[str, float]]
    _best_metric: float | None
    _bad_epochs: int
    _seeded: bool
    _tau_rng: Any

    def _draw_tau(self) -> float:
        lo, hi = self.config.tau_train_min, self.config.tau_train_max
        # same draw as perturbed_threshold(lo, hi, rng=...) without re-validating per step
        tau = lo if lo == hi else float(self._tau_rng.uniform(lo, hi))
        self.last_thresholds.append(tau)
        return tau

    def _log(self, metrics: Mapping[str, Any], *, phase: str, step: int, epoch: int) -> None:
        hook = self.config.log_hook
        if hook is not None and self.engine.rank == 0:  # one writer: the metrics are global
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

    def _drain(self, inflight: deque[_InFlight], logs: list[dict[str, float]],
               count: int | None = None) -> None:
        """Read the metrics of the ``count`` oldest in-flight steps (all by default) in
        one host transfer, check and log them, in order."""
        if not inflight:
            return
        engine = self.engine
        if count is None or count >= len(inflight):
            recs = list(inflight)
            inflight.clear()
        else:
            recs = [inflight.popleft() for _ in range(count)]
        all_values = engine.to_host_many([r.vec for r in recs])
        for rec, values in zip(recs, all_values, strict=True):
            self._finalize(rec, values, logs)

    def _finalize(self, rec: _InFlight, values: list[float], logs: list[dict[str, float]]) -> None:
        """Check one step's host metrics (``RAW_KEYS`` + ``grads_nonfinite``), settle its
        update with the engine, log it.

        Non-finite loss: the engine rolls back to the state before the step and
        ``FloatingPointError`` stops training. Finite loss but non-finite gradients on
        an update step: the update was not applied, the record gets
        ``update_skipped = 1.0`` (a key present only then), ``NonFiniteGradientWarning``
        names the step, and training continues.
        """
        engine = self.engine
        loss = values[0]
        if not math.isfinite(loss):
            engine.finalize(False)
            self.global_step = rec.step - 1
            note = engine.state_note()
            raise FloatingPointError(
                f"non-finite loss ({loss!r}) at step {rec.step} (epoch {rec.epoch}, batch "
                f"{rec.batch} of the epoch, tau_train={rec.tau:g}); training stopped, this "
                "step's update was not applied and the parameters and optimizer state are "
                "those from before this step" + (f" ({note})" if note else "")
            )
        grads_finite = values[_NRAW] == 0.0  # the grads_nonfinite entry
        engine.finalize(True, grads_finite)
        skipped = rec.update and not grads_finite
        if skipped:
            warnings.warn(
                NonFiniteGradientWarning(
                    f"non-finite gradients at step {rec.step} (epoch {rec.epoch}, batch "
                    f"{rec.batch} of the epoch, tau_train={rec.tau:g}) with a finite loss "
                    f"({loss!r}): the optimizer update due at this step was skipped (the "
                    "parameters and optimizer state keep their values, the gradients "
                    "accumulated for it are discarded); training continues"
                ),
                stacklevel=4,
            )
        cadence = self.config.scheduler_cadence
        if rec.update and not skipped and cadence == "per_optimizer_update":
            engine.scheduler_step()
        values = finish_metrics(values[:_NRAW])
        m = {
            "loss": loss,
            "coverage": values[1],
            "tau_train": rec.tau,
            "bottom_frac": values[2],
            "denom_abs_min": values[3],
            "denom_abs_mean": values[4],
            "denom_abs_available": values[5],
        }
        if skipped:  # only then: normal records keep the reference's train metrics
            m["update_skipped"] = 1.0
        logs.append(m)
        self.history.append(m)
        if self.config.log_hook is not None:
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
