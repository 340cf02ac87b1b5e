"""TensorBoard event logs from trainer records (extra ``tensorboard``).

Re-exported by :mod:`zpml_core.utils.logging`. Events are written with tensorboard's own
event-file writer, so neither torch nor TensorFlow is needed; tensorboard is imported
when the first logger is created, never by ``import zpml_core``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zpml_core.utils.logging import (
    RESERVED_KEYS,
    _array_to_python,
    _ClosingLogger,
    _is_array_like,
)

__all__ = ["TensorBoardLogger"]


def _scalar_float(value: Any) -> float | None:
    """A metric value as one float: Python/numpy numbers (bool → 0/1) and arrays of any
    library with exactly one element; ``None`` (not logged) for anything else (``null``,
    strings, lists, arrays of several elements, complex numbers). NaN/±inf are kept."""
    if isinstance(value, numbers.Real):  # bool, int, float, numpy real scalars
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            return float(value)
        return None
    if _is_array_like(value):
        try:
            value = _array_to_python(value)
        except (TypeError, ValueError):
            return None
        while isinstance(value, list) and len(value) == 1:
            value = value[0]
        return _scalar_float(value) if isinstance(value, numbers.Real) else None
    return None


def _step_value(value: Any) -> int | None:
    x = _scalar_float(value)
    return int(x) if x is not None and math.isfinite(x) else None


class TensorBoardLogger(_ClosingLogger):
    """A ``log_hook`` that writes every numeric metric as a TensorBoard scalar.

    Use it like :class:`~zpml_core.utils.logging.JsonlLogger`:
    ``TrainingConfig(log_hook=TensorBoardLogger("runs/tb", step_key="step"))``, then
    ``tensorboard --logdir runs/tb``. It is callable with one record.

    * Scalars: the record's ``metrics`` object if it has one (a trainer record, either
      schema version), else its non-reserved top-level fields (a plain metrics dict).
      Each metric whose value is one number (Python or numpy number, bool as 0/1, or an
      array of any library with one element) is written under its own name as the tag;
      other values (``null``, strings, lists) are skipped. NaN/±inf are written as such.
      The ``step_key`` metric itself is not written.
    * Step: with ``step_key``, the integer value of ``record[step_key]``, else of
      ``record["metrics"][step_key]`` (``step_key="step"`` uses the trainer's global step,
      so train and eval records line up). Without ``step_key``, or when the record has
      no usable value there, an internal counter (0, 1, 2, ... over such records).
    * Each record is flushed to disk before the call returns. ``close()`` (or ``with``)
      ends the event file; copies (``copy.deepcopy``, pickling) share the directory and
      the counter, and write their own event file in it from their first record.

    Needs tensorboard (extra ``tensorboard``): ``ModuleNotFoundError`` at construction
    without it. The directory is created at construction, so an unwritable location
    fails before training starts.
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, step_key: str | None = None) -> None:
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"log_dir must be a path, got {type(log_dir).__name__}")
        if step_key is not None and not isinstance(step_key, str):
            raise TypeError(f"step_key must be a str or None, got {type(step_key).__name__}")
        self.log_dir = Path(log_dir)
        self.step_key = step_key
        self._step = 0
        self._writer: Any = None
        self._open()

    def _open(self) -> Any:
        try:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "TensorBoardLogger needs tensorboard: pip install 'zpml-core[tensorboard]' "
                "(or pip install tensorboard)"
            ) from exc
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(self.log_dir))
        return self._writer

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.write(record)

    def write(self, record: Mapping[str, Any]) -> None:
        if not isinstance(record, Mapping):
            raise TypeError(f"record must be a mapping, got {type(record).__name__}")
        from tensorboard.compat.proto import event_pb2, summary_pb2

        metrics = record.get("metrics")
        source: Mapping[str, Any] = (
            metrics if isinstance(metrics, Mapping)
            else {k: v for k, v in record.items() if str(k) not in RESERVED_KEYS}
        )
        key = self.step_key
        step = None
        if key is not None:
            if key in record:
                step = _step_value(record[key])
            if step is None and key in source:
                step = _step_value(source[key])
        if step is None:
            step = self._step
            self._step += 1
        values = []
        for name, value in source.items():
            x = None if str(name) == key else _scalar_float(value)
            if x is not None:
                values.append(summary_pb2.Summary.Value(tag=str(name), simple_value=x))
        writer = self._writer if self._writer is not None else self._open()
        if values:
            writer.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                             summary=summary_pb2.Summary(value=values)))
        writer.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"log_dir": self.log_dir, "step_key": self.step_key, "step": self._step}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.log_dir = state["log_dir"]
        self.step_key = state["step_key"]
        self._step = state["step"]
        self._writer = None

    def __repr__(self) -> str:
        return f"TensorBoardLogger({str(self.log_dir)!r}, step_key={self.step_key!r})"
