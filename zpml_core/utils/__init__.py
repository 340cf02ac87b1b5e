"""Utilities that are not part of the SCM semantics: metric logging."""

from zpml_core.utils.logging import (
    METRIC_LOG_SCHEMA_NAME,
    METRIC_LOG_SCHEMA_VERSION,
    CorruptLinesWarning,
    JsonlLogger,
    TensorBoardLogger,
    aggregate_metric_logs,
    jsonl_to_dataframe,
    metric_log_record,
    read_jsonl,
    read_metric_log_runs,
    to_jsonable,
    validate_metric_record,
)

__all__ = [
    "METRIC_LOG_SCHEMA_NAME",
    "METRIC_LOG_SCHEMA_VERSION",
    "CorruptLinesWarning",
    "JsonlLogger",
    "TensorBoardLogger",
    "aggregate_metric_logs",
    "jsonl_to_dataframe",
    "metric_log_record",
    "read_jsonl",
    "read_metric_log_runs",
    "to_jsonable",
    "validate_metric_record",
]
