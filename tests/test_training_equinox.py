"""SCMTrainer with an equinox module and an optax optimizer (ISSUE: JAX models may be
``(apply, params)`` pytrees or equinox modules). equinox is part of the ``all`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

eqx = pytest.importorskip("equinox")
jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

from zpml_core.losses import LossConfig, SCMTrainingLoss  # noqa: E402
from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig  # noqa: E402


class EqxRationalHead(eqx.Module):
    """The guide's RationalHead as an equinox module: MLP → (P, Q)."""

    mlp: Any
    scale: float = eqx.field(static=True)

    def __init__(self, key: Any, scale: float = 1.0) -> None:
        self.mlp = eqx.nn.MLP(1, 2, 32, 2, activation=jax.nn.relu, key=key)
        self.scale = scale

    def __call__(self, x: Any) -> tuple[Any, Any]:
        out = jax.vmap(self.mlp)(x) * self.scale
        return out[:, 0], out[:, 1]


def _data(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    return x, (1.0 / (x[:, 0] - 0.5)).astype(np.float32)


def _trainer(model: Any, epochs: int, **cfg: Any) -> SCMTrainer:
    x, y = _data()
    return SCMTrainer(
        model=model,
        optimizer=optax.adam(3e-3),
        loss_fn=SCMTrainingLoss(LossConfig()),
        train_loader=ArrayLoader(x, y, batch_size=32, shuffle=True),
        config=TrainingConfig(max_epochs=epochs, seed=0, **cfg),
    )


def test_equinox_module_trains_and_returns_a_module(tmp_path: Path) -> None:
    model = EqxRationalHead(jax.random.PRNGKey(0))
    x, y = _data()
    trainer = _trainer(model, 30)
    before = trainer.validate(ArrayLoader(x, y, batch_size=256))["loss"]
    trainer.fit()
    after = trainer.validate(ArrayLoader(x, y, batch_size=256))["loss"]
    assert np.isfinite(after) and after < 0.5 * before, (before, after)

    trained = trainer.model
    assert isinstance(trained, EqxRationalHead)
    assert trained.scale == 1.0  # static fields survive the partition/combine
    P, Q = trained(jnp.asarray(x))
    P2, Q2 = trainer.model_outputs(x)
    # eager module call vs the trainer's jitted predict: XLA may contract into FMAs
    np.testing.assert_allclose(np.asarray(P), np.asarray(P2), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(Q), np.asarray(Q2), rtol=1e-12, atol=1e-14)
    # the original module is not mutated (pure)
    P0, _ = model(jnp.asarray(x))
    assert not np.array_equal(np.asarray(P0), np.asarray(P))

    # checkpoint: a fresh trainer around a fresh module restores the trained weights
    path = tmp_path / "eqx.ckpt"
    trainer.save_checkpoint(str(path))
    fresh = _trainer(EqxRationalHead(jax.random.PRNGKey(1)), 30)
    fresh.load_checkpoint(str(path))
    P3, Q3 = fresh.model_outputs(x)
    np.testing.assert_array_equal(np.asarray(P3), np.asarray(P2))
    np.testing.assert_array_equal(np.asarray(Q3), np.asarray(Q2))


def test_equinox_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full = _trainer(EqxRationalHead(jax.random.PRNGKey(0)), 4)
    full.fit()
    half = _trainer(EqxRationalHead(jax.random.PRNGKey(0)), 4)
    half.fit(epochs=2)
    path = tmp_path / "half.ckpt"
    half.save_checkpoint(str(path))
    resumed = _trainer(EqxRationalHead(jax.random.PRNGKey(7)), 4)  # other initial weights
    resumed.load_checkpoint(str(path))
    resumed.fit()
    x, _ = _data()
    for a, b in zip(full.model_outputs(x), resumed.model_outputs(x), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
