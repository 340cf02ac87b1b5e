"""SCMTrainer data-parallel on a 2-device JAX ``Mesh`` equals one device (float64).

A fresh interpreter with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (the
flag must be set before jax initialises; this process already has one device) runs
tests/_jax_sharding_worker.py: one epoch (sampled tau_train, gradient accumulation, a
short last batch, validation) on one device and on the mesh. Parameters after the
epoch agree within 1e-12 relative (per parameter array: the largest difference over
its largest magnitude); every train and validation metric within 1e-12 elementwise; the
parameters stay replicated on both devices and a batch is split over them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

WORKER = Path(__file__).with_name("_jax_sharding_worker.py")


@pytest.mark.autodiff
def test_jax_mesh_two_devices_equal_one_device() -> None:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(WORKER)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["steps"] == 9  # 70 rows, batches of 8: a short last batch of 6
    assert out["same_taus"]
    assert out["param_leaf_rel"] <= 1e-12, out
    assert out["metric_rel"] <= 1e-12, out
    assert out["val_rel"] <= 1e-12, out
    assert out["param_devices"] == 2 and out["param_replicated"]
    assert out["batch_devices"] == 2 and not out["batch_replicated"]
    # parameters replicated on a mesh select it; a checkpoint loads back replicated
    assert out["mesh_from_params"] and out["resumed_equal"] and out["resumed_replicated"]
