"""``zpml demo``: the guide's RationalHead learning real poles, on every autodiff backend.

Two synthetic tasks with a true singularity:

* ``pole`` — ``y = 1/(x − a)`` on ``x ∈ [−1, 1]`` (``a = 0.25``), with extra samples at
  log-spaced distances from the pole and exact-pole samples whose target is ±inf
  (lifted to ``(±1, 0)``: the model should answer ⊥ there);
* ``ik`` — 2-link arm (``l1 = l2 = 1``) differential inverse kinematics: the joint
  velocities ``dθ = J(θ)⁻¹ e_x`` that move the hand along x; ``det J = l1·l2·sin θ2``
  vanishes at ``θ2 = 0``, so both joint velocities share the pole. Inputs ``(θ1, θ2)``,
  outputs ``(dθ1, dθ2)``: the guide's head with two numerators sharing one denominator.

Each backend trains the same initial weights with the same data, loss
(``SCMTrainingLoss`` passed straight to ``SCMTrainer``) and ``TrainingConfig``; then
``tau_infer`` is calibrated on the validation split and the test split is decoded with
``strict_inference``. Writes ``<out>/<backend>_<task>.jsonl`` (metric_log v2) and
``<out>/demo_<backend>.png``, and prints one table per backend.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["main"]

POLE_A = 0.25
#: training-threshold range of the demo (the guide's): a new tau is drawn every step
TAU_TRAIN = (5e-5, 2e-4)
DISTANCE_EDGES = (1e-3, 1e-2, 1e-1)
DEMO_BACKENDS = ("torch", "jax")


# ---------------------------------------------------------------------------------------
# data


@dataclass
class Split:
    x: Any  # (n, d) float32
    y: Any  # (n,) or (n, k) float32, ±inf at singular targets
    dist: Any  # (n,) distance to the singular set (|x − a| or |sin θ2|)


@dataclass
class Task:
    name: str
    input_dim: int
    output_dim: int
    train: Split
    val: Split
    test: Split
    distance_label: str
    batch_size: int


def _pole_split(rng: Any, n_uniform: int, n_near: int, n_exact: int) -> Split:
    import numpy as np

    xu = rng.uniform(-1.0, 1.0, n_uniform)
    d = 10.0 ** rng.uniform(-4.0, -1.0, n_near) * rng.choice([-1.0, 1.0], n_near)
    x = np.concatenate([xu, POLE_A + d, np.full(n_exact, POLE_A)])
    x32 = x.astype(np.float32)
    # targets from the float32 inputs the model sees, so the pole stays exact
    with np.errstate(divide="ignore"):
        y = (1.0 / (x32.astype(np.float64) - np.float32(POLE_A))).astype(np.float32)
    return Split(x32[:, None], y, np.abs(x32.astype(np.float64) - POLE_A))


def _ik_split(rng: Any, n_uniform: int, n_near: int, n_exact: int) -> Split:
    """Joint velocities for a unit end-effector velocity along x: ``dθ = J(θ)⁻¹ e_x``."""
    import numpy as np

    n = n_uniform + n_near + n_exact
    t1 = rng.uniform(-math.pi / 2, math.pi / 2, n)
    t2 = np.concatenate(
        [
            rng.uniform(-math.pi / 2, math.pi / 2, n_uniform),
            10.0 ** rng.uniform(-4.0, -1.0, n_near) * rng.choice([-1.0, 1.0], n_near),
            np.zeros(n_exact),
        ]
    )
    x = np.stack([t1, t2], axis=1).astype(np.float32)
    t1, t2 = x[:, 0].astype(np.float64), x[:, 1].astype(np.float64)
    num = ik_numerators(t1, t2)
    det = np.sin(t2)  # det J = l1·l2·sin θ2 with l1 = l2 = 1
    sing = det == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        y = num / np.where(sing, 1.0, det)[:, None]
    y[sing] = np.where(num[sing] < 0, -np.inf, np.inf)  # singular configuration: bottom
    return Split(x, y.astype(np.float32), np.abs(det))


def ik_numerators(t1: Any, t2: Any) -> Any:
    """``adj(J) e_x`` for the 2-link arm: ``(cos(θ1+θ2), −cos θ1 − cos(θ1+θ2))``."""
    import numpy as np

    c12 = np.cos(t1 + t2)
    return np.stack([c12, -np.cos(t1) - c12], axis=-1)


def make_tasks(seed: int) -> list[Task]:
    import numpy as np

    rng = np.random.default_rng(seed)
    pole = Task(
        "pole", 1, 1,
        train=_pole_split(rng, 1536, 512, 8),
        val=_pole_split(rng, 512, 256, 4),
        test=_pole_split(rng, 2048, 1024, 16),
        distance_label="|x−a|",
        batch_size=64,
    )
    ik = Task(
        "ik", 2, 2,
        train=_ik_split(rng, 3072, 1024, 16),
        val=_ik_split(rng, 768, 256, 8),
        test=_ik_split(rng, 3072, 1024, 32),
        distance_label="|det J|",
        batch_size=128,
    )
    return [pole, ik]


def init_params(seed: int, input_dim: int, output_dim: int) -> dict[str, Any]:
    """RationalHead parameters in numpy (weights ``(in, out)``), initialised like
    ``torch.nn.Linear``; both backends start from these exact values."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = [(input_dim, 64), (64, 64), (64, 2 if output_dim == 1 else output_dim + 1)]
    layers = []
    for fan_in, fan_out in sizes:
        bound = 1.0 / math.sqrt(fan_in)
        layers.append(
            {
                "w": rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32),
                "b": rng.uniform(-bound, bound, fan_out).astype(np.float32),
            }
        )
    return {"backbone": layers[:2], "head": layers[2]}


