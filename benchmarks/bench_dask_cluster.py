"""Strict inference and decode on a ``dask.distributed`` LocalCluster, beyond memory.

Two worker processes (one thread each) with ``--memory-limit`` each process ``P`` and
``Q`` of together ``--factor`` times that limit (default 4x). The inputs are generated on
the workers, chunk by chunk (the generator of ``tests/test_dask_cluster.py``); every
chunk's ``strict_inference`` and ``decode`` results are compared on the worker, bit for
bit, with the numpy backend's array-API kernel (``ZPML_FAST=0``) on the same chunk; only
the booleans travel back. Reported: whether every bit matched, whether any worker was
replaced (killed for memory), and the wall-clock of generating the inputs and reducing
``strict_inference``'s and ``decode``'s masks to counts on the cluster against one
process doing the same chunk by chunk with numpy (no dask) — these machines have 2
cores: a report, not a target.

    python benchmarks/bench_dask_cluster.py [--factor 4] [--memory-limit-mib 320]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("ZPML_FAST", "0")  # the numpy reference is the array-API kernel
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factor", type=float, default=4.0)
    ap.add_argument("--memory-limit-mib", type=int, default=320)
    args = ap.parse_args()
    limit = args.memory_limit_mib * 2**20
    os.environ["ZPML_DASK_MEMORY_LIMIT"] = str(limit)
    os.environ["ZPML_DASK_MEMORY_FACTOR"] = str(args.factor)

    import dask.array as da
    import distributed
    import numpy as np
    import test_dask_cluster as w

    import zpml_core

    n = int(args.factor * limit) // 16
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       memory_limit=limit, dashboard_address=None,
                                       env={"ZPML_FAST": "0"})
    client = distributed.Client(cluster)
    try:
        workers_before = set(client.scheduler_info()["workers"])
        P, Q = w._inputs(seed=3, n=n)
        res = zpml_core.strict_inference(P, Q)
        dec = zpml_core.decode(P, Q)
        ones = ((1,) * P.numblocks[0],)
        checks = [da.map_blocks(w._same_bits, res[f],
                                da.map_blocks(w._numpy_strict, P, Q, f, dtype=res[f].dtype),
                                dtype=bool, chunks=ones) for f in range(3)]
        checks += [da.map_blocks(w._same_bits, got,
                                 da.map_blocks(w._numpy_decode, P, Q, f, dtype=got.dtype),
                                 dtype=bool, chunks=ones)
                   for f, got in enumerate((dec.value, dec.bottom))]
        ok = bool(client.compute(da.stack(checks).all()).result())
        # timed: the results reduced to counts on the cluster (nothing large returns) ...
        counts = [da.sum(res[1]), da.sum(res[2]), da.sum(dec.bottom)]
        t0 = time.perf_counter()
        got = [int(c) for c in client.compute(counts, sync=True)]
        t_cluster = time.perf_counter() - t0
        replaced = set(client.scheduler_info()["workers"]) != workers_before
        # ... and the same chunks in one process with numpy alone
        t0 = time.perf_counter()
        want = [0, 0, 0]
        for b in range(P.numblocks[0]):
            p = w._block(3, (b,), w.CHUNK, "P")
            q = w._block(3, (b,), w.CHUNK, "Q")
            r = zpml_core.strict_inference(p, q)
            d = zpml_core.decode(p, q)
            for i, m in enumerate((r[1], r[2], d.bottom)):
                want[i] += int(np.sum(m))
        t_single = time.perf_counter() - t0
        ok = ok and got == want
    finally:
        client.close()
        cluster.close()
    out = {
        "elements_per_input": P.shape[0], "bytes_P_plus_Q": 2 * P.nbytes,
        "worker_memory_limit": limit, "factor": 2 * P.nbytes / limit,
        "bit_identical": ok, "worker_replaced": replaced,
        "cluster_s": round(t_cluster, 2), "single_process_numpy_s": round(t_single, 2),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
