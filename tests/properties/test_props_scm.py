"""SCM op properties on every backend (semantics §1, decision §10 #1).

Per op: the contract (bottom absorption, the semantics oracle — masks exact, values within
ulps — and differential fuzzing against the numpy backend, all on one draw), DAZ
invariance, signed-zero rules and broadcasting. Meadow laws on the finite part: commutativity, ``x·x⁻¹ = 1``,
involutions, ``x − y = x + (−y)``, ``x / y = x · y⁻¹`` with the tiny-y rule.
"""

from __future__ import annotations

import pytest

from . import laws


@pytest.mark.parametrize("law", laws.PER_OP_LAWS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", laws.ALL_OPS)
def test_per_op_law(law, name, xp):
    laws.run(law, xp, name, laws.SCM_OPS[name], label=name)


@pytest.mark.parametrize("name", laws.BROADCAST_OPS)
def test_broadcasting(name, xp):
    laws.run(laws.broadcasting, xp, name, laws.SCM_OPS[name], label=name)


@pytest.mark.parametrize("name", ["add", "mul"])
def test_commutative(name, xp):
    laws.run(laws.commutative, xp, name, label=name)


@pytest.mark.parametrize("law", laws.MEADOW_LAWS, ids=lambda f: f.__name__)
def test_meadow_law(law, xp):
    laws.run(law, xp)
