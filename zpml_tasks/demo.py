"""``zpml demo``: the guide's RationalHead learning real poles, on every autodiff backend.

Two tasks with a true singularity (:mod:`zpml_tasks.data`):

* ``pole`` — ``y = 1/(x − a)`` on ``x ∈ [−1, 1]`` (``a = 0.25``), with samples at
  log-spaced distances from the pole and exact-pole samples whose target is ±inf
  (lifted to ``(±1, 0)``: the model should answer ⊥ there);
* ``ik`` — 2-link arm differential inverse kinematics with a true pole
  (``dθ = J(θ)⁻¹ e_x``, ``det J = sin θ2``), task ``ik_pole`` of ``zpml bench``.

Each backend trains the same initial weights with the same data, loss
(``SCMTrainingLoss(LossConfig(fit=…))`` passed straight to ``SCMTrainer``) and
``TrainingConfig``; ``tau_infer`` is calibrated on the validation split (candidates
spanning the observed ``|Q|``) and the test split is decoded with ``strict_inference``.
Writes ``<out>/<backend>_<task>.jsonl`` (metric_log v2), a checkpoint per task and
``<out>/demo_<backend>.png``, and prints one table per backend with a predict-0 row.
Torch runs with one intra-op thread (printed); ``--threads`` changes it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["DEMO_TASKS", "main", "make_tasks"]

#: demo task name → zpml_tasks task
DEMO_TASKS = {"pole": "pole", "ik": "ik_pole"}
DEMO_BACKENDS = ("torch", "jax")


def make_tasks(seed: int) -> list[Any]:
    """The demo's tasks (``pole``, ``ik``) for one seed."""
    from zpml_tasks.data import ik_pole_task, pole_task

    return [pole_task(seed), ik_pole_task(seed)]


def _fmt(v: Any, spec: str) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(rows: Sequence[tuple[str, dict[str, Any], dict[str, Any], Any]], version: str) -> str:
    """One backend: per task a model row and a predict-0 row."""
    from zpml_tasks.metrics import bucket_labels

    out = [f"backend {rows[0][1]['backend']} ({version})"]
    for demo_name, rec, base, task in rows:
        m = rec["metrics"]
        labels = bucket_labels(task.edges, task.right_closed)
        if task.name == "pole":
            heads = [("rmse_far", ".4f"), ("pole_error", ".1e"), ("exact_pole_bottom", ".2f")]
        else:
            heads = [("median_abs_err", ".3f"), ("sign_agreement", ".3f"), ("singular_bottom", ".2f")]
        cols = ["task", "model", "epochs", "tau_inf", "coverage", *[h for h, _ in heads],
                *[f"rmse {lab}" for lab in labels]]
        out.append(" | ".join(cols))

        def line(name: str, mm: dict[str, Any], epochs: str, tau: str,
                 demo_name: str = demo_name, heads: list[tuple[str, str]] = heads) -> str:
            return " | ".join([demo_name, name, epochs, tau, _fmt(mm["coverage"], ".4f"),
                               *[_fmt(mm.get(h), s) for h, s in heads],
                               *[_fmt(v, ".3g") for v in mm["bucket_rmse"]]])

        out.append(line(f"fit={rec['fit']}", m, str(rec["epochs"]), _fmt(rec["tau_infer"], ".2e")))
        out.append(line("predict-0", base, "-", "-"))
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zpml demo",
        description="Train the guide's RationalHead on 1/(x−a) and 2-link IK on every "
        "installed autodiff backend; write JSONL logs and a PNG per backend.",
    )
    p.add_argument("--backend", choices=("all", *DEMO_BACKENDS), default="all")
    p.add_argument("--epochs", type=int, default=40, help="epochs per task (default 40)")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default="pole,ik", help="comma-separated subset of pole,ik")
    p.add_argument("--fit", choices=("angle_l1", "angle", "implicit"), default="angle_l1",
                   help="fit term: angle_l1 (the bounded projective angle's L1 form |sin|, "
                   "default), angle (sin²) or implicit")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.epochs < 1:
        print("zpml demo: --epochs must be >= 1", file=sys.stderr)
        return 2
    if args.threads < 1:
        print("zpml demo: --threads must be >= 1", file=sys.stderr)
        return 2
    from zpml_tasks.runner import available, baseline, framework_version, limit_threads, run

    wanted = DEMO_BACKENDS if args.backend == "all" else (args.backend,)
    backends = [b for b in wanted if available(b)]
    missing = [b for b in wanted if b not in backends]
    if missing:
        print(f"zpml demo: skipping {', '.join(missing)} (not installed)", file=sys.stderr)
    if not backends:
        print("zpml demo: no autodiff backend installed (pip install 'zpml-core[torch]' or "
              "'zpml-core[jax]')", file=sys.stderr)
        return 1
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in names if t not in DEMO_TASKS]
    if bad or not names:
        print(f"zpml demo: unknown task(s) {bad}; choose from pole, ik", file=sys.stderr)
        return 2
    print(limit_threads(args.threads), flush=True)
    os.makedirs(args.out, exist_ok=True)
    tasks = {t.name: t for t in make_tasks(args.seed)}
    for backend in backends:
        rows, plot_rows = [], []
        for name in names:
            task = tasks[DEMO_TASKS[name]]
            r = run(task, backend, seed=args.seed, fit=args.fit, epochs=args.epochs,
                    out=None, quiet=args.quiet, tag="",
                    checkpoint=os.path.join(args.out, f"{backend}_{name}.ckpt"),
                    log_path=os.path.join(args.out, f"{backend}_{name}.jsonl"),
                    checkpoint_metadata={"demo_task": name})
            rows.append((name, r.record, baseline(task), task))
            plot_rows.append((r.record, r.plot, task))
        print(table(rows, framework_version(backend)), flush=True)
        if not args.no_plot:
            from zpml_tasks.plots import demo_plot

            png = os.path.join(args.out, f"demo_{backend}.png")
            demo_plot(plot_rows, png)
            print(f"plot: {png}")
        print(f"logs: {', '.join(r['log'] for _, r, _, _ in rows)}\n", flush=True)
    print(
        "columns: tau_inf = tau_infer calibrated on the validation split (largest candidate, "
        "spanning the observed |Q|, with >= 95% coverage); coverage = share of finite test "
        "targets not answered ⊥; pole: rmse_far = RMSE at |x−a| >= 0.1, pole_error = |learned "
        "pole − a| (zero of Q), exact_pole_bottom = share of x = a rows answered ⊥; ik: "
        "median_abs_err and sign_agreement over non-⊥ outputs, singular_bottom = share of "
        "θ2 = 0 rows answered ⊥; rmse by distance to the singular set (intervals); "
        "predict-0 = 0 everywhere, never ⊥"
    )
    return 0
