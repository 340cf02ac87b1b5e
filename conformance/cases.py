"""The conformance cases, as data.

A :class:`Case` names one call of one public array function of zpml_core on inputs
built in numpy from a fixed seed (``np.random.default_rng(case.seed)``). The runner
converts the numpy inputs with the backend's ``asarray``, calls ``case.fn(**inputs,
**case.kwargs)``, flattens the result into named outputs and compares every output with
the numpy float64 reference (numpy float32 for ``f32`` cases). Gradient cases (group
``grad``) additionally name the inputs to differentiate and the scalar to differentiate.

Adding coverage is adding rows: every family below is a small generator over
dtypes × input variants. Ids are ``<function>/<dtype>/<variant>`` (e.g.
``scm.div/f64/edge-bcast``); gradient ids are ``grad.<function>/<dtype>/<variant>`` (e.g.
``grad.scm.log/f32/policy-reject``). Inputs come from ``np.random.default_rng(seed)``
with ``seed = crc32(id)``, so every row is reproducible on its own.

The table is split by op family: the records and input material
(:mod:`zpml_conformance._cases_base`), the SCM ops (:mod:`zpml_conformance._cases_scm`),
the projective helpers and strict inference (:mod:`zpml_conformance._cases_projective`),
the gradients (:mod:`zpml_conformance._cases_grad`) and the losses
(:mod:`zpml_conformance._loss_cases`); this module assembles them and re-exports every
name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache

from zpml_conformance._cases_base import (  # noqa: F401  (re-exported)
    _SHORT,
    DTYPES,
    GROUPS,
    Builder,
    Case,
    GradSpec,
    Inputs,
    MaskFn,
    _mask,
    _next,
    _rand,
    _smooth,
    _sprinkle,
    edge_values,
    exponent_edges,
)
from zpml_conformance._cases_grad import (  # noqa: F401  (re-exported)
    _MODERATE,
    _POLICIES,
    _all_zero,
    _grad_cases,
    _moderate,
    _not_bottom,
    _policy_weights,
    _ref_bottom,
    _sum_both,
    _sum_value,
    _with_zeros,
    _zero_at_bottom,
)
from zpml_conformance._cases_projective import (  # noqa: F401  (re-exported)
    _LABELS,
    _inference_cases,
    _labels_for,
    _projective_cases,
)
from zpml_conformance._cases_scm import (  # noqa: F401  (re-exported)
    _BINARY,
    _EXPONENTS,
    _UNARY,
    _binary_cases,
    _pow,
    _pow_cases,
    _sfx,
    _unary_cases,
)

__all__ = [
    "DTYPES",
    "GROUPS",
    "Case",
    "GradSpec",
    "all_cases",
    "edge_values",
    "exponent_edges",
]


# ---------------------------------------------------------------------------------------


_FAMILIES: tuple[Callable[[str], Iterable[Case]], ...] = (
    _binary_cases,
    _unary_cases,
    _pow_cases,
    _projective_cases,
    _inference_cases,
    _grad_cases,
)


def _extra_families() -> tuple[Callable[[str], Iterable[Case]], ...]:
    """The loss families (only if zpml_core.losses and zpml_core.autodiff exist)."""
    try:
        from zpml_conformance import _loss_cases
    except ModuleNotFoundError as exc:  # pragma: no cover - a core without losses
        if exc.name in ("zpml_core.losses", "zpml_core.autodiff"):
            return ()
        raise
    return _loss_cases.FAMILIES


@lru_cache(maxsize=1)
def all_cases() -> tuple[Case, ...]:
    """Every case, in a stable order (ids are unique)."""
    out: list[Case] = []
    for dtype in DTYPES:
        for fam in (*_FAMILIES, *_extra_families()):
            out.extend(fam(dtype))
    dup = {i for i, n in Counter(c.id for c in out).items() if n > 1}
    if dup:
        raise RuntimeError(f"duplicate conformance case ids: {sorted(dup)}")
    return tuple(out)

