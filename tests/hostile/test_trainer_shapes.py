"""Class "all-pairs broadcasting" in the trainer: targets of shape ``(B, 1)`` next to
``P, Q`` of shape ``(B,)`` (what ``y = 1/(x - a)`` gives for ``x`` of shape ``(B, 1)``)
must never train on a ``B×B`` all-pairs loss.

Rule (``zpml_core.training.metrics.check_shapes``): the lifted targets have exactly the
shape of the model's ``P`` (or of its single decoded output), ``Q`` has ``P``'s leading
shape. Every violation raises ``ValueError`` naming both shapes on the first step,
before any update — for ``SCMTrainingLoss`` and plain callables, on torch (eager) and
JAX (inside ``jax.jit``) — and in validation and ``calibrate_tau_infer``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from zpml_core.losses import SCMTrainingLoss, implicit_loss
from zpml_core.training import SCMTrainer, TrainingConfig
from zpml_core.training.metrics import check_shapes, strict_sums

from ._trainers import data, model, params_np

B = 16
autodiff = pytest.mark.autodiff


def plain_implicit(outputs: Any, lifted: Any) -> Any:
    P, Q = outputs
    if Q.ndim < P.ndim:  # one denominator shared by P's trailing outputs
        Q = Q[..., None]
    return implicit_loss(P, Q, *lifted)


def decoded_mse(outputs: Any, lifted: Any) -> Any:
    # a model with one decoded output; finite targets only (Y_d = 1)
    Y_n, _ = lifted
    d = outputs - Y_n
    return (d * d).mean()


def _col(a: Any) -> Any:
    return a[:, None]


# (name, wrap of the head's (P, Q), target transform, loss kinds, shapes in the message)
CASES = [
    ("targets_column", None, _col, ("scm", "plain"), ("(16, 1)", "(16,)")),
    ("outputs_column", lambda p, q: (p[:, None], q[:, None]), None, ("scm", "plain"),
     ("(16,)", "(16, 1)")),
    ("q_column", lambda p, q: (p, q[:, None]), None, ("scm", "plain"), ("(16, 1)", "(16,)")),
    ("decoded_vs_column", lambda p, q: p / q, _col, ("decoded",), ("(16, 1)", "(16,)")),
    ("decoded_column", lambda p, q: (p / q)[:, None], None, ("decoded",), ("(16,)", "(16, 1)")),
]
LOSSES = {"scm": SCMTrainingLoss, "plain": lambda: plain_implicit, "decoded": lambda: decoded_mse}


def _cases() -> list[Any]:
    return [pytest.param(c, k, id=f"{c[0]}-{k}") for c in CASES for k in c[3]]


def _shapes_in(msg: str, shapes: tuple[str, str]) -> bool:
    return all(s in msg for s in shapes)


@autodiff
@pytest.mark.parametrize(("case", "kind"), _cases())
def test_mismatched_shapes_stop_before_any_update(backend_name: str, case: Any, kind: str) -> None:
    _name, wrap, tgt, _, shapes = case
    x, y = data(B)
    y_b = y if tgt is None else tgt(y)
    m, opt = model(backend_name, wrap, lr=0.5)
    tr = SCMTrainer(model=m, optimizer=opt, loss_fn=LOSSES[kind](),
                    train_loader=[(x, y_b)] * 2, config=TrainingConfig(max_epochs=1))
    before = params_np(tr)
    with pytest.raises(ValueError) as err:
        tr.fit()
    msg = str(err.value)
    assert _shapes_in(msg, shapes), msg
    assert re.search(r"\btargets\b|\bQ\b", msg)
    after = params_np(tr)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert tr.global_step == 0 and tr.history == [] and tr.last_thresholds == []


@autodiff
def test_error_on_a_later_batch_keeps_earlier_steps(backend_name: str) -> None:
    # a column batch after a good one: the good step stands and is logged, the bad one
    # raises before running (JAX pipelines steps: the in-flight one is still checked)
    x, y = data(B)
    m, opt = model(backend_name, lr=0.1)
    tr = SCMTrainer(model=m, optimizer=opt, loss_fn=SCMTrainingLoss(),
                    train_loader=[(x, y), (x, y[:, None])], config=TrainingConfig(max_epochs=1))
    before = params_np(tr)
    with pytest.raises(ValueError, match=r"\(16, 1\)"):
        tr.fit()
    assert tr.global_step == 1 and len(tr.history) == 1 and len(tr.last_thresholds) == 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, params_np(tr), strict=True))


@autodiff
@pytest.mark.parametrize("kind", ["scm", "plain"])
def test_matching_and_shared_denominator_shapes_train(backend_name: str, kind: str) -> None:
    # P (B, 2) with one Q (B,) per sample and targets (B, 2): allowed, trains
    x, y = data(B)
    y2 = np.stack([y, 2 * y], axis=1)
    m, opt = model(backend_name, output_dim=2)
    tr = SCMTrainer(model=m, optimizer=opt, loss_fn=LOSSES[kind](), train_loader=[(x, y2)],
                    config=TrainingConfig(max_epochs=1, val_loader=[(x, y2)]))
    logs = tr.fit()
    assert len(logs) == 1 and np.isfinite(logs[0]["loss"])
    assert np.isfinite(tr.val_history[-1]["val_loss"])
    with pytest.raises(ValueError, match=r"\(16,\).*\(16, 2\)"):
        tr.validate([(x, y)])


@autodiff
def test_validation_and_calibration_refuse_columns(backend_name: str) -> None:
    x, y = data(B)
    m, opt = model(backend_name)
    tr = SCMTrainer(model=m, optimizer=opt, loss_fn=plain_implicit, train_loader=[(x, y)],
                    config=TrainingConfig(max_epochs=1, val_loader=[(x, y[:, None])]))
    with pytest.raises(ValueError, match=r"\(16, 1\).*\(16,\)"):
        tr.fit()  # the train step is fine; validation at the epoch end refuses
    with pytest.raises(ValueError, match=r"batch 0.*\(16, 1\)|\(16, 1\).*batch 0"):
        tr.calibrate_tau_infer([(x, y[:, None])], target_coverage=0.5)
    rep = tr.calibrate_tau_infer([(x, y)], target_coverage=0.0)
    assert rep.tau_infer > 0


def test_strict_sums_and_check_shapes_refuse(xp: Any) -> None:
    from zpml_core.inference import InferenceConfig

    P = xp.asarray(np.linspace(1.0, 2.0, 6))
    Q = xp.asarray(np.linspace(0.5, 1.0, 6))
    y_col = xp.asarray(np.ones((6, 1)))
    cfg = InferenceConfig(tau_infer=1e-6)
    with pytest.raises(ValueError, match=r"\(6, 1\).*\(6,\)"):
        strict_sums((P, Q), y_col, y_col, inference=cfg, xp=xp)
    with pytest.raises(ValueError, match=r"mask_finite.*\(6, 1\)"):
        strict_sums((P, Q), xp.ones_like(P), xp.ones_like(P), inference=cfg,
                    mask_finite=xp.asarray(np.ones((6, 1), dtype=bool)), xp=xp)
    # the rule itself, on shapes alone
    P2 = xp.asarray(np.ones((6, 3)))
    check_shapes(P2, Q, [("y", P2)])  # Q = P's leading shape: fine
    for q, y in ((xp.asarray(np.ones((6, 3))), P2), (Q, P2)):
        check_shapes(P2, q, [("y", y)])
    bad = [
        (P2, xp.asarray(np.ones(3)), P2),          # Q matches P's trailing axis only
        (P2, xp.asarray(np.ones((6, 1))), P2),      # Q broadcastable but not P's leading shape
        (P2, Q, xp.asarray(np.ones((6, 1)))),       # targets broadcastable to P
        (P2, Q, xp.asarray(np.ones((1, 3)))),
        (P, xp.asarray(np.ones((6, 6))), P),        # Q wider than P
    ]
    for p, q, y in bad:
        with pytest.raises(ValueError, match="shape"):
            check_shapes(p, q, [("y", y)])
