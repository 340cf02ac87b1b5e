"""SCMTrainer under torch DDP: 2 gloo ranks on CPU equal one process on the global batch.

One ``torch.distributed.run`` of tests/_ddp_worker.py (2 ranks, float64, ArrayLoader
shards, gradient accumulation, a sampled tau_train, SCMTrainingLoss with a rejection
term, validation; a second run with status-labelled batches, i.e. SemanticTargets) is compared with the same training in this process with
``batch_size × 2``: every train record (loss, coverage, bottom_frac, denominator
statistics, tau_train), every validation metric and the final parameters within 1e-10
relative. Also: exactly one JSONL writer (rank 0; rank 1's hook never called, the file
holds each record once), both ranks hold the same global history, without a seed
both ranks still draw the same thresholds and one shared shuffle, calibrate_tau_infer
on the ranks' shards gives one process's tau_infer on every rank, a checkpoint saved
after 2 epochs and loaded by a fresh trainer continues identically, and a DataLoader's
DistributedSampler gets ``set_epoch`` every epoch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover
    pytest.skip("torch.distributed is not available", allow_module_level=True)

WORKER = Path(__file__).with_name("_ddp_worker.py")


def _worker_module():
    spec = importlib.util.spec_from_file_location("_ddp_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def _close(a: float, b: float, rtol: float = 1e-10) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= rtol * max(abs(a), abs(b), 1e-300)


def _same_records(got: list[dict], want: list[dict], rtol: float = 1e-10) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert set(g) == set(w), i
        for k in w:
            assert _close(float(g[k]), float(w[k]), rtol), (i, k, g[k], w[k])


@pytest.mark.autodiff
def test_ddp_two_ranks_equal_one_process(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="error::RuntimeWarning")
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(WORKER), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    res = json.loads((tmp_path / "result.json").read_text())
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]

    # the single-process reference: the same model, data, seed and global batch
    w = _worker_module()
    torch.set_num_threads(1)
    ref = w.trainer(w.model(), 2)
    ref.fit(epochs=2)
    ref.fit(epochs=1)
    steps_per_epoch = math.ceil(w.N_TRAIN / (2 * w.BATCH))
    assert len(ref.history) == w.EPOCHS * steps_per_epoch
    _same_records(res["history"], ref.history)
    _same_records(res["val_history"], ref.val_history)
    for k, v in ref.model.state_dict().items():
        got = torch.tensor(res["params"][k], dtype=torch.float64)
        assert torch.allclose(got, v, rtol=1e-10, atol=1e-13), k
    # tau_infer calibrated on every rank's shard of the held-out rows = on all of them
    want_tau = ref.calibrate_tau_infer(w.ArrayLoader(*w.data(w.N_VAL, 1), batch_size=7)).tau_infer
    assert ranks[0]["tau_infer"] == ranks[1]["tau_infer"]
    assert _close(ranks[0]["tau_infer"], want_tau)
    # batches with status labels: SemanticTargets gathered across the ranks
    sem = w.semantic_trainer(w.model(), 2)
    sem.fit(epochs=1)
    _same_records(res["semantic"], sem.history)
    # coverage is global, not one rank's view: some step sees a bottom on one rank only
    assert any(0.0 < h["bottom_frac"] < 1.0 for h in ref.history)

    # one JSONL writer: rank 0 logs every record once, rank 1 never calls its hook
    n_records = len(ref.history) + len(ref.val_history)
    assert ranks[0]["calls"] == n_records and ranks[1]["calls"] == 0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == n_records
    # every rank holds the same global metrics and drew the same thresholds
    _same_records(ranks[1]["history"], ranks[0]["history"], rtol=0.0)
    assert ranks[0]["thresholds"] == ranks[1]["thresholds"]

    # resume: the checkpoint after 2 epochs, loaded by a fresh trainer, continues identically
    _same_records(res["resumed"], res["history"][-steps_per_epoch:], rtol=0.0)
    _same_records(res["resumed_val"], res["val_history"][-1:], rtol=0.0)
    assert res["resumed_params"] == res["params"]

    # without a seed: the same thresholds on both ranks, and the shards of the unseeded
    # shuffling loader cover every row once (one shared permutation)
    assert ranks[0]["unseeded_taus"] == ranks[1]["unseeded_taus"]
    assert len(set(ranks[0]["unseeded_taus"])) == len(ranks[0]["unseeded_taus"]) == 4
    rows = sorted(v for r in ranks for b in r["unseeded_rows"] for v in b)
    assert rows == list(range(20))
    # a DistributedSampler gets set_epoch(epoch) at the start of every epoch
    assert ranks[0]["sampler_epochs"] == ranks[1]["sampler_epochs"] == [0, 1]


@pytest.mark.parametrize("mode", ["ordered", "shuffle", "weights"])
@pytest.mark.parametrize("n", [0, 1, 3, 16, 43])
@pytest.mark.parametrize("drop_last", [False, True])
def test_arrayloader_shards_concatenate_to_one_process_batches(mode: str, n: int,
                                                               drop_last: bool) -> None:
    """Rule: with W ranks and batch_size b, step i's shards (in rank order) are exactly
    batch i of one loader with batch_size b·W; every rank yields len(loader) batches."""
    import numpy as np

    from zpml_core.training import ArrayLoader

    x = np.arange(2 * n, dtype=np.float64).reshape(n, 2)
    y = np.arange(n)
    kw: dict = {"shuffle": mode == "shuffle", "drop_last": drop_last, "seed": 5}
    if mode == "weights":
        kw["weights"] = np.arange(1, n + 1, dtype=np.float64) if n else None
    for world, b in ((2, 4), (3, 2)):
        one = list(ArrayLoader(x, y, batch_size=b * world, **kw))
        shards = []
        for r in range(world):
            loader = ArrayLoader(x, y, batch_size=b, **kw)
            loader.set_shard(r, world)
            shards.append(list(loader))
            assert len(shards[-1]) == len(loader) == len(one)
        for i, batch in enumerate(one):
            for k in range(2):
                got = np.concatenate([shards[r][i][k] for r in range(world)])
                np.testing.assert_array_equal(got, batch[k])
            sizes = [len(shards[r][i][0]) for r in range(world)]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("rank", "world", "exc"), [
    (True, 2, TypeError), (0, 2.0, TypeError), (2, 2, ValueError), (-1, 2, ValueError),
    (0, 0, ValueError), ("0", 2, TypeError),
])
def test_arrayloader_set_shard_refuses_bad_arguments(rank, world, exc) -> None:
    import numpy as np

    from zpml_core.training import ArrayLoader

    loader = ArrayLoader(np.zeros((4, 1)), batch_size=2)
    with pytest.raises(exc, match=r"rank|world"):
        loader.set_shard(rank, world)
    assert (loader.rank, loader.world) == (0, 1)


def test_ddp_comm_gathers_rows_and_refuses_what_it_cannot(tmp_path: Path) -> None:
    """The row gather on a 1-rank gloo group (in this process): arrays of one dtype
    packed together come back with their shapes and dtypes, this rank's rows are the
    live tensors (gradients reach them); a non-tensor output, a 0-d output or a row count
    other than the batch's → TypeError/ValueError naming it."""
    import torch.distributed as dist
    from zpml_backends._torch_ddp import DDPComm, ddp_comm

    from zpml_core.training.engine import PreparedBatch

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        assert ddp_comm(torch.nn.Linear(1, 1)) is None  # one rank: nothing to do
        comm = DDPComm(None)
        p = torch.arange(6.0, dtype=torch.float64).reshape(3, 2).requires_grad_(True)
        q = torch.arange(3.0, dtype=torch.float64).requires_grad_(True)
        y = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        x = torch.ones(3, 4, dtype=torch.float32)
        batch = PreparedBatch(x, y, None, 3)
        (gp, gq), gb = comm.global_step_data((p, q), batch, inputs=True)
        assert gp.shape == (3, 2) and gq.shape == (3,) and gb.n == 3
        assert gb.inputs.dtype == torch.float32 and torch.equal(gb.inputs, x)
        assert torch.equal(gb.targets, y)
        (gp.sum() + 2 * gq.sum()).backward()
        assert torch.equal(p.grad, torch.ones_like(p)) and torch.equal(q.grad, 2 * torch.ones_like(q))
        with pytest.raises(TypeError, match="outputs"):
            comm.global_step_data({"p": p}, batch, inputs=False)
        with pytest.raises(TypeError, match=r"outputs\[1\]"):
            comm.global_step_data((p, torch.tensor(1.0)), batch, inputs=False)
        with pytest.raises(ValueError, match=r"outputs\[0\] has 2 rows"):
            comm.global_step_data((p[:2], q), batch, inputs=False)
    finally:
        dist.destroy_process_group()
