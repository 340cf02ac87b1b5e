"""Data-parallel SCMTrainer against one process: torch DDP (2 gloo ranks) and JAX on a
2-device mesh (host CPU devices), float64, the same global batch.

    python benchmarks/bench_scaling.py [--n 16384] [--batch 512] [--epochs 2]

Prints, for each: the wall-clock of ``fit`` (after a warm-up epoch, so JAX compilation
and torch's first-call costs are excluded) for one process and for 2 ranks/devices, and
the largest relative difference of the per-step loss/metrics and of the final
parameters. On a 2-core machine the two ranks share the cores with everything else:
report the numbers, do not expect a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

INPUT_DIM = 8


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, INPUT_DIM))
    d = x[:, 0] - 0.3
    y = np.where(np.abs(d) < 0.01, np.inf, 1.0 / np.where(np.abs(d) < 0.01, 1.0, d))
    return x, y


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = np.isnan(a) & np.isnan(b)
    d = np.where(both, 0.0, np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300))
    return float(np.max(d)) if d.size else 0.0


# -- torch ----------------------------------------------------------------------------


def torch_fit(ranks: int, args: argparse.Namespace) -> dict[str, Any]:
    """One process's fit (``ranks`` = the number of ranks sharing the global batch)."""
    import torch
    from zpml_backends.torch_training import RationalHead

    from zpml_core.losses import SCMTrainingLoss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net: Any = RationalHead(INPUT_DIM).double()
    if ranks > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net)
    x, y = data(args.n)
    cfg = TrainingConfig(seed=1, tau_train_min=1e-4, tau_train_max=1e-2)
    t = SCMTrainer(net, torch.optim.Adam(net.parameters(), lr=1e-3), SCMTrainingLoss(),
                   ArrayLoader(x, y, batch_size=args.batch // ranks, shuffle=True), cfg)
    t.fit(epochs=1)  # warm-up
    t0 = time.perf_counter()
    t.fit(epochs=args.epochs)
    sec = time.perf_counter() - t0
    module = net.module if ranks > 1 else net
    return {"seconds": sec, "history": t.history,
            "params": np.concatenate([p.detach().numpy().ravel() for p in module.parameters()]).tolist()}


def ddp_rank(out: str, args: argparse.Namespace) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    res = torch_fit(dist.get_world_size(), args)
    if dist.get_rank() == 0:
        with open(out, "w") as fh:
            json.dump(res, fh)
    dist.destroy_process_group()


def bench_torch(args: argparse.Namespace) -> dict[str, Any]:
    one = torch_fit(1, args)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        t0 = time.perf_counter()
        # (the sizes travel in the environment: torchrun's own parser would take --n)
        env = dict(os.environ, OMP_NUM_THREADS="1",
                   ZPML_BENCH_SCALING=json.dumps([args.n, args.batch, args.epochs]))
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", __file__, "--ddp-rank", out],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        launch = time.perf_counter() - t0
        with open(out) as fh:
            two = json.load(fh)
    keys = [k for k in one["history"][0] if k != "tau_train"]
    return {
        "steps": len(one["history"]),
        "seconds_1_process": round(one["seconds"], 3),
        "seconds_2_ranks": round(two["seconds"], 3),
        "seconds_2_ranks_with_launch": round(launch, 2),
        "metric_rel_max": max(rel([h[k] for h in one["history"]], [h[k] for h in two["history"]])
                              for k in keys),
        "param_rel_max": rel(one["params"], two["params"]),
    }


# -- jax ------------------------------------------------------------------------------


def jax_child(args: argparse.Namespace) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import optax
    from jax.sharding import Mesh
    from zpml_backends.jax_training import rational_head_apply, rational_head_init

    from zpml_core.losses import SCMTrainingLoss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    def run(device: Any) -> tuple[float, SCMTrainer]:
        x, y = data(args.n)
        t = SCMTrainer((rational_head_apply, rational_head_init(0, INPUT_DIM, dtype=np.float64)),
                       optax.adam(1e-3), SCMTrainingLoss(),
                       ArrayLoader(x, y, batch_size=args.batch, shuffle=True),
                       TrainingConfig(seed=1, tau_train_min=1e-4, tau_train_max=1e-2, device=device))
        t.fit(epochs=1)  # warm-up: compiles
        jax.block_until_ready(t.params)
        t0 = time.perf_counter()
        t.fit(epochs=args.epochs)
        jax.block_until_ready(t.params)
        return time.perf_counter() - t0, t

    s1, one = run(jax.devices()[0])
    s2, two = run(Mesh(np.array(jax.devices()[:2]), ("data",)))
    keys = [k for k in one.history[0] if k != "tau_train"]
    print(json.dumps({
        "steps": len(one.history),
        "seconds_1_device": round(s1, 3),
        "seconds_2_devices": round(s2, 3),
        "metric_rel_max": max(rel([h[k] for h in one.history], [h[k] for h in two.history])
                              for k in keys),
        "param_rel_max": max(rel(a, b) for a, b in zip(jax.tree_util.tree_leaves(one.params),
                                                       jax.tree_util.tree_leaves(two.params),
                                                       strict=True)),
    }))


def bench_jax(args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, __file__, "--jax-child", "--n", str(args.n), "--batch",
                        str(args.batch), "--epochs", str(args.epochs)],
                       check=True, capture_output=True, text=True, env=env)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=512, help="global batch")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--ddp-rank", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--jax-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=["torch", "jax"], default=None)
    args = ap.parse_args()
    if args.ddp_rank:
        args.n, args.batch, args.epochs = json.loads(os.environ["ZPML_BENCH_SCALING"])
        ddp_rank(args.ddp_rank, args)
        return
    if args.jax_child:
        jax_child(args)
        return
    print(f"SCMTrainer data-parallel, float64, n={args.n}, global batch {args.batch}, "
          f"{args.epochs} timed epochs")
    if args.only in (None, "torch"):
        print("torch DDP (2 gloo ranks) vs 1 process:", json.dumps(bench_torch(args)))
    if args.only in (None, "jax"):
        print("JAX 2-device mesh vs 1 device:       ", json.dumps(bench_jax(args)))


if __name__ == "__main__":
    main()
