"""Metric logging as JSON Lines (``zeroproofml.metric_log`` schema, version 2).

One record per line, keys sorted, strict JSON: NaN and ±inf become ``null``. Arrays of
any array-API library (numpy, torch, jax, array-api-strict, dask, ...) and numpy scalars
are converted to Python numbers or nested lists.

Crash safety: :class:`JsonlLogger` writes each record with one unbuffered ``write`` of
the whole line, so a process killed at any moment (even by SIGKILL) leaves every
completed record on disk and at most one partial last line. A logger opened on an
existing file first ends such a partial line, so every append starts on a fresh line;
:func:`read_jsonl` skips and reports (:class:`CorruptLinesWarning`) a corrupt line
anywhere instead of failing for the whole file.

Schema versions. A record's ``schema_version`` changes whenever a reader written for the
previous version could misread it:

* **version 1** (zeroproofml 0.6.1 and earlier zpml_core): each metric is stored
  twice, under ``metrics`` and mirrored as a top-level field (unless its name is a
  reserved key, e.g. the float ``epoch`` metric of eval records).
* **version 2** (written now): each metric is stored once, under ``metrics``; the top
  level holds only the reserved keys. A version-1 reader that looks metrics up at the top
  level would find none, hence the new version number.

:func:`read_jsonl` reads both versions and returns every record as stored;
``record["metrics"][name]`` reads a metric from either. :func:`validate_metric_record`
accepts both (a version-1 record must carry its mirrors, a version-2 record none).

The optional helpers :class:`TensorBoardLogger` (extra ``tensorboard``) and
:func:`jsonl_to_dataframe`, :func:`read_metric_log_runs`, :func:`aggregate_metric_logs`
(extra ``pandas`` for the DataFrames) live in private sibling modules and are re-exported
here; they import tensorboard / pandas only when used.

Nothing here imports an array framework at module level.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

__all__ = [
    "METRIC_LOG_READABLE_VERSIONS",
    "METRIC_LOG_RESERVED_KEYS",
    "METRIC_LOG_SCHEMA_NAME",
    "METRIC_LOG_SCHEMA_VERSION",
    "RESERVED_KEYS",
    "CorruptLinesWarning",
    "JsonlLogger",
    "TensorBoardLogger",
    "aggregate_metric_log_records",
    "aggregate_metric_logs",
    "iter_jsonl",
    "jsonl_to_dataframe",
    "metric_log_record",
    "metric_log_records_to_long_rows",
    "metric_log_records_to_wide_rows",
    "read_jsonl",
    "read_metric_log_runs",
    "to_jsonable",
    "validate_metric_record",
]

METRIC_LOG_SCHEMA_NAME = "zeroproofml.metric_log"
METRIC_LOG_SCHEMA_VERSION = 2
#: schema versions :func:`read_jsonl` and :func:`validate_metric_record` understand
METRIC_LOG_READABLE_VERSIONS = (1, 2)
RESERVED_KEYS = frozenset(
    {"schema_name", "schema_version", "record_type", "phase", "step", "epoch", "metrics", "context"}
)
METRIC_LOG_RESERVED_KEYS = RESERVED_KEYS  # zeroproofml's name

_ARRAY_MODULES = frozenset({"numpy", "torch", "jax", "jaxlib", "array_api_strict", "dask", "cupy"})


# ---------------------------------------------------------------------------------------
# JSON conversion


def _is_array_like(value: object) -> bool:
    root = type(value).__module__.partition(".")[0]
    if root in _ARRAY_MODULES:
        return True
    return hasattr(value, "__array_namespace__") or hasattr(value, "__dlpack__")


def _array_to_python(value: Any) -> Any:
    """An array or array scalar (any library, any device, 0-d or n-d) → ``tolist()``.

    The result may still hold non-builtin leaves (``np.longdouble(x).tolist()`` is
    ``x`` itself); :func:`_leaves` converts those without coming back here.
    """
    root = type(value).__module__.partition(".")[0]
    if root == "torch":
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        return t.tolist()
    if root == "dask" and hasattr(value, "compute"):
        value = value.compute()
    import numpy as np

    if isinstance(value, np.ma.MaskedArray):
        return value.tolist()  # masked elements → None
    try:
        a = np.asarray(value)
    except Exception:  # libraries that only speak DLPack
        a = np.from_dlpack(value)
    if a.dtype == object:
        raise TypeError(f"cannot convert {type(value).__name__} of objects to JSON")
    return a.tolist()


def _float(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _scalar(value: Any) -> Any:
    """A non-container, non-array value → JSON data (never recurses)."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        c = complex(value)  # np.clongdouble: rounded to complex128
        return [_float(c.real), _float(c.imag)]
    if isinstance(value, numbers.Real) or hasattr(value, "__float__"):
        try:
            return _float(float(value))  # np.longdouble: rounded to float64
        except (TypeError, ValueError, OverflowError):
            pass
    return str(value)


