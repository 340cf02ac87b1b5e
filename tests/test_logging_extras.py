"""Logging extras (issue 13 §1): metric_log version 2 (one field per metric, version-1 files
still read), TensorBoardLogger (extra ``tensorboard``), jsonl_to_dataframe,
read_metric_log_runs and aggregate_metric_logs (extra ``pandas``).

Expected values come from the records the test itself writes (or hand formulas for
mean/std), never from the helpers' output; TensorBoard events are read back with
tensorboard's own EventAccumulator.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zpml_core.utils.logging import (
    METRIC_LOG_RESERVED_KEYS,
    METRIC_LOG_SCHEMA_NAME,
    METRIC_LOG_SCHEMA_VERSION,
    JsonlLogger,
    TensorBoardLogger,
    aggregate_metric_log_records,
    aggregate_metric_logs,
    jsonl_to_dataframe,
    metric_log_record,
    metric_log_records_to_long_rows,
    metric_log_records_to_wide_rows,
    read_jsonl,
    read_metric_log_runs,
    validate_metric_record,
)

RESERVED = {"schema_name", "schema_version", "record_type", "phase", "step", "epoch", "metrics",
            "context"}


# ---------------------------------------------------------------------------------------
# helpers


def _records(seed: int, n_steps: int = 6, eval_every: int = 3) -> list[dict[str, Any]]:
    """Trainer-like records (the shape SCMTrainer logs), seeded."""
    rng = np.random.default_rng(seed)
    recs: list[dict[str, Any]] = []
    for step in range(1, n_steps + 1):
        epoch = (step - 1) // eval_every
        recs.append(metric_log_record(
            {"loss": float(rng.uniform(0.1, 2.0)), "coverage": float(rng.uniform(0.8, 1.0)),
             "tau_train": float(rng.uniform(5e-5, 2e-4)), "bottom_frac": 0.0},
            phase="train", step=step, epoch=epoch))
        if step % eval_every == 0:
            recs.append(metric_log_record(
                {"val_loss": float(rng.uniform(0.1, 2.0)), "epoch": float(epoch),
                 "val_coverage": float(rng.uniform(0.8, 1.0))},
                phase="eval", step=step, epoch=epoch))
    return recs


def _v1(record: dict[str, Any]) -> dict[str, Any]:
    """The same record in schema version 1 (zeroproofml 0.6.1): metrics mirrored at the
    top level unless their name is reserved."""
    out = {**record, "schema_version": 1}
    out.update({k: v for k, v in record["metrics"].items() if k not in RESERVED})
    return out


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    with JsonlLogger(path) as log:
        for r in records:
            log(r)
    return path


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def _uninstall(monkeypatch: Any, package: str) -> None:
    """Make ``package`` (and every submodule already imported) unimportable."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


def _f32(x: float) -> float:
    return float(np.float32(x))  # TensorBoard's simple_value is a float32


# ---------------------------------------------------------------------------------------
# metric_log version 2: one field per metric; version 1 still read


