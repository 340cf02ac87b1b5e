"""JAX in 32-bit mode (``jax_enable_x64`` off, JAX's default) turns 64-bit training data
into 32 bits: the JAX trainer says so once per process (``X32Warning``), and says
nothing for 32-bit data or with x64 enabled. Each case runs in a fresh process (the
test session enables x64)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

SCRIPT = """
import warnings, sys
import jax
if {x64}:
    jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np, optax
from zpml_core.losses import LossConfig, SCMTrainingLoss
from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

def apply(params, x):
    out = x @ params["w"] + params["b"]
    return out[:, 0], out[:, 1]

params = {{"w": jnp.ones((1, 2)) * 0.1, "b": jnp.ones(2) * 0.5}}
x = np.linspace(-1, 1, 64)[:, None].astype("{dtype}")
y = (1.0 / (x[:, 0] - 0.3)).astype("{dtype}")
with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter("always")
    for _ in range(2):  # two trainers: still one warning per process
        t = SCMTrainer(model=(apply, params), optimizer=optax.sgd(1e-3),
                       loss_fn=SCMTrainingLoss(LossConfig(tau_train=1e-4)),
                       train_loader=ArrayLoader(x, y, batch_size=32),
                       config=TrainingConfig(max_epochs=1, seed=0))
        t.fit()
ours = [w for w in rec if type(w.message).__name__ == "X32Warning"]
print(len(ours))
print(str(ours[0].message) if ours else "-")
"""


def _run(x64: bool, dtype: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(x64=x64, dtype=dtype)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()


def test_float64_data_in_x32_mode_warns_once() -> None:
    n, msg = _run(False, "float64")
    assert n == "1"
    assert "jax_enable_x64" in msg and "float64" in msg


@pytest.mark.parametrize(("x64", "dtype"), [(False, "float32"), (True, "float64")])
def test_no_warning_when_nothing_is_lost(x64: bool, dtype: str) -> None:
    assert _run(x64, dtype)[0] == "0"