# ---------------------------------------------------------------------------------------
# one run


@dataclass
class Result:
    backend: str
    task: str
    epochs: int
    val_coverage: float
    tau_infer: float
    coverage: float
    rmse: float
    median_abs_err: float
    buckets: list[float]
    bottom_rate: float
    pole_bottom: float
    seconds: float
    jsonl: str
    curve: dict[str, Any]


def _available(name: str) -> bool:
    import importlib.util

    mods = {"torch": ("torch",), "jax": ("jax", "optax")}[name]
    return all(importlib.util.find_spec(m) is not None for m in mods)


def _limit_threads() -> None:
    """Small models on a few shared cores: one intra-op thread is fastest (and avoids
    oversubscription when several processes run)."""
    os.environ.setdefault(
        "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )


def _backend_model(backend: str, params: dict[str, Any], task: Task, lr: float) -> tuple[Any, Any]:
    if backend == "torch":
        import torch
        from zpml_backends.torch_training import demo_model

        torch.set_num_threads(1)
        return demo_model(params, task.input_dim, task.output_dim, lr)
    from zpml_backends.jax_training import demo_model as jax_demo_model

    return jax_demo_model(params, task.input_dim, task.output_dim, lr)


def _to_numpy(a: Any) -> Any:
    import numpy as np

    from zpml_core import get_backend, namespace

    return np.asarray(get_backend(namespace(a)).to_numpy(a))


def _progress(total: int, desc: str, quiet: bool) -> Any:
    if quiet:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the demo extra is optional; progress is cosmetic
        return None
    return tqdm(total=total, desc=desc, unit="epoch", leave=True, file=sys.stderr)


def run_task(backend: str, task: Task, *, epochs: int, seed: int, out: str, quiet: bool,
             lr: float = 3e-3) -> Result:
    import numpy as np

    from zpml_core.autodiff.policies import GradientPolicy
    from zpml_core.inference import InferenceConfig, strict_inference
    from zpml_core.losses import LossConfig, SCMTrainingLoss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig
    from zpml_core.utils.logging import JsonlLogger, read_jsonl

    path = os.path.join(out, f"{backend}_{task.name}.jsonl")
    if os.path.exists(path):
        os.remove(path)
    logger = JsonlLogger(path)
    bar = _progress(epochs, f"{backend:5s} {task.name:4s}", quiet)

    def hook(record: dict[str, Any]) -> None:
        logger(record)
        if bar is not None and record["phase"] == "eval":
            bar.set_postfix(
                loss=f"{record['val_loss']:.3g}",
                cov=f"{record['val_coverage']:.3f}",
                refresh=False,
            )
            bar.update(1)

    tr_split, va_split = task.train, task.val
    config = TrainingConfig(
        max_epochs=epochs,
        tau_train_min=TAU_TRAIN[0],
        tau_train_max=TAU_TRAIN[1],
        tau_infer=1e-6,
        coverage_threshold=0.90,
        coverage_patience=5,
        gradient_policy=GradientPolicy.PROJECT,
        val_loader=ArrayLoader(va_split.x, va_split.y, batch_size=512),
        log_hook=hook,
        seed=seed,
    )
    loss_fn = SCMTrainingLoss(
        LossConfig(tau_train=1e-4, target_coverage=0.95, lambda_margin=0.1, lambda_sign=1.0,
                   lambda_rej=0.01)
    )
    model, optimizer = _backend_model(backend, init_params(seed, task.input_dim, task.output_dim),
                                      task, lr)
    trainer = SCMTrainer(
        model=model,
        optimizer=optimizer,
        loss_fn=loss_fn,
        train_loader=ArrayLoader(tr_split.x, tr_split.y, batch_size=task.batch_size, shuffle=True),
        config=config,
    )
    t0 = time.perf_counter()
    try:
        trainer.fit()
        calib = trainer.calibrate_tau_infer(
            [(va_split.x, va_split.y)], target_coverage=0.95, tau_train=config.tau_train_max
        )
        P, Q = trainer.model_outputs(task.test.x)
        P, Q = _to_numpy(P), _to_numpy(Q)
        seconds = time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    trainer.save_checkpoint(os.path.join(out, f"{backend}_{task.name}.ckpt"),
                            tau_infer=calib.tau_infer, metadata={"demo_task": task.name})

    res = strict_inference(P, Q, config=InferenceConfig(tau_infer=calib.tau_infer))
    decoded, bottom = np.asarray(res[0]), np.asarray(res[1])
    y = task.test.y
    fin_row = np.isfinite(y) if y.ndim == 1 else np.isfinite(y).all(axis=1)
    acc = fin_row & ~bottom
    err = decoded - np.where(np.isfinite(y), y, 0.0)
    err2 = err.reshape(err.shape[0], -1) ** 2

    def rmse(mask: Any) -> float:
        return float(np.sqrt(err2[mask].mean())) if mask.any() else float("nan")

    edges = (0.0, *DISTANCE_EDGES, math.inf)
    dist = task.test.dist
    buckets = [rmse(acc & (dist >= lo) & (dist < hi)) for lo, hi in itertools.pairwise(edges)]
    pole_rows = ~fin_row
    # metric_log v2 stores each metric once, under "metrics"
    recs = [{**r["metrics"], "phase": r["phase"], "epoch": r.get("epoch")}
            for r in read_jsonl(path, validate=True)]
    last_val = [r for r in recs if r["phase"] == "eval"][-1]
    return Result(
        backend=backend,
        task=task.name,
        epochs=trainer.current_epoch,
        val_coverage=float(last_val["val_coverage"]),
        tau_infer=calib.tau_infer,
        coverage=float(acc.sum() / max(fin_row.sum(), 1)),
        rmse=rmse(acc),
        median_abs_err=float(np.median(np.abs(err.reshape(err.shape[0], -1)[acc]))) if acc.any() else float("nan"),
        buckets=buckets,
        bottom_rate=float(bottom.mean()),
        pole_bottom=float(bottom[pole_rows].mean()) if pole_rows.any() else float("nan"),
        seconds=seconds,
        jsonl=path,
        curve=_curves(recs, task, trainer),
    )


def _curves(recs: list[dict[str, Any]], task: Task, trainer: Any) -> dict[str, Any]:
    """Per-epoch statistics from the JSONL log plus a prediction slice near the pole."""
    import numpy as np

    by_epoch: dict[int, list[dict[str, Any]]] = {}
    evals = []
    for r in recs:
        if r["phase"] == "train":
            by_epoch.setdefault(r["epoch"], []).append(r)
        elif r["phase"] == "eval":
            evals.append(r)

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(vals)) if vals else float("nan")

    epochs = sorted(by_epoch)
    out: dict[str, Any] = {
        "epoch": epochs,
        "loss": [mean(by_epoch[e], "loss") for e in epochs],
        "coverage": [mean(by_epoch[e], "coverage") for e in epochs],
        "denom_abs_min": [min((r["denom_abs_min"] for r in by_epoch[e] if r["denom_abs_min"] is not None), default=float("nan")) for e in epochs],
        "denom_abs_mean": [mean(by_epoch[e], "denom_abs_mean") for e in epochs],
        "val_loss": [r["val_loss"] for r in evals],
        "val_coverage": [r["val_coverage"] for r in evals],
        "val_strict_coverage": [r["val_strict_coverage"] for r in evals],
    }
    # a 1-D slice through the pole
    if task.name == "pole":
        xs = POLE_A + np.linspace(-0.05, 0.05, 801)
        inputs = xs.astype(np.float32)[:, None]
        with np.errstate(divide="ignore"):
            truth = 1.0 / (xs - POLE_A)
        out["slice_label"] = "x"
    else:
        xs = np.linspace(-0.05, 0.05, 801)
        inputs = np.stack([np.full_like(xs, 0.3), xs], axis=1).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            truth = ik_numerators(0.3, xs)[:, 1] / np.sin(xs)
        out["slice_label"] = "θ2 at θ1 = 0.3; output dθ2"
    P, Q = trainer.model_outputs(inputs)
    P, Q = _to_numpy(P), _to_numpy(Q)
    if P.ndim > 1:
        P = P[:, -1]
    from zpml_core.inference import InferenceConfig, strict_inference

    res = strict_inference(P, Q, config=InferenceConfig(tau_infer=trainer.tau_infer))
    out["slice_x"] = xs
    out["slice_truth"] = truth
    out["slice_pred"] = np.asarray(res[0])
    out["slice_bottom"] = np.asarray(res[1])
    return out


