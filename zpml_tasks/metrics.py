"""Metrics of the benchmark tasks, on strictly decoded predictions (numpy).

Every metric takes ``decoded`` (the strict-inference values, shape of ``y``) and
``bottom`` (one flag per sample: the sample was answered ⊥), so the same functions
score a model and the predict-0 baseline (:func:`predict_zero`: 0 everywhere, never ⊥).

* :func:`ik_ref_metrics` — the reference benchmark's metrics: ``mse``/``mae`` over the
  elements of non-⊥ samples, ``success_rate`` = share of samples not answered ⊥, and
  ``bucket_mse`` per ``|det J|`` bucket (non-⊥ samples of the bucket; NaN if none).
* :func:`pole_metrics` — ``rmse_far`` (non-⊥ samples with ``|x − a| ≥ 0.1``),
  ``exact_pole_bottom`` (share of exact-pole rows answered ⊥), ``coverage`` (share of
  finite-target rows not ⊥), per-bucket RMSE, and ``pole_error = |learned pole − a|``
  when the learned pole is given (see :func:`learned_pole`).
* :func:`ik_pole_metrics` — ``median_abs_err`` over elements of accepted finite rows,
  ``sign_agreement`` (share of those elements with ``sign(decoded) = sign(y)``),
  ``singular_bottom`` (share of exact singular rows answered ⊥), coverage and per-bucket
  RMSE.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from zpml_tasks.data import Split, Task, bucket_index

__all__ = [
    "bucket_labels",
    "decode",
    "ik_pole_metrics",
    "ik_ref_metrics",
    "learned_pole",
    "pole_metrics",
    "predict_zero",
    "task_metrics",
]


def decode(P: Any, Q: Any, tau_infer: float) -> tuple[np.ndarray, np.ndarray]:
    """``strict_inference(P, Q, tau_infer)`` → ``(decoded, per-sample bottom)`` in numpy."""
    from zpml_core.inference import InferenceConfig, strict_inference

    res = strict_inference(np.asarray(P), np.asarray(Q), config=InferenceConfig(tau_infer=tau_infer))
    decoded, bottom = np.asarray(res[0]), np.asarray(res[1])
    if bottom.ndim > 1:
        bottom = np.asarray(bottom.reshape(bottom.shape[0], -1).any(axis=1))
    return decoded, bottom


def predict_zero(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """The predict-0 baseline: 0 for every output, no sample ⊥."""
    return np.zeros(split.y.shape, np.float64), np.zeros(len(split), bool)


def bucket_labels(edges: tuple[float, ...], right_closed: bool) -> list[str]:
    """Interval headers, e.g. ``[0, 1e-05]``, ``(1e-05, 0.0001]``, …, ``(0.01, inf)``."""
    out = []
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        lo_s, hi_s = f"{lo:g}", ("∞" if math.isinf(hi) else f"{hi:g}")
        if right_closed:
            left = "[" if i == 0 else "("
            right = ")" if math.isinf(hi) else "]"
        else:
            left, right = "[", ")"
        out.append(f"{left}{lo_s}, {hi_s}{right}")
    return out


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1)


def _finite_rows(y: np.ndarray) -> np.ndarray:
    return np.isfinite(_rows(y)).all(axis=1)


def _err(decoded: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-element error as float64 rows; rows with non-finite targets give 0."""
    yy = np.where(np.isfinite(y), y, 0.0).astype(np.float64)
    return _rows(np.asarray(decoded, np.float64) - yy)


def _mean_sq(err: np.ndarray, rows: np.ndarray) -> float:
    return float(np.mean(err[rows] ** 2)) if rows.any() else math.nan


def _buckets(err: np.ndarray, rows: np.ndarray, split: Split, task: Task, root: bool) -> list[float]:
    b = bucket_index(split.dist, task.edges, task.right_closed)
    out = []
    for k in range(len(task.edges) - 1):
        v = _mean_sq(err, rows & (b == k))
        out.append(math.sqrt(v) if root and not math.isnan(v) else v)
    return out


