"""One training run of a benchmark task on torch or JAX, through ``SCMTrainer``.

:func:`run` builds the guide's ``RationalHead`` (2×64 ReLU MLP; ``P`` and one shared
``Q``) from numpy initial weights (the same values on every backend) on the task's
inputs or their quantile features (:mod:`zpml_tasks.features`), trains it with
``SCMTrainingLoss(LossConfig(fit=…))`` passed straight to ``SCMTrainer``, picks
``tau_infer`` (the task's fixed value, or :func:`~zpml_core.training.calibrate_tau_infer`
on the validation split), decodes the test split with strict inference and scores it
with :mod:`zpml_tasks.metrics`. Returns a JSON-serialisable record plus plot data.

Threads: :func:`limit_threads` sets torch's intra-op threads (``torch.set_num_threads``)
and XLA's CPU flags before JAX is imported. Small models on a busy few-core machine
are fastest with one thread; torch's default (one per core) oversubscribes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zpml_tasks.data import Task
from zpml_tasks.features import INPUTS, QuantileFeatures
from zpml_tasks.metrics import decode, learned_pole, predict_zero, task_metrics

__all__ = [
    "BACKENDS",
    "DEFAULT_BATCH",
    "DEFAULT_EPOCHS",
    "DEFAULT_FIT",
    "DEFAULT_INPUTS",
    "DEFAULT_LR",
    "DEFAULT_Q_HEAD",
    "FITS",
    "RunResult",
    "available",
    "framework_version",
    "init_params",
    "limit_threads",
    "run",
]

BACKENDS = ("torch", "jax")
#: training-threshold range (the guide's): a new tau is drawn every step
TAU_TRAIN = (5e-5, 2e-4)
#: fit terms (``LossConfig.fit``): the reference's implicit loss, the projective angle
#: ``sin²∠`` and its L1 form ``|sin∠|``
FITS = ("implicit", "angle", "angle_l1")
#: fit term per task in ``zpml bench`` / ``zpml demo`` when none is given: the L1 angle
#: where targets have true poles (it places the zeros of Q ~50x closer on the pole task),
#: the squared angle where they are finite everywhere (lower MSE on the damped IK)
DEFAULT_FIT = {"pole": "angle_l1", "ik_pole": "angle_l1", "ik_ref": "angle"}
#: epochs per task: ik_pole trains long because the zeros of Q settle onto the singular
#: line slowly (exact singular rows answered ⊥, torch/JAX medians over 10 seeds with
#: angle_l1: 0.66/0.58 at 40 epochs, 0.86/0.80 at 200, 0.89/0.94 at 400, 0.92/0.98 at 600)
DEFAULT_EPOCHS = {"pole": 40, "ik_pole": 600, "ik_ref": 5}
#: Adam learning rates (the reference IK recipe uses 1e-3 at batch 256)
DEFAULT_LR = {"pole": 3e-3, "ik_pole": 3e-3, "ik_ref": 3e-3}
#: learning-rate schedules: the zeros of Q (the pole, the singular line) and the steep
#: damped ramp of ik_ref are located more precisely when the step size decays (cosine to 0)
DEFAULT_SCHEDULE = {"pole": "cosine", "ik_pole": "cosine", "ik_ref": "cosine"}
#: mini-batch sizes where they differ from the task's own (``Task.batch_size``, the
#: reference's 256 on ik_ref): twice the updates per epoch on ik_ref
DEFAULT_BATCH = {"ik_ref": 128}
#: model inputs (:data:`zpml_tasks.features.INPUTS`): quantile coordinates where 30 % of
#: the rows crowd within ~3e-3 rad of the singular lines (ik_ref), raw elsewhere
DEFAULT_INPUTS = {"pole": "raw", "ik_pole": "raw", "ik_ref": "quantile"}
#: denominator heads: a positive Q where the targets are finite everywhere (ik_ref)
DEFAULT_Q_HEAD = {"pole": "linear", "ik_pole": "linear", "ik_ref": "softplus"}


def available(name: str) -> bool:
    import importlib.util

    mods = {"torch": ("torch",), "jax": ("jax", "optax")}[name]
    return all(importlib.util.find_spec(m) is not None for m in mods)


def limit_threads(n: int = 1) -> str:
    """Set torch's intra-op threads to ``n`` and (if JAX is not imported yet) XLA's CPU
    threading; return a one-line description for the output."""
    import sys

    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    if "jax" not in sys.modules and n == 1:
        # (XLA has no intra-op thread-count flag: an unknown --flag aborts the process, and
        # the often-copied bare "intra_op_parallelism_threads=1" is silently ignored)
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    msg = [f"threads: {n} intra-op thread(s)"]
    if available("torch"):
        import torch

        torch.set_num_threads(n)
        msg.append(f"torch.set_num_threads({n})")
    if n == 1:
        msg.append("XLA_FLAGS=" + os.environ.get("XLA_FLAGS", ""))
    return "; ".join(msg)


def framework_version(backend: str) -> str:
    if backend == "torch":
        import torch

        return f"torch {torch.__version__}"
    import jax
    import optax

    return f"jax {jax.__version__}, optax {optax.__version__}"


def init_params(seed: int, input_dim: int, output_dim: int) -> dict[str, Any]:
    """RationalHead parameters in numpy (weights ``(in, out)``), initialised like
    ``torch.nn.Linear``; both backends start from these exact values."""
    rng = np.random.default_rng(seed)
    sizes = [(input_dim, 64), (64, 64), (64, 2 if output_dim == 1 else output_dim + 1)]
    layers = []
    for fan_in, fan_out in sizes:
        bound = 1.0 / math.sqrt(fan_in)
        layers.append({
            "w": rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32),
            "b": rng.uniform(-bound, bound, fan_out).astype(np.float32),
        })
    return {"backbone": layers[:2], "head": layers[2]}


#: denominator heads: ``linear`` (the guide's: Q is a linear read-out, any sign) or
#: ``softplus`` (Q = softplus(read-out) > 0: for targets that are finite everywhere, such
#: as the damped IK, the sign of (P, Q) is fixed and Q cannot cross 0 between regions
#: of opposite orientation — which the sign-blind projective angle otherwise allows)
Q_HEADS = ("linear", "softplus")


def _torch_positive_q(model: Any) -> Any:
    import torch

    class PositiveQ(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> tuple[Any, Any]:
            p, q = self.inner(x)
            return p, torch.nn.functional.softplus(q)

    return PositiveQ(model)


def _model(backend: str, params: dict[str, Any], task: Task, lr: float, schedule: str,
           total_steps: int, q_head: str = "linear", input_dim: int | None = None
           ) -> tuple[Any, Any, Any]:
    """``(model, optimizer, scheduler)``: the RationalHead (``q_head`` in
    :data:`Q_HEADS`; ``input_dim`` features, default the task's inputs), Adam at
    ``lr``, constant or cosine-decayed to 0 over ``total_steps`` optimizer updates
    (torch: ``CosineAnnealingLR`` stepped per update; JAX:
    ``optax.cosine_decay_schedule`` inside the optimizer)."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if q_head not in Q_HEADS:
        raise ValueError(f"q_head must be one of {Q_HEADS}, got {q_head!r}")
    input_dim = task.input_dim if input_dim is None else input_dim
    if backend == "torch":
        import torch
        from zpml_backends.torch_training import demo_model

        model, opt = demo_model(params, input_dim, task.output_dim, lr)
        if q_head == "softplus":
            model = _torch_positive_q(model)
        sched = None
        if schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
        return model, opt, sched
    import jax
    import optax
    from zpml_backends.jax_training import demo_model as jax_demo_model

    (apply, p), opt = jax_demo_model(params, input_dim, task.output_dim, lr)
    if q_head == "softplus":
        inner = apply

        def apply(params: Any, x: Any) -> tuple[Any, Any]:
            pp, q = inner(params, x)
            return pp, jax.nn.softplus(q)

    if schedule == "cosine":
        opt = optax.adam(optax.cosine_decay_schedule(lr, max(1, total_steps)))
    return (apply, p), opt, None


def _to_numpy(a: Any) -> np.ndarray:
    from zpml_core import get_backend, namespace

    return np.asarray(get_backend(namespace(a)).to_numpy(a))


def loss_config(fit: str, **kw: Any) -> Any:
    """``LossConfig`` of the benchmarks (the demo's weights) with the given fit term."""
    from zpml_core.losses import LossConfig

    base: dict[str, Any] = {"tau_train": 1e-4, "target_coverage": 0.95, "lambda_margin": 0.1,
                            "lambda_sign": 1.0, "lambda_rej": 0.01, **kw}
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(map(repr, FITS))}, got {fit!r}")
    try:
        return LossConfig(**base, fit=fit)
    except TypeError:
        if fit == "implicit":  # a zpml_core without the fit switch: implicit is its only fit
            return LossConfig(**base)
        raise RuntimeError(f"fit={fit!r} needs zpml_core's projective_distance_loss "
                           "(LossConfig(fit=...))") from None


