"""zpml_conformance — the conformance suite any zpml_core backend can be run against.

    python -m zpml_conformance --backend NAME        (or: zpml conformance --backend NAME)
    pytest --pyargs zpml_conformance --zpml-backend NAME

Cases are data (:mod:`zpml_conformance.cases`); the runner
(:mod:`zpml_conformance.runner`) compares a backend with the numpy float64 reference.
"""

from zpml_conformance.cases import Case, GradSpec, all_cases
from zpml_conformance.runner import Report, Result, compare_arrays, run, select_cases

__all__ = [
    "Case",
    "GradSpec",
    "Report",
    "Result",
    "all_cases",
    "compare_arrays",
    "run",
    "select_cases",
]
