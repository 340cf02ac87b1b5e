"""The JAX trainer's fast step (positional jitted call, donated state, numpy batches
handed to the step as they are) must not change a single bit of the results, and must
never invalidate arrays a user holds.

Reference: the same training through the general step (``engine._plain_ok = False``:
the keyword dispatch of ``_train_jit``, no donation) with JAX batches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy

from zpml_backends.jax_training import rational_head_apply, rational_head_init  # noqa: E402

from zpml_core.losses import LossConfig, SCMTrainingLoss  # noqa: E402
from zpml_core.training import SCMTrainer, TrainingConfig  # noqa: E402

pytestmark = pytest.mark.autodiff


def _data(dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.uniform(-1.0, 1.0, (96, 1)).astype(dtype)
    with np.errstate(divide="ignore"):
        y = (1.0 / (x[:, 0].astype(np.float64) - 0.25)).astype(dtype)
    y[::13] = np.inf  # bottom targets
    return x, y


def _trainer(loader: Any, *, fast: bool, dtype: Any = np.float32, **cfg: Any) -> SCMTrainer:
    params = rational_head_init(0, 1, dtype=dtype)
    tr = SCMTrainer(model=(rational_head_apply, params), optimizer=optax.adam(1e-2),
                    loss_fn=SCMTrainingLoss(LossConfig()), train_loader=loader,
                    config=TrainingConfig(max_epochs=3, **cfg))
    tr.engine._plain_ok = fast
    return tr


def _leaves(tr: SCMTrainer) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves((tr.params, tr.engine.opt_state))]


def _same(a: SCMTrainer, b: SCMTrainer, logs_a: list[Any], logs_b: list[Any]) -> None:
    assert repr(logs_a) == repr(logs_b)  # every metric, bit for bit (NaN included)
    for u, v in zip(_leaves(a), _leaves(b), strict=True):
        assert u.dtype == v.dtype
        assert np.array_equal(u, v, equal_nan=True)


@pytest.mark.parametrize(("dtype", "cfg"), [
    (np.float32, {}),
    (np.float64, {"tau_train_min": 1e-4, "tau_train_max": 1e-2, "seed": 3}),
], ids=["float32-fixed-tau", "float64-sampled-tau"])
def test_fast_step_and_numpy_batches_bit_identical(dtype: Any, cfg: dict[str, Any]) -> None:
    x, y = _data(dtype)
    jax_batches = [(jnp.asarray(x[i:i + 32]), jnp.asarray(y[i:i + 32])) for i in range(0, 96, 32)]
    np_batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 96, 32)]
    ref = _trainer(jax_batches, fast=False, dtype=dtype, **cfg)
    ref_logs = ref.fit()
    for loader in (jax_batches, np_batches):  # (numpy batches go to the step as they are)
        tr = _trainer(loader, fast=True, dtype=dtype, **cfg)
        logs = tr.fit()
        _same(ref, tr, ref_logs, logs)


def test_donated_state_never_invalidates_user_arrays() -> None:
    x, y = _data(np.float32)
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 96, 32)]
    init = rational_head_init(0, 1)
    seen: list[Any] = []
    box: list[SCMTrainer] = []

    def hook(record: dict[str, Any]) -> None:  # reads the live parameters at every step
        seen.append(box[0].params)

    tr = SCMTrainer(model=(rational_head_apply, init), optimizer=optax.adam(1e-2),
                    loss_fn=SCMTrainingLoss(LossConfig()), train_loader=batches,
                    config=TrainingConfig(max_epochs=3, log_hook=hook))
    box.append(tr)
    tr.engine.pipeline_depth = 1  # each step's record (and the hook) before the next step
    tr.fit(epochs=1)
    after_one = tr.params
    model = tr.model
    state = tr.engine.opt_state
    tr.fit(epochs=2)
    held = [init, after_one, model.params, state, *seen]
    for leaf in jax.tree_util.tree_leaves(held):
        assert not leaf.is_deleted()
        np.asarray(leaf)  # readable
    # and the hook's reads did not change the training: the same run without a hook
    ref = SCMTrainer(model=(rational_head_apply, rational_head_init(0, 1)),
                     optimizer=optax.adam(1e-2), loss_fn=SCMTrainingLoss(LossConfig()),
                     train_loader=batches, config=TrainingConfig(max_epochs=3))
    ref.fit()
    for u, v in zip(_leaves(ref), _leaves(tr), strict=True):
        assert np.array_equal(u, v)
    # the parameters the hook saw after each step are those of a step-by-step replay
    rep = SCMTrainer(model=(rational_head_apply, rational_head_init(0, 1)),
                     optimizer=optax.adam(1e-2), loss_fn=SCMTrainingLoss(LossConfig()),
                     train_loader=batches, config=TrainingConfig(max_epochs=3))
    for k, (xb, yb) in enumerate(batches * 3):
        rep.train_step((xb, yb))
        for u, v in zip(jax.tree_util.tree_leaves(rep.params), jax.tree_util.tree_leaves(seen[k]),
                        strict=True):
            assert np.array_equal(np.asarray(u), np.asarray(v))
