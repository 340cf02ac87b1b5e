"""Class: lost or unreadable metric records.

* a writer killed at any byte of a record, then resumed with a new ``JsonlLogger`` on the
  same file: the next record starts on a fresh line and ``read_jsonl`` returns every
  complete record (the partial one is skipped and reported), never fails for the file;
* a corrupt line anywhere is skipped and reported (``CorruptLinesWarning`` with the path
  and line numbers), or raises with ``on_corrupt="raise"``;
* an unwritable location fails when the logger is constructed, naming the file;
* values whose ``tolist()`` returns themselves (``np.longdouble``) and self-referencing
  values convert (or raise ``ValueError`` naming the key path) instead of recursing.

Expected records are derived from the byte offsets of the lines written, not from the
reader's output.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zpml_core.utils.logging import (
    CorruptLinesWarning,
    JsonlLogger,
    iter_jsonl,
    metric_log_record,
    read_jsonl,
    to_jsonable,
)


def _record(i: int, phase: str = "train") -> dict[str, Any]:
    return metric_log_record({"loss": 1.0 / (i + 1), "vec": [i, -i, 0.5], "tag": f"r{i}"},
                             phase=phase, step=i, epoch=i // 3, context={"run": "hostile"})


def _read(path: Path, **kw: Any) -> tuple[list[dict[str, Any]], list[CorruptLinesWarning]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = read_jsonl(path, validate=True, **kw)
    ws = [w.message for w in caught]
    assert all(isinstance(w, CorruptLinesWarning) for w in ws), ws
    return recs, ws  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# killed mid-record, resumed


def test_resume_after_a_cut_at_every_byte(tmp_path: Path) -> None:
    """What a SIGKILL can leave is a prefix of the byte stream: try every prefix."""
    full = tmp_path / "full.jsonl"
    with JsonlLogger(full) as log:
        for i in range(3):
            log(_record(i))
    data = full.read_bytes()
    ends = [k for k, b in enumerate(data) if b == ord("\n")]  # newline offsets
    starts = [0, *(e + 1 for e in ends[:-1])]
    for cut in range(len(data) + 1):
        path = tmp_path / f"cut{cut}.jsonl"
        path.write_bytes(data[:cut])
        with JsonlLogger(path) as log:
            for i in (10, 11):
                log(_record(i, phase="resumed"))
        # the appended records start on fresh lines of their own
        lines = path.read_bytes().split(b"\n")
        assert lines[-1] == b"" and [json.loads(x) for x in lines[-3:-1]] == [
            _record(i, phase="resumed") for i in (10, 11)], cut
        assert b"\n".join(lines[:-3]).rstrip(b"\n") == data[:cut].rstrip(b"\n"), cut
        # complete: the whole JSON text of the record is inside the prefix
        complete = [k for k, e in enumerate(ends) if e <= cut]
        partial = [k for k in range(3) if starts[k] < cut < ends[k]]
        recs, ws = _read(path)
        assert [r["step"] for r in recs] == [*complete, 10, 11], cut
        assert recs == [_record(k) for k in complete] + [
            _record(i, phase="resumed") for i in (10, 11)]
        if partial:  # the cut record is a separate corrupt line, reported by number
            assert len(ws) == 1 and ws[0].lines == (partial[0] + 1,), cut
            assert ws[0].path == str(path)
        else:
            assert not ws, cut
        path.unlink()


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from zpml_core.utils.logging import JsonlLogger, dumps_record, metric_log_record

    path, mode, k, cut = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def rec(i):
        return metric_log_record({"loss": 1.0 / (i + 1), "pad": "x" * (4096 + i % 977)},
                                 phase="train", step=i)

    log = JsonlLogger(path)
    i = 0
    while True:
        if mode == "self" and i == k:  # die inside record k, after `cut` of its bytes
            line = (dumps_record(rec(i)) + "\\n").encode()
            os.write(log._fh.fileno(), line[:cut])
            os.kill(os.getpid(), signal.SIGKILL)
        log(rec(i))
        if mode == "external" and i == k:
            print("ready", flush=True)
        i += 1
    """
)


def _check_after_kill(path: Path, at_least: int) -> None:
    with JsonlLogger(path) as log:
        for j in range(3):
            log(metric_log_record({"resumed": j}, phase="resume", step=10**6 + j))
    lines = path.read_bytes().split(b"\n")
    assert [json.loads(x)["metrics"]["resumed"] for x in lines[-4:-1]] == [0, 1, 2]
    recs, ws = _read(path)
    train = [r for r in recs if r["phase"] == "train"]
    assert len(train) >= at_least
    assert [r["step"] for r in train] == list(range(len(train)))
    assert all(math.isclose(r["metrics"]["loss"], 1.0 / (r["step"] + 1)) for r in train)
    assert all(len(r["metrics"]["pad"]) == 4096 + r["step"] % 977 for r in train)
    assert [r["metrics"]["resumed"] for r in recs[len(train):]] == [0, 1, 2]
    assert len(ws) <= 1  # at most the one record cut by the kill
    if ws:
        assert ws[0].lines == (len(train) + 1,)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_sigkill_at_seeded_points_then_resume(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the process kills itself inside a record (a real SIGKILL mid-line) ...
    for n, (k, cut) in enumerate(zip(rng.integers(0, 40, 3), rng.integers(1, 4000, 3),
                                     strict=True)):
        path = tmp_path / f"self{n}.jsonl"
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), "self", str(k),
                               str(cut)], env=env, timeout=120)
        assert proc.returncode == -signal.SIGKILL
        _check_after_kill(path, at_least=int(k))
        _, ws = _read(path)
        assert len(ws) == 1 and ws[0].lines == (int(k) + 1,)
    # ... and is killed from outside while writing as fast as it can
    for n, k in enumerate(rng.integers(5, 200, 2)):
        path = tmp_path / f"ext{n}.jsonl"
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), "external",
                                  str(k), "0"], stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        _check_after_kill(path, at_least=int(k) + 1)