_NOT_PLAIN = object()


def _plain(value: Any) -> Any:
    """``None``/``bool``/``str``/``int``/``float`` as JSON data, else ``_NOT_PLAIN``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    t = type(value)
    if t is int:
        return value
    if t is float:
        return _float(value)
    return _NOT_PLAIN


def _leaves(value: Any) -> Any:
    """``tolist()`` output (nested lists, scalars of any kind) → JSON data."""
    plain = _plain(value)
    if plain is not _NOT_PLAIN:
        return plain
    if isinstance(value, (list, tuple)):  # tuples: records of structured arrays
        return [_leaves(v) for v in value]
    return _scalar(value)


def _convert(value: Any, where: str, active: dict[int, str]) -> Any:
    plain = _plain(value)
    if plain is not _NOT_PLAIN:
        return plain
    if isinstance(value, (Mapping, list, tuple)):
        key = id(value)
        if key in active:
            raise ValueError(
                f"cannot convert {where} to JSON: it refers back to {active[key]} "
                "(a self-referencing value)"
            )
        active[key] = where
        try:
            if isinstance(value, Mapping):
                return {str(k): _convert(v, f"{where}[{k!r}]", active)
                        for k, v in value.items()}
            return [_convert(v, f"{where}[{i}]", active) for i, v in enumerate(value)]
        finally:
            del active[key]
    if isinstance(value, enum.Enum):
        return _convert(value.value, where, active)
    if _is_array_like(value):
        return _leaves(_array_to_python(value))
    return _scalar(value)


def to_jsonable(value: Any, *, name: str = "value") -> Any:
    """Convert ``value`` to strict-JSON-safe Python data.

    * ``None``, ``bool``, ``int``, ``str`` are kept; a ``float`` is kept if finite,
      NaN/±inf become ``None``;
    * mappings → dicts with ``str`` keys, lists/tuples → lists (recursively);
    * arrays of any array-API library, numpy scalars and masked arrays → ``tolist()``
      (0-d → Python scalar, n-d → nested lists; masked and non-finite elements →
      ``None``). Scalars that ``tolist()`` cannot turn into Python numbers
      (``np.longdouble``, ``np.clongdouble``) are rounded to float64/complex128, so a
      value beyond float64's range becomes ``None`` like any non-finite value;
    * complex numbers → ``[real, imag]``; enums → their value; other numbers or objects
      with ``__float__`` → ``float``; anything else → ``str``.

    A self-referencing value (a container that contains itself) → ``ValueError`` naming
    the key path of the reference and of the container it refers back to, e.g.
    ``value['a'][0] refers back to value['a']`` (``name`` is the root of the path). A
    shared, non-cyclic sub-value is converted at every place it occurs.
    """
    try:
        return _convert(value, name, {})
    except RecursionError:
        raise ValueError(f"cannot convert {name} to JSON: it is nested too deeply") from None


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
    """Build one ``zeroproofml.metric_log`` version-2 record (semantics §7.4).

    ``{"schema_name": "zeroproofml.metric_log", "schema_version": 2, "record_type": ...,
    "phase": ..., "metrics": {...}, "step": ..., "epoch": ..., "context": {...}}`` (step,
    epoch and context only if given). Metric values are converted with
    :func:`to_jsonable` and stored once, under ``metrics`` (version 1 also mirrored them
    at the top level). ``phase`` and ``record_type`` must be non-empty strings
    (``ValueError``).
    """
    if not isinstance(phase, str) or not phase:
        raise ValueError(f"phase must be a non-empty string, got {phase!r}")
    if not isinstance(record_type, str) or not record_type:
        raise ValueError(f"record_type must be a non-empty string, got {record_type!r}")
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping, got {type(metrics).__name__}")
    converted = {str(k): to_jsonable(v, name=f"metrics[{k!r}]") for k, v in metrics.items()}
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
        record["context"] = to_jsonable(context, name="context")
    return record


def validate_metric_record(record: object) -> None:
    """Raise ``ValueError`` unless ``record`` is a valid metric_log record of a readable
    version (:data:`METRIC_LOG_READABLE_VERSIONS`): version 1 with every non-reserved
    metric mirrored at the top level, version 2 with only reserved top-level keys."""
    if not isinstance(record, dict):
        raise ValueError(f"a metric record must be a JSON object, got {type(record).__name__}")
    if record.get("schema_name") != METRIC_LOG_SCHEMA_NAME:
        raise ValueError(f"schema_name must be {METRIC_LOG_SCHEMA_NAME!r}: {record!r}")
    version = record.get("schema_version")
    if isinstance(version, bool) or version not in METRIC_LOG_READABLE_VERSIONS:
        raise ValueError(f"unsupported schema_version {version!r} (this zpml_core reads "
                         f"{', '.join(map(str, METRIC_LOG_READABLE_VERSIONS))})")
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
    if version == 1:
        for k, v in metrics.items():
            if k not in RESERVED_KEYS and record.get(k, object()) != v:
                raise ValueError(f"metric {k!r} is not mirrored at the top level")
        unknown = set(record) - RESERVED_KEYS - set(metrics)
    else:
        unknown = set(record) - RESERVED_KEYS
    if unknown:
        raise ValueError(f"unexpected top-level keys {sorted(unknown)} (schema_version "
                         f"{version} stores metrics only under 'metrics')" if version == 2
                         else f"unexpected top-level keys {sorted(unknown)}")


def dumps_record(record: Mapping[str, Any]) -> str:
    """One strict-JSON line (sorted keys, no trailing newline)."""
    return json.dumps(to_jsonable(record, name="record"), sort_keys=True, allow_nan=False)


# ---------------------------------------------------------------------------------------
# writer and reader


class _ClosingLogger:
    """A logger holding an open handle: ``with logger:`` closes it on exit, and so does
    garbage collection (errors there are swallowed). Subclasses define ``close``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class JsonlLogger(_ClosingLogger):
    """Append metric records to a JSON Lines file, one line per record.

    Use it as ``TrainingConfig(log_hook=JsonlLogger("runs/metrics.jsonl"))``: it is
    callable with one record.

    * Construction creates the parent directories and opens the file for appending, so
      an unwritable location fails here — before any training step — with an
      ``OSError`` (``PermissionError``, ``NotADirectoryError``, ...) naming the file.
    * If the file exists and its last line is unterminated (a writer was killed
      mid-record), a newline is appended first: every record starts on a fresh line,
      and the partial line stays a separate corrupt line that :func:`read_jsonl` skips
      and reports.
    * Each record is converted completely (:func:`to_jsonable`; a conversion error
      writes nothing) and written with one unbuffered ``write`` of the whole line, so a
      SIGKILL leaves every earlier record intact. With ``fsync=True`` every line is also
      forced to the storage device (survives power loss, not only process death).

    Copies (``copy.deepcopy``, pickling, ``dataclasses.replace`` of a config holding
    it) share the path, not the handle; a copy opens the file at its first record.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        if not isinstance(fsync, bool):
            raise TypeError(f"fsync must be a bool, got {type(fsync).__name__}")
        self.path = Path(path)
        self.fsync = fsync
        self._fh: Any = None
        self._open()

    def _open(self) -> Any:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            detail = exc.strerror or str(exc)
            if exc.filename is not None and str(exc.filename) != str(path):
                detail += f": {exc.filename}"  # the parent that could not be created
            raise OSError(
                exc.errno, f"cannot open the metric log for appending ({detail})", str(path)
            ) from exc
        try:
            size = os.fstat(fh.fileno()).st_size
            if size and _last_byte(path, size) != b"\n":
                _write_all(fh, b"\n")  # end a line cut short by a killed writer
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        return fh

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.write(record)

    def write(self, record: Mapping[str, Any]) -> None:
        data = (dumps_record(record) + "\n").encode("utf-8")
        fh = self._fh
        if fh is None or fh.closed:
            fh = self._open()
        _write_all(fh, data)
        if self.fsync:
            os.fsync(fh.fileno())

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()

    # copies (dataclasses.replace, deepcopy, pickling) share the path, not the handle
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "fsync": self.fsync}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.fsync = state["fsync"]
        self._fh = None

    def __repr__(self) -> str:
        return f"JsonlLogger({str(self.path)!r})"


def _last_byte(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as r:
            r.seek(size - 1)
            return r.read(1)
    except OSError:  # write-only file: a possibly redundant newline is harmless
        return b""


def _write_all(fh: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = fh.write(view)
        view = view[n:] if n else view


# the reader and the optional helpers (these import tensorboard / pandas only when used)
from zpml_core.utils._jsonl_read import CorruptLinesWarning, iter_jsonl, read_jsonl  # noqa: E402
from zpml_core.utils._log_runs import (  # noqa: E402
    aggregate_metric_log_records,
    aggregate_metric_logs,
    jsonl_to_dataframe,
    metric_log_records_to_long_rows,
    metric_log_records_to_wide_rows,
    read_metric_log_runs,
)
from zpml_core.utils._tensorboard import TensorBoardLogger  # noqa: E402