# ---------------------------------------------------------------------------------------
# report


def _fmt(v: float, spec: str = ".3g") -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(results: Sequence[Result], version: str) -> str:
    b = results[0].backend
    head = (
        f"backend {b} ({version})\n"
        f"{'task':5s} {'epochs':>6s} {'val_cov':>7s} {'tau_inf':>8s} {'coverage':>8s} "
        f"{'rmse_acc':>9s} {'medAE':>8s} {'<1e-3':>9s} {'1e-3..2':>9s} {'1e-2..1':>9s} {'>=0.1':>9s} "
        f"{'bottom%':>7s} {'pole⊥':>6s} {'secs':>6s}"
    )
    rows = [head]
    for r in results:
        rows.append(
            f"{r.task:5s} {r.epochs:6d} {_fmt(r.val_coverage, '.4f'):>7s} "
            f"{_fmt(r.tau_infer, '.2e'):>8s} {_fmt(r.coverage, '.4f'):>8s} "
            f"{_fmt(r.rmse, '.3g'):>9s} {_fmt(r.median_abs_err, '.2g'):>8s} "
            + " ".join(f"{_fmt(v, '.3g'):>9s}" for v in r.buckets)
            + f" {_fmt(100 * r.bottom_rate, '.2f'):>7s} {_fmt(r.pole_bottom, '.2f'):>6s}"
            f" {r.seconds:6.1f}"
        )
    return "\n".join(rows)


