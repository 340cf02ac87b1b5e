"""Evaluation metrics: the post-hoc ``tau_infer`` sweep (:mod:`zpml_core.metrics.tau_sweep`)."""

from zpml_core.metrics.tau_sweep import (
    tau_infer_sweep_from_q_abs,
    tau_infer_sweep_report,
    write_tau_infer_sweep,
)

__all__ = ["tau_infer_sweep_from_q_abs", "tau_infer_sweep_report", "write_tau_infer_sweep"]