# ---------------------------------------------------------------------------------------
# corrupt lines anywhere

CORRUPT = {
    "half-record": b'{"loss": 0.5, "pha',
    "nan-token": b'{"loss": NaN}',
    "infinity-token": b'{"loss": -Infinity}',
    "not-an-object": b"[1, 2, 3]",
    "invalid-utf8": b'{"a": "\xff\xfe"}',
    "garbage": b"\x00\x01\x02 binary",
    "two-halves": b'{"a": 1, "b": {"c": [1, 2',
}


@pytest.mark.parametrize("kind", CORRUPT)
@pytest.mark.parametrize("where", [0, 2, 4])
def test_corrupt_line_anywhere_is_skipped_and_reported(tmp_path: Path, kind: str,
                                                       where: int) -> None:
    good = [json.dumps(_record(i), sort_keys=True).encode() for i in range(4)]
    lines = [*good[:where], CORRUPT[kind], *good[where:]]
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    recs, ws = _read(path)
    assert recs == [_record(i) for i in range(4)]
    assert len(ws) == 1 and ws[0].lines == (where + 1,) and ws[0].path == str(path)
    assert f"line {where + 1}" in str(ws[0])
    assert not issubclass(CorruptLinesWarning, RuntimeWarning)  # never an error here
    with pytest.raises(ValueError, match=f"line {where + 1}"):
        read_jsonl(path, on_corrupt="raise")
    with pytest.warns(CorruptLinesWarning, match=f"line {where + 1}"):
        assert [r["step"] for r in iter_jsonl(path)] == [0, 1, 2, 3]


def test_many_corrupt_lines_one_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    bad_at = sorted(rng.choice(40, size=9, replace=False).tolist())
    out, k = [], 0
    for n in range(40):
        out.append(b'{"x": ' if n in bad_at else json.dumps(_record(k)).encode())
        k += n not in bad_at
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(out) + b"\n")
    recs, ws = _read(path)
    assert [r["step"] for r in recs] == list(range(40 - 9))
    assert len(ws) == 1 and ws[0].lines == tuple(n + 1 for n in bad_at)


def test_glued_record_from_an_older_writer_is_recovered(tmp_path: Path) -> None:
    """A file written before loggers started on a fresh line: half + whole record."""
    a, b, c = (json.dumps(_record(i), sort_keys=True) for i in range(3))
    path = tmp_path / "m.jsonl"
    path.write_text(a + "\n" + b[:57] + c + "\n")
    recs, ws = _read(path)
    assert recs == [_record(0), _record(2)]
    assert len(ws) == 1 and ws[0].lines == (2,)


