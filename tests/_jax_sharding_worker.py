"""Run by tests/test_jax_sharding.py in a fresh interpreter with 2 host CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2`` before jax initialises).

Trains the guide's RationalHead (float64, optax adam, SCMTrainingLoss, sampled
tau_train, gradient accumulation, validation) for one epoch on one device and on a
2-device ``Mesh`` (batch sharded, parameters replicated); prints one JSON line with the
largest relative parameter and metric differences, the shardings seen and the
wall-clock of each epoch (with ``--time`` also of a second, already compiled run).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402
from zpml_backends.jax_training import rational_head_apply, rational_head_init  # noqa: E402

from zpml_core.losses import LossConfig, SCMTrainingLoss  # noqa: E402
from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig  # noqa: E402

N, BATCH = 70, 8
TIMING = "--time" in sys.argv  # also time a second run of each (after compilation)


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 2))
    d = x[:, 0] - 0.2
    y = np.where(np.abs(d) < 0.05, np.inf, 1.0 / np.where(np.abs(d) < 0.05, 1.0, d))
    return x, y


def run(device: object) -> tuple[SCMTrainer, float]:
    x, y = data(N, 0)
    xv, yv = data(23, 1)
    params = rational_head_init(0, 2, dtype=np.float64)
    cfg = TrainingConfig(max_epochs=1, seed=3, tau_train_min=1e-3, tau_train_max=0.1,
                         tau_infer=1e-4, gradient_accumulation_steps=2, device=device,
                         val_loader=ArrayLoader(xv, yv, batch_size=12))
    t = SCMTrainer((rational_head_apply, params), optax.adam(1e-2),
                   SCMTrainingLoss(LossConfig(lambda_rej=0.5, tau_train=1e-2)),
                   ArrayLoader(x, y, batch_size=BATCH, shuffle=True), cfg)
    t0 = time.perf_counter()
    t.fit()
    jax.block_until_ready(t.params)
    return t, time.perf_counter() - t0


def rel(a: object, b: object) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    d = np.where(both_nan, 0.0, np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300))
    return float(np.max(d)) if d.size else 0.0


def main() -> None:
    assert jax.device_count() == 2, jax.devices()
    single, t_single = run(jax.devices()[0])
    mesh = Mesh(np.array(jax.devices()), ("data",))
    multi, t_multi = run(mesh)
    leaves_1 = jax.tree_util.tree_leaves(single.params)
    leaves_2 = jax.tree_util.tree_leaves(multi.params)
    p_rel = max(rel(a, b) for a, b in zip(leaves_1, leaves_2, strict=True))
    # per leaf: max |difference| over max |value| (elements near 0 do not dominate)
    p_leaf = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(a))))
                 for a, b in zip(leaves_1, leaves_2, strict=True))
    keys = [k for k in single.history[0] if k != "tau_train"]
    m_rel = max(rel([h[k] for h in single.history], [h[k] for h in multi.history]) for k in keys)
    v_rel = max(rel(single.val_history[0][k], multi.val_history[0][k]) for k in single.val_history[0])
    # a parameter's placement, and a batch's: replicated parameters, sharded batch
    leaf = leaves_2[0]
    batch = multi.engine.to_framework(np.zeros((BATCH, 2)))
    # a checkpoint of the mesh run, loaded by a fresh trainer whose mesh comes from
    # parameters already replicated on it: the same values, still replicated
    ckpt = os.path.join(tempfile.mkdtemp(), "ckpt.zpml")
    multi.save_checkpoint(ckpt)
    init = jax.device_put(rational_head_init(9, 2, dtype=np.float64), NamedSharding(mesh, PartitionSpec()))
    fresh = SCMTrainer((rational_head_apply, init), optax.adam(1e-2),
                       SCMTrainingLoss(LossConfig(lambda_rej=0.5, tau_train=1e-2)),
                       ArrayLoader(*data(N, 0), batch_size=BATCH), TrainingConfig(seed=3))
    detected = fresh.engine.mesh is mesh
    fresh.load_checkpoint(ckpt)
    loaded = jax.tree_util.tree_leaves(fresh.params)
    resumed_equal = all(np.array_equal(a, b) for a, b in zip(loaded, leaves_2, strict=True))
    resumed_replicated = all(a.sharding.is_fully_replicated and len(a.sharding.device_set) == 2
                             for a in loaded)
    t_multi2 = t_single2 = float("nan")
    if TIMING:
        _, t_multi2 = run(mesh)
        _, t_single2 = run(jax.devices()[0])
    print(json.dumps({
        "param_rel": p_rel, "param_leaf_rel": p_leaf, "metric_rel": m_rel, "val_rel": v_rel,
        "steps": len(multi.history), "same_taus": single.last_thresholds == multi.last_thresholds,
        "param_devices": len(leaf.sharding.device_set),
        "param_replicated": bool(leaf.sharding.is_fully_replicated),
        "batch_replicated": bool(batch.sharding.is_fully_replicated),
        "batch_devices": len(batch.sharding.device_set),
        "mesh_from_params": detected, "resumed_equal": resumed_equal,
        "resumed_replicated": resumed_replicated,
        "seconds_single": t_single2, "seconds_mesh": t_multi2,
        "seconds_single_first": t_single, "seconds_mesh_first": t_multi,
    }))


if __name__ == "__main__":
    main()
