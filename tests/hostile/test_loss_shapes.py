"""Class "all-pairs broadcasting" in the losses: one broadcasting rule, every loss.

Rule (``zpml_core.losses`` docstring): the operands may broadcast one way only — the
result has the shape of the largest operand and every other operand (and every mask)
broadcasts *to* it without enlarging it. ``(B,)`` predictions next to ``(B, 1)``
targets (``y = 1/(x − a)`` with ``x`` of shape ``(N, 1)``) would otherwise make every
elementwise loss a ``B×B`` all-pairs loss; they raise ``ValueError`` naming every
argument and its shape. The expected outcome of each shape combination is derived here
from ``numpy.broadcast_shapes`` (an independent implementation of the standard's
broadcasting), every backend.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from zpml_core.losses import (
    SCMTrainingLoss,
    implicit_loss,
    margin_loss,
    scm_separation_losses,
    sign_consistency_loss,
)

B = 4
#: shapes around a batch of B (and k = 3 outputs per sample)
SHAPES = [(), (B,), (B, 1), (1, B), (B, 3), (1,), (1, 1), (2, B), (3,)]
NAMES = ("P", "Q", "Y_n", "Y_d")


def _outcome(shapes: tuple[tuple[int, ...], ...]) -> tuple[int, ...] | None:
    """The rule, from numpy's broadcasting: the common shape, or None (→ ValueError)."""
    try:
        result = np.broadcast_shapes(*shapes)
    except ValueError:
        return None
    return result if any(s == result for s in shapes) else None