def plot(results: Sequence[Result], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(results), 3, figsize=(15, 4.2 * len(results)), squeeze=False)
    for row, r in zip(axes, results, strict=True):
        c = r.curve
        ax = row[0]
        ax.semilogy(c["epoch"], c["loss"], label="train loss (epoch mean)")
        ax.semilogy(c["epoch"][: len(c["val_loss"])], c["val_loss"], label="val loss")
        ax.set_title(f"{r.backend} · {r.task}: loss")
        ax.set_xlabel("epoch")
        ax.legend()
        ax = row[1]
        ax.plot(c["epoch"], c["coverage"], label="train coverage")
        ax.plot(c["epoch"][: len(c["val_coverage"])], c["val_coverage"], label="val coverage (tau_eval)")
        ax.plot(c["epoch"][: len(c["val_strict_coverage"])], c["val_strict_coverage"], "--",
                label="val strict coverage (tau_infer)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("epoch")
        ax.set_title("coverage and |Q| statistics")
        ax2 = ax.twinx()
        ax2.semilogy(c["epoch"], c["denom_abs_min"], ":", color="C3", label="min |Q|")
        ax2.semilogy(c["epoch"], c["denom_abs_mean"], ":", color="C4", label="mean |Q|")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)
        ax = row[2]
        x, truth, pred, bot = c["slice_x"], c["slice_truth"], c["slice_pred"], c["slice_bottom"]
        ax.plot(x, np.clip(truth, -1e3, 1e3), color="k", lw=1, label="truth")
        ax.plot(x, np.where(bot, np.nan, np.clip(pred, -1e3, 1e3)), ".", ms=2, color="C0",
                label="strict prediction")
        if bot.any():
            ax.plot(x[bot], np.zeros(int(bot.sum())), "x", color="C3", ms=4, label="⊥ (rejected)")
        ax.set_ylim(-1e3, 1e3)
        ax.set_xlabel(c["slice_label"])
        ax.set_title(f"near the pole (tau_infer={r.tau_infer:.2e})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _framework_version(backend: str) -> str:
    if backend == "torch":
        import torch

        return f"torch {torch.__version__}"
    import jax
    import optax

    return f"jax {jax.__version__}, optax {optax.__version__}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zpml demo",
        description="Train the guide's RationalHead on 1/(x−a) and 2-link IK on every "
        "installed autodiff backend; write JSONL logs and a PNG per backend.",
    )
    p.add_argument("--backend", choices=("all", *DEMO_BACKENDS), default="all")
    p.add_argument("--epochs", type=int, default=40, help="max epochs per task (default 40)")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default="pole,ik", help="comma-separated subset of pole,ik")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.epochs < 1:
        print("zpml demo: --epochs must be >= 1", file=sys.stderr)
        return 2
    wanted = DEMO_BACKENDS if args.backend == "all" else (args.backend,)
    backends = [b for b in wanted if _available(b)]
    missing = [b for b in wanted if b not in backends]
    if missing:
        print(f"zpml demo: skipping {', '.join(missing)} (not installed)", file=sys.stderr)
    if not backends:
        print("zpml demo: no autodiff backend installed (pip install 'zpml-core[torch]' or "
              "'zpml-core[jax]')", file=sys.stderr)
        return 1
    task_names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in task_names if t not in ("pole", "ik")]
    if bad or not task_names:
        print(f"zpml demo: unknown task(s) {bad}; choose from pole, ik", file=sys.stderr)
        return 2
    _limit_threads()
    os.makedirs(args.out, exist_ok=True)
    tasks = [t for t in make_tasks(args.seed) if t.name in task_names]
    tables = []
    for backend in backends:
        results = [run_task(backend, t, epochs=args.epochs, seed=args.seed, out=args.out,
                            quiet=args.quiet) for t in tasks]
        text = table(results, _framework_version(backend))
        tables.append(text)
        print(text, flush=True)
        if not args.no_plot:
            png = os.path.join(args.out, f"demo_{backend}.png")
            plot(results, png)
            print(f"plot: {png}")
        print(f"logs: {', '.join(r.jsonl for r in results)}\n", flush=True)
    print(
        "columns: val_cov = last validation coverage at tau_eval; tau_inf = tau_infer "
        "calibrated on the validation split (largest tau with >= 95% coverage); coverage = "
        "accepted share of finite test targets under strict inference; rmse_acc = RMSE of "
        "accepted test predictions, medAE their median absolute error, then RMSE by distance to the singular set "
        "(pole: |x−a|, ik: |det J|) in [0,1e-3), [1e-3,1e-2), [1e-2,1e-1), [0.1,∞); "
        "bottom% = test rows decoded as ⊥; pole⊥ = share of exact-singularity rows "
        "answered ⊥; secs = training + calibration wall time"
    )
    return 0