@dataclass
class RunResult:
    record: dict[str, Any]
    #: plot data (numpy arrays; not written to JSON)
    plot: dict[str, Any] = field(repr=False, default_factory=dict)


def _policy(name: str | None) -> Any:
    if name is None or name == "none":
        return None
    from zpml_core.autodiff.policies import GradientPolicy

    return GradientPolicy[name.upper()]


def _predict(trainer: Any, x: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(P, Q)`` of the model, in chunks, as numpy."""
    raw = getattr(trainer, "model_outputs", None) or trainer.predict
    Ps, Qs = [], []
    for i in range(0, x.shape[0], chunk):
        P, Q = raw(x[i:i + chunk])
        Ps.append(_to_numpy(P))
        Qs.append(_to_numpy(Q))
    return np.concatenate(Ps), np.concatenate(Qs)


def _slices(task: Task) -> list[dict[str, Any]]:
    """Full-range 1-D slices through the singular set, for the prediction plots."""
    if task.name == "pole":
        a = float(task.meta.get("a", 0.25))
        xs = np.union1d(np.linspace(-1.0, 1.0, 2001), a + np.linspace(-0.05, 0.05, 1001))
        xs = xs.astype(np.float32)
        with np.errstate(divide="ignore"):
            truth = 1.0 / (xs.astype(np.float64) - np.float64(np.float32(a)))
        return [{"x": xs, "inputs": xs[:, None], "truth": truth[:, None], "xlabel": "x",
                 "outputs": ["y"], "sing": [a]}]
    from zpml_tasks.data import dls_targets, ik_numerators

    if task.name == "ik_pole":
        xs = np.linspace(-math.pi / 2, math.pi / 2, 2001)
        xs = np.union1d(xs, np.linspace(-0.05, 0.05, 1001)).astype(np.float32)
        inp = np.stack([np.full_like(xs, 0.3), xs], axis=1)
        t2 = xs.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            truth = ik_numerators(np.float64(np.float32(0.3)), t2) / np.sin(t2)[:, None]
        return [{"x": xs, "inputs": inp, "truth": truth, "xlabel": "θ2 (θ1 = 0.3)",
                 "outputs": ["dθ1", "dθ2"], "sing": [0.0]}]
    xs = np.union1d(np.linspace(-math.pi, math.pi, 2001), np.linspace(-0.05, 0.05, 501))
    xs = xs.astype(np.float32)
    inp = np.stack([np.full_like(xs, 0.3), xs, np.full_like(xs, 0.1), np.full_like(xs, 0.05)], 1)
    d = inp.astype(np.float64)
    truth = dls_targets(d[:, 0], d[:, 1], d[:, 2:])
    return [{"x": xs, "inputs": inp, "truth": truth,
             "xlabel": "θ2 (θ1 = 0.3, dx = 0.1, dy = 0.05)", "outputs": ["dθ1", "dθ2"],
             "sing": [-math.pi, 0.0, math.pi]}]


def baseline(task: Task) -> dict[str, Any]:
    """Predict-0 metrics on the test split (plus ``diverged`` for the table)."""
    dec, bot = predict_zero(task.test)
    m = task_metrics(task, task.test, dec, bot, pole=None)
    return m


def diverged(task: Task, m: dict[str, Any], base: dict[str, Any] | None = None) -> bool:
    """A run diverged if its test error is NaN or blows up where the targets are
    moderate: ``ik_ref`` — MSE over non-⊥ samples > 1 (predict-0 scores ~0.4); the
    true-pole tasks — the MSE of the far bucket (distance ≥ 0.1 to the singular set)
    exceeds the predict-0 MSE of that bucket (``base``; 1 without it)."""
    if task.name == "ik_ref":
        return bool(math.isnan(m["mse"]) or m["mse"] > 1.0)
    v = m["bucket_rmse"][-1] ** 2
    lim = 1.0 if base is None else base["bucket_rmse"][-1] ** 2
    return bool(math.isnan(v) or v > lim)


def run(task: Task, backend: str, *, seed: int, fit: str = "implicit", epochs: int | None = None,
        lr: float | None = None, out: str | None = None, policy: str | None = "project",
        target_coverage: float = 0.95, quiet: bool = True, tag: str = "",
        checkpoint: str | None = None, log_path: str | None = None,
        checkpoint_metadata: dict[str, Any] | None = None, schedule: str | None = None,
        q_head: str | None = None, loss_overrides: dict[str, float] | None = None,
        inputs: str | None = None, batch_size: int | None = None) -> RunResult:
    """Train ``task`` on ``backend`` and score the test split (module docstring).

    ``None`` for ``epochs``, ``lr``, ``schedule``, ``q_head``, ``inputs`` (the model's
    input features, :data:`zpml_tasks.features.INPUTS`) and ``batch_size`` takes the
    task's default (``DEFAULT_*``)."""
    from zpml_core.losses import SCMTrainingLoss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig, calibrate_tau_infer
    from zpml_core.utils.logging import JsonlLogger

    epochs = DEFAULT_EPOCHS.get(task.name, 20) if epochs is None else epochs
    lr = DEFAULT_LR.get(task.name, 1e-3) if lr is None else lr
    schedule = DEFAULT_SCHEDULE.get(task.name, "constant") if schedule is None else schedule
    q_head = DEFAULT_Q_HEAD.get(task.name, "linear") if q_head is None else q_head
    inputs = DEFAULT_INPUTS.get(task.name, "raw") if inputs is None else inputs
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    if batch_size is None:
        batch_size = DEFAULT_BATCH.get(task.name, task.batch_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    # the model sees features(x): the raw inputs, or with their quantile coordinates
    # fitted on the training inputs (zpml_tasks.features)
    qf = QuantileFeatures.fit(task.train.x) if inputs == "quantile" else None

    def features(x: np.ndarray) -> np.ndarray:
        return x if qf is None else qf.transform(x)

    x_train, x_val = features(task.train.x), features(task.val.x)
    name = f"{task.name}_{backend}_{fit}_s{seed}{tag}"
    if log_path is None and out is not None:
        log_path = os.path.join(out, f"{name}.jsonl")
    if log_path is not None and os.path.exists(log_path):
        os.remove(log_path)
    logger = JsonlLogger(log_path) if log_path is not None else None
    recs: list[dict[str, Any]] = []
    bar = _progress(epochs, f"{backend:5s} {task.name:7s} s{seed}", quiet)

    def hook(record: dict[str, Any]) -> None:
        if logger is not None:
            logger(record)
        if record["phase"] in ("train", "eval"):
            recs.append({**record["metrics"], "phase": record["phase"], "epoch": record.get("epoch")})
        if bar is not None and record["phase"] == "eval":
            bar.update(1)

    va = task.val
    config = TrainingConfig(
        max_epochs=epochs, tau_train_min=TAU_TRAIN[0], tau_train_max=TAU_TRAIN[1],
        tau_infer=1e-6, coverage_threshold=0.0, coverage_patience=1,
        gradient_policy=_policy(policy),
        val_loader=ArrayLoader(x_val, va.y, batch_size=4096),
        log_hook=hook, seed=seed,
    )
    steps = epochs * math.ceil(len(task.train) / batch_size)
    n_in = x_train.shape[1]
    model, optimizer, sched = _model(backend, init_params(seed, n_in, task.output_dim),
                                     task, lr, schedule, steps, q_head, n_in)
    trainer = SCMTrainer(
        model=model, optimizer=optimizer, loss_fn=SCMTrainingLoss(loss_config(fit, **(loss_overrides or {}))),
        train_loader=ArrayLoader(x_train, task.train.y, batch_size=batch_size, shuffle=True),
        config=config, scheduler=sched,
    )
    t0 = time.perf_counter()
    try:
        trainer.fit()
        train_s = time.perf_counter() - t0
        Pv, Qv = _predict(trainer, x_val)
        calib = None
        if task.tau_infer is None:
            calib = calibrate_tau_infer(Pv, Qv, va.y, target_coverage=target_coverage)
            tau = calib.tau_infer
        else:
            tau = task.tau_infer
        trainer.tau_infer = tau
        P, Q = _predict(trainer, features(task.test.x))
        pole = None
        plot: dict[str, Any] = {}
        if task.name == "pole":
            a = float(task.meta["a"])
            grid = (a + np.linspace(-0.05, 0.05, 20001)).astype(np.float32)
            _, Qg = _predict(trainer, features(grid[:, None]))
            pole = learned_pole(grid, Qg, a)
        slices = []
        for s in _slices(task):
            Ps, Qs = _predict(trainer, features(s["inputs"]))
            dec, bot = decode(Ps, Qs, tau)
            slices.append({**s, "pred": dec.reshape(dec.shape[0], -1), "bottom": bot,
                           "Q": Qs.reshape(-1)})
        plot["slices"] = slices
    finally:
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
    if checkpoint is not None:
        meta = dict(checkpoint_metadata or {"task": task.name})
        if qf is not None:  # the model's inputs are features: needed to use the checkpoint
            meta["inputs"] = inputs
            meta["features"] = qf.to_dict()
        trainer.save_checkpoint(checkpoint, tau_infer=tau, metadata=meta)
    dec, bot = decode(P, Q, tau)
    m = task_metrics(task, task.test, dec, bot, pole=pole)
    train_losses = [r["loss"] for r in recs if r["phase"] == "train" and r.get("loss") is not None]
    record: dict[str, Any] = {
        "task": task.name, "backend": backend, "framework": framework_version(backend),
        "fit": fit, "seed": seed, "epochs": trainer.current_epoch, "lr": lr,
        "policy": policy or "none", "schedule": schedule, "q_head": q_head, "inputs": inputs,
        "batch_size": batch_size, "loss_config": loss_config(fit, **(loss_overrides or {})).to_dict(),
        "n_train": len(task.train), "n_test": len(task.test),
        "tau_infer": tau, "tau_source": "fixed" if calib is None else "calibrated",
        "metrics": m, "diverged": diverged(task, m, baseline(task)),
        "final_train_loss": float(np.mean(train_losses[-50:])) if train_losses else math.nan,
        "train_seconds": train_s, "log": log_path,
    }
    if calib is not None:
        record["calibration"] = {"target_coverage": target_coverage, "coverage": calib.coverage,
                                 "rmse": calib.rmse}
        plot["calibration"] = calib.curve if hasattr(calib, "curve") else None
    plot["Q_val_abs"] = np.abs(Qv)
    plot["recs"] = recs
    plot["tau_infer"] = tau
    return RunResult(record, plot)


def _progress(total: int, desc: str, quiet: bool) -> Any:
    if quiet:
        return None
    try:
        import sys

        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="epoch", leave=True, file=sys.stderr)