def test_import_zpml_core_imports_neither_pandas_nor_tensorboard() -> None:
    code = textwrap.dedent("""
        import json, sys
        import zpml_core, zpml_core.utils, zpml_core.utils.logging, zpml_core.training
        from zpml_core.utils.logging import TensorBoardLogger, aggregate_metric_logs
        print(json.dumps(sorted(m for m in ("pandas", "tensorboard") if m in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_each_metric_is_stored_once(tmp_path: Path) -> None:
    recs = _records(0)
    path = _write(tmp_path / "m.jsonl", recs)
    assert METRIC_LOG_SCHEMA_VERSION == 2 and METRIC_LOG_RESERVED_KEYS == RESERVED
    lines = path.read_text().splitlines()
    assert len(lines) == len(recs)
    for line, rec in zip(lines, recs, strict=True):
        raw = json.loads(line)
        assert set(raw) <= RESERVED and raw["schema_version"] == 2
        for name in rec["metrics"]:
            # the key occurs once in the whole line (it was twice in version 1)
            assert line.count(json.dumps(name) + ":") == (2 if name in ("epoch",) else 1)


def test_version_1_and_2_records_read_and_validate(tmp_path: Path) -> None:
    recs = _records(1)
    # a version-1 line exactly as zeroproofml 0.6.1 wrote it (sorted keys, mirrored metrics)
    old = [json.dumps(_v1(r), sort_keys=True) for r in recs[:4]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(old) + "\n")
    _write(path, recs[4:])  # appended by today's logger: version 2
    got = read_jsonl(path, validate=True)
    assert [r["schema_version"] for r in got] == [1] * 4 + [2] * (len(recs) - 4)
    assert [r["metrics"] for r in got] == [r["metrics"] for r in recs]  # one access path
    assert got[0]["loss"] == recs[0]["metrics"]["loss"]  # version-1 records: as stored
    for r in got:
        validate_metric_record(r)
    with pytest.raises(ValueError, match="only under 'metrics'"):
        validate_metric_record({**recs[0], "loss": recs[0]["metrics"]["loss"]})
    with pytest.raises(ValueError, match="mirrored"):
        validate_metric_record({**recs[0], "schema_version": 1})
    with pytest.raises(ValueError, match="reads 1, 2"):
        validate_metric_record({**recs[0], "schema_version": 3})


# ---------------------------------------------------------------------------------------
# TensorBoardLogger


def test_tensorboard_logger_writes_trainer_records(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    recs = _records(2)
    with TensorBoardLogger(tmp_path / "tb", step_key="step") as tb:
        for r in recs:
            tb(r)
    expected: dict[str, list[tuple[int, float]]] = {}
    for r in recs:
        for name, value in r["metrics"].items():
            expected.setdefault(name, []).append((r["step"], _f32(value)))
    assert _scalars(tmp_path / "tb") == expected


def test_tensorboard_logger_steps_and_values(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    torch = pytest.importorskip("torch")
    log_dir = tmp_path / "tb"
    tb = TensorBoardLogger(log_dir)  # no step_key: a counter over the records
    tb({"a": 1.5, "flag": True, "name": "x", "missing": None, "vec": [1.0, 2.0],
        "step": 7})  # a plain dict: its non-reserved fields
    tb(metric_log_record({"a": np.float32(2.5), "nan": float("nan")}, phase="p", step=99))
    tb({"a": torch.tensor([3.25]), "inf": math.inf, "big": np.array([1.0, 2.0])})
    tb.close()
    got = _scalars(log_dir)
    assert set(got) == {"a", "flag", "inf"}  # null (also a logged NaN), strings, lists: skipped
    assert got["a"] == [(0, 1.5), (1, 2.5), (2, 3.25)]
    assert got["flag"] == [(0, 1.0)]
    assert got["inf"] == [(2, math.inf)]

    # step_key: the record's field, else the metric; a record without one uses the counter
    log_dir2 = tmp_path / "tb2"
    with TensorBoardLogger(log_dir2, step_key="it") as tb2:
        tb2({"it": 10, "a": 1.0})
        tb2(metric_log_record({"it": 20, "a": 2.0}, phase="p"))
        tb2({"a": 3.0})
        tb2({"it": "not a number", "a": 4.0})
    assert _scalars(log_dir2) == {"a": [(10, 1.0), (20, 2.0), (0, 3.0), (1, 4.0)]}


def test_tensorboard_logger_array_scalars(xp: Any, backend_name: str, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    values = {"zero_d": 0.75, "one": -2.5}
    with TensorBoardLogger(tmp_path / "tb", step_key="step") as tb:
        tb(metric_log_record({}, phase="p", step=5) | {"metrics": {
            "zero_d": xp.asarray(values["zero_d"], dtype=xp.float64),
            "one": xp.asarray([values["one"]], dtype=xp.float32),
            "several": xp.asarray([1.0, 2.0], dtype=xp.float64)}})
    assert _scalars(tmp_path / "tb") == {k: [(5, v)] for k, v in values.items()}, backend_name


def test_tensorboard_logger_copies_and_errors(tmp_path: Path, monkeypatch: Any) -> None:
    pytest.importorskip("tensorboard")
    log_dir = tmp_path / "deep" / "tb"
    tb = TensorBoardLogger(log_dir)
    assert log_dir.is_dir()  # created at construction, before any record
    tb({"a": 1.0})
    clone = copy.deepcopy(tb)
    clone2 = pickle.loads(pickle.dumps(tb))
    tb.close()
    clone({"a": 2.0})  # continues the counter, in its own event file
    clone.close()
    clone2({"b": 3.0})
    clone2.close()
    got = {tag: sorted(v) for tag, v in _scalars(log_dir).items()}  # 3 files, any order
    assert got == {"a": [(0, 1.0), (1, 2.0)], "b": [(1, 3.0)]}
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 3
    assert repr(tb) == f"TensorBoardLogger({str(log_dir)!r}, step_key=None)"
    with pytest.raises(TypeError, match="step_key"):
        TensorBoardLogger(log_dir, step_key=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="log_dir"):
        TensorBoardLogger(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record"):
        TensorBoardLogger(log_dir)([("a", 1.0)])  # type: ignore[arg-type]
    _uninstall(monkeypatch, "tensorboard")
    with pytest.raises(ModuleNotFoundError, match=r"zpml-core\[tensorboard\]"):
        TensorBoardLogger(tmp_path / "none")


@pytest.mark.autodiff
def test_tensorboard_logger_as_trainer_log_hook(backend_name: str, tmp_path: Path) -> None:
    """Same run, two hooks: every JSONL metric is a TensorBoard scalar at the record's step."""
    pytest.importorskip("tensorboard")
    from zpml_core.losses import implicit_loss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (32, 1)).astype(np.float32)
    y = (1.0 / (x[:, 0] - 0.5)).astype(np.float32)
    if backend_name == "torch":
        import torch
        from zpml_backends.torch_training import RationalHead

        torch.manual_seed(0)
        model: Any = RationalHead(1)
        opt: Any = torch.optim.Adam(model.parameters(), lr=1e-2)
    else:
        import optax
        from zpml_backends.jax_training import rational_head_apply, rational_head_init

        model, opt = (rational_head_apply, rational_head_init(0, 1)), optax.adam(1e-2)
    jl = JsonlLogger(tmp_path / "m.jsonl")
    tb = TensorBoardLogger(tmp_path / "tb", step_key="step")

    def hook(record: dict[str, Any]) -> None:
        jl(record)
        tb(record)

    trainer = SCMTrainer(
        model=model, optimizer=opt, loss_fn=lambda out, lifted, tau=None: implicit_loss(
            *out, *lifted),
        train_loader=ArrayLoader(x, y, batch_size=8), config=TrainingConfig(
            max_epochs=2, seed=0, val_loader=ArrayLoader(x, y, batch_size=16), log_hook=hook))
    trainer.fit()
    jl.close()
    tb.close()
    recs = read_jsonl(tmp_path / "m.jsonl", validate=True)
    assert {r["phase"] for r in recs} == {"train", "eval"}
    expected: dict[str, list[tuple[int, float]]] = {}
    for r in recs:
        for name, value in r["metrics"].items():
            if value is not None:
                expected.setdefault(name, []).append((r["step"], _f32(value)))
    got = _scalars(tmp_path / "tb")
    assert got == expected and "loss" in got and "val_loss" in got


