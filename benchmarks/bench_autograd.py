"""Training-path speed: torch autograd forward+backward of an SCM op vs the plain op.

For each size, dtype and thread setting this times, on the same tensors, one forward
and one ``torch.autograd.grad`` with respect to both operands (a fixed random
cotangent) of:

* ``plain``   — the native expression (``x / y``; ``x * y``, ``log(pos)``, ... with
  ``--op``), the reference of every ratio;
* ``public``  — the public op as installed now (``zpml_core.scm``): with an operand
  requiring grad, the torch adapter's fast path runs the op's fused autograd Function
  with the policy gate inside it (default policy CLAMP);
* ``folded``  — ``zpml_backends._torch_autograd_ops.grad_op`` with the policy passed in
  (the gate inside the Function): ``public`` without the public op's dispatch;
* ``split``   — ``grad_op`` without a policy followed by the separate gate node
  (``gate_output``);
* ``ungated`` — ``grad_op`` alone (what the fused Function itself costs);
* ``gate``    — the plain expression followed by the gate node (with the op's mask):
  the cost of the separate gate alone;
* ``kernel``  — the array-API kernel through the adapter's ``fuse`` plus the gate: the
  path the public op took before the fast path.

All variants run in alternating order within each round; a round's ratio is variant
time / plain time, and the reported ratio is the median over rounds (robust on a
shared, noisy machine), next to the best absolute time of ``plain``. The header states
which implementation the fused Functions ran (numba loops, or torch ops without
``zpml-core[fast]``; ``--no-numba`` forces the latter).

    python benchmarks/bench_autograd.py [--op div] [--sizes 256,10000,100000,1000000]
        [--dtypes float32,float64] [--threads 1,default] [--rounds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

VARIANTS = ("plain", "public", "folded", "split", "ungated", "gate", "kernel")
TARGET = 2.0  # the issue: public forward+backward of scm.div ≤ 2x plain at 1e4–1e5


def make_data(torch: Any, op: str, n: int, dtype: Any, seed: int = 0) -> tuple[Any, ...]:
    """``x`` (×10 normal), ``y`` (normal, 1% zeros) — positive for the unary ops that
    need it — and a random cotangent."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g, dtype=dtype) * 10.0
    y = torch.randn(n, generator=g, dtype=dtype)
    y[torch.rand(n, generator=g) < 0.01] = 0.0
    if op in ("log", "sqrt"):
        x = x.abs() + 0.1
    cot = torch.randn(n, generator=g, dtype=dtype)
    return x.requires_grad_(), y.requires_grad_(), cot


