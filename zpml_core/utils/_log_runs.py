"""Metric logs as tables: one log → a DataFrame, several runs/seeds → mean/std per metric.

Re-exported by :mod:`zpml_core.utils.logging`; see there for the record format. pandas
(extra ``pandas``) is imported only by the functions that return a DataFrame.

Records of both schema versions are read the same way: the metrics of a record are its
``metrics`` object (version 1 mirrored them at the top level, version 2 does not); a
record without a ``metrics`` object (a plain dict written by a ``JsonlLogger``) has its
non-reserved top-level fields as metrics.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zpml_core.utils.logging import RESERVED_KEYS, read_jsonl, to_jsonable

__all__ = [
    "aggregate_metric_log_records",
    "aggregate_metric_logs",
    "jsonl_to_dataframe",
    "metric_log_records_to_long_rows",
    "metric_log_records_to_wide_rows",
    "read_metric_log_runs",
]

MetricLogPath = str | os.PathLike[str]
MetricLogInput = MetricLogPath | Mapping[str, MetricLogPath] | Iterable[MetricLogPath]

# file stems that say nothing about the run: such a log is labelled by its directory
_GENERIC_STEMS = frozenset(
    {"metrics", "train_metrics", "scm_train_metrics", "evaluation_metrics", "eval_metrics", "log"}
)
_SEED_DIR = re.compile(r"(?:seed_|quick_s)(-?\d+)")
_STATS = ("metric", "count", "mean", "std", "min", "max", "first", "latest")


def _need_pandas(what: str) -> Any:
    try:
        import pandas as pd
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{what} needs pandas: pip install 'zpml-core[pandas]' (or pip install pandas)"
        ) from exc
    return pd


# ---------------------------------------------------------------------------------------
# one record


def record_metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics of one record (either schema version), in stored order."""
    metrics = record.get("metrics")
    if isinstance(metrics, Mapping):
        return {str(k): v for k, v in metrics.items()}
    return {str(k): v for k, v in record.items() if str(k) not in RESERVED_KEYS}


def _record_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level fields of a record that are not metrics (nor version-1 mirrors of
    metrics): schema fields, phase, step, epoch, context, ..."""
    metrics = record.get("metrics")
    if not isinstance(metrics, Mapping):
        return {str(k): v for k, v in record.items() if str(k) in RESERVED_KEYS}
    names = {str(k) for k in metrics}
    return {str(k): v for k, v in record.items()
            if str(k) in RESERVED_KEYS or str(k) not in names}


def _flat_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One DataFrame row: the record's fields, one column per metric whose name is not a
    reserved key, and the ``metrics`` object itself (where colliding names such as the
    float ``epoch`` metric of eval records stay reachable)."""
    row = _record_fields(record)
    for name, value in record_metrics(record).items():
        if name not in RESERVED_KEYS:
            row[name] = value
    return dict(sorted(row.items()))  # the key order of a (sorted) version-1 line


def _base_row(record: Mapping[str, Any], context_prefix: str) -> dict[str, Any]:
    row = {k: to_jsonable(v, name=k) for k, v in _record_fields(record).items()
           if k not in ("metrics", "context")}
    context = record.get("context")
    if isinstance(context, Mapping):
        row.update({f"{context_prefix}{k}": to_jsonable(v, name="context")
                    for k, v in context.items()})
    return row