# ---------------------------------------------------------------------------------------
# jsonl_to_dataframe


def _frame_expectations(recs: list[dict[str, Any]], df: Any) -> None:
    assert len(df) == len(recs)
    metric_names = {k for r in recs for k in r["metrics"] if k not in RESERVED}
    assert set(df.columns) == {"schema_name", "schema_version", "record_type", "phase", "step",
                               "epoch", "metrics", "context"} | metric_names
    for i, r in enumerate(recs):
        row = df.iloc[i]
        assert row["phase"] == r["phase"] and row["step"] == r["step"]
        assert row["epoch"] == r["epoch"]  # the int epoch; the float metric stays in "metrics"
        assert row["metrics"] == r["metrics"]
        for name in metric_names:
            v = r["metrics"].get(name)
            if v is None:
                assert math.isnan(row[name])
            else:
                assert row[name] == v


def test_jsonl_to_dataframe(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    recs = _records(3)
    recs[1]["metrics"]["loss"] = None  # a non-finite value, written as null
    recs[2]["context"] = {"run": "a"}
    df = jsonl_to_dataframe(_write(tmp_path / "v2.jsonl", recs))
    assert isinstance(df, pd.DataFrame)
    _frame_expectations(recs, df)
    assert df["schema_version"].tolist() == [2] * len(recs)
    assert df["context"].iloc[2] == {"run": "a"}

    # a version-1 file gives the same frame (up to the version column)
    old = tmp_path / "v1.jsonl"
    old.write_text("".join(json.dumps(_v1(r), sort_keys=True) + "\n" for r in recs))
    df1 = jsonl_to_dataframe(old)
    assert df1["schema_version"].tolist() == [1] * len(recs)
    pd.testing.assert_frame_equal(df1.drop(columns="schema_version"),
                                  df.drop(columns="schema_version")[list(df1.columns.drop(
                                      "schema_version"))])

    # plain dicts (no "metrics" object): their fields are the columns
    plain = _write(tmp_path / "plain.jsonl", [{"a": 1.0, "b": "x"}, {"a": 2.0}])
    dfp = jsonl_to_dataframe(plain)
    assert dfp["a"].tolist() == [1.0, 2.0] and dfp["b"].iloc[0] == "x"


def test_dataframe_helpers_need_pandas(tmp_path: Path, monkeypatch: Any) -> None:
    path = _write(tmp_path / "m.jsonl", _records(0))
    _uninstall(monkeypatch, "pandas")
    with pytest.raises(ModuleNotFoundError, match=r"zpml-core\[pandas\]"):
        jsonl_to_dataframe(path)
    with pytest.raises(ModuleNotFoundError, match=r"zpml-core\[pandas\]"):
        aggregate_metric_logs(path, as_frame=True)
    assert aggregate_metric_logs(path)  # the list form needs no pandas


# ---------------------------------------------------------------------------------------
# several runs


def _seed_runs(tmp_path: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> list[Path]:
    return [_write(tmp_path / "runs" / f"seed_{s}" / "metrics.jsonl", _records(10 + s))
            for s in seeds]


def test_read_metric_log_runs(tmp_path: Path) -> None:
    paths = _seed_runs(tmp_path)
    recs = read_metric_log_runs(paths)
    n = len(_records(10))
    assert len(recs) == 3 * n
    for i, p in enumerate(paths):
        expected = _records(10 + i)
        for got, want in zip(recs[i * n:(i + 1) * n], expected, strict=True):
            assert got["metrics"] == want["metrics"] and got["step"] == want["step"]
            # generic stem "metrics": the run is named by its directory
            assert got["context"] == {"run_id": f"seed_{i}", "source_path": str(p), "seed": i}

    # mapping labels; a record's own context wins; options
    ctx = _write(tmp_path / "quick_s7" / "run.jsonl", [
        metric_log_record({"loss": 1.0}, phase="train", step=1, context={"seed": 99}),
        metric_log_record({"loss": 2.0}, phase="train", step=2)])
    got = read_metric_log_runs({"A": ctx})
    assert [r["context"] for r in got] == [
        {"seed": 99, "run_id": "A", "source_path": str(ctx)},
        {"run_id": "A", "source_path": str(ctx), "seed": 7}]
    got = read_metric_log_runs(str(ctx), label_key="", source_key=None, infer_seed=False)
    assert [r["context"] for r in got] == [{"seed": 99}, {}]
    assert read_metric_log_runs(ctx, label_key="run")[1]["context"]["run"] == "run"  # stem
    for bad, exc in ((3, TypeError), ([ctx, 3], TypeError), ({"a": None}, TypeError)):
        with pytest.raises(exc, match="logs"):
            read_metric_log_runs(bad)  # type: ignore[arg-type]


def _hand_stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"count": n, "mean": mean, "std": std, "min": min(values), "max": max(values),
            "first": values[0], "latest": values[-1]}


def _close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        if isinstance(a[k], float) and isinstance(b[k], float):
            if not math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=1e-15):
                return False
        elif a[k] != b[k]:
            return False
    return True


