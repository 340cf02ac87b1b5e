"""``zpml bench``: the benchmark tasks over several seeds on torch and JAX.

For every task × backend × fit × seed, one :func:`zpml_tasks.runner.run`; writes

* ``<out>/runs/<task>_<backend>_<fit>_s<seed>.jsonl`` — the trainer's metric log (v2);
* ``<out>/results.jsonl`` — one record per run (config, metrics, tau_infer, diverged);
* ``<out>/summary.json`` — per (task, backend, fit, Q head, inputs, epochs): median
  and IQR (25th–75th percentile) of every metric over the seeds, the diverged-run
  count and the predict-0 baseline of the task;
* ``<out>/bench_<task>.png`` — metric distributions per backend/fit with the predict-0
  level, per-bucket errors, and the predictions of the median seed over the full range;

and prints one table per task (median [IQR], a predict-0 row). A run has *diverged* if
its test MSE exceeds 1 (``ik_ref``) or, on the true-pole tasks, its MSE far from the
singular set exceeds predict-0's there (see :func:`zpml_tasks.runner.diverged`).

``python -m zpml_tasks.bench --resummarize OUT`` rebuilds the summary, tables and
plots-free report from ``OUT/results.jsonl`` (e.g. after merging result files).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from zpml_tasks.data import TASKS, make_task
from zpml_tasks.features import INPUTS
from zpml_tasks.metrics import bucket_labels
from zpml_tasks.runner import DEFAULT_FIT, FITS

__all__ = ["HEADLINE", "build_parser", "main", "summarize"]

#: headline metrics of each task (name, format, which direction is better)
HEADLINE: dict[str, list[tuple[str, str]]] = {
    "ik_ref": [("mse", ".4f"), ("mae", ".4f"), ("success_rate", ".4f")],
    "ik_pole": [("median_abs_err", ".3f"), ("sign_agreement", ".3f"), ("singular_bottom", ".2f"),
                ("coverage", ".3f")],
    "pole": [("rmse_far", ".4f"), ("pole_error", ".2e"), ("exact_pole_bottom", ".2f"),
             ("coverage", ".3f")],
}
BUCKET_KEY = {"ik_ref": "bucket_mse", "ik_pole": "bucket_rmse", "pole": "bucket_rmse"}


def _q(vals: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in vals if x is not None and not math.isnan(x)], np.float64)
    if not v.size:
        return {"median": math.nan, "q25": math.nan, "q75": math.nan, "n": 0}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n": int(v.size)}


def summarize(records: Sequence[dict[str, Any]], baselines: dict[str, dict[str, Any]]
              ) -> dict[str, Any]:
    """Group run records by (task, backend, fit, Q head, inputs, epochs); median/IQR of
    every scalar metric and of every bucket, diverged count, and the task's predict-0
    metrics."""
    groups: dict[tuple[str, str, str, str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        key = (r["task"], r["backend"], r["fit"], r.get("q_head", "linear"),
               r.get("inputs", "raw"), r["epochs"])
        groups.setdefault(key, []).append(r)
    out: dict[str, Any] = {"groups": [], "predict_zero": baselines}
    for (task, backend, fit, q_head, inputs, _), rs in sorted(groups.items()):
        metrics: dict[str, Any] = {}
        for key, val in rs[0]["metrics"].items():
            if isinstance(val, list):
                metrics[key] = [_q([r["metrics"][key][i] for r in rs]) for i in range(len(val))]
            elif isinstance(val, (int, float)):
                metrics[key] = _q([r["metrics"][key] for r in rs])
        metrics["tau_infer"] = _q([r["tau_infer"] for r in rs])
        metrics["train_seconds"] = _q([r["train_seconds"] for r in rs])
        g: dict[str, Any] = {
            "task": task, "backend": backend, "fit": fit, "q_head": q_head, "inputs": inputs,
            "seeds": [r["seed"] for r in rs],
            "epochs": rs[0]["epochs"], "n_train": rs[0]["n_train"], "n_test": rs[0]["n_test"],
            "diverged": int(sum(bool(r["diverged"]) for r in rs)), "runs": len(rs),
            "metrics": metrics,
        }
        if task == "pole":
            g["exact_pole_bottom_seeds"] = int(sum(r["metrics"]["exact_pole_bottom"] == 1.0 for r in rs))
            g["pole_within_1e-3_seeds"] = int(sum(r["metrics"]["pole_error"] <= 1e-3 for r in rs))
        if task == "ik_ref":
            base = baselines[task][BUCKET_KEY[task]]
            g["buckets_better_than_predict_zero"] = [
                (not math.isnan(m["median"])) and m["median"] < b
                for m, b in zip(metrics[BUCKET_KEY[task]], base, strict=True)
            ]
        out["groups"].append(g)
    return out


def _cell(q: dict[str, float], spec: str) -> str:
    if math.isnan(q["median"]):
        return "nan"
    return f"{format(q['median'], spec)} [{format(q['q25'], spec)}, {format(q['q75'], spec)}]"


def _val(v: float, spec: str) -> str:
    return "nan" if v is None or math.isnan(v) else format(v, spec)


def table(summary: dict[str, Any], task: str, edges: tuple[float, ...], right_closed: bool) -> str:
    """Markdown table of one task: one row per backend/fit (median [IQR] over seeds),
    diverged runs, per-bucket medians, and the predict-0 row."""
    heads = HEADLINE[task]
    bkey = BUCKET_KEY[task]
    blabels = [f"{bkey.split('_')[1]} {lab}" for lab in bucket_labels(edges, right_closed)]
    cols = ["backend", "fit", "epochs", "runs", "diverged", *[h for h, _ in heads], "tau_infer",
            *blabels]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for g in summary["groups"]:
        if g["task"] != task:
            continue
        m = g["metrics"]
        fit = g["fit"] + ("" if g.get("q_head", "linear") == "linear" else f", {g['q_head']} Q")
        fit += "" if g.get("inputs", "raw") == "raw" else f", {g['inputs']} inputs"
        row = [g["backend"], fit, str(g["epochs"]), str(g["runs"]), str(g["diverged"])]
        row += [_cell(m[h], spec) for h, spec in heads]
        row.append(_val(m["tau_infer"]["median"], ".2e"))
        row += [_val(b["median"], ".3g") for b in m[bkey]]
        lines.append("| " + " | ".join(row) + " |")
    base = summary["predict_zero"][task]
    row = ["predict-0", "—", "—", "—", "—"]
    for h, spec in heads:
        row.append(_val(base.get(h, math.nan), spec) if isinstance(base.get(h), float) else "—")
    row.append("—")
    row += [_val(b, ".3g") for b in base[bkey]]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zpml bench",
        description="Train the benchmark tasks (pole, ik_ref, ik_pole) over several seeds on "
        "torch and JAX; print median [IQR] tables with a predict-0 row, write JSONL per run, "
        "a JSON summary and plots.",
    )
    p.add_argument("--tasks", default="pole,ik_pole,ik_ref",
                   help=f"comma-separated subset of {','.join(TASKS)} (default all)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds 0..N-1 (default 5)")
    p.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run (default per task: pole 40, ik_pole 600, ik_ref 5)")
    p.add_argument("--n-samples", type=int, default=None,
                   help="dataset size (ik_ref: total samples, default 200000; pole/ik_pole: "
                   "training rows, default 2304/5120)")
    p.add_argument("--backends", default="torch,jax", help="comma-separated subset of torch,jax")
    p.add_argument("--fit", default=None,
                   help="fit term(s), comma-separated: implicit (reference parity), angle "
                   "(bounded projective angle sin²), angle_l1 (its L1 form |sin|); default "
                   "per task: pole and ik_pole angle_l1, ik_ref angle")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default per task)")
    p.add_argument("--schedule", default=None, choices=("constant", "cosine"),
                   help="learning-rate schedule: constant, or cosine decay to 0 over the run "
                   "(default cosine on every task; the reference ik_ref recipe uses constant)")
    p.add_argument("--q-head", default=None, choices=("linear", "softplus"),
                   help="denominator head: linear (the guide's RationalHead) or softplus "
                   "(Q > 0, for targets finite everywhere; default per task: ik_ref "
                   "softplus, the others linear)")
    p.add_argument("--inputs", default=None, choices=INPUTS,
                   help="model inputs: raw, or raw plus their quantile coordinates fitted "
                   "on the training inputs (default per task: ik_ref quantile, the others raw)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="mini-batch size (default per task: pole 64, ik_pole 128, ik_ref 128; "
                   "the reference's ik_ref recipe uses 256)")
    p.add_argument("--lambda-margin", type=float, default=None,
                   help="LossConfig.lambda_margin (default 0.1)")
    p.add_argument("--policy", default="project",
                   choices=("none", "project", "reject", "clamp", "passthrough"),
                   help="gradient policy during training (default project)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1; torch's default oversubscribes "
                   "busy CPUs)")
    p.add_argument("--out", default="runs/bench", help="output directory (default runs/bench)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNGs")
    p.add_argument("--quiet", action="store_true", help="no per-run lines")
    return p


def _split(s: str) -> list[str]:
    return [t.strip() for t in s.split(",") if t.strip()]


def resummarize(out: str) -> int:
    """Summary and tables again from ``out/results.jsonl`` (diverged flags recomputed)."""
    from zpml_tasks.runner import baseline, diverged

    with open(os.path.join(out, "results.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    base_seeds: dict[str, list[dict[str, Any]]] = {}
    tasks: dict[tuple[str, int], Any] = {}
    for r in records:
        key = (str(r["task"]), int(r["seed"]))
        if key not in tasks:
            t = make_task(r["task"], r["seed"], None if r["task"] != "ik_ref" else
                          r["n_train"] + r["n_test"])
            tasks[key] = t
            base_seeds.setdefault(r["task"], []).append(baseline(t))
        r["metrics"] = {k: (math.nan if v is None else v) if not isinstance(v, list) else
                        [math.nan if x is None else x for x in v] for k, v in r["metrics"].items()}
        r["diverged"] = diverged(tasks[key], r["metrics"], baseline(tasks[key]))
    baselines = {k: _median_metrics(v) for k, v in base_seeds.items()}
    summary = summarize(records, baselines)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(_jsonable(summary), f, indent=1)
    for name in dict.fromkeys(r["task"] for r in records):
        t = next(v for (n, _), v in tasks.items() if n == name)
        print(f"\n{name}: median [IQR], test split; buckets by {t.distance_label}")
        print(table(summary, name, t.edges, t.right_closed))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--resummarize"] and len(argv) == 2:
        return resummarize(argv[1])
    args = build_parser().parse_args(argv)
    from zpml_tasks.runner import available, baseline, limit_threads, run

    tasks, wanted = _split(args.tasks), _split(args.backends)
    fits = None if args.fit is None else _split(args.fit)
    errs = []
    if not tasks or any(t not in TASKS for t in tasks):
        errs.append(f"--tasks: choose from {', '.join(TASKS)}")
    if fits is not None and (not fits or any(f not in FITS for f in fits)):
        errs.append(f"--fit: choose from {', '.join(FITS)}")
    if not wanted or any(b not in ("torch", "jax") for b in wanted):
        errs.append("--backends: choose from torch, jax")
    for name in ("seeds", "epochs", "n_samples", "threads", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            errs.append(f"--{name.replace('_', '-')} must be >= 1")
    if errs:
        print("zpml bench: " + "; ".join(errs), file=sys.stderr)
        return 2
    backends = [b for b in wanted if available(b)]
    if len(backends) < len(wanted):
        print(f"zpml bench: skipping {', '.join(b for b in wanted if b not in backends)} "
              "(not installed)", file=sys.stderr)
    if not backends:
        return 1
    print(limit_threads(args.threads), flush=True)
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    res_path = os.path.join(args.out, "results.jsonl")
    open(res_path, "w").close()
    records: list[dict[str, Any]] = []
    base_seeds: dict[str, list[dict[str, Any]]] = {}
    plots: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    task_defs: dict[str, Any] = {}
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    overrides = {} if args.lambda_margin is None else {"lambda_margin": args.lambda_margin}
    t_start = time.perf_counter()
    for name in tasks:
        for seed in seeds:
            task = make_task(name, seed, args.n_samples)
            base_seeds.setdefault(name, []).append(baseline(task))
            task_defs.setdefault(name, task)
            for backend in backends:
                for fit in fits or [DEFAULT_FIT[name]]:
                    r = run(task, backend, seed=seed, fit=fit, epochs=args.epochs, lr=args.lr,
                            out=os.path.join(args.out, "runs"), policy=args.policy,
                            schedule=args.schedule, q_head=args.q_head,
                            loss_overrides=overrides, inputs=args.inputs,
                            batch_size=args.batch_size)
                    records.append(r.record)
                    plots.setdefault((name, backend, fit), []).append((r.record, r.plot))
                    with open(res_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(_jsonable(r.record)) + "\n")
                    if not args.quiet:
                        m = r.record["metrics"]
                        head = ", ".join(f"{h}={_val(m[h], s)}" for h, s in HEADLINE[name])
                        print(f"  {name} {backend} {fit} seed {seed}: {head}, "
                              f"tau_infer={r.record['tau_infer']:.2e}, "
                              f"{r.record['train_seconds']:.0f}s"
                              + (" DIVERGED" if r.record["diverged"] else ""), flush=True)
    baselines = {k: _median_metrics(v) for k, v in base_seeds.items()}
    summary = summarize(records, baselines)
    summary["config"] = {k: v for k, v in vars(args).items()}
    summary["seconds"] = time.perf_counter() - t_start
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(_jsonable(summary), f, indent=1)
    for name in tasks:
        t = task_defs[name]
        print(f"\n{name}: median [IQR] over {args.seeds} seed(s), test split; "
              f"buckets by {t.distance_label}")
        print(table(summary, name, t.edges, t.right_closed))
    print(f"\nresults: {res_path}\nsummary: {os.path.join(args.out, 'summary.json')}")
    if not args.no_plot:
        from zpml_tasks.plots import bench_plot

        for name in tasks:
            png = os.path.join(args.out, f"bench_{name}.png")
            bench_plot(task_defs[name], summary, plots, png)
            print(f"plot: {png}")
    return 0


def _median_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over seeds of the predict-0 metrics (scalars and bucket lists)."""
    out: dict[str, Any] = {}
    for key, val in rows[0].items():
        if isinstance(val, list):
            out[key] = [_q([r[key][i] for r in rows])["median"] for i in range(len(val))]
        elif isinstance(val, (int, float)):
            out[key] = _q([r[key] for r in rows])["median"]
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return None if math.isnan(v) else (str(v) if math.isinf(v) else v)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


if __name__ == "__main__":
    raise SystemExit(main())
