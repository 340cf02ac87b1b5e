"""Lower bounds for the SCM ops without compiled kernels (``zpml-core[fast]`` absent).

Two measurements, each a ratio to the plain native expression in one run (interleaved
rounds, median), at 1e4 / 1e5 / 1e6 elements, float64 and float32:

* **numpy ufunc chain** — SCM ``div`` written as the shortest sequence of numpy ufunc
  calls found (15 passes: ``y·y``, the three guard comparisons, ``|x|``, ``|y|``, the
  difference, ``isfinite``, two ``and``, the quotient, the subnormal-numerator flush, the
  zeroing at ⊥, the mask), into preallocated buffers, optionally block by block (65536
  elements). It returns ``scm.div``'s bits (checked on every run), so it is a floor for
  any numpy implementation that evaluates the guard with ufuncs: what ``[fast]``'s
  single loop avoids.
* **torch.compile call** — ``torch.compile(lambda x, y: x / y)`` (no masks at all): the
  fixed cost of entering a compiled graph through Dynamo, against eager ``x / y``; and
  ``scm.div`` as the adapter runs it without numba (the op's kernel through the fuser's
  direct call).
* **the fused loop alone** (with ``[fast]``) — ``[fast]``'s compiled ``div`` loop into
  preallocated outputs, against ``np.divide`` into a preallocated output: the part of
  ``scm.div``'s cost that is the loop itself, without allocation or Python.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/bench_floors.py [--rounds 7]`` (torch with
one intra-op thread).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SIZES = (10_000, 100_000, 1_000_000)


def _time(fn: Callable[[], Any], reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def compare(fns: dict[str, Callable[[], Any]], n: int, rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, rounds interleaved."""
    reps = max(1, 2_000_000 // n)
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(_time(fn, reps))
    return {k: statistics.median(v) for k, v in times.items()}


def data(n: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 10.0).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    y[rng.random(n) < 0.01] = 0.0
    return x, y


class UfuncDiv:
    """SCM ``div`` as a chain of numpy ufunc calls into preallocated buffers."""

    def __init__(self, dtype: Any, block: int) -> None:
        import array_api_compat.numpy as xnp

        from zpml_core import _xp

        c = _xp.consts(xnp, np.dtype(dtype))
        f = np.dtype(dtype).type
        self.tiny, self.ovf, self.zero = f(c.tiny), f(c.ovf), f(0.0)
        self.block = block
        self.dtype = dtype
        self.tmp: tuple[np.ndarray, ...] = ()

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[0]
        out = np.empty(n, self.dtype)
        bottom = np.empty(n, np.bool_)
        m = min(n, self.block)
        if not self.tmp or self.tmp[0].shape[0] != m:
            self.tmp = (np.empty(m, self.dtype), np.empty(m, self.dtype),
                        np.empty(m, np.bool_), np.empty(m, np.bool_))
        with np.errstate(all="ignore"):
            for s in range(0, n, m):
                e = min(n, s + m)
                t = self.tmp if e - s == m else tuple(a[: e - s] for a in self.tmp)
                self._chain(x[s:e], y[s:e], out[s:e], bottom[s:e], *t)
        return out, bottom

    def _chain(self, x: np.ndarray, y: np.ndarray, out: np.ndarray, bottom: np.ndarray,
               a: np.ndarray, b: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> None:
        np.multiply(y, y, out=a)  # y·y
        np.greater_equal(a, self.tiny, out=c1)
        np.multiply(a, self.ovf, out=a)  # fl(y·y)·ovf
        np.abs(x, out=b)  # |x|
        np.less_equal(b, a, out=c2)
        np.logical_and(c1, c2, out=c1)
        np.abs(y, out=a)
        np.subtract(b, a, out=a)  # |x| − |y|
        np.isfinite(a, out=c2)
        np.logical_and(c1, c2, out=c1)  # ok
        np.divide(x, y, out=out)
        np.less(b, self.tiny, out=c2)  # subnormal numerator: a signed zero
        np.multiply(out, self.zero, out=out, where=c2)
        np.logical_not(c1, out=bottom)
        np.copyto(out, self.zero, where=bottom)


def numpy_rows(rounds: int) -> None:
    from zpml_core import scm

    for dtype in (np.float64, np.float32):
        for n in SIZES:
            x, y = data(n, dtype)
            whole, blocked = UfuncDiv(dtype, n), UfuncDiv(dtype, 65536)
            want = scm.div(x, y)
            for impl in (whole, blocked):
                v, b = impl(x, y)
                u = np.uint64 if dtype == np.float64 else np.uint32
                assert np.array_equal(b, want.bottom) and np.array_equal(
                    v.view(u), want.value.view(u)), "the ufunc chain is not scm.div"
            with np.errstate(all="ignore"):
                t = compare({"plain": lambda x=x, y=y: x / y,
                             "whole": lambda x=x, y=y, f=whole: f(x, y),
                             "blocked": lambda x=x, y=y, f=blocked: f(x, y)}, n, rounds)
            print(f"numpy  {np.dtype(dtype).name:7s} {n:>9,d}  ufunc chain "
                  f"{t['whole'] / t['plain']:6.2f}x  blocked {t['blocked'] / t['plain']:6.2f}x"
                  f"  (x / y {t['plain'] * 1e6:8.1f} µs)")


def loop_rows(rounds: int) -> None:
    from zpml_backends import _fused

    if not _fused.available():
        print("numba is not installed: fused-loop rows skipped")
        return
    for dtype in (np.float64, np.float32):
        k = _fused.kernel("div", "d" if dtype == np.float64 else "f")
        for n in SIZES:
            x, y = data(n, dtype)
            out, bottom, plain_out = np.empty(n, dtype), np.empty(n, np.bool_), np.empty(n, dtype)
            with np.errstate(all="ignore"):
                t = compare({"plain": lambda x=x, y=y, o=plain_out: np.divide(x, y, out=o),
                             "loop": lambda x=x, y=y, o=out, b=bottom, k=k: k(x, y, o, b)},
                            n, rounds)
            print(f"fused  {np.dtype(dtype).name:7s} {n:>9,d}  div loop alone "
                  f"{t['loop'] / t['plain']:6.2f}x  (np.divide into a buffer "
                  f"{t['plain'] * 1e6:8.1f} µs)")


def torch_rows(rounds: int) -> None:
    import torch
    from bench_ops import FastPath  # this script's directory is on sys.path

    from zpml_core import scm

    torch.set_num_threads(1)
    fast = FastPath()
    fast.set(False)  # as if numba were not installed
    try:
        compiled = torch.compile(lambda a, b: a / b, dynamic=True)
        for dtype in (torch.float64, torch.float32):
            for n in SIZES:
                g = torch.Generator().manual_seed(0)
                x = torch.randn(n, generator=g, dtype=dtype) * 10.0
                y = torch.randn(n, generator=g, dtype=dtype)
                t = compare({"plain": lambda x=x, y=y: x / y,
                             "compiled": lambda x=x, y=y: compiled(x, y),
                             "scm": lambda x=x, y=y: scm.div(x, y)}, n, rounds)
                print(f"torch  {str(dtype)[6:]:7s} {n:>9,d}  compiled x / y "
                      f"{t['compiled'] / t['plain']:6.2f}x  scm.div without numba "
                      f"{t['scm'] / t['plain']:6.2f}x  (x / y {t['plain'] * 1e6:8.1f} µs)")
    finally:
        fast.set(True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--backends", default="numpy,torch")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    names = args.backends.split(",")
    print(f"{args.rounds} alternating rounds per row; ratios to the plain expression")
    if "numpy" in names:
        numpy_rows(args.rounds)
        loop_rows(args.rounds)
    if "torch" in names:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch is not installed: torch rows skipped")
        else:
            torch_rows(args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