def variants(op: str, x: Any, y: Any, cot: Any) -> dict[str, Callable[[], Any]]:
    import array_api_compat.torch as xp
    import torch
    from zpml_backends._torch_autograd_ops import BINARY_OPS, grad_op

    from zpml_core import _scm_real, scm
    from zpml_core._registry import get_backend
    from zpml_core.autodiff.policies import resolve_policy
    from zpml_core.autodiff.rules import gate_output

    be = get_backend(xp)
    binary = op in BINARY_OPS
    wrt = (x, y) if binary else (x,)
    args = (x, y) if binary else (x,)
    native: Callable[..., Any] = {
        "div": torch.div, "mul": torch.mul, "add": torch.add, "sub": torch.sub,
        "inv": torch.reciprocal, "log": torch.log, "exp": torch.exp, "sqrt": torch.sqrt,
        "neg": torch.neg, "sin": torch.sin, "cos": torch.cos, "tan": torch.tan}[op]
    public = getattr(scm, op)
    kern, static = {"div": (_scm_real._k_div, {}), "mul": (_scm_real._k_mul, {}),
                    "add": (_scm_real._k_add, {"subtract": False}),
                    "sub": (_scm_real._k_add, {"subtract": True}),
                    "sqrt": (_scm_real._k_sqrt, {}), "inv": (_scm_real._k_inv, {}),
                    "log": (_scm_real._k_log, {}), "exp": (_scm_real._k_exp, {}),
                    "neg": (_scm_real._k_neg, {}),
                    "sin": (_scm_real._k_trig, {"fn": "sin"}),
                    "cos": (_scm_real._k_trig, {"fn": "cos"}),
                    "tan": (_scm_real._k_trig, {"fn": "tan"})}[op]
    masks = (None, None) if binary else (None,)
    fused_kernel = be.fuse(kern)

    def grad(out: Any) -> Any:
        return torch.autograd.grad(out, wrt, cot)

    def kernel() -> Any:
        v, b = fused_kernel(*args, *masks, xp=xp, be=be, **static)
        return grad(gate_output(be, v, b, "scm_ops", xp=xp))

    def split() -> Any:
        v, b = grad_op(op, *args)
        return grad(gate_output(be, v, b, "scm_ops", xp=xp))

    def folded() -> Any:
        return grad(grad_op(op, *args, policy=resolve_policy("scm_ops", traced=False))[0])

    mask = grad_op(op, *args)[1]

    def gated_plain() -> Any:
        return grad(gate_output(be, native(*args), mask, "scm_ops", xp=xp))

    return {
        "plain": lambda: grad(native(*args)),
        "public": lambda: grad(public(*args).value),
        "folded": folded,
        "split": split,
        "ungated": lambda: grad(grad_op(op, *args)[0]),
        "gate": gated_plain,
        "kernel": kernel,
    }


def _timer(fn: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def compare(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, Any]:
    """Interleaved rounds (the order rotates each round); median of per-round ratios."""
    for _ in range(2):  # warm-up (numba cache load, allocator)
        for f in fns.values():
            f()
    once = _timer(fns["plain"], 1)
    number = max(1, min(2000, int(4e-3 / max(once, 1e-7))))  # ~4 ms per sample
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            times[k].append(_timer(fns[k], number))
    ratios = {k: statistics.median(a / b for a, b in zip(times[k], times["plain"],
                                                          strict=True))
              for k in names}
    return {"ratio": ratios, "best_us": {k: min(v) * 1e6 for k, v in times.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--op", default="div")
    p.add_argument("--sizes", default="256,10000,100000,1000000")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--threads", default="1,default",
                   help="comma-separated torch.set_num_threads values; 'default' = as "
                        "started (the machine's cores unless OMP_NUM_THREADS is set)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--no-numba", action="store_true",
                   help="run the fused Functions with torch ops (as without [fast])")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    import torch
    from zpml_backends import _torch_autograd_numba as nb

    if a.no_numba:
        nb._STATE["fused"] = False
    impl = "numba loops" if nb.available() else "torch ops"
    default_threads = torch.get_num_threads()
    results = []
    print(f"op={a.op}  fused implementation: {impl}  default threads: {default_threads}"
          f"  rounds: {a.rounds}  (ratio = median of per-round time / plain)")
    print(f"{'dtype':8s} {'threads':>7s} {'n':>8s} {'plain µs':>9s}  "
          + "  ".join(f"{k:>7s}" for k in VARIANTS[1:]))
    for th in a.threads.split(","):
        nthreads = default_threads if th == "default" else int(th)
        torch.set_num_threads(nthreads)
        for dname in a.dtypes.split(","):
            dtype = getattr(torch, dname)
            for n in (int(s) for s in a.sizes.split(",")):
                x, y, cot = make_data(torch, a.op, n, dtype)
                res = compare(variants(a.op, x, y, cot), a.rounds)
                row = {"op": a.op, "dtype": dname, "threads": nthreads, "n": n,
                       "impl": impl, **res}
                results.append(row)
                r = res["ratio"]
                print(f"{dname:8s} {nthreads:7d} {n:8d} {res['best_us']['plain']:9.1f}  "
                      + "  ".join(f"{r[k]:7.2f}" for k in VARIANTS[1:]), flush=True)
    torch.set_num_threads(default_threads)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