def test_unterminated_last_line_is_not_reported(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    a = json.dumps(_record(0))
    path.write_text(a + "\n" + a[:30])  # being written (or cut by a kill, not resumed)
    recs, ws = _read(path)
    assert recs == [_record(0)] and not ws
    path.write_text(a)  # complete JSON, newline not yet written: a complete record
    assert _read(path) == ([_record(0)], [])


@pytest.mark.parametrize("bad", ["x", 1, None])
def test_on_corrupt_is_validated(tmp_path: Path, bad: Any) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text("{}\n")
    with pytest.raises(ValueError, match="on_corrupt"):
        read_jsonl(path, on_corrupt=bad)


# ---------------------------------------------------------------------------------------
# unwritable locations fail at construction


def _unwritable(tmp_path: Path) -> dict[str, Path]:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    (tmp_path / "is_a_dir.jsonl").mkdir()
    return {
        "parent-is-a-file": blocker / "m.jsonl",
        "ancestor-is-a-file": blocker / "deeper" / "m.jsonl",
        "path-is-a-directory": tmp_path / "is_a_dir.jsonl",
    }


@pytest.mark.parametrize("case", ["parent-is-a-file", "ancestor-is-a-file",
                                  "path-is-a-directory"])
def test_unwritable_path_fails_at_construction(tmp_path: Path, case: str) -> None:
    path = _unwritable(tmp_path)[case]
    with pytest.raises(OSError) as ei:
        JsonlLogger(path)
    assert str(path) in str(ei.value)
    assert ei.value.filename == str(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores directory permissions")
@pytest.mark.parametrize("sub", ["m.jsonl", "new_dir/m.jsonl"])
def test_read_only_directory_fails_at_construction(tmp_path: Path, sub: str) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as ei:
            JsonlLogger(ro / sub)
        assert str(ro / sub) in str(ei.value)
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("sub", ["zpml_m.jsonl", "zpml_dir/m.jsonl"])
def test_read_only_filesystem_fails_at_construction(sub: str) -> None:
    """The same class for any user, root included: sysfs refuses new files even to
    root (the chmod test above cannot run as root, who ignores directory modes)."""
    base = Path("/sys")
    if not base.is_dir() or (os.access(base, os.W_OK) and _can_create(base)):
        pytest.skip("no read-only filesystem at /sys on this machine")
    path = base / sub
    with pytest.raises(PermissionError) as ei:
        JsonlLogger(path)
    assert str(path) in str(ei.value)


def _can_create(directory: Path) -> bool:
    probe = directory / f"zpml_probe_{os.getpid()}"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


def test_training_config_with_unwritable_logger_never_starts(tmp_path: Path) -> None:
    from zpml_core.training import TrainingConfig

    path = _unwritable(tmp_path)["parent-is-a-file"]
    with pytest.raises(OSError, match="a_file"):
        TrainingConfig(max_epochs=1, log_hook=JsonlLogger(path))


def test_construction_creates_the_file_and_parents(tmp_path: Path) -> None:
    path = tmp_path / "x" / "y" / "m.jsonl"
    log = JsonlLogger(path)
    assert path.is_file() and path.read_bytes() == b""
    log.close()


# ---------------------------------------------------------------------------------------
# values that recursed forever


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.longdouble(2.5), 2.5),
        (np.longdouble("-1e300"), -1e300),
        (np.longdouble("1e4000"), None),  # beyond float64: non-finite after rounding
        (np.longdouble("nan"), None),
        (np.array([1.5, -np.inf], dtype=np.longdouble), [1.5, None]),
        (np.array([[0.25]], dtype=np.longdouble), [[0.25]]),
        (np.clongdouble(1.5 - 2j), [1.5, -2.0]),
        (np.array([1 + 1j], dtype=np.clongdouble), [[1.0, 1.0]]),
        (np.array([(1, 2.5)], dtype=[("a", "i8"), ("b", "f8")]), [[1, 2.5]]),
        (np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False]), [1.0, None, 3.0]),
    ],
    ids=["longdouble", "longdouble-big", "longdouble-huge", "longdouble-nan",
         "longdouble-1d", "longdouble-2d", "clongdouble", "clongdouble-1d", "structured",
         "masked"],
)
def test_self_listing_values_convert(tmp_path: Path, value: Any, expected: Any) -> None:
    assert to_jsonable(value) == expected
    path = tmp_path / "m.jsonl"
    with JsonlLogger(path) as log:
        log(metric_log_record({"v": value}, phase="p"))
    assert read_jsonl(path, validate=True)[0]["metrics"]["v"] == expected


def _cycles() -> dict[str, tuple[Any, str, str]]:
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    lst: list[Any] = [1, 2]
    lst.append(lst)
    a: dict[str, Any] = {}
    b: dict[str, Any] = {"back": a}
    a["b"] = [b]
    t: list[Any] = []
    t.append(({"x": t},))
    return {
        "dict": (d, "metrics['v']['self']", "metrics['v']"),
        "list": (lst, "metrics['v'][2]", "metrics['v']"),
        "mutual": (a, "metrics['v']['b'][0]['back']", "metrics['v']"),
        "through-tuple": (t, "metrics['v'][0][0]['x']", "metrics['v']"),
    }


@pytest.mark.parametrize("case", ["dict", "list", "mutual", "through-tuple"])
def test_self_referencing_value_names_the_key_path(tmp_path: Path, case: str) -> None:
    value, at, back = _cycles()[case]
    with pytest.raises(ValueError) as ei:
        metric_log_record({"v": value}, phase="p")
    msg = str(ei.value)
    assert f"{at} to JSON" in msg and f"refers back to {back} " in msg
    path = tmp_path / "m.jsonl"
    with JsonlLogger(path) as log:
        with pytest.raises(ValueError, match="refers back"):
            log({"metrics": {"v": value}, "phase": "p"})
        log(_record(0))  # nothing half-written before: the next record is intact
    assert read_jsonl(path) == [_record(0)]


def test_shared_and_deep_values() -> None:
    shared = [1.0, float("nan")]
    assert to_jsonable({"a": shared, "b": (shared, shared)}) == {
        "a": [1.0, None], "b": [[1.0, None], [1.0, None]]}
    deep: list[Any] = []
    cur = deep
    for _ in range(50_000):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    with pytest.raises(ValueError, match="nested too deeply"):
        to_jsonable(deep)


def test_backend_arrays_of_every_float_dtype(arr: Any, backend_name: str) -> None:
    for dt in ("float16", "float32", "float64"):
        if dt == "float16" and backend_name == "strict":
            continue  # array-api-strict has no float16
        a = arr([1.5, np.nan, -np.inf, 0.25], dtype=dt)
        assert to_jsonable(a) == [1.5, None, None, 0.25]
        assert to_jsonable(a[0]) == 1.5
