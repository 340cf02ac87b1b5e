"""``SCMTrainer``'s evaluation arithmetic: validation metrics and calibration samples.

:class:`EvaluationMixin` turns what ``validate`` collected from the backend's eval
steps into the validation record — parity metrics as sample-weighted means (or
``metric_reducers[key]``), strict-inference metrics as ratios of summed counts — and
turns one held-out batch's model outputs into the host rows ``calibrate_tau_infer``
picks ``tau_infer`` on (samples with a ``missing`` label left out).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from zpml_core import _xp
from zpml_core.training._batches import BatchMixin
from zpml_core.training.engine import PreparedBatch
from zpml_core.training.metrics import STRICT_SUM_KEYS, TRAIN_KEYS

__all__ = ["EvaluationMixin"]


class EvaluationMixin(BatchMixin):
    """Validation and calibration helpers of ``SCMTrainer`` (which defines the
    attributes below)."""

    metric_reducers: dict[str, Callable[[list[tuple[float, int]]], float]]

    def _validation_metrics(self, per_key: dict[str, list[tuple[float, int]]], sums: list[float],
                            tau: float) -> dict[str, float]:
        """The validation record: each parity metric reduced over its ``(value,
        sample count)`` batch pairs, ``tau_eval = tau``, and the strict metrics from the
        summed ``STRICT_SUM_KEYS`` counts (NaN where a denominator count is 0):
        ``strict_coverage = 1 - n_strict_bottom/n_samples``, ``strict_bottom_frac =
        n_strict_bottom/n_samples``, ``gap_frac = n_gap/n_samples``, ``accepted_frac =
        n_accepted_finite/n_finite_targets``, ``rmse_accepted =
        sqrt(sse_accepted_finite/n_accepted_finite)``, ``false_finite_frac =
        n_false_finite/n_bottom_targets``."""
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

    def _calibration_rows(self, prepared: PreparedBatch, out: Any) -> tuple[Any, Any, Any]:
        """``(P, Q, Y)`` of one held-out batch as numpy arrays, ``Y = Y_n / Y_d`` (``inf``
        where ``Y_d = 0``) for semantic targets, whose samples with a ``missing`` label
        (neither finite nor bottom) are left out."""
        import numpy as np

        be = self._np
        p, q = be(out[0]), be(out[1])
        sem = prepared.semantic
        if sem is not None:
            yn, yd = be(sem.Y_n), be(sem.Y_d)
            y = np.where(yd != 0, yn / np.where(yd != 0, yd, 1), np.inf)
            # samples with a "missing" label (neither finite nor bottom) are left out
            labelled = be(sem.mask_finite) | be(sem.mask_bottom)
            keep = labelled.reshape(labelled.shape[0], -1).all(axis=1) if labelled.ndim else labelled
            if labelled.ndim and not keep.all():
                p, q, y = p[keep], q[keep], y[keep]
        else:
            y = be(prepared.targets)
        return p, q, y

    def _np(self, a: Any) -> Any:
        import numpy as np

        from zpml_core._registry import get_backend

        return np.asarray(get_backend(_xp.namespace(a)).to_numpy(a))
