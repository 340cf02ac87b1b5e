"""Training throughput: ``SCMTrainer`` vs a minimal hand-written loop, per backend.

One epoch of the guide's RationalHead (16384 samples of ``y = 1/(x − 0.25)``, batch 256,
Adam 1e-3) with the guide's loss wiring — ``SCMTrainingLoss`` on top of
``implicit_loss(..., tau_train=tau)``, ``is_bottom = |Q| < tau``, ``mask_finite = Y_d != 0``
(what the trainer computes for an ``SCMTrainingLoss``) — computed

* by ``SCMTrainer`` (default ``TrainingConfig``: tau_train = 1e-4, no validation, no
  log hook), and
* by a minimal loop on the same backend computing the same loss: eager
  ``zero_grad/forward/backward/step`` for torch; one ``jax.jit`` step
  (``value_and_grad`` + optax update) called in a plain Python loop for JAX, without
  reading the loss back.

Two data scenarios (``--data``), each contender doing the same data work:

* ``list``: both iterate the same pre-built list of framework batches (the step alone);
* ``shuffled``: numpy arrays, a new permutation every epoch, batches gathered with it —
  ``ArrayLoader(x, y, batch_size=256, shuffle=True)`` for the trainer; the hand loops
  draw ``rng.permutation`` and pass ``x[idx], y[idx]`` to their step (numpy batches
  straight into the jitted JAX step; ``torch.from_numpy`` for torch).

Where ``zeroproofml`` 0.6.1 is importable, its ``SCMTrainer`` runs the same
model/loss/data (its loss convention needs the adapter of semantics §7.2; ``list`` data
only). Contenders are interleaved round by round; the reported times are the median
epoch, as wall time and as CPU time of the process (robust to other load on shared
cores). Targets: torch ≥ 0.9x the hand loop; JAX ≥ 0.9x the jitted hand loop; faster
than zeroproofml's trainer.

    python benchmarks/bench_train.py [--rounds 7] [--backends torch jax] [--threads 1]
                                     [--data list shuffled]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

N, BATCH, LR, TAU = 16384, 256, 1e-3, 1e-4


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (N, 1)).astype(np.float32)
    with np.errstate(divide="ignore"):
        y = (1.0 / (x[:, 0].astype(np.float64) - 0.25)).astype(np.float32)
    return x, y


def race(contenders: dict[str, Callable[[], None]], rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per epoch, contenders interleaved round by round.

    CPU time (``time.process_time``: all threads of this process) is what the epoch cost
    the machine; on shared cores it is far less noisy than wall time.
    """
    for fn in contenders.values():
        fn()  # warm-up epoch (compilation, allocator, caches)
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in contenders}


# ---------------------------------------------------------------------------------------
# torch


def torch_contenders(rounds: int, data: str = "list") -> dict[str, Callable[[], None]]:
    import torch
    from zpml_backends.torch_training import RationalHead

    from zpml_core import lift_targets
    from zpml_core.losses import LossConfig, SCMTrainingLoss, implicit_loss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    x, y = make_data()
    batches = [(torch.from_numpy(x[i:i + BATCH]), torch.from_numpy(y[i:i + BATCH]))
               for i in range(0, N, BATCH)]
    scm = SCMTrainingLoss(LossConfig())
    rng = np.random.default_rng(0)

    def epoch_batches() -> Any:
        if data == "list":
            return batches
        order = rng.permutation(N)
        return ((torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))
                for idx in (order[i:i + BATCH] for i in range(0, N, BATCH)))

    def new_model() -> tuple[Any, Any]:
        torch.manual_seed(0)
        m = RationalHead(1)
        return m, torch.optim.Adam(m.parameters(), lr=LR)

    hm, ho = new_model()

    def hand() -> None:
        for xb, yb in epoch_batches():
            ho.zero_grad(set_to_none=True)
            P, Q = hm(xb)
            Y_n, Y_d = lift_targets(yb)
            fit = implicit_loss(P, Q, Y_n, Y_d, tau_train=TAU)  # the guide's wiring (README)
            loss, _ = scm(fit, P, Q, Y_n, Y_d, is_bottom=torch.abs(Q) < TAU,
                          mask_finite=Y_d != 0, tau_train=TAU)
            loss.backward()
            ho.step()

    tm, to = new_model()
    loader = batches if data == "list" else ArrayLoader(x, y, batch_size=BATCH, shuffle=True, seed=0)
    trainer = SCMTrainer(model=tm, optimizer=to, loss_fn=scm, train_loader=loader,
                         config=TrainingConfig(max_epochs=rounds + 2))

    out = {"torch hand loop": hand, "torch SCMTrainer": lambda: trainer.fit(epochs=1) and None}
    if data == "list" and importlib.util.find_spec("zeroproof") is not None:
        out["zeroproofml 0.6.1 SCMTrainer"] = _reference_contender(batches, rounds, new_model)
    return out