def ik_ref_metrics(task: Task, split: Split, decoded: np.ndarray, bottom: np.ndarray
                   ) -> dict[str, Any]:
    err = _err(decoded, split.y)
    ok = ~bottom & _finite_rows(split.y)
    return {
        "mse": _mean_sq(err, ok),
        "mae": float(np.mean(np.abs(err[ok]))) if ok.any() else math.nan,
        "success_rate": float(np.mean(~bottom)) if bottom.size else math.nan,
        "bucket_mse": _buckets(err, ok, split, task, root=False),
        "bucket_n": np.bincount(bucket_index(split.dist, task.edges, task.right_closed),
                                minlength=len(task.edges) - 1).tolist(),
    }


def pole_metrics(task: Task, split: Split, decoded: np.ndarray, bottom: np.ndarray,
                 pole: float | None = None) -> dict[str, Any]:
    err = _err(decoded, split.y)
    fin = _finite_rows(split.y)
    ok = ~bottom & fin
    far = ok & (split.dist >= 0.1)
    a = float(task.meta.get("a", 0.25))
    return {
        "rmse_far": math.sqrt(_mean_sq(err, far)) if far.any() else math.nan,
        "exact_pole_bottom": float(np.mean(bottom[split.exact])) if split.exact.any() else math.nan,
        "coverage": float(np.mean(~bottom[fin])) if fin.any() else math.nan,
        "rmse": math.sqrt(_mean_sq(err, ok)) if ok.any() else math.nan,
        "bucket_rmse": _buckets(err, ok, split, task, root=True),
        "pole_error": math.nan if pole is None or math.isnan(pole) else abs(pole - a),
        "learned_pole": math.nan if pole is None else float(pole),
    }


def ik_pole_metrics(task: Task, split: Split, decoded: np.ndarray, bottom: np.ndarray
                    ) -> dict[str, Any]:
    err = _err(decoded, split.y)
    fin = _finite_rows(split.y)
    ok = ~bottom & fin
    y = _rows(np.asarray(split.y, np.float64))
    d = _rows(np.asarray(decoded, np.float64))
    agree = (np.sign(d[ok]) == np.sign(y[ok]))
    return {
        "median_abs_err": float(np.median(np.abs(err[ok]))) if ok.any() else math.nan,
        "rmse": math.sqrt(_mean_sq(err, ok)) if ok.any() else math.nan,
        "sign_agreement": float(np.mean(agree)) if agree.size else math.nan,
        "singular_bottom": float(np.mean(bottom[split.exact])) if split.exact.any() else math.nan,
        "coverage": float(np.mean(~bottom[fin])) if fin.any() else math.nan,
        "bucket_rmse": _buckets(err, ok, split, task, root=True),
    }


def task_metrics(task: Task, split: Split, decoded: np.ndarray, bottom: np.ndarray,
                 pole: float | None = None) -> dict[str, Any]:
    if task.name == "pole":
        return pole_metrics(task, split, decoded, bottom, pole)
    if task.name == "ik_ref":
        return ik_ref_metrics(task, split, decoded, bottom)
    return ik_pole_metrics(task, split, decoded, bottom)


def learned_pole(xs: np.ndarray, Q: np.ndarray, a: float) -> float:
    """The zero of the learned denominator closest to ``a`` on a 1-D grid ``xs``:
    linear interpolation at the sign change of ``Q`` nearest ``a`` (an exact zero counts);
    without a sign change, the grid point of smallest ``|Q|``."""
    xs = np.asarray(xs, np.float64)
    q = np.asarray(Q, np.float64).reshape(-1)
    zero = np.flatnonzero(q == 0)
    s = np.flatnonzero(np.sign(q[:-1]) * np.sign(q[1:]) < 0)
    roots = list(xs[zero])
    for i in s:
        t = q[i] / (q[i] - q[i + 1])
        roots.append(xs[i] + t * (xs[i + 1] - xs[i]))
    if not roots:
        return float(xs[int(np.argmin(np.abs(q)))])
    r = np.asarray(roots)
    return float(r[int(np.argmin(np.abs(r - a)))])