def _operands(arr, shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [arr(rng.uniform(0.5, 2.0, size=s) * rng.choice([-1.0, 1.0], size=s)) for s in shapes]


def _four_operand_losses():
    loss = SCMTrainingLoss()
    return {
        "implicit_loss": lambda P, Q, Yn, Yd: implicit_loss(P, Q, Yn, Yd),
        "sign_consistency_loss": lambda P, Q, Yn, Yd: sign_consistency_loss(
            P, Q, Yn, Yd, epsilon_sing=10.0),
        # fit_loss as a Python number: the combined loss's own shape check is under test
        "SCMTrainingLoss": lambda P, Q, Yn, Yd: loss(0.5, P, Q, Yn, Yd)[0],
    }


# a deterministic sample of the 9^4 combinations: pairs of shapes spread over the four
# operands in every pattern (P,Q | Y_n,Y_d), (P | Q,Y_n,Y_d), ...
_PATTERNS = [(0, 0, 1, 1), (0, 1, 1, 1), (0, 1, 0, 1), (1, 0, 0, 0), (0, 0, 0, 1),
             (0, 1, 1, 0)]
_ALL = sorted({tuple((a, b)[i] for i in pat)
               for a, b in itertools.permutations(SHAPES, 2) for pat in _PATTERNS})
#: a seeded sample of them (every combination compiles anew on JAX)
COMBOS = [_ALL[i] for i in sorted(np.random.default_rng(10).choice(len(_ALL), 36,
                                                                   replace=False))]


@pytest.mark.parametrize("loss_name", list(_four_operand_losses()))
def test_every_shape_combination_follows_the_rule(arr, loss_name):
    fn = _four_operand_losses()[loss_name]
    refused = accepted = 0
    for shapes in COMBOS:
        ops = _operands(arr, shapes)
        expected = _outcome(shapes)
        if expected is None:
            with pytest.raises(ValueError) as info:
                fn(*ops)
            msg = str(info.value)
            for name, s in zip(NAMES, shapes, strict=True):
                # every argument is named with its shape (only a pair that does not
                # broadcast at all is reported by the two culprits)
                if "cannot be broadcast" not in msg:
                    assert f"{name} has shape {s}" in msg, (loss_name, shapes, msg)
            refused += 1
        else:
            out = fn(*ops)
            assert tuple(out.shape) == (), (loss_name, shapes)
            assert np.isfinite(arr.np(out)), (loss_name, shapes)
            accepted += 1
    assert refused > 8 and accepted > 8  # the sample exercises both outcomes


def test_b1_targets_next_to_b_predictions_raise_naming_arguments(arr):
    P, Q = arr(np.linspace(0.5, 2.0, B)), arr(np.linspace(1.0, 3.0, B))
    Yn, Yd = arr(np.ones((B, 1))), arr(np.ones((B, 1)))
    calls = {
        "implicit_loss": lambda: implicit_loss(P, Q, Yn, Yd),
        "sign_consistency_loss": lambda: sign_consistency_loss(P, Q, Yn, Yd),
        "SCMTrainingLoss": lambda: SCMTrainingLoss()(arr(0.5), P, Q, Yn, Yd),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="all-pairs") as info:
            call()
        msg = str(info.value)
        for arg, shape in (("P", (B,)), ("Q", (B,)), ("Y_n", (B, 1)), ("Y_d", (B, 1))):
            assert f"{arg} has shape {shape}" in msg, (name, msg)
        assert re.search(rf"\({B}, {B}\)", msg), (name, msg)  # what it would have become


def test_shared_denominator_stays_valid_and_equals_explicit_broadcast(arr):
    # Q of shape (B, 1) next to P of shape (B, k): the trainer's shared denominator
    rng = np.random.default_rng(3)
    P = rng.normal(size=(B, 3))
    Q = rng.normal(size=(B, 1))
    Yn = rng.normal(size=(B, 3))
    Yd = np.where(rng.random((B, 3)) < 0.5, 0.0, 1.0)
    Qb = np.broadcast_to(Q, P.shape).copy()
    a = [arr(x) for x in (P, Q, Yn, Yd)]
    b = [arr(x) for x in (P, Qb, Yn, Yd)]
    for fn in (implicit_loss, sign_consistency_loss):
        np.testing.assert_allclose(arr.np(fn(*a)), arr.np(fn(*b)), rtol=1e-12)
    # SCMTrainingLoss: the margin term is a mean over Q's own elements; repeating each
    # row k times does not change a mean
    fa = implicit_loss(*a)
    ta, _ = SCMTrainingLoss()(fa, *a, mask_finite=arr(np.ones((B, 1), bool), "bool"))
    tb, _ = SCMTrainingLoss()(fa, *b, mask_finite=arr(np.ones((B, 3), bool), "bool"))
    np.testing.assert_allclose(arr.np(ta), arr.np(tb), rtol=1e-12)


def test_zero_d_operands_and_masks(arr):
    P = arr(np.linspace(0.5, 2.0, B))
    one = arr(1.0)
    for fn in (implicit_loss, sign_consistency_loss):
        assert np.isfinite(arr.np(fn(P, one, one, arr(0.0))))
        assert np.isfinite(arr.np(fn(one, one, one, one)))  # all 0-d
    assert np.isfinite(arr.np(margin_loss(one, 2.0, True)))
    assert np.isfinite(arr.np(margin_loss(P, 2.0, arr(True, "bool"))))
    d, u = scm_separation_losses(P, mask_censored=arr(False, "bool"))
    assert arr.np(d) == 0.0 and np.isfinite(arr.np(u))
    # a mask may not enlarge a 0-d operand
    with pytest.raises(ValueError, match="mask_finite"):
        margin_loss(one, 2.0, arr([True], "bool"))
    with pytest.raises(ValueError, match="mask_censored"):
        scm_separation_losses(one, mask_censored=arr([True, False], "bool"))


@pytest.mark.parametrize("mshape", [(B, 1), (1, B), (2, B), (B + 1,), (B, B)])
def test_masks_never_enlarge_their_operand(arr, mshape):
    P, Q = arr(np.linspace(0.5, 2.0, B)), arr(np.linspace(1.0, 3.0, B))
    m = arr(np.ones(mshape, bool), "bool")
    calls = {
        "mask_finite": lambda: margin_loss(Q, 1.0, m),
        "mask_censored": lambda: scm_separation_losses(Q, mask_censored=m),
        "mask_singular": lambda: sign_consistency_loss(P, Q, P, Q, mask_singular=m),
        "mask_finite ": lambda: SCMTrainingLoss()(arr(0.5), P, Q, P, Q, mask_finite=m),
        "mask_singular ": lambda: SCMTrainingLoss()(arr(0.5), P, Q, P, Q, mask_singular=m),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=name.strip()) as info:
            call()
        assert str(mshape) in str(info.value), (name, str(info.value))


def test_fit_loss_must_be_a_scalar(arr):
    P, Q = arr(np.linspace(0.5, 2.0, B)), arr(np.linspace(1.0, 3.0, B))
    for bad in (arr(np.ones(B)), arr(np.ones(1)), arr(np.ones((1, 1)))):
        with pytest.raises(ValueError, match="fit_loss") as info:
            SCMTrainingLoss()(bad, P, Q, P, Q)
        assert str(tuple(bad.shape)) in str(info.value)