def test_aggregate_metric_logs_over_seeds(tmp_path: Path) -> None:
    paths = _seed_runs(tmp_path)
    runs = [_records(10 + s) for s in (0, 1, 2)]
    rows = aggregate_metric_logs(paths, group_by=("phase", "step"))
    # by hand: for each (phase, step, metric) the values of the three seeds
    expected = []
    for j, first in enumerate(runs[0]):
        for name in sorted(first["metrics"]):  # the log stores keys sorted
            vals = [float(run[j]["metrics"][name]) for run in runs]
            expected.append({"phase": first["phase"], "step": first["step"], "metric": name,
                             **_hand_stats(vals)})
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert _close(got, want), (got, want)

    # one row per seed and metric; std of one value is None
    per_seed = aggregate_metric_logs(paths, group_by=("seed", "phase"))
    for got in per_seed:
        run = runs[got["seed"]]
        vals = [float(r["metrics"][got["metric"]]) for r in run
                if r["phase"] == got["phase"] and got["metric"] in r["metrics"]]
        assert _close(got, {"seed": got["seed"], "phase": got["phase"],
                            "metric": got["metric"], **_hand_stats(vals)})
    assert len(per_seed) == 3 * (4 + 3)
    single = aggregate_metric_logs(paths[0], group_by=("phase", "step"))
    assert all(r["count"] == 1 and r["std"] is None for r in single)

    # the DataFrame form: the same rows
    pd = pytest.importorskip("pandas")
    df = aggregate_metric_logs(paths, group_by=("phase", "step"), as_frame=True)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["phase", "step", "metric", "count", "mean", "std", "min", "max",
                                "first", "latest"]
    assert df.to_dict("records") == rows
    df1 = aggregate_metric_logs(paths[0], as_frame=True, group_by=("phase", "step"))
    assert df1["std"].isna().all()


