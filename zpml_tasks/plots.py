"""Plots of ``zpml bench`` and ``zpml demo`` (matplotlib, Agg).

Conventions, so the figures read correctly:

* every axis has a y label (with the unit/meaning, e.g. "MSE of non-⊥ test samples");
* ⊥ (bottom) answers are never drawn at y = 0: they get their own strip under each
  prediction panel ("answered ⊥"), so they cannot be read as "predicted 0";
* predictions are shown over the full input range on a symlog axis (nothing clipped),
  the singular set is marked by dotted vertical lines;
* one threshold per figure row: the ``tau_infer`` used for decoding is the one named in
  the titles and drawn on the calibration curve;
* legends sit outside the data area (below or beside the axes);
* bucket axes are labelled with their intervals (``(1e-05, 0.0001]``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zpml_tasks.data import Task
from zpml_tasks.metrics import bucket_labels

__all__ = ["bench_plot", "calibration_axes", "demo_plot", "prediction_axes"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend_below(ax: Any, ncol: int = 2) -> None:
    h, l_ = ax.get_legend_handles_labels()
    if h:
        ax.legend(h, l_, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=ncol, fontsize=7,
                  frameon=False)


def prediction_axes(fig: Any, spec: Any, sl: dict[str, Any], out_i: int, title: str) -> None:
    """Truth and strict predictions of one output over a full-range slice (symlog y),
    with a separate "answered ⊥" strip below."""
    gs = spec.subgridspec(2, 1, height_ratios=[5, 1], hspace=0.05)
    ax = fig.add_subplot(gs[0])
    axb = fig.add_subplot(gs[1], sharex=ax)
    x = np.asarray(sl["x"], np.float64)
    truth = np.asarray(sl["truth"], np.float64)[:, out_i]
    pred = np.asarray(sl["pred"], np.float64)[:, out_i]
    bot = np.asarray(sl["bottom"], bool)
    tr = np.where(np.isfinite(truth), truth, np.nan)
    ax.plot(x, tr, color="k", lw=0.9, label="truth")
    ax.plot(x[~bot], pred[~bot], ".", ms=1.5, color="C0", label="strict prediction (non-⊥)")
    for s in sl.get("sing", []):
        ax.axvline(s, color="C3", ls=":", lw=0.8)
        axb.axvline(s, color="C3", ls=":", lw=0.8)
    ax.plot([], [], color="C3", ls=":", lw=0.8, label="singular set")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel(f"{sl['outputs'][out_i]} (symlog)")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelbottom=False)
    axb.plot(x[bot], np.zeros(int(bot.sum())), "|", color="C3", ms=10)
    axb.set_yticks([])
    axb.set_ylabel("⊥", rotation=0, labelpad=10)
    axb.set_xlabel(f"{sl['xlabel']}   (bottom strip: inputs answered ⊥)", fontsize=8)
    _legend_below(axb, ncol=3)


def calibration_axes(ax: Any, curve: dict[str, list[float]] | None, tau: float,
                     q_abs: np.ndarray | None, target: float) -> None:
    """Coverage and accepted-sample RMSE versus the candidate threshold, the observed
    ``|Q|`` distribution, and the chosen ``tau_infer``."""
    if not curve:
        ax.text(0.5, 0.5, "fixed tau_infer (no calibration)", ha="center", transform=ax.transAxes)
        ax.set_ylabel("coverage")
        return
    t = np.asarray(curve["tau"])
    ax.semilogx(t, curve["coverage"], color="C0", label="coverage (val, finite targets)")
    ax.axhline(target, color="C0", ls="--", lw=0.7, label=f"target coverage {target:g}")
    ax.axvline(tau, color="k", lw=0.9, label=f"tau_infer = {tau:.2e}")
    ax.set_xlabel("candidate tau_infer")
    ax.set_ylabel("coverage")
    ax.set_ylim(-0.02, 1.02)
    ax2 = ax.twinx()
    ax2.loglog(t, curve["rmse"], color="C1", label="RMSE of accepted (val)")
    ax2.set_ylabel("RMSE (accepted)", color="C1", labelpad=1)
    if q_abs is not None and q_abs.size:
        qs = np.quantile(q_abs[np.isfinite(q_abs) & (q_abs > 0)], [0.01, 0.5, 0.99])
        for v in qs:
            ax.axvline(v, color="0.6", lw=0.6, ls="-.")
        ax.plot([], [], color="0.6", ls="-.", lw=0.6, label="|Q| quantiles 1/50/99% (val)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2,
              fontsize=7, frameon=False)
    ax.set_title("tau_infer calibration (val split)", fontsize=9)


def bench_plot(task: Task, summary: dict[str, Any],
               plots: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]],
               path: str) -> None:
    """One figure per task: headline metric per seed and group with the predict-0
    level; per-bucket medians (IQR bars) against predict-0; predictions of the median
    seed of the first group over the full range, one panel per output."""
    from zpml_tasks.bench import BUCKET_KEY, HEADLINE

    plt = _plt()
    groups = [g for g in summary["groups"] if g["task"] == task.name]
    keys = [(g["backend"], g["fit"]) for g in groups]
    n_out = task.output_dim
    fig = plt.figure(figsize=(5.0 * (2 + n_out), 5.2))
    gs = fig.add_gridspec(1, 2 + n_out, wspace=0.35, bottom=0.25)
    base = summary["predict_zero"][task.name]
    head, _ = HEADLINE[task.name][0]
    ax = fig.add_subplot(gs[0])
    for i, (b, f) in enumerate(keys):
        vals = [r["metrics"][head] for r, _ in plots.get((task.name, b, f), [])]
        ax.plot(np.full(len(vals), i), vals, "o", ms=4, alpha=0.7, color=f"C{i}")
        med = np.nanmedian(vals) if vals else math.nan
        ax.plot([i - 0.25, i + 0.25], [med, med], color="k", lw=1.5)
    if isinstance(base.get(head), float) and not math.isnan(base[head]):
        ax.axhline(base[head], color="C3", ls="--", lw=1, label=f"predict-0 ({base[head]:.3g})")
    ax.plot([], [], color="k", lw=1.5, label="median over seeds")
    allv = np.array([r["metrics"][head] for v in plots.values() for r, _ in v
                     if r["task"] == task.name], np.float64)
    allv = np.append(allv, base[head] if isinstance(base.get(head), float) else np.nan)
    allv = allv[np.isfinite(allv)]
    if allv.size and (allv > 0).all() and allv.max() / allv.min() > 30:
        ax.set_yscale("log")  # the data and the predict-0 level decades apart
    ax.set_xticks(range(len(keys)), [f"{b}\n{f}" for b, f in keys])
    ax.set_xlim(-0.6, len(keys) - 0.4)
    ax.set_ylabel(f"{head} (test, one dot per seed)")
    ax.set_title(f"{task.name}: {head}", fontsize=9)
    _legend_below(ax)
    ax = fig.add_subplot(gs[1])
    bkey = BUCKET_KEY[task.name]
    labels = bucket_labels(task.edges, task.right_closed)
    nb = len(labels)
    width = 0.8 / (len(keys) + 1)
    for i, g in enumerate(groups):
        med = np.array([m["median"] for m in g["metrics"][bkey]])
        lo = med - np.array([m["q25"] for m in g["metrics"][bkey]])
        hi = np.array([m["q75"] for m in g["metrics"][bkey]]) - med
        ax.bar(np.arange(nb) + i * width, med, width, yerr=[lo, hi], color=f"C{i}",
               label=f"{g['backend']} {g['fit']} (median, IQR)")
    ax.bar(np.arange(nb) + len(keys) * width, base[bkey], width, color="0.75", hatch="//",
           label="predict-0")
    ax.set_xticks(np.arange(nb) + 0.4 - width / 2, labels, rotation=30, fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel(f"{task.distance_label} bucket")
    what = "MSE" if bkey == "bucket_mse" else "RMSE"
    ax.set_ylabel(f"{what} of non-⊥ test samples")
    ax.set_title("error by distance to the singular set", fontsize=9)
    _legend_below(ax)
    if groups:
        runs = plots.get((task.name, *keys[0]), [])
        if runs:
            hv = np.array([r["metrics"][head] for r, _ in runs], np.float64)
            order = np.argsort(np.where(np.isnan(hv), np.inf, hv))
            rec, pl = runs[int(order[len(order) // 2])]
            sl = pl["slices"][0]
            for o in range(n_out):
                prediction_axes(fig, gs[2 + o], sl, o,
                                f"{keys[0][0]} {keys[0][1]}, seed {rec['seed']} (median), "
                                f"tau_infer={rec['tau_infer']:.2e}")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def demo_plot(rows: list[tuple[dict[str, Any], dict[str, Any], Task]], path: str) -> None:
    """``zpml demo``: per task a row with loss, coverage and |Q| curves, the
    calibration curve, and the predictions of every output over the full range."""
    plt = _plt()
    n_cols = 4 + max(t.output_dim for _, _, t in rows)
    fig = plt.figure(figsize=(4.4 * n_cols, 5.0 * len(rows)))
    gs = fig.add_gridspec(len(rows), n_cols, wspace=0.6, hspace=0.75)
    for i, (rec, pl, task) in enumerate(rows):
        recs = pl["recs"]
        tau = pl["tau_infer"]
        tr = [r for r in recs if r["phase"] == "train"]
        ev = [r for r in recs if r["phase"] == "eval"]
        epochs = sorted({r["epoch"] for r in tr})

        def mean(key: str, e: int, rs: list[dict[str, Any]] = tr) -> float:
            v = [r[key] for r in rs if r["epoch"] == e and r.get(key) is not None]
            return float(np.mean(v)) if v else math.nan

        ax = fig.add_subplot(gs[i, 0])
        ax.semilogy(epochs, [mean("loss", e) for e in epochs], label="train (epoch mean)")
        ax.semilogy([r["epoch"] for r in ev], [r["val_loss"] for r in ev], label="val")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(f"{rec['backend']} · {task.name} · fit={rec['fit']}: loss", fontsize=9)
        _legend_below(ax)
        ax = fig.add_subplot(gs[i, 1])
        ax.plot(epochs, [mean("coverage", e) for e in epochs], label="train coverage (tau_train)")
        ax.plot([r["epoch"] for r in ev], [r["val_strict_coverage"] for r in ev], "--",
                label="val strict coverage (tau 1e-6)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch")
        ax.set_ylabel("coverage (share not ⊥)")
        ax.set_title("coverage during training", fontsize=9)
        _legend_below(ax)
        ax = fig.add_subplot(gs[i, 2])
        ax.semilogy(epochs, [min((r["denom_abs_min"] for r in tr if r["epoch"] == e
                                  and r.get("denom_abs_min") is not None), default=math.nan)
                             for e in epochs], label="min |Q| per epoch")
        ax.semilogy(epochs, [mean("denom_abs_mean", e) for e in epochs], label="mean |Q|")
        ax.axhline(tau, color="k", lw=0.9, label=f"tau_infer = {tau:.2e}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("|Q| on training batches")
        ax.set_title("learned denominator", fontsize=9)
        _legend_below(ax)
        calibration_axes(fig.add_subplot(gs[i, 3]), pl.get("calibration"), tau,
                         pl.get("Q_val_abs"), rec.get("calibration", {}).get("target_coverage", 0.95))
        sl = pl["slices"][0]
        for o in range(task.output_dim):
            prediction_axes(fig, gs[i, 4 + o], sl, o, f"full range, tau_infer={tau:.2e}")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
