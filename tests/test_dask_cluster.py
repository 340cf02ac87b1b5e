"""Strict inference, decode and the losses on a ``dask.distributed`` cluster.

Two worker processes with a small memory limit each process arrays larger than that
limit (``ZPML_DASK_MEMORY_FACTOR`` times it, P and Q together: 1.25 by default, 4 in
``benchmarks/bench_dask_cluster.py``). The inputs are generated on the workers (a seeded generator per chunk), so
nothing but the graph travels from the client; each chunk's result is compared on the
worker, bit for bit, with the numpy backend's result for the same chunk, and only
booleans and the loss values travel back.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the dask extra installs distributed")

import cloudpickle  # noqa: E402
import dask.array as da  # noqa: E402

import zpml_core  # noqa: E402
from zpml_core.losses import implicit_loss, projective_distance_loss  # noqa: E402

MEMORY_LIMIT = int(os.environ.get("ZPML_DASK_MEMORY_LIMIT", 256 * 2**20))  # per worker
FACTOR = float(os.environ.get("ZPML_DASK_MEMORY_FACTOR", "1.25"))
CHUNK = 2**18  # elements per chunk (2 MiB of float64)
N = int(FACTOR * MEMORY_LIMIT) // 8 // 2  # P and Q together: FACTOR x the memory limit


def _block(seed: int, block_id: tuple[int, ...], n: int, which: str) -> np.ndarray:
    """The ``which`` input of one chunk: normals over 12 decades with exact zeros,
    subnormals, ±inf and NaN mixed in (deterministic in ``seed`` and the chunk index)."""
    rng = np.random.default_rng([seed, block_id[0], 0 if which == "P" else 1])
    x = rng.standard_normal(n) * 10.0 ** rng.uniform(-10, 2, n)
    u = rng.random(n)
    x[u < 0.05] = 0.0
    x[(u >= 0.05) & (u < 0.06)] = 5e-324
    x[(u >= 0.06) & (u < 0.065)] = np.inf
    x[(u >= 0.065) & (u < 0.07)] = np.nan
    return x


def _inputs(seed: int, n: int) -> tuple[da.Array, da.Array]:
    chunks = ((CHUNK,) * (n // CHUNK) + ((n % CHUNK,) if n % CHUNK else ()),)
    def make(which: str) -> da.Array:
        return da.map_blocks(lambda block_id=None: _block(seed, block_id, CHUNK, which),
                             chunks=chunks, dtype=np.float64, meta=np.empty(0))
    return make("P"), make("Q")


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return np.zeros((1,), bool)
    if a.dtype.kind == "f":
        a, b = a.view(np.int64), b.view(np.int64)
    return np.asarray([np.array_equal(a, b)])


def _numpy_strict(p: np.ndarray, q: np.ndarray, field: int) -> np.ndarray:
    return np.asarray(zpml_core.strict_inference(p, q)[field])


def _numpy_decode(p: np.ndarray, q: np.ndarray, field: int) -> np.ndarray:
    r = zpml_core.decode(p, q)
    return np.asarray((r.value, r.bottom)[field])


@pytest.fixture(scope="module")
def client():
    # the numpy reference is the array-API kernel (ZPML_FAST=0: the fused kernels are held
    # bit-identical to it by tests/test_fused_kernels.py, and numba would add ~100 MB to
    # each worker's footprint)
    # distributed's Nanny writes its pre-spawn variables (MALLOC_TRIM_THRESHOLD_) into this
    # process's os.environ and leaves them there: restore it, or every later subprocess of
    # this test worker inherits fixed malloc thresholds
    saved = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       memory_limit=MEMORY_LIMIT, dashboard_address=None,
                                       env={"ZPML_FAST": "0"})
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()
        os.environ.clear()
        os.environ.update(saved)


def test_masks_bit_identical_to_numpy_beyond_the_memory_limit(client) -> None:
    P, Q = _inputs(seed=3, n=N)
    assert 2 * P.nbytes >= FACTOR * MEMORY_LIMIT - 2 * 8 * CHUNK and FACTOR > 1
    res = zpml_core.strict_inference(P, Q)
    dec = zpml_core.decode(P, Q)
    checks = []
    for field in range(3):  # decoded, bottom_mask, gap_mask
        ref = da.map_blocks(_numpy_strict, P, Q, field, dtype=res[field].dtype)
        checks.append(da.map_blocks(_same_bits, res[field], ref, dtype=bool, chunks=((1,) * P.numblocks[0],)))
    for field, got in enumerate((dec.value, dec.bottom)):
        ref = da.map_blocks(_numpy_decode, P, Q, field, dtype=got.dtype)
        checks.append(da.map_blocks(_same_bits, got, ref, dtype=bool, chunks=((1,) * P.numblocks[0],)))
    ok = da.stack(checks).all()
    # nothing large in the graph: the inputs are made on the workers
    assert len(cloudpickle.dumps(dict(ok.__dask_graph__()))) < 2**20
    assert bool(client.compute(ok).result())
    # no worker restarted (a worker killed for memory would be replaced by a new one)
    info = client.scheduler_info()["workers"]
    assert len(info) == 2


def test_losses_match_numpy(client) -> None:
    n = 8 * CHUNK
    P, Q = _inputs(seed=4, n=n)
    # finite operands for the losses: non-finite values replaced by 1
    P, Q = (da.where(da.isfinite(v), v, 1.0) for v in (P, Q))
    Yn, Yd = Q * 0.5 - P, da.where(abs(Q) < 1e-3, 0.0, 1.0)
    got = client.compute([implicit_loss(P, Q, Yn, Yd), projective_distance_loss(P, Q, Yn, Yd)],
                         sync=True)
    p, q, yn, yd = (np.asarray(v) for v in client.compute([P, Q, Yn, Yd], sync=True))
    want = [implicit_loss(p, q, yn, yd), projective_distance_loss(p, q, yn, yd)]
    for g, w in zip(got, want, strict=True):
        # a mean of 2.1e6 terms: dask sums per chunk, numpy pairwise
        assert float(g) == pytest.approx(float(w), rel=1e-11)
