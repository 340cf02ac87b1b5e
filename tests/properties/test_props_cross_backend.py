"""Differential fuzzing: torch, JAX and array-api-strict against the numpy backend.

The SCM ops are fuzzed differentially inside ``laws.contract`` (test_props_scm.py), on
the same draw as their other properties; here: projective helpers and strict inference.
"""

from __future__ import annotations

import pytest

from . import laws, laws_cross


@pytest.mark.parametrize("which", laws_cross.PROJECTIVE_CASES)
def test_projective_matches_numpy(which, diff_backend):
    laws.run(laws_cross.projective_matches_numpy, laws_cross.NP, diff_backend, which,
             label=f"{which}_{diff_backend.name}")
