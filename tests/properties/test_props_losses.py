"""Loss properties on every backend, and differential fuzzing against numpy (semantics §5)."""

from __future__ import annotations

import pytest

from . import laws, laws_cross, laws_losses


@pytest.mark.parametrize("law", laws_losses.LOSS_LAWS, ids=lambda f: f.__name__)
def test_loss_law(law, xp):
    laws.run(law, xp)


def test_losses_match_numpy(diff_backend):
    laws.run(laws_losses.losses_match_numpy, laws_cross.NP, diff_backend,
             label=f"losses_{diff_backend.name}")
