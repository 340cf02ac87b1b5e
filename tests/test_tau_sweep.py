"""``tau_infer_sweep_from_q_abs`` / ``write_tau_infer_sweep`` on every backend: curves from
the counting rule (plain Python over the same data), zeroproofml's file format, hostile
input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zpml_core.metrics import (
    tau_infer_sweep_from_q_abs,
    tau_infer_sweep_report,
    write_tau_infer_sweep,
)
from zpml_core.training import tau_infer_sweep_from_q_abs as from_training

RNG = np.random.default_rng(7)
QABS = np.abs(RNG.standard_normal(64)) * 1e-3
QABS[[3, 11]] = np.nan
QABS[5] = 0.0
QABS[9] = np.inf
IN = RNG.random(64) < 0.6
TAUS = [1e-6, 1e-4, 3e-4, 1e-3, 0.0, -1.0]


def counted(q: np.ndarray, m: np.ndarray, taus: list[float]) -> dict[str, list[float]]:
    """The rule, by plain Python counting (NaN is never < tau, but counts in n)."""
    q, m = [float(v) for v in q.ravel()], [bool(v) for v in m.ravel()]
    n_in, n = sum(m), len(q)
    out: dict[str, list[float]] = {"taus": list(taus), "fn_in": [], "fp_cens": [], "bottom_rate": []}
    for t in taus:
        c_in = sum(1 for v, k in zip(q, m, strict=True) if k and v < t)
        c_cens = sum(1 for v, k in zip(q, m, strict=True) if not k and v < t)
        out["fn_in"].append(c_in / n_in if n_in else math.nan)
        out["fp_cens"].append(1.0 - c_cens / (n - n_in) if n - n_in else math.nan)
        out["bottom_rate"].append((c_in + c_cens) / n if n else math.nan)
    return out


def test_curves_follow_the_rule(arr: Any) -> None:
    got = tau_infer_sweep_from_q_abs(arr(QABS), is_in_range=arr(IN, "bool"), taus=TAUS)
    assert got == counted(QABS, IN, TAUS)
    assert all(type(v) is float for vs in got.values() for v in vs)
    # float32 |Q| and a (B, 1) column against a (B,) mask: compared exactly in float64
    q32 = QABS.astype(np.float32)
    got = tau_infer_sweep_from_q_abs(arr(q32[:, None], "float32"), is_in_range=arr(IN.astype(int), "int64"),
                                     taus=(np.float64(t) for t in TAUS))
    assert got == counted(q32.astype(np.float64), IN, TAUS)
    assert from_training is tau_infer_sweep_from_q_abs


def test_empty_subsets_are_nan(arr: Any) -> None:
    got = tau_infer_sweep_from_q_abs(arr(QABS), is_in_range=arr(np.ones(64, bool), "bool"), taus=[1e-3])
    assert math.isnan(got["fp_cens"][0]) and got["fn_in"] == counted(QABS, np.ones(64, bool), [1e-3])["fn_in"]
    got = tau_infer_sweep_from_q_abs(arr(np.zeros(0)), is_in_range=arr(np.zeros(0, bool), "bool"), taus=[1.0])
    assert all(math.isnan(v[0]) for k, v in got.items() if k != "taus")
    assert tau_infer_sweep_from_q_abs(arr(QABS), is_in_range=arr(IN, "bool"), taus=[]) == {
        "taus": [], "fn_in": [], "fp_cens": [], "bottom_rate": []}


def test_dask_counting() -> None:
    da = pytest.importorskip("dask.array")
    got = tau_infer_sweep_from_q_abs(da.from_array(QABS, chunks=16), is_in_range=da.from_array(IN, chunks=16),
                                     taus=TAUS)
    assert got == counted(QABS, IN, TAUS)


def test_write_format(tmp_path: Path) -> None:
    curves = counted(QABS, IN, [1e-4, 1e-3])
    payload = write_tau_infer_sweep(tmp_path / "out", curves, provenance={"run": "r1", "seed": 0})
    assert payload == {"curves": curves, "provenance": {"run": "r1", "seed": 0}}
    text = (tmp_path / "out" / "tau_infer_sweep.json").read_text(encoding="utf-8")
    assert text == json.dumps(payload, indent=2, sort_keys=True) + "\n"
    md = (tmp_path / "out" / "tau_infer_sweep.md").read_text(encoding="utf-8").splitlines()
    assert md[0] == "# tau_infer sweep" and md[4] == "| τ_infer | FN_in | FP_cens | bottom_rate |"
    t, a, b, c = curves["taus"][1], curves["fn_in"][1], curves["fp_cens"][1], curves["bottom_rate"][1]
    assert md[7] == f"| {t:.3e} | {a:.6f} | {b:.6f} | {c:.6f} |" and len(md) == 8
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tau_infer_sweep.json", "tau_infer_sweep.md"]
    assert tau_infer_sweep_report(curves, title="Run 1").startswith("# Run 1\n")
    write_tau_infer_sweep(tmp_path, curves, basename="other")
    assert (tmp_path / "other.json").exists() and (tmp_path / "other.md").exists()


def test_hostile_input(arr: Any, tmp_path: Path) -> None:
    q, m = arr(QABS), arr(IN, "bool")
    with pytest.raises(ValueError, match="taus\\[1\\] is NaN"):
        tau_infer_sweep_from_q_abs(q, is_in_range=m, taus=[1e-3, math.nan])
    for bad in ("1e-3", [True], ["1e-3"], 1e-3):
        with pytest.raises(TypeError, match="taus"):
            tau_infer_sweep_from_q_abs(q, is_in_range=m, taus=bad)
    with pytest.raises(ValueError, match="one to one"):
        tau_infer_sweep_from_q_abs(q, is_in_range=arr(IN[:10], "bool"), taus=[1e-3])
    with pytest.raises(TypeError, match="is_in_range"):
        tau_infer_sweep_from_q_abs(q, is_in_range=arr(IN, "float64"), taus=[1e-3])
    with pytest.raises(TypeError, match="q_abs"):
        tau_infer_sweep_from_q_abs(QABS.tolist(), is_in_range=m, taus=[1e-3])
    nan_curves = counted(QABS, np.ones(64, bool), [1e-3])       # fp_cens is NaN
    with pytest.raises(ValueError, match=r"\['fp_cens'\]\[0\] is nan"):
        write_tau_infer_sweep(tmp_path / "nan", nan_curves)
    assert not (tmp_path / "nan").exists()
    for base in ("", "../escape", "a/b", "."):
        with pytest.raises(ValueError, match="basename"):
            write_tau_infer_sweep(tmp_path, nan_curves, basename=base)
    with pytest.raises(TypeError, match="curves"):
        write_tau_infer_sweep(tmp_path, [1.0])
