"""Choosing ``tau_infer`` for export from held-out data.

Rule (:func:`calibrate_tau_infer`): evaluate strict inference at each candidate
threshold and return the **largest** ``tau`` such that

* coverage — the share of held-out samples with finite targets that are accepted
  (decoded as finite) — is at least ``target_coverage``, and
* if ``max_error`` is given, the RMSE of the accepted finite-target predictions is at
  most ``max_error``.

Larger thresholds reject more near-singular predictions (safer, lower error, lower
coverage), so the largest feasible one is the most conservative threshold that still
serves the requested share. ``tau_infer`` never exceeds ``tau_train`` when that is given
(``InferenceConfig`` requires ``tau_infer <= tau_train``). If no candidate is feasible a
``ValueError`` explains which constraint failed and the best coverage reached.

Masks are computed by :func:`zpml_core.inference.strict_inference`, i.e. exactly the
masks production uses, on any array-API library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array
from zpml_core.inference import InferenceConfig, strict_inference

__all__ = ["TauCalibration", "calibrate_tau_infer", "evaluate_tau"]


@dataclass(frozen=True)
class TauCalibration:
    """Result of :func:`calibrate_tau_infer`; ``table`` has one row per candidate."""

    tau_infer: float
    coverage: float
    rmse: float
    false_finite_frac: float
    target_coverage: float
    max_error: float | None
    table: list[dict[str, float]] = field(repr=False)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "tau_infer": self.tau_infer,
            "coverage": self.coverage,
            "rmse": None if math.isnan(self.rmse) else self.rmse,
            "false_finite_frac": None if math.isnan(self.false_finite_frac) else self.false_finite_frac,
            "target_coverage": self.target_coverage,
            "max_error": self.max_error,
            "rule": "largest tau with coverage >= target_coverage and rmse <= max_error",
        }


def evaluate_tau(P: Array, Q: Array, y_true: Array, tau: float) -> dict[str, float]:
    """Strict-inference statistics of one threshold on held-out data.

    ``coverage``: accepted share of samples whose targets are all finite; ``rmse`` over
    the accepted finite-target elements (NaN if none); ``false_finite_frac``: share of
    samples with a non-finite target that were decoded as finite (NaN if none);
    ``bottom_frac``: share of all samples that are bottom.
    """
    xp = _xp.namespace(P, Q, y_true)
    res = strict_inference(P, Q, config=InferenceConfig(tau_infer=tau))
    decoded, bottom = res[0], res[1]
    y = _xp.to_float(xp, y_true)
    fin_el = xp.isfinite(y)
    fin_row = xp.all(fin_el, axis=tuple(range(1, y.ndim))) if y.ndim > 1 else fin_el
    acc_row = fin_row & ~bottom
    acc_el = acc_row
    while acc_el.ndim < decoded.ndim:
        acc_el = acc_el[..., None]
    acc_el = xp.broadcast_to(acc_el, decoded.shape)
    err = xp.where(acc_el, decoded - xp.where(fin_el, y, 0.0), 0.0)

    def count(m: Array) -> float:
        return float(xp.sum(xp.astype(m, _xp.default_int(xp, _xp.device(m)))))

    n = bottom.shape[0] if bottom.ndim else 1
    n_fin = count(fin_row)
    n_acc = count(acc_row)
    n_acc_el = count(acc_el)
    n_bot_t = count(~fin_row)
    n_ff = count(~fin_row & ~bottom)
    sse = float(xp.sum(err * err))
    nan = float("nan")
    return {
        "tau": float(tau),
        "coverage": n_acc / n_fin if n_fin else nan,
        "rmse": math.sqrt(sse / n_acc_el) if n_acc_el else nan,
        "false_finite_frac": n_ff / n_bot_t if n_bot_t else nan,
        "bottom_frac": count(bottom) / n if n else nan,
    }


def _default_candidates(Q: Array, tau_train: float | None) -> list[float]:
    xp = _xp.namespace(Q)
    a = xp.abs(_xp.to_float(xp, Q))
    fin = xp.isfinite(a)
    hi = float(xp.max(xp.where(fin, a, 0.0))) if a.size else 1.0
    if tau_train is not None:
        hi = tau_train
    hi = max(hi, 1e-12)
    lo = min(1e-9, hi)
    k = 81
    out = [lo * (hi / lo) ** (i / (k - 1)) for i in range(k)] if hi > lo else [hi]
    return sorted(set(out + ([tau_train] if tau_train is not None else [])))


def calibrate_tau_infer(
    P: Array,
    Q: Array,
    y_true: Array,
    *,
    target_coverage: float = 0.95,
    max_error: float | None = None,
    candidates: Sequence[float] | None = None,
    tau_train: float | None = None,
) -> TauCalibration:
    """Pick ``tau_infer`` from held-out predictions (rule in the module docstring).

    ``P``, ``Q``: model outputs on held-out inputs (``Q`` one denominator per sample);
    ``y_true``: targets with ``P``'s shape (±inf/NaN mark bottom targets).
    ``candidates``: thresholds to try (default: 81 log-spaced values from 1e-9 up to
    ``tau_train``, or up to the largest ``|Q|``). Returns a :class:`TauCalibration`.
    """
    tc = _xp.check_real("target_coverage", target_coverage, ge=0.0, le=1.0)
    me = _xp.check_real("max_error", max_error, ge=0.0, allow_none=True)
    tt = _xp.check_real("tau_train", tau_train, gt=0.0, allow_none=True)
    assert tc is not None
    if candidates is None:
        cands = _default_candidates(Q, tt)
    else:
        cands = []
        for i, c in enumerate(candidates):
            v = _xp.check_real(f"candidates[{i}]", c, gt=0.0)
            assert v is not None
            cands.append(v)
        if not cands:
            raise ValueError("candidates must not be empty")
        cands = sorted(set(cands))
    if tt is not None:
        cands = [c for c in cands if c <= tt]
        if not cands:
            raise ValueError(f"every candidate exceeds tau_train={tt!r}")
    table = [evaluate_tau(P, Q, y_true, c) for c in cands]
    feasible = [
        r
        for r in table
        if r["coverage"] >= tc and (me is None or (not math.isnan(r["rmse"]) and r["rmse"] <= me))
    ]
    if not feasible:
        best = max(table, key=lambda r: (-1.0 if math.isnan(r["coverage"]) else r["coverage"]))
        raise ValueError(
            f"no candidate tau reaches coverage >= {tc:g}"
            + (f" with rmse <= {me:g}" if me is not None else "")
            + f"; best coverage {best['coverage']:.4f} at tau={best['tau']:.3g} "
            f"(rmse {best['rmse']:.4g})"
        )
    chosen = max(feasible, key=lambda r: r["tau"])
    return TauCalibration(
        tau_infer=chosen["tau"],
        coverage=chosen["coverage"],
        rmse=chosen["rmse"],
        false_finite_frac=chosen["false_finite_frac"],
        target_coverage=tc,
        max_error=me,
        table=table,
    )
