"""Metric logging as JSON Lines (``zeroproofml.metric_log`` schema, version 1).

One record per line, keys sorted, strict JSON: NaN and ±inf become ``null``. Arrays of
any array-API library (numpy, torch, jax, array-api-strict, dask, ...) and numpy scalars
are converted to Python numbers or nested lists.

Crash safety: :class:`JsonlLogger` writes each record with one unbuffered ``write`` of
the whole line, so a process killed at any moment (even by SIGKILL) leaves every
completed record on disk and at most one partial last line. A logger opened on an
existing file first ends such a partial line, so every append starts on a fresh line;
:func:`read_jsonl` skips and reports (:class:`CorruptLinesWarning`) a corrupt line
anywhere instead of failing for the whole file.

Nothing here imports an array framework at module level.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import numbers
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "METRIC_LOG_SCHEMA_NAME",
    "METRIC_LOG_SCHEMA_VERSION",
    "RESERVED_KEYS",
    "CorruptLinesWarning",
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
    """Build one ``zeroproofml.metric_log`` v1 record (semantics §7.4).

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
    return json.dumps(to_jsonable(record, name="record"), sort_keys=True, allow_nan=False)


# ---------------------------------------------------------------------------------------
# writer and reader


class JsonlLogger:
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


# ---------------------------------------------------------------------------------------
# reader


class CorruptLinesWarning(UserWarning):
    """Lines of a JSONL file that were skipped because they are not a JSON object.

    Attributes: ``path`` (the file), ``lines`` (1-based line numbers) and ``reasons``
    (one message per line). A ``UserWarning``, deliberately not a ``RuntimeWarning``:
    it reports damaged *data* (typically a record cut short by a killed writer), not a
    numerical problem, and must not abort reading under ``-W error::RuntimeWarning``
    (which this project's tests use). Turn it into an error with
    ``warnings.simplefilter("error", CorruptLinesWarning)`` or ``on_corrupt="raise"``.
    """

    def __init__(self, path: str, lines: tuple[int, ...], reasons: tuple[str, ...]) -> None:
        self.path = path
        self.lines = lines
        self.reasons = reasons
        shown = "; ".join(f"line {n}: {r}" for n, r in zip(lines[:5], reasons, strict=False))
        more = f"; and {len(lines) - 5} more" if len(lines) > 5 else ""
        super().__init__(f"{path}: skipped {len(lines)} corrupt line(s) ({shown}{more})")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _parse(raw: bytes) -> dict[str, Any]:
    rec = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    return rec


def _salvage(raw: bytes) -> dict[str, Any] | None:
    """A complete metric record glued onto the end of a partial one (written by a
    logger that did not start on a fresh line, as before this module ensured it).

    The first suffix starting at a ``{"`` that parses as a whole JSON object *and* is a
    valid metric_log record. A suffix from inside the glued record cannot parse (it
    leaves trailing data); one from inside the partial record either runs into the glued
    record (trailing data) or, with nothing glued, is a nested value of the partial
    record — which is why the suffix must be a valid metric record, not just an object.
    """
    start = raw.find(b'{"', 1)
    while start != -1:
        try:
            rec = _parse(raw[start:])
            validate_metric_record(rec)
            return rec
        except (ValueError, UnicodeDecodeError):
            start = raw.find(b'{"', start + 1)
    return None


def _scan(path: str | os.PathLike[str], validate: bool,
          on_corrupt: str) -> Iterator[tuple[dict[str, Any] | None, int, str]]:
    """Yield ``(record, line, "")`` or ``(None, line, reason)`` for a corrupt line."""
    if on_corrupt not in ("warn", "raise"):
        raise ValueError(f"on_corrupt must be 'warn' or 'raise', got {on_corrupt!r}")
    if not isinstance(validate, bool):
        raise TypeError(f"validate must be a bool, got {type(validate).__name__}")
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    last = len(lines) - 1  # after the final newline: "" (or a line still being written)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = _parse(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            if i == last:  # unterminated last line: being written, or cut by a kill
                return
            if on_corrupt == "raise":
                raise ValueError(f"{path}, line {i + 1}: {exc}") from None
            glued = _salvage(raw)
            if glued is None:
                yield None, i + 1, str(exc)
                continue
            yield None, i + 1, "a partial record, followed by a complete one (kept)"
            rec = glued
        if validate:
            try:
                validate_metric_record(rec)
            except ValueError as exc:
                raise ValueError(f"{path}, line {i + 1}: {exc}") from None
        yield rec, i + 1, ""


def iter_jsonl(path: str | os.PathLike[str], *, validate: bool = False,
               on_corrupt: Literal["warn", "raise"] = "warn") -> Iterator[dict[str, Any]]:
    """Yield the records of a JSONL file; see :func:`read_jsonl`. A corrupt line is
    reported as soon as it is reached, with its own :class:`CorruptLinesWarning`."""
    for rec, line, reason in _scan(path, validate, on_corrupt):
        if reason:
            warnings.warn(CorruptLinesWarning(str(path), (line,), (reason,)), stacklevel=2)
        if rec is not None:
            yield rec


def read_jsonl(path: str | os.PathLike[str], *, validate: bool = False,
               on_corrupt: Literal["warn", "raise"] = "warn") -> list[dict[str, Any]]:
    """Read every complete record of a JSONL file; never fails for the whole file
    because of one damaged line.

    * Blank lines are skipped.
    * A *corrupt* line (not valid UTF-8 or strict JSON — ``NaN``/``Infinity`` tokens are
      rejected — or not a JSON object), anywhere in the file, is skipped; all of them
      are reported by one :class:`CorruptLinesWarning` naming the file and the line
      numbers (``on_corrupt="warn"``, the default), or the first raises ``ValueError``
      with its line number (``on_corrupt="raise"``). A complete metric_log record
      glued onto a partial one (files written before loggers started on a fresh line)
      is recovered; the line is still reported.
    * An unterminated last line that does not parse is a record still being written
      (or cut by a kill): it is not a complete record and is ignored without a report.
    * With ``validate=True`` every record must be a valid metric_log v1 record
      (``ValueError`` with the line number otherwise).
    """
    records: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    for rec, line, reason in _scan(path, validate, on_corrupt):
        if reason:
            bad.append((line, reason))
        if rec is not None:
            records.append(rec)
    if bad:
        warnings.warn(
            CorruptLinesWarning(str(path), tuple(b[0] for b in bad), tuple(b[1] for b in bad)),
            stacklevel=2,
        )
    return records
