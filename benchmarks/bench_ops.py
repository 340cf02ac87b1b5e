"""Speed of the SCM ops and strict_inference relative to the plainest native expression.

One run measures, at N float64 elements with 1% zeros and some negatives, each of
``scm.div, scm.mul, scm.log, scm.sqrt, strict_inference`` against the native expression
on the same backend (``x / y``, ``x * y``, ``log(x)``, ``sqrt(x)``, ``P / Q``), for numpy
eager, torch eager, jax eager and under ``jax.jit``. Ours and native are timed in
alternating rounds; the reported ratio is the median of per-round ratios (robust on a
shared, noisy machine), next to the best absolute times.

    python benchmarks/bench_ops.py [--n 1000000] [--rounds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

TARGETS = {
    # (backend, op-kind) -> max ratio from the issue
    ("numpy", "scm"): 3.0,
    ("torch", "scm"): 6.0,
    ("jax", "scm"): 3.0,
    ("jax-jit", "scm"): 1.5,
    ("numpy", "strict"): 5.0,
    ("torch", "strict"): 8.0,
    ("jax-jit", "strict"): 2.5,
}


def make_data(n: int, seed: int = 0) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * 10.0
    y = rng.standard_normal(n)
    y[rng.random(n) < 0.01] = 0.0  # 1% zeros
    pos = np.abs(rng.standard_normal(n)) + 0.1
    pos[rng.random(n) < 0.05] *= -1.0  # some negatives
    pos[rng.random(n) < 0.01] = 0.0
    return {"x": x, "y": y, "pos": pos}


def _timer(fn: Callable[[], Any], sync: Callable[[Any], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        sync(fn())
    return (time.perf_counter() - t0) / number


def compare(
    ours: Callable[[], Any],
    native: Callable[[], Any],
    sync: Callable[[Any], Any],
    rounds: int,
    number: int,
) -> tuple[float, float, float]:
    """Alternate ours/native per round; return (median ratio, best ours, best native)."""
    sync(ours())
    sync(native())  # warm-up (jit compile, allocator)
    ratios, to, tn = [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            a = _timer(ours, sync, number)
            b = _timer(native, sync, number)
        else:
            b = _timer(native, sync, number)
            a = _timer(ours, sync, number)
        ratios.append(a / b)
        to.append(a)
        tn.append(b)
    return statistics.median(ratios), min(to), min(tn)


def backend_cases(name: str, data: dict[str, Any]) -> tuple[dict[str, tuple], Callable]:
    from zpml_core import scm, strict_inference

    if name == "numpy":
        import numpy as np

        x, y, pos = data["x"], data["y"], data["pos"]
        np.seterr(all="ignore")  # the plain expressions warn on 0 and negatives

        def sync(out: Any) -> Any:
            return out

        native = {
            "div": lambda: x / y,
            "mul": lambda: x * y,
            "log": lambda: np.log(pos),
            "sqrt": lambda: np.sqrt(pos),
            "strict_inference": lambda: x / y,
        }
    elif name == "torch":
        import torch

        x, y, pos = (torch.from_numpy(data[k].copy()) for k in ("x", "y", "pos"))

        def sync(out: Any) -> Any:
            return out

        native = {
            "div": lambda: x / y,
            "mul": lambda: x * y,
            "log": lambda: torch.log(pos),
            "sqrt": lambda: torch.sqrt(pos),
            "strict_inference": lambda: x / y,
        }
    elif name in ("jax", "jax-jit"):
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        x, y, pos = (jnp.asarray(data[k]) for k in ("x", "y", "pos"))

        def sync(out: Any) -> Any:
            return jax.block_until_ready(out)

        native = {
            "div": lambda: x / y,
            "mul": lambda: x * y,
            "log": lambda: jnp.log(pos),
            "sqrt": lambda: jnp.sqrt(pos),
            "strict_inference": lambda: x / y,
        }
    else:
        raise ValueError(name)

    ours = {
        "div": lambda: tuple(scm.div(x, y)),
        "mul": lambda: tuple(scm.mul(x, y)),
        "log": lambda: tuple(scm.log(pos)),
        "sqrt": lambda: tuple(scm.sqrt(pos)),
        "strict_inference": lambda: tuple(strict_inference(x, y)),
    }
    if name == "jax-jit":
        import jax

        jitted_ours = {
            "div": jax.jit(lambda a, b: tuple(scm.div(a, b))),
            "mul": jax.jit(lambda a, b: tuple(scm.mul(a, b))),
            "log": jax.jit(lambda a: tuple(scm.log(a))),
            "sqrt": jax.jit(lambda a: tuple(scm.sqrt(a))),
            "strict_inference": jax.jit(lambda a, b: tuple(strict_inference(a, b))),
        }
        jitted_native = {
            "div": jax.jit(lambda a, b: a / b),
            "mul": jax.jit(lambda a, b: a * b),
            "log": jax.jit(lambda a: jnp.log(a)),
            "sqrt": jax.jit(lambda a: jnp.sqrt(a)),
            "strict_inference": jax.jit(lambda a, b: a / b),
        }
        args = {"div": (x, y), "mul": (x, y), "log": (pos,), "sqrt": (pos,),
                "strict_inference": (x, y)}
        ours = {k: (lambda f=f, a=args[k]: f(*a)) for k, f in jitted_ours.items()}
        native = {k: (lambda f=f, a=args[k]: f(*a)) for k, f in jitted_native.items()}
    return {k: (ours[k], native[k]) for k in ours}, sync


def available(name: str) -> bool:
    mod = {"numpy": "numpy", "torch": "torch", "jax": "jax", "jax-jit": "jax"}[name]
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--number", type=int, default=5, help="calls per timing sample")
    ap.add_argument("--backends", default="numpy,torch,jax,jax-jit")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    warnings.simplefilter("ignore")
    data = make_data(args.n)
    rows = []
    print(f"N = {args.n:,} float64 elements, {args.rounds} alternating rounds x {args.number} calls")
    print(f"{'backend':9s} {'op':17s} {'ratio':>7s} {'target':>7s} {'ours ms':>9s} {'native ms':>10s}")
    for name in args.backends.split(","):
        if not available(name):
            print(f"{name:9s} (not installed)")
            continue
        cases, sync = backend_cases(name, data)
        for op, (ours, native) in cases.items():
            ratio, t_ours, t_native = compare(ours, native, sync, args.rounds, args.number)
            kind = "strict" if op == "strict_inference" else "scm"
            target = TARGETS.get((name, kind))
            ok = "" if target is None else ("ok" if ratio <= target else "MISS")
            print(
                f"{name:9s} {op:17s} {ratio:7.2f} "
                f"{(f'<={target:g}' if target else '-'):>7s} {t_ours * 1e3:9.3f} {t_native * 1e3:10.3f} {ok}"
            )
            rows.append({"backend": name, "op": op, "ratio": ratio, "target": target,
                         "ours_s": t_ours, "native_s": t_native})
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
