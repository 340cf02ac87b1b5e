"""One rank of the 2-rank DDP check of tests/test_ddp.py (run by torch.distributed.run).

``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/_ddp_worker.py OUT``

Every rank trains the same DDP model on its ArrayLoader shard (gloo, CPU, float64):
2 epochs, a checkpoint, 1 more epoch; then a fresh trainer loads the checkpoint and runs
that last epoch again. Rank 0 writes ``OUT/result.json`` (histories, parameters, the
resumed run's history); every rank writes ``OUT/rank{r}.json`` (its log-hook call count,
its own view of the history, the DistributedSampler epochs set by the trainer).
"""

from __future__ import annotations

import gc
import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from zpml_core.losses import LossConfig, SCMTrainingLoss, implicit_loss
from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig
from zpml_core.utils.logging import JsonlLogger

N_TRAIN, N_VAL, BATCH, EPOCHS = 43, 21, 4, 3  # global batch 8; short last batches


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 3))
    d = x[:, 0] - 0.25
    y = np.where(np.abs(d) < 0.08, np.inf, 1.0 / np.where(np.abs(d) < 0.08, 1.0, d))
    return x, y


def model() -> torch.nn.Module:
    torch.manual_seed(1234)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    class PQ(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.net(x)
            return out[:, 0], out[:, 1]

    return PQ().double()


def trainer(net: torch.nn.Module, ranks: int, log_hook: object = None) -> SCMTrainer:
    """A trainer whose global batch is the same for any `ranks` (per-rank batch = 1 rank's × `ranks`: pass 1 under DDP with 2 ranks, 2 for the single-process reference)."""
    batch = BATCH * ranks
    x, y = data(N_TRAIN, 0)
    xv, yv = data(N_VAL, 1)
    cfg = TrainingConfig(
        max_epochs=EPOCHS, seed=7, tau_train_min=1e-3, tau_train_max=0.2, tau_infer=1e-4,
        gradient_accumulation_steps=2, log_hook=log_hook,
        val_loader=ArrayLoader(xv, yv, batch_size=(BATCH + 1) * ranks),
    )
    loss = SCMTrainingLoss(LossConfig(lambda_rej=0.5, target_coverage=0.99, tau_train=1e-2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    return SCMTrainer(net, opt, loss, ArrayLoader(x, y, batch_size=batch, shuffle=True), cfg)


def semantic_trainer(net: torch.nn.Module, ranks: int) -> SCMTrainer:
    """Batches ``(x, y, status labels)``: SemanticTargets (float, bool and integer
    fields; some samples labelled missing) cross the ranks too."""
    x, y = data(N_TRAIN, 3)
    labels = np.where(np.isfinite(y), "finite", "bottom").astype(object)
    labels[::7] = "missing"
    y = np.where(labels == "missing", 0.0, y)
    cfg = TrainingConfig(seed=5, tau_train_min=1e-3, tau_train_max=0.2, tau_infer=1e-4)
    loss = SCMTrainingLoss(LossConfig(lambda_rej=0.5, target_coverage=0.99, tau_train=1e-2))
    return SCMTrainer(net, torch.optim.Adam(net.parameters(), lr=1e-2), loss,
                      ArrayLoader(x, y, labels.astype(str), batch_size=BATCH * ranks), cfg)


class Counter:
    def __init__(self, inner: JsonlLogger) -> None:
        self.inner, self.calls = inner, 0

    def __call__(self, record: dict) -> None:
        self.calls += 1
        self.inner(record)


def sampler_epochs() -> list[int]:
    """The epochs a DistributedSampler was given by SCMTrainer over 2 epochs."""
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    seen: list[int] = []

    class Recording(DistributedSampler):
        def set_epoch(self, epoch: int) -> None:
            seen.append(epoch)
            super().set_epoch(epoch)

    x, y = data(16, 2)
    ds = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    loader = DataLoader(ds, batch_size=4, sampler=Recording(ds, shuffle=True, seed=3))
    net = DDP(model())
    rows: list[int] = []

    def loss(outputs: tuple, lifted: tuple, *, inputs: torch.Tensor) -> torch.Tensor:
        # a loss reading inputs= sees the global batch's inputs, rows matching outputs
        rows.append(int(inputs.shape[0]))
        assert inputs.shape[0] == outputs[0].shape[0] == lifted[0].shape[0]
        return implicit_loss(outputs[0], outputs[1], *lifted)

    t = SCMTrainer(net, torch.optim.SGD(net.parameters(), lr=1e-3), loss, loader,
                   TrainingConfig(seed=0, tau_train_min=1e-3, tau_train_max=1e-3))
    t.fit(epochs=2)
    assert rows == [8] * 4, rows  # 2 ranks x 4 rows, 2 steps per epoch
    return seen


def unseeded() -> tuple[list[float], list[list[float]]]:
    """Without TrainingConfig.seed: the thresholds drawn and the target rows seen by this
    rank over one epoch of an unseeded shuffling ArrayLoader."""
    seen: list[list[float]] = []

    class Recording(ArrayLoader):
        def __iter__(self):  # type: ignore[no-untyped-def]
            for b in super().__iter__():
                seen.append(b[1].tolist())
                yield b

    x, y = np.arange(60.0).reshape(20, 3) / 60.0, np.arange(20.0)
    net = DDP(model())
    t = SCMTrainer(net, torch.optim.SGD(net.parameters(), lr=1e-9),
                   SCMTrainingLoss(LossConfig(tau_train=1e-3)),
                   Recording(x, y, batch_size=3, shuffle=True),
                   TrainingConfig(tau_train_min=1e-3, tau_train_max=1e-1))
    t.fit()
    return t.last_thresholds, seen


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    logger = Counter(JsonlLogger(os.path.join(out, "metrics.jsonl")))
    t = trainer(DDP(model()), 1, logger)
    t.fit(epochs=2)
    path = os.path.join(out, "ckpt.zpml")
    t.save_checkpoint(path)  # every rank calls it; rank 0 writes
    t.fit(epochs=1)
    dist.barrier()
    t2 = trainer(DDP(model()), 1)
    t2.load_checkpoint(path)
    t2.fit(epochs=1)
    xv, yv = data(N_VAL, 1)
    tau_infer = t.calibrate_tau_infer(ArrayLoader(xv, yv, batch_size=BATCH)).tau_infer
    sem = semantic_trainer(DDP(model()), 1)
    sem.fit(epochs=1)
    params = {k: v.detach().tolist() for k, v in t.model.module.state_dict().items()}
    taus, rows = unseeded()
    mine = {"tau_infer": tau_infer, "unseeded_taus": taus, "unseeded_rows": rows, "calls": logger.calls, "history": t.history, "val_history": t.val_history,
            "sampler_epochs": sampler_epochs(), "thresholds": t.last_thresholds}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump(mine, fh)
    if rank == 0:
        res = {"history": t.history, "val_history": t.val_history, "params": params,
               "resumed": t2.history,
               "resumed_val": t2.val_history, "semantic": sem.history,
               "resumed_params": {k: v.detach().tolist()
                                  for k, v in t2.model.module.state_dict().items()}}
        with open(os.path.join(out, "result.json"), "w") as fh:
            json.dump(res, fh)
    logger.inner.close()
    # tear down in order while the interpreter is whole: the DDP reducers still reference
    # the gloo group, and gloo threads alive at interpreter teardown abort the process
    # ("terminate called without an active exception", seen once under a loaded CI)
    dist.barrier()
    del t, t2, sem
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # results are written and closed; skip the interpreter's finalisation
