"""Reading JSONL metric logs: every complete record, a damaged line skipped and reported.

Re-exported by :mod:`zpml_core.utils.logging` (see there for the format and the crash
safety of the writer).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from zpml_core.utils.logging import validate_metric_record

__all__ = ["CorruptLinesWarning", "iter_jsonl", "read_jsonl"]


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
    * With ``validate=True`` every record must be a valid metric_log record, version 1
      or 2 (``ValueError`` with the line number otherwise).
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
