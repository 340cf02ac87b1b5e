"""Behavioural parity with zeroproofml 0.6.1 (optional; ``nox -s parity``).

Runs every vectorised SCM op and strict inference of zeroproofml 0.6.1 (numpy and torch
variants) and of zpml_core on the same grid of float64 edge inputs, and classifies each
disagreement (mask or value) as explained by a documented deviation (DEVIATIONS.md) or
unexplained. Exit status 1 if anything is unexplained. zeroproofml is never a runtime
dependency of zpml_core; this script only runs where it is installed.

    python benchmarks/parity_zeroproofml.py [--verbose]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import warnings
from collections import Counter
from typing import Any

import numpy as np

TINY = float(np.finfo(np.float64).smallest_normal)
MAX = float(np.finfo(np.float64).max)
EDGE = [0.0, -0.0, 1.0, -1.0, 0.3, 2.5, -2.5, 3.0, 709.0, 710.0, -746.0, 1e-160, -1e-160,
        1e-154, 7.4e-155, 2.0**-511, 1e-161, 1e-200, 1e-300, 1e-308, 1e-320, -1e-320, 1e200,
        1e308, -1e308, math.inf, -math.inf, math.nan]
EXPONENTS = [0.0, 0.5, 1 / 3, -0.5, -1.0, 2.0, 3.0, 1025.0, 1e308, -1e308, 1e-320, math.inf,
             math.nan]
UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")
BINARY = ("add", "sub", "mul", "div")


def _subnormal(a: np.ndarray) -> np.ndarray:
    return (np.abs(a) < TINY) & (a != 0)


def explain(op: str, args: list[np.ndarray], ref_v: np.ndarray, ours_v: np.ndarray) -> np.ndarray:
    """Per element: the DEVIATIONS.md section explaining a difference, or ''."""
    why = np.full(ref_v.shape, "", dtype=object)
    daz = np.zeros(ref_v.shape, dtype=bool)
    for a in args:
        daz |= np.broadcast_to(_subnormal(a), ref_v.shape)
    if op == "div":
        daz |= np.broadcast_to(np.abs(args[1]) < 2.0**-511, ref_v.shape)  # y·y underflows
    with np.errstate(all="ignore"):
        near_max = np.abs(ref_v) > MAX * (1 - 1e-14)
        tiny_result = (np.abs(ref_v) < TINY) | (np.abs(ours_v) < TINY)
    why[daz] = "§1 DAZ"
    why[~daz & near_max] = "§2 overflow guard"
    # subnormal results: JAX-style flush-to-zero differences are < smallest normal
    why[(why == "") & tiny_result] = "§1 subnormal result"
    return why


def compare(op: str, args: list[np.ndarray], ref: tuple[Any, Any], ours: tuple[Any, Any],
            verbose: bool, lib: str) -> Counter[str]:
    rv, rm = (np.asarray(t.detach().numpy() if hasattr(t, "detach") else t) for t in ref)
    ov, om = (np.asarray(t.detach().numpy() if hasattr(t, "detach") else t) for t in ours)
    with np.errstate(all="ignore"):
        same_v = (rv == ov) | (np.isnan(rv) & np.isnan(ov)) | (
            np.abs(rv - ov) <= 4 * np.spacing(np.maximum(np.abs(rv), np.abs(ov)))
        )
    same = (rm == om) & (same_v | rm)
    why = explain(op, args, rv, ov)
    out: Counter[str] = Counter()
    out["cases"] += same.size
    out["agree"] += int(same.sum())
    for i in np.flatnonzero(~same.ravel()):
        reason = why.ravel()[i] or "UNEXPLAINED"
        out[reason] += 1
        if verbose or reason == "UNEXPLAINED":
            operands = ", ".join(repr(float(np.broadcast_to(a, rv.shape).ravel()[i])) for a in args)
            print(f"  [{lib}] {op}({operands}): reference "
                  f"{'⊥' if rm.ravel()[i] else rv.ravel()[i]!r}, zpml_core "
                  f"{'⊥' if om.ravel()[i] else ov.ravel()[i]!r}  -> {reason}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    try:
        import zeroproof.scm as ref
        from zeroproof.inference import mode as ref_mode
    except ImportError:
        print("zeroproofml is not installed; run `nox -s parity` (it installs 0.6.1 in its venv)")
        return 2
    import torch

    import zpml_core
    from zpml_core import scm

    warnings.simplefilter("ignore")
    x1 = np.array(EDGE)
    pairs = np.array(list(itertools.product(EDGE, EDGE)))
    xp_, yp_ = pairs[:, 0].copy(), pairs[:, 1].copy()
    pw = np.array(list(itertools.product(EDGE, EXPONENTS)))
    libs = {"numpy": lambda a: a.copy(), "torch": lambda a: torch.from_numpy(a.copy())}
    total: Counter[str] = Counter()
    rows = []
    for lib, conv in libs.items():
        for op in (*UNARY, *BINARY, "pow"):
            if op in UNARY:
                operands = [x1]
            elif op == "pow":
                operands = [pw[:, 0].copy(), pw[:, 1].copy()]
            else:
                operands = [xp_, yp_]
            fn_ref = getattr(ref, f"scm_{op}_{lib}")
            fn_ours = getattr(scm, op)
            r = fn_ref(*[conv(a) for a in operands])
            o = fn_ours(*[conv(a) for a in operands])
            c = compare(op, operands, r, tuple(o), args.verbose, lib)
            rows.append((lib, op, c))
            total += c
        # strict inference on the pair grid
        cfg_ref = ref_mode.InferenceConfig(tau_infer=1e-6, tau_train=1e-4)
        cfg = zpml_core.InferenceConfig(tau_infer=1e-6, tau_train=1e-4)
        rr = ref_mode.strict_inference(conv(xp_), conv(yp_), config=cfg_ref)
        oo = zpml_core.strict_inference(conv(xp_), conv(yp_), config=cfg)
        c = Counter()
        for name, a, b in (("bottom", rr[1], oo[1]), ("gap", rr[2], oo[2])):
            a = np.asarray(a.numpy() if hasattr(a, "numpy") else a)
            b = np.asarray(b.numpy() if hasattr(b, "numpy") else b)
            why = np.where(_subnormal(yp_) | _subnormal(xp_), "§1 DAZ", "UNEXPLAINED")
            c["cases"] += a.size
            c["agree"] += int((a == b).sum())
            for i in np.flatnonzero(a != b):
                c[str(why[i])] += 1
                if args.verbose or why[i] == "UNEXPLAINED":
                    print(f"  [{lib}] strict_inference {name} P={xp_[i]!r} Q={yp_[i]!r}: "
                          f"reference {bool(a[i])}, zpml_core {bool(b[i])} -> {why[i]}")
        rows.append((lib, "strict_inference", c))
        total += c

    print(f"\n{'lib':6s} {'op':17s} {'cases':>6s} {'agree':>6s}  differences (reason: count)")
    for lib, op, c in rows:
        diffs = ", ".join(f"{k}: {v}" for k, v in sorted(c.items()) if k not in ("cases", "agree"))
        print(f"{lib:6s} {op:17s} {c['cases']:6d} {c['agree']:6d}  {diffs or '-'}")
    unexplained = total.get("UNEXPLAINED", 0)
    print(f"\n{total['cases']} cases, {total['agree']} identical, "
          f"{total['cases'] - total['agree'] - unexplained} explained by DEVIATIONS.md, "
          f"{unexplained} unexplained")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
