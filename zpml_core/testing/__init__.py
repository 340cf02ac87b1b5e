"""Property-testing tools for Signed Common Meadow code, for any array namespace.

Import it explicitly (``import zpml_core.testing``); ``import zpml_core`` does not load
it. It needs ``hypothesis`` and ``numpy`` (the ``test`` extra).

Strategies (all take the array namespace ``xp`` first and return arrays of ``xp``):

* :func:`scm_arrays` — ``SCMArray(value, bottom)`` operands with a controllable share
  of edge values (±0, ±inf, NaN, subnormals, the smallest normal, ``2**(emin/2)``,
  huge values, values next to the thresholds ``taus``) and a controllable share of
  masked (bottom) elements; the other values cover the dtype's whole finite range
  (log-uniform magnitudes from the smallest subnormal to ``max``, moderate values and
  hypothesis' own float mix).
* :func:`projective_tuples` — ``(N, D)`` pairs for ``decode`` / ``renormalize``.
* :func:`targets` — regression targets with finite and non-finite entries (optionally
  with status labels for ``lift_semantic_targets``).

Assertions: :func:`assert_scm_equal` (masks exact, values within ``ulps`` with an
absolute floor of the smallest normal, signed zeros, readable diff listing the first
differing indices) and :func:`assert_close` for plain arrays.

Reproductions: :func:`reproduction` renders a call as code a user can paste; pass it to
``hypothesis.note`` inside a property so the falsifying example prints it.

Profiles: :func:`register_profiles` registers ``dev``, ``ci`` and ``nightly``;
:func:`load_profile` picks one from an argument, ``$HYPOTHESIS_PROFILE`` or ``$CI``.

Dtypes: float16, bfloat16 (where the library has it; drawn and compared in numpy as
ml_dtypes' ``bfloat16``), float32, float64, complex64, complex128.

Arrays are drawn as numpy arrays (``hypothesis.extra.numpy``) and handed to the library
through its zpml_core backend adapter, which copies them exactly (subnormals included)
in one call. Namespaces without an adapter are drawn with
``hypothesis.extra.array_api.make_strategies_namespace(xp)`` instead.

Shares (``edge_fraction``, ``bottom_fraction``, ``nonfinite_fraction``) are drawn from
fair booleans, so they hold on average as asked (hypothesis' integers are skewed to
small values), and small arrays draw each element on its own.

The implementation is split by responsibility into private submodules (dtype/shape
helpers, edge values, element strategies, array strategies, assertions, reproductions,
profiles); every name is importable from ``zpml_core.testing``.
"""

from __future__ import annotations

from zpml_core.testing._assertions import (  # noqa: F401  (re-exported)
    _as_pair,
    _fmt,
    _idx,
    _is_float,
    _signbit,
    _smallest_normal,
    _ulp_tolerance,
    _ulps_between,
    _wide,
    assert_close,
    assert_scm_equal,
    to_numpy,
)
from zpml_core.testing._dtypes import (  # noqa: F401  (re-exported)
    _COMPLEX_NAMES,
    _REAL_NAMES,
    DEFAULT_TAUS,
    SMALL_SHAPES,
    Array,
    DtypeArg,
    Namespace,
    ShapeArg,
    _bf16_type,
    _default_dtype_names,
    _dtype_names,
    _is_bf16,
    _np_dtype,
    _np_dtype_name,
    _real_name,
    _shapes,
    small_shapes,
)
from zpml_core.testing._edges import (  # noqa: F401  (re-exported)
    _edge_values,
    _edge_values_cached,
    edge_values,
)
from zpml_core.testing._element_strategies import (  # noqa: F401  (re-exported)
    _BOOL,
    _COIN_BITS,
    _COIN_ONE,
    _MODERATE,
    Options,
    _coin,
    _elements,
    _elements_cached,
    _elements_uncached,
    _fitter,
    _flip,
    _full_range,
    _mixture,
    _pick,
    _real_elements,
    _round_bf16,
    _rounder,
    _share,
    _width,
)
from zpml_core.testing._profiles import (
    PROFILES,
    load_profile,
    register_profiles,
)
from zpml_core.testing._reproduction import (  # noqa: F401  (re-exported)
    _IMPORTS,
    _array_code,
    _arrays_in,
    _is_arr,
    _literal,
    note_reproduction,
    reproduction,
)
from zpml_core.testing._strategies import (  # noqa: F401  (re-exported)
    _ARRAY_API_NS,
    _LABELS,
    _LABELS_FINITE,
    _LABELS_NONFINITE,
    _NO_FILL_MAX,
    _NONFINITE,
    _NONFINITE_LABELS,
    _array_api_strategies,
    _bool_elements,
    _draw_array,
    _ElementCache,
    _nest,
    _scm_pair,
    _targets,
    _tuple_pair,
    projective_tuples,
    scm_arrays,
    targets,
)

__all__ = [
    "DEFAULT_TAUS",
    "PROFILES",
    "SMALL_SHAPES",
    "assert_close",
    "assert_scm_equal",
    "edge_values",
    "load_profile",
    "note_reproduction",
    "projective_tuples",
    "register_profiles",
    "reproduction",
    "scm_arrays",
    "small_shapes",
    "targets",
    "to_numpy",
]
