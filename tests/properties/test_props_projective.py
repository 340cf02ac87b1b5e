"""Projective helpers and strict inference: properties on every backend (semantics §2–§4)."""

from __future__ import annotations

import pytest

from . import laws
from . import laws_projective as lp

LAWS = (
    lp.decode_scale_pow2,
    lp.decode_scale_general,
    lp.lift_decode_identity,
    lp.encode_decode_roundtrip,
    lp.projectively_equal_reflexive,
    lp.renormalize_unit_norm,
    lp.renormalize_scale_invariance,
    lp.semantic_targets_table,
    lp.strict_inference_invariants,
)


@pytest.mark.parametrize("law", LAWS, ids=lambda f: f.__name__)
def test_projective_law(law, xp):
    laws.run(law, xp)
