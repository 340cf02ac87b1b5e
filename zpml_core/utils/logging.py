"""Metric logging as JSON Lines (``zeroproofml.metric_log`` schema, version 1; SPEC §7.4).

One record per line, keys sorted, strict JSON: NaN and ±inf become ``null``. Arrays of
any array-API library (numpy, torch, jax, array-api-strict, ...) and numpy scalars are
converted to Python numbers or nested lists (SPEC §10 #25). :class:`JsonlLogger` writes
each record with a single ``write`` followed by ``flush``, so a process killed at any
moment (even by SIGKILL) leaves every completed record on disk and at most one partial
last line, which :func:`read_jsonl` ignores.

Nothing here imports an array framework at module level.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "METRIC_LOG_SCHEMA_NAME",
    "METRIC_LOG_SCHEMA_VERSION",
    "RESERVED_KEYS",
    "JsonlLogger",
    "iter_jsonl",
    "metric_log_record",
    "read_jsonl",
    "to_jsonable",
    "validate_metric_record",
]

METRIC_LOG_SCHEMA_NAME = "zeroproofml.metric_log"
METRIC_LOG_SCHEMA_VERSION = 1
RESERVED_KEYS = frozenset(
    {"schema_name", "schema_version", "record_type", "phase", "step", "epoch", "metrics", "context"}
)

_ARRAY_MODULES = frozenset({"numpy", "torch", "jax", "jaxlib", "array_api_strict", "dask", "cupy"})


# ---------------------------------------------------------------------------------------
# JSON conversion


def _is_array_like(value: object) -> bool:
    root = type(value).__module__.partition(".")[0]
    if root in _ARRAY_MODULES:
        return True
    return hasattr(value, "__array_namespace__") or hasattr(value, "__dlpack__")


def _array_to_python(value: Any) -> Any:
    """An array (any library, any device, 0-d or n-d) → Python scalar or nested lists."""
    root = type(value).__module__.partition(".")[0]
    if root == "torch":
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        return t.tolist()
    if root == "dask" and hasattr(value, "compute"):
        value = value.compute()
    import numpy as np

    try:
        a = np.asarray(value)
    except Exception:  # libraries that only speak DLPack
        a = np.from_dlpack(value)
    if a.dtype == object:
        raise TypeError(f"cannot convert {type(value).__name__} of objects to JSON")
    return a.tolist()


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to strict-JSON-safe Python data.

    * ``None``, ``bool``, ``int``, ``str`` are kept; a ``float`` is kept if finite,
      NaN/±inf become ``None``;
    * mappings → dicts with ``str`` keys, lists/tuples → lists (recursively);
    * arrays of any array-API library and numpy scalars → ``tolist()`` (0-d → Python
      scalar, n-d → nested lists), non-finite elements → ``None``;
    * complex numbers → ``[real, imag]``; enums → their value; other numbers or objects
      with ``__float__`` → ``float``; anything else → ``str``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and type(value).__module__ == "builtins":
        return value
    if isinstance(value, float) and type(value).__module__ == "builtins":
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if _is_array_like(value):
        return to_jsonable(_array_to_python(value))
    if isinstance(value, complex):
        return [to_jsonable(value.real), to_jsonable(value.imag)]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) or hasattr(value, "__float__"):
        try:
            return to_jsonable(float(value))
        except (TypeError, ValueError):
            pass
    return str(value)


# ---------------------------------------------------------------------------------------
# records


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    return int(value)


def metric_log_record(
    metrics: Mapping[str, Any],
    *,
    phase: str,
    step: int | None = None,
    epoch: int | None = None,
    context: Mapping[str, Any] | None = None,
    record_type: str = "metric",
) -> dict[str, Any]:
    """Build one ``zeroproofml.metric_log`` v1 record (SPEC §7.4).

    Metric values are converted with :func:`to_jsonable`; every metric key that is not a
    reserved key is mirrored at the top level. ``phase`` and ``record_type`` must be
    non-empty strings (``ValueError``).
    """
    if not isinstance(phase, str) or not phase:
        raise ValueError(f"phase must be a non-empty string, got {phase!r}")
    if not isinstance(record_type, str) or not record_type:
        raise ValueError(f"record_type must be a non-empty string, got {record_type!r}")
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, got {type(metrics).__name__}")
    converted = {str(k): to_jsonable(v) for k, v in metrics.items()}
    record: dict[str, Any] = {
        "schema_name": METRIC_LOG_SCHEMA_NAME,
        "schema_version": METRIC_LOG_SCHEMA_VERSION,
        "record_type": record_type,
        "phase": phase,
        "metrics": converted,
    }
    if step is not None:
        record["step"] = _check_int("step", step)
    if epoch is not None:
        record["epoch"] = _check_int("epoch", epoch)
    if context is not None:
        if not isinstance(context, Mapping):
            raise TypeError(f"context must be a mapping or None, got {type(context).__name__}")
        record["context"] = to_jsonable(context)
    for k, v in converted.items():
        if k not in RESERVED_KEYS:
            record[k] = v
    return record


def validate_metric_record(record: object) -> None:
    """Raise ``ValueError`` unless ``record`` is a valid metric_log v1 record."""
    if not isinstance(record, dict):
        raise ValueError(f"a metric record must be a JSON object, got {type(record).__name__}")
    if record.get("schema_name") != METRIC_LOG_SCHEMA_NAME:
        raise ValueError(f"schema_name must be {METRIC_LOG_SCHEMA_NAME!r}: {record!r}")
    if record.get("schema_version") != METRIC_LOG_SCHEMA_VERSION:
        raise ValueError(f"unsupported schema_version {record.get('schema_version')!r}")
    for key in ("record_type", "phase"):
        v = record.get(key)
        if not isinstance(v, str) or not v:
            raise ValueError(f"{key} must be a non-empty string, got {v!r}")
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        raise ValueError("metrics must be a JSON object")
    for key in ("step", "epoch"):
        if key in record and (isinstance(record[key], bool) or not isinstance(record[key], int)):
            raise ValueError(f"{key} must be an integer, got {record[key]!r}")
    for k, v in metrics.items():
        if k not in RESERVED_KEYS and record.get(k, object()) != v:
            raise ValueError(f"metric {k!r} is not mirrored at the top level")
    unknown = set(record) - RESERVED_KEYS - set(metrics)
    if unknown:
        raise ValueError(f"unexpected top-level keys {sorted(unknown)}")


def dumps_record(record: Mapping[str, Any]) -> str:
    """One strict-JSON line (sorted keys, no trailing newline)."""
    return json.dumps(to_jsonable(record), sort_keys=True, allow_nan=False)


# ---------------------------------------------------------------------------------------
# writer and reader


class JsonlLogger:
    """Append metric records to a JSON Lines file, one flushed line per record.

    Use it as ``TrainingConfig(log_hook=JsonlLogger("runs/metrics.jsonl"))``: it is
    callable with one record. Parent directories are created on construction, the file
    is opened (append mode) at the first record. With ``fsync=True`` every line is also
    forced to the storage device (survives power loss, not only process death).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        if not isinstance(fsync, bool):
            raise TypeError(f"fsync must be a bool, got {type(fsync).__name__}")
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = None

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.write(record)

    def write(self, record: Mapping[str, Any]) -> None:
        line = dumps_record(record) + "\n"
        fh = self._fh
        if fh is None or fh.closed:
            fh = self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        fh.write(line)
        fh.flush()
        if self.fsync:
            os.fsync(fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # copies (dataclasses.replace, deepcopy, pickling) share the path, not the handle
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "fsync": self.fsync}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.fsync = state["fsync"]
        self._fh = None

    def __repr__(self) -> str:
        return f"JsonlLogger({str(self.path)!r})"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def iter_jsonl(path: str | os.PathLike[str], *, validate: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL file; see :func:`read_jsonl`."""
    data = Path(path).read_bytes()
    complete = data.endswith(b"\n")
    lines = data.split(b"\n")
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        partial = i == last and not complete
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
            if not isinstance(rec, dict):
                raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
        except (ValueError, UnicodeDecodeError) as exc:
            if partial:  # the writer was killed while writing this line
                return
            raise ValueError(f"{path}, line {i + 1}: {exc}") from None
        if validate:
            try:
                validate_metric_record(rec)
            except ValueError as exc:
                raise ValueError(f"{path}, line {i + 1}: {exc}") from None
        yield rec


def read_jsonl(path: str | os.PathLike[str], *, validate: bool = False) -> list[dict[str, Any]]:
    """Read every complete record of a JSONL file.

    Blank lines are skipped; ``NaN``/``Infinity`` tokens are rejected. A truncated last
    line (no trailing newline and not valid JSON — the writer died mid-line) is ignored;
    an invalid line anywhere else raises ``ValueError`` with its line number. With
    ``validate=True`` every record must be a valid metric_log v1 record.
    """
    return list(iter_jsonl(path, validate=validate))