def _reference_contender(batches: list[Any], rounds: int,
                         new_model: Callable[[], tuple[Any, Any]]) -> Callable[[], None]:
    import torch
    from zeroproof.losses import LossConfig as RefLossConfig
    from zeroproof.losses import SCMTrainingLoss as RefSCMTrainingLoss
    from zeroproof.losses import implicit_loss as ref_implicit
    from zeroproof.training import SCMTrainer as RefTrainer
    from zeroproof.training import TrainingConfig as RefConfig

    ref_scm = RefSCMTrainingLoss(RefLossConfig())

    def ref_loss(outputs: Any, lifted: Any, *, tau: float) -> Any:  # semantics §7.2 adapter
        P, Q = outputs
        Y_n, Y_d = lifted
        fit = ref_implicit(P, Q, Y_n, Y_d)
        total, _ = ref_scm(fit, P, Q, Y_n, Y_d, is_bottom=torch.abs(Q) < tau,
                           mask_finite=Y_d != 0, tau_train=tau)
        return total

    m, o = new_model()
    trainer = RefTrainer(m, o, ref_loss, batches, config=RefConfig(max_epochs=rounds + 2))
    epoch = [0]

    def run() -> None:
        # the reference fit() always runs to max_epochs: give it one more epoch per call
        epoch[0] += 1
        trainer.config.max_epochs = epoch[0]
        trainer.fit()

    return run


# ---------------------------------------------------------------------------------------
# jax


def jax_contenders(rounds: int, data: str = "list") -> dict[str, Callable[[], None]]:
    import jax
    import jax.numpy as jnp
    import optax
    from zpml_backends.jax_training import rational_head_apply, rational_head_init

    from zpml_core import lift_targets
    from zpml_core.losses import LossConfig, SCMTrainingLoss, implicit_loss
    from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

    x, y = make_data()
    batches = [(jnp.asarray(x[i:i + BATCH]), jnp.asarray(y[i:i + BATCH]))
               for i in range(0, N, BATCH)]
    rng = np.random.default_rng(0)

    def epoch_batches() -> Any:
        if data == "list":
            return batches
        order = rng.permutation(N)
        return ((x[idx], y[idx]) for idx in (order[i:i + BATCH] for i in range(0, N, BATCH)))
    scm = SCMTrainingLoss(LossConfig())
    opt = optax.adam(LR)

    def loss_of(params: Any, xb: Any, yb: Any) -> Any:
        P, Q = rational_head_apply(params, xb)
        Y_n, Y_d = lift_targets(yb)
        fit = implicit_loss(P, Q, Y_n, Y_d, tau_train=TAU)  # the guide's wiring (README)
        loss, _ = scm(fit, P, Q, Y_n, Y_d, is_bottom=jnp.abs(Q) < TAU, mask_finite=Y_d != 0,
                      tau_train=TAU)
        return loss

    @jax.jit
    def step(params: Any, state: Any, xb: Any, yb: Any) -> Any:
        loss, g = jax.value_and_grad(loss_of)(params, xb, yb)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    hp = [rational_head_init(0, 1)]
    hs = [opt.init(hp[0])]

    def hand() -> None:
        p, s = hp[0], hs[0]
        for xb, yb in epoch_batches():
            p, s, _ = step(p, s, xb, yb)
        jax.block_until_ready(p)
        hp[0], hs[0] = p, s

    loader = batches if data == "list" else ArrayLoader(x, y, batch_size=BATCH, shuffle=True, seed=0)
    trainer = SCMTrainer(model=(rational_head_apply, rational_head_init(0, 1)), optimizer=opt,
                         loss_fn=scm, train_loader=loader,
                         config=TrainingConfig(max_epochs=rounds + 2))

    def ours() -> None:
        trainer.fit(epochs=1)
        jax.block_until_ready(trainer.params)

    return {"jax jitted hand loop": hand, "jax SCMTrainer": ours}


# ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--backends", nargs="+", default=["torch", "jax"])
    ap.add_argument("--data", nargs="+", default=["list", "shuffled"], choices=["list", "shuffled"])
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for torch and XLA (default 1: small model, shared cores)")
    args = ap.parse_args()
    # (XLA has no thread-count flag; its loops may still be split over the CPUs the process
    # may use: pin the process, e.g. taskset -c 0, for a one-core measurement)
    os.environ.setdefault(
        "XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'}")
    rows: list[tuple[str, float, str, float, str]] = []

    def add(times: dict[str, tuple[float, float]], base_name: str, data: str) -> None:
        bw, bc = times[base_name]
        for name, (w, c) in times.items():
            rows.append((f"{name} [{data}]", N / w, f"{bw / w:.2f}x", N / c, f"{bc / c:.2f}x"))

    if "torch" in args.backends and importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(args.threads)
        for data in args.data:
            add(race(torch_contenders(args.rounds, data), args.rounds), "torch hand loop", data)
    if "jax" in args.backends and importlib.util.find_spec("jax") is not None:
        for data in args.data:
            add(race(jax_contenders(args.rounds, data), args.rounds), "jax jitted hand loop", data)
    print(f"one epoch: {N} samples, batch {BATCH}, Adam {LR}; median of {args.rounds} "
          f"interleaved rounds; threads={args.threads}")
    print(f"{'contender':40s} {'wall samples/s':>15s} {'vs hand':>8s} {'CPU samples/s':>14s} "
          f"{'vs hand':>8s}")
    for name, sps, ratio, csps, cratio in rows:
        print(f"{name:40s} {sps:15.0f} {ratio:>8s} {csps:14.0f} {cratio:>8s}")


if __name__ == "__main__":
    main()