def _check_prefix(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def metric_log_records_to_wide_rows(
    records: Iterable[Mapping[str, Any]],
    *,
    metric_prefix: str = "metric_",
    context_prefix: str = "context_",
) -> list[dict[str, Any]]:
    """One flat dict per record: its fields (``phase``, ``step``, ``epoch``, schema
    fields), each ``context`` entry as ``context_prefix + key`` and each metric as
    ``metric_prefix + name`` (no name collides with a field)."""
    metric_prefix = _check_prefix("metric_prefix", metric_prefix)
    context_prefix = _check_prefix("context_prefix", context_prefix)
    rows = []
    for record in records:
        row = _base_row(record, context_prefix)
        for name, value in record_metrics(record).items():
            row[f"{metric_prefix}{name}"] = to_jsonable(value, name=name)
        rows.append(row)
    return rows


def metric_log_records_to_long_rows(
    records: Iterable[Mapping[str, Any]],
    *,
    context_prefix: str = "context_",
) -> list[dict[str, Any]]:
    """One flat dict per (record, metric): the record's fields and ``context_prefix +
    key`` context entries (as in :func:`metric_log_records_to_wide_rows`) plus
    ``"metric"`` (the name) and ``"value"``."""
    context_prefix = _check_prefix("context_prefix", context_prefix)
    rows = []
    for record in records:
        base = _base_row(record, context_prefix)
        for name, value in record_metrics(record).items():
            rows.append({**base, "metric": name, "value": to_jsonable(value, name=name)})
    return rows


# ---------------------------------------------------------------------------------------
# one log as a DataFrame


def jsonl_to_dataframe(path: MetricLogPath) -> Any:
    """Read a JSONL metric log (:func:`~zpml_core.utils.logging.read_jsonl`) into a pandas
    DataFrame, one row per record.

    Columns (in sorted order of first appearance): the record's top-level fields
    (``schema_name``, ``schema_version``, ``record_type``, ``phase``, ``step``, ``epoch``,
    ``context`` as dicts), one column per metric named like the metric, and ``metrics``
    (the dict of each record). Version-1
    and version-2 records give the same columns (a version-1 file read by zeroproofml 0.6.1
    gives this frame too). A metric name that is a reserved key (the float ``epoch``
    metric of eval records) has no column of its own: it is in ``metrics``. ``null``
    values and metrics a record does not have are ``NaN``/``None``. Needs pandas (extra
    ``pandas``).
    """
    pd = _need_pandas("jsonl_to_dataframe")
    return pd.DataFrame.from_records([_flat_row(r) for r in read_jsonl(path)])


# ---------------------------------------------------------------------------------------
# several runs


def _label(path: Path) -> str:
    return path.parent.name if path.stem in _GENERIC_STEMS and path.parent.name else path.stem


def _seed(path: Path) -> int | None:
    for part in reversed(path.parts):
        m = _SEED_DIR.fullmatch(part)
        if m is not None:
            return int(m.group(1))
    return None


def _as_path(value: object, where: str) -> Path:
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise TypeError(f"{where} must be a path (str or os.PathLike), got {type(value).__name__}")


def _inputs(logs: object) -> list[tuple[str, Path]]:
    if isinstance(logs, (str, os.PathLike)):
        path = Path(logs)
        return [(_label(path), path)]
    if isinstance(logs, Mapping):
        return [(str(k), _as_path(v, f"logs[{k!r}]")) for k, v in logs.items()]
    if isinstance(logs, Iterable):
        paths = [_as_path(v, f"logs[{i}]") for i, v in enumerate(logs)]
        return [(_label(p), p) for p in paths]
    raise TypeError("logs must be a path, a mapping label → path or an iterable of paths, "
                    f"got {type(logs).__name__}")


def read_metric_log_runs(
    logs: MetricLogInput,
    *,
    label_key: str = "run_id",
    source_key: str | None = "source_path",
    infer_seed: bool = True,
) -> list[dict[str, Any]]:
    """Read the records of one or more JSONL metric logs, each annotated with its run.

    ``logs``: one path, an iterable of paths, or a mapping ``label → path``. Every record
    is returned (in file order, the files in the given order) with a ``context`` dict
    that gains, unless it already has the key:

    * ``context[label_key]``: the mapping's label, else the file's stem — or its
      directory's name when the stem is a generic one (``metrics``, ``train_metrics``,
      ``scm_train_metrics``, ``evaluation_metrics``, ``eval_metrics``, ``log``), so
      ``runs/a/metrics.jsonl`` is run ``"a"``. No label with ``label_key=""``.
    * ``context[source_key]``: the path as given (``str``); none with ``source_key=None``.
    * ``context["seed"]``: with ``infer_seed``, the integer ``N`` of the innermost path
      part named ``seed_N`` or ``quick_sN`` (e.g. ``runs/seed_3/metrics.jsonl`` → 3).

    The records are otherwise as :func:`~zpml_core.utils.logging.read_jsonl` returns them.
    """
    if not isinstance(label_key, str):
        raise TypeError(f"label_key must be a str, got {type(label_key).__name__}")
    if source_key is not None and not isinstance(source_key, str):
        raise TypeError(f"source_key must be a str or None, got {type(source_key).__name__}")
    if not isinstance(infer_seed, bool):
        raise TypeError(f"infer_seed must be a bool, got {type(infer_seed).__name__}")
    records: list[dict[str, Any]] = []
    for label, path in _inputs(logs):
        seed = _seed(path) if infer_seed else None
        for record in read_jsonl(path):
            raw = record.get("context")
            context: dict[str, Any] = (
                {str(k): to_jsonable(v, name="context") for k, v in raw.items()}
                if isinstance(raw, Mapping) else {}
            )
            if label_key:
                context.setdefault(label_key, label)
            if source_key is not None:
                context.setdefault(source_key, str(path))
            if seed is not None:
                context.setdefault("seed", seed)
            records.append({**record, "context": context})
    return records


# ---------------------------------------------------------------------------------------
# aggregation


def _group_value(value: Any) -> str | int | float | bool | None:
    v = to_jsonable(value, name="group value")
    if v is None or isinstance(v, (str, int, float)):  # to_jsonable: floats are finite
        return v
    return json.dumps(v, sort_keys=True)  # lists/dicts: a hashable, readable key


def _lookup(record: Mapping[str, Any], key: str) -> Any:
    fields = _record_fields(record)
    if key in fields:
        return fields[key]
    context = record.get("context")
    if isinstance(context, Mapping) and key in context:
        return context[key]
    return None


def _number(value: Any) -> float | None:
    """A finite int/float metric value as a float; anything else (bool, null, list,
    string, non-finite) is not aggregated."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"count": n, "mean": mean, "std": std, "min": min(values), "max": max(values),
            "first": values[0], "latest": values[-1]}


def aggregate_metric_log_records(
    records: Iterable[Mapping[str, Any]],
    *,
    group_by: Sequence[str] = ("phase",),
    as_frame: bool = False,
) -> Any:
    """Summary statistics of every metric, per group of records.

    Records are grouped by the values of the ``group_by`` keys, each looked up among the
    record's top-level fields, then in its ``context`` (``None`` where neither has it): so
    ``("phase", "step")`` gives one row per step across runs, ``("phase", "seed")`` one
    per run. Within a group, each metric's finite numbers (ints and floats; not bools,
    ``null``, lists or strings) are collected in record order, and one row is made per
    (group, metric) that has at least one, in order of first appearance::

        {<group_by keys>..., "metric": name, "count": n, "mean": Σv/n,
         "std": sqrt(Σ(v - mean)²/(n - 1)) (None if n = 1), "min", "max",
         "first": the first value, "latest": the last value}

    (sums exactly rounded with ``math.fsum``; ``std`` is the sample standard deviation,
    ``ddof=1``). Returns a list of such dicts, or with ``as_frame=True`` a pandas
    DataFrame with these columns (``std`` ``NaN`` where ``None``; needs pandas).
    """
    if isinstance(group_by, str) or not all(isinstance(k, str) for k in group_by):
        raise TypeError(f"group_by must be a sequence of str, got {group_by!r}")
    if not isinstance(as_frame, bool):
        raise TypeError(f"as_frame must be a bool, got {type(as_frame).__name__}")
    keys = tuple(group_by)
    if "metric" in keys or len(set(keys)) != len(keys):
        raise ValueError(f"group_by must be distinct keys other than 'metric', got {keys!r}")
    buckets: dict[tuple[Any, ...], list[float]] = {}  # dicts keep first-appearance order
    for record in records:
        group = tuple(_group_value(_lookup(record, k)) for k in keys)
        for name, value in record_metrics(record).items():
            x = _number(value)
            if x is not None:
                buckets.setdefault((*group, name), []).append(x)
    rows = [{**dict(zip(keys, bucket[:-1], strict=True)), "metric": bucket[-1], **_stats(vals)}
            for bucket, vals in buckets.items()]
    if not as_frame:
        return rows
    pd = _need_pandas("aggregate_metric_log_records(as_frame=True)")
    return pd.DataFrame.from_records(rows, columns=[*keys, *_STATS])


def aggregate_metric_logs(
    logs: MetricLogInput,
    *,
    group_by: Sequence[str] = ("phase",),
    label_key: str = "run_id",
    source_key: str | None = "source_path",
    infer_seed: bool = True,
    as_frame: bool = False,
) -> Any:
    """Read several runs (:func:`read_metric_log_runs`) and aggregate their metrics
    (:func:`aggregate_metric_log_records`): e.g. ``group_by=("phase", "step")`` gives the
    mean and std over seeds of every metric at every step; ``as_frame=True`` returns one
    pandas DataFrame (extra ``pandas``), otherwise a list of dicts."""
    return aggregate_metric_log_records(
        read_metric_log_runs(logs, label_key=label_key, source_key=source_key,
                             infer_seed=infer_seed),
        group_by=group_by,
        as_frame=as_frame,
    )