def test_aggregate_skips_non_numbers_and_reads_both_versions(tmp_path: Path) -> None:
    recs = [
        metric_log_record({"m": 1.0, "s": "x", "b": True, "n": None, "v": [1.0]}, phase="p"),
        metric_log_record({"m": 4, "n": float("inf")}, phase="p"),
        metric_log_record({"m": 7.0}, phase="q", context={"run": [1, 2]}),
    ]
    got = aggregate_metric_log_records(recs, group_by=("phase", "run"))
    assert got == [
        {"phase": "p", "run": None, "metric": "m", **_hand_stats([1.0, 4.0])},
        {"phase": "q", "run": "[1, 2]", "metric": "m", **_hand_stats([7.0])},
    ]
    path_v2 = _write(tmp_path / "a" / "metrics.jsonl", _records(5))
    path_v1 = tmp_path / "b" / "metrics.jsonl"
    path_v1.parent.mkdir()
    path_v1.write_text("".join(json.dumps(_v1(r), sort_keys=True) + "\n" for r in _records(5)))
    kw: dict[str, Any] = {"group_by": ("phase", "step"), "source_key": None, "label_key": ""}
    assert aggregate_metric_logs(path_v1, **kw) == aggregate_metric_logs(path_v2, **kw)
    for bad, exc in (("phase", TypeError), (("phase", "metric"), ValueError),
                     (("a", "a"), ValueError), ((1,), TypeError)):
        with pytest.raises(exc, match="group_by"):
            aggregate_metric_log_records(recs, group_by=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="as_frame"):
        aggregate_metric_log_records(recs, as_frame=1)  # type: ignore[arg-type]
    assert recs[0]["schema_name"] == METRIC_LOG_SCHEMA_NAME


def test_wide_and_long_rows_from_both_versions(tmp_path: Path) -> None:
    recs = _records(4)
    recs[0]["context"] = {"run": "a", "lr": 1e-3}
    v2 = read_jsonl(_write(tmp_path / "v2.jsonl", recs))
    old = tmp_path / "v1.jsonl"
    old.write_text("".join(json.dumps(_v1(r), sort_keys=True) + "\n" for r in recs))
    v1 = read_jsonl(old)
    for got, version in ((v2, 2), (v1, 1)):
        wide = metric_log_records_to_wide_rows(got)
        long = metric_log_records_to_long_rows(got, context_prefix="c.")
        k = 0
        for row, r in zip(wide, recs, strict=True):
            base = {"schema_name": METRIC_LOG_SCHEMA_NAME, "schema_version": version,
                    "record_type": "metric", "phase": r["phase"], "step": r["step"],
                    "epoch": r["epoch"]}
            ctx = r.get("context", {})
            assert row == {**base, **{f"context_{c}": v for c, v in ctx.items()},
                           **{f"metric_{m}": v for m, v in r["metrics"].items()}}
            for m in sorted(r["metrics"]):  # the log stores keys sorted
                assert long[k] == {**base, **{f"c.{c}": v for c, v in ctx.items()},
                                   "metric": m, "value": r["metrics"][m]}
                k += 1
        assert k == len(long)
    plain = metric_log_records_to_wide_rows([{"a": 1.0, "step": 3}], metric_prefix="")
    assert plain == [{"step": 3, "a": 1.0}]
    with pytest.raises(TypeError, match="metric_prefix"):
        metric_log_records_to_wide_rows(v2, metric_prefix=None)  # type: ignore[arg-type]
