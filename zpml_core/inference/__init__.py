"""Strict inference and the helpers that deploy it.

* :mod:`~zpml_core.inference.mode` — ``strict_inference`` (decode ``(P, Q)`` with the
  masks production uses), ``InferenceConfig``, ``InferenceResult``, the provenance codes,
  and ``SCMInferenceWrapper`` (a model returning ``(P, Q)`` decoded at a frozen
  ``tau_infer``);
* :mod:`~zpml_core.inference.fallback` — what to do with refused elements:
  ``reject_on_bottom``, ``reject_on_gap``, ``safe_sentinel``, ``route_to_analytic_solver``;
* :mod:`~zpml_core.inference.monitoring` — ``strict_inference_rates`` and the running
  ``StrictInferenceMonitor``;
* :mod:`~zpml_core.inference.patterns` — ``decode_strict_censored_3way`` (below /
  in range / above).

Everything is written once against the array API; ``import zpml_core.inference`` imports
no array framework (the torch ``nn.Module`` front of the wrapper is loaded from
``zpml_backends`` when a torch model is wrapped).
"""

from zpml_core._compat_names import strict_inference_jax as strict_inference_jax  # deprecated
from zpml_core._compat_names import strict_inference_numpy as strict_inference_numpy  # deprecated
from zpml_core.inference.fallback import (
    reject_on_bottom,
    reject_on_gap,
    route_to_analytic_solver,
    safe_sentinel,
)
from zpml_core.inference.mode import (
    _THRESHOLDS,
    BOTTOM_PROVENANCE_FAULT,
    BOTTOM_PROVENANCE_FINITE,
    BOTTOM_PROVENANCE_MIXED,
    BOTTOM_PROVENANCE_SEMANTIC,
    STRICT_INFERENCE_FIELDS,
    InferenceConfig,
    InferenceResult,
    SCMInferenceWrapper,
    _k_strict,
    _tau_underflows,
    _thresholds,
    strict_inference,
)
from zpml_core.inference.monitoring import StrictInferenceMonitor, strict_inference_rates
from zpml_core.inference.patterns import SemanticDecodeResult, decode_strict_censored_3way

__all__ = [
    "BOTTOM_PROVENANCE_FAULT",
    "BOTTOM_PROVENANCE_FINITE",
    "BOTTOM_PROVENANCE_MIXED",
    "BOTTOM_PROVENANCE_SEMANTIC",
    "STRICT_INFERENCE_FIELDS",
    "InferenceConfig",
    "InferenceResult",
    "SCMInferenceWrapper",
    "SemanticDecodeResult",
    "StrictInferenceMonitor",
    "decode_strict_censored_3way",
    "reject_on_bottom",
    "reject_on_gap",
    "route_to_analytic_solver",
    "safe_sentinel",
    "strict_inference",
    "strict_inference_rates",
]

# the public classes live where users import them from (reprs, reproductions, pickles)
for _cls in (InferenceConfig, InferenceResult, SCMInferenceWrapper, SemanticDecodeResult,
             StrictInferenceMonitor):
    _cls.__module__ = __name__
del _cls

# private names other modules and tests reach through ``zpml_core.inference``
_PRIVATE = (_THRESHOLDS, _k_strict, _tau_underflows, _thresholds)
