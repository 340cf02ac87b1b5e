"""JSONL metric logging (semantics §7.4, decision #25)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from zpml_core.utils.logging import (
    METRIC_LOG_SCHEMA_NAME,
    CorruptLinesWarning,
    JsonlLogger,
    metric_log_record,
    read_jsonl,
    to_jsonable,
    validate_metric_record,
)


def test_to_jsonable_python_values() -> None:
    data = {"a": float("nan"), "b": float("inf"), "c": -float("inf"), "d": 1.5, "e": 3,
            "f": True, "g": None, "h": "s", "i": (1.0, float("nan")), 5: [float("inf")]}
    assert to_jsonable(data) == {"a": None, "b": None, "c": None, "d": 1.5, "e": 3, "f": True,
                                 "g": None, "h": "s", "i": [1.0, None], "5": [None]}


def test_to_jsonable_numpy_scalars_and_arrays() -> None:
    # np.float32 NaN crashed the reference writer (decision #25)
    assert to_jsonable(np.float32("nan")) is None
    assert to_jsonable(np.float64(2.5)) == 2.5
    assert to_jsonable(np.int64(7)) == 7
    assert to_jsonable(np.bool_(True)) is True
    assert to_jsonable(np.array(3.0)) == 3.0
    assert to_jsonable(np.array([1.0, np.nan, np.inf], dtype=np.float32)) == [1.0, None, None]
    assert to_jsonable(np.array([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    assert to_jsonable(1 + 2j) == [1.0, 2.0]


def test_to_jsonable_framework_arrays() -> None:
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    strict = pytest.importorskip("array_api_strict")
    assert to_jsonable(torch.tensor(float("nan"))) is None
    assert to_jsonable(torch.tensor([1.0, float("nan")])) == [1.0, None]
    assert to_jsonable(torch.tensor([1.5], dtype=torch.bfloat16, requires_grad=True)) == [1.5]
    assert to_jsonable(jnp.asarray(2.0)) == 2.0
    assert to_jsonable(jnp.asarray([1.0, jnp.inf])) == [1.0, None]
    assert to_jsonable(jnp.asarray([1.5], dtype=jnp.bfloat16)) == [1.5]
    assert to_jsonable(strict.asarray([1.0, float("nan")])) == [1.0, None]


def test_metric_log_record_shape() -> None:
    rec = metric_log_record({"loss": float("nan"), "coverage": 1.0, "step": 9}, phase="train",
                            step=3, epoch=0, context={"run": "x"})
    assert rec["schema_name"] == METRIC_LOG_SCHEMA_NAME
    assert rec["schema_version"] == 2
    assert rec["record_type"] == "metric"
    assert rec["metrics"] == {"loss": None, "coverage": 1.0, "step": 9}
    assert rec["step"] == 3
    assert rec["context"] == {"run": "x"}
    # (was: every metric also mirrored at the top level — schema version 1; version 2
    # stores each metric once, issue 13 §1)
    assert set(rec) == {"schema_name", "schema_version", "record_type", "phase", "metrics",
                        "step", "epoch", "context"}
    validate_metric_record(rec)


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"phase": ""}, ValueError, "phase"),
        ({"phase": "train", "record_type": ""}, ValueError, "record_type"),
        ({"phase": "train", "step": 1.5}, TypeError, "step"),
        ({"phase": "train", "epoch": True}, TypeError, "epoch"),
        ({"phase": "train", "context": 3}, TypeError, "context"),
    ],
)
def test_metric_log_record_errors(kwargs: dict, exc: type, word: str) -> None:
    with pytest.raises(exc, match=word):
        metric_log_record({"loss": 1.0}, **kwargs)


def test_validate_metric_record_rejects() -> None:
    good = metric_log_record({"loss": 1.0}, phase="train", step=1)
    for bad in (
        {**good, "schema_version": 3},
        {**good, "schema_version": True},
        {**good, "schema_name": "other"},
        {**good, "loss": 1.0},  # version 2 has no top-level mirrors
        {**good, "schema_version": 1},  # version 1 must have them
        {**good, "schema_version": 1, "loss": 2.0},
        {**good, "extra": 1},
        {**good, "phase": ""},
        [good],
    ):
        with pytest.raises(ValueError):
            validate_metric_record(bad)


def test_logger_writes_sorted_strict_lines(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "m.jsonl"
    log = JsonlLogger(path)
    assert path.parent.is_dir()
    log(metric_log_record({"z": 1.0, "a": float("nan")}, phase="train", step=1))
    # flushed immediately: another reader sees the complete line
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert "NaN" not in text
    keys = list(json.loads(text))
    assert keys == sorted(keys)
    log({"schema_name": METRIC_LOG_SCHEMA_NAME, "schema_version": 1, "record_type": "metric",
         "phase": "eval", "metrics": {"v": np.float32(2.0)}, "v": np.float32(2.0)})
    log.close()
    recs = read_jsonl(path, validate=True)
    assert [r["phase"] for r in recs] == ["train", "eval"]
    assert recs[0]["metrics"]["a"] is None and recs[1]["v"] == 2.0  # (v1: mirrored)


def test_logger_appends_and_survives_copies(tmp_path: Path) -> None:
    import copy

    path = tmp_path / "m.jsonl"
    with JsonlLogger(path, fsync=True) as log:
        log(metric_log_record({"x": 1}, phase="p"))
        clone = copy.deepcopy(log)
    clone(metric_log_record({"x": 2}, phase="p"))
    clone.close()
    assert [r["metrics"]["x"] for r in read_jsonl(path)] == [1, 2]
    with pytest.raises(TypeError, match="fsync"):
        JsonlLogger(path, fsync=1)  # type: ignore[arg-type]


def test_read_jsonl_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    lines = [json.dumps(metric_log_record({"i": i}, phase="train", step=i)) for i in range(3)]
    path.write_text("\n".join(lines) + "\n\n" + lines[0][:17])
    assert [r["metrics"]["i"] for r in read_jsonl(path, validate=True)] == [0, 1, 2]


def test_read_jsonl_bad_middle_line_and_nan(tmp_path: Path) -> None:
    # issue 10: a corrupt line no longer makes the whole file unreadable: it is skipped
    # and reported (CorruptLinesWarning); on_corrupt="raise" keeps the old error
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 2}\n')
    with pytest.warns(CorruptLinesWarning, match="line 2"):
        assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(path, on_corrupt="raise")
    path.write_text('{"a": NaN}\n')
    with pytest.raises(ValueError, match="NaN"):
        read_jsonl(path, on_corrupt="raise")
    with pytest.warns(CorruptLinesWarning, match="NaN"):
        assert read_jsonl(path) == []
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="JSON object"):
        read_jsonl(path, on_corrupt="raise")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_sigkill_mid_run_leaves_complete_records(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    script = textwrap.dedent(
        f"""
        import sys
        from zpml_core.utils.logging import JsonlLogger, metric_log_record
        log = JsonlLogger({str(path)!r})
        i = 0
        while True:
            log(metric_log_record({{"loss": 1.0 / (i + 1), "pad": "x" * 512}},
                                  phase="train", step=i))
            if i == 50:
                print("ready", flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    recs = read_jsonl(path, validate=True)
    assert len(recs) > 50
    assert [r["step"] for r in recs] == list(range(len(recs)))
    assert all(math.isclose(r["metrics"]["loss"], 1.0 / (r["step"] + 1)) for r in recs)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_sigkill_mid_training_epoch(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    path = tmp_path / "runs" / "train.jsonl"
    script = textwrap.dedent(
        f"""
        import time
        import numpy as np, torch
        from zpml_core.losses import implicit_loss
        from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig
        from zpml_core.utils.logging import JsonlLogger
        from zpml_backends.torch_training import RationalHead

        x = np.linspace(-1, 1, 4096, dtype=np.float32)[:, None]
        y = (1 / (x[:, 0] - 0.3)).astype(np.float32)
        written = [0]
        log = JsonlLogger({str(path)!r})

        def hook(rec):
            log(rec)
            written[0] += 1
            if written[0] == 40:
                print("ready", flush=True)
            if written[0] >= 40:  # epoch 0 (1024 steps) cannot end before the kill
                time.sleep(0.005)  # (>= 5 s left, the kill comes after 0.1 s)

        def loss(outputs, lifted):
            return implicit_loss(*outputs, *lifted)

        model = RationalHead(1)
        trainer = SCMTrainer(model=model, optimizer=torch.optim.SGD(
            model.parameters(), lr=1e-3), loss_fn=loss,
            train_loader=ArrayLoader(x, y, batch_size=4), config=TrainingConfig(
                max_epochs=1000, log_hook=hook))
        trainer.fit()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    recs = read_jsonl(path, validate=True)
    assert len(recs) >= 40
    assert [r["step"] for r in recs] == list(range(1, len(recs) + 1))
    assert all(r["phase"] == "train" and r["epoch"] == 0 for r in recs)  # killed mid-epoch 0
