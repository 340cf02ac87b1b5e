"""zpml_tasks: data generators, metrics, calibration candidates, a tiny ``zpml bench``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zpml_tasks.data import (
    IK_REF_EDGES,
    bucket_index,
    dls_targets,
    ik_pole_task,
    ik_ref_task,
    pole_task,
)
from zpml_tasks.metrics import (
    bucket_labels,
    ik_pole_metrics,
    ik_ref_metrics,
    learned_pole,
    pole_metrics,
    predict_zero,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fk(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Hand position of the 2-link arm, L1 = L2 = 1."""
    return np.stack([np.cos(t1) + np.cos(t1 + t2), np.sin(t1) + np.sin(t1 + t2)], -1)


def test_ik_ref_data_shapes_stratification_and_dls() -> None:
    t = ik_ref_task(3, 5000)
    n = len(t.train) + len(t.test)
    assert n == 5000 and t.input_dim == 4 and t.output_dim == 2 and t.tau_infer == 1e-6
    for s in (t.train, t.val, t.test):
        assert s.x.dtype == np.float32 and s.x.shape[1] == 4 and s.y.shape == (len(s), 2)
        assert np.isfinite(s.y).all()  # DLS is finite everywhere
        np.testing.assert_array_equal(s.dist, np.abs(np.sin(s.x[:, 1].astype(np.float64))))
    # 30 % near-singular (|θ2| or |θ2 − π| small), exact θ2 = 0 and θ2 = π rows present
    allx = np.concatenate([t.train.x, t.test.x])
    t2 = allx[:, 1].astype(np.float64)
    near = np.minimum(np.abs(t2), np.abs(np.abs(t2) - np.float32(np.pi))) < 0.01
    assert 0.29 <= near.mean() <= 0.32
    assert (t2 == 0).sum() >= 2 and (allx[:, 1] == np.float32(np.pi)).sum() >= 2
    # stratified 80/20 by |det J| bucket: every non-tiny bucket split within one row
    btr = np.bincount(bucket_index(t.train.dist, IK_REF_EDGES, True), minlength=5)
    bte = np.bincount(bucket_index(t.test.dist, IK_REF_EDGES, True), minlength=5)
    assert (np.abs(btr - 0.8 * (btr + bte)) <= 0.5 + 1e-9).all()
    assert (bte > 0).all()
    # DLS target = argmin |J dθ − e|² + λ²|dθ|², i.e. (JᵀJ + λ²I) dθ = Jᵀ e, with J by
    # central differences of the forward kinematics (independent of the generator)
    x = t.test.x.astype(np.float64)
    h = 1e-6
    J = np.stack([(_fk(x[:, 0] + h, x[:, 1]) - _fk(x[:, 0] - h, x[:, 1])) / (2 * h),
                  (_fk(x[:, 0], x[:, 1] + h) - _fk(x[:, 0], x[:, 1] - h)) / (2 * h)], -1)
    A = np.einsum("nki,nkj->nij", J, J) + 1e-4 * np.eye(2)
    want = np.linalg.solve(A, np.einsum("nki,nk->ni", J, x[:, 2:])[..., None])[..., 0]
    np.testing.assert_allclose(t.test.y, want, rtol=2e-4, atol=2e-6)
    np.testing.assert_allclose(dls_targets(x[:, 0], x[:, 1], x[:, 2:]), want, rtol=2e-5, atol=1e-7)


def test_pole_and_ik_pole_data() -> None:
    for task in (pole_task(0), ik_pole_task(0)):
        for s in (task.train, task.val, task.test):
            fin = np.isfinite(s.y.reshape(len(s), -1)).all(1)
            assert s.exact.sum() >= 2 and np.array_equal(~fin, s.exact)
            assert (s.dist[s.exact] == 0).all() and (s.dist[fin] < 1e-3).sum() > 0
    p = pole_task(1).test
    np.testing.assert_allclose(p.y[~p.exact], 1 / (p.x[~p.exact, 0].astype(np.float64) - 0.25),
                               rtol=1e-6)
    ik = ik_pole_task(1).test
    ok = ~ik.exact & (ik.dist > 0.05)
    x, y = ik.x[ok].astype(np.float64), ik.y[ok].astype(np.float64)
    h = 1e-6
    hand = (_fk(x[:, 0] + h * y[:, 0], x[:, 1] + h * y[:, 1]) - _fk(x[:, 0], x[:, 1])) / h
    np.testing.assert_allclose(hand, np.tile([1.0, 0.0], (ok.sum(), 1)), atol=1e-3)


def test_ik_ref_metrics_by_hand() -> None:
    t = ik_ref_task(0, 100)
    split = t.test
    split = type(split)(x=split.x[:4], y=np.array([[1, 2], [0, 0], [3, -1], [1, 1]], np.float32),
                        dist=np.array([0.0, 5e-5, 0.5, 1e-5]), exact=np.zeros(4, bool))
    dec = np.array([[1, 1], [1, 0], [9, 9], [0, 0]], np.float64)
    bot = np.array([False, False, True, False])
    m = ik_ref_metrics(t, split, dec, bot)
    # non-⊥ rows 0, 1, 3: squared errors (0, 1), (1, 0), (1, 1) → 4 / 6; abs the same
    assert m["mse"] == pytest.approx(4 / 6) and m["mae"] == pytest.approx(4 / 6)
    assert m["success_rate"] == 0.75
    # buckets [0, 1e-5] ← rows 0, 3 (1e-5 is closed on the right); (1e-5, 1e-4] ← row 1
    assert m["bucket_mse"][0] == pytest.approx(3 / 4) and m["bucket_mse"][1] == 0.5
    assert math.isnan(m["bucket_mse"][4])  # row 2 is ⊥
    z = ik_ref_metrics(t, split, *predict_zero(split))
    assert z["mse"] == pytest.approx((1 + 4 + 9 + 1 + 1 + 1) / 8) and z["success_rate"] == 1.0
    assert bucket_labels(IK_REF_EDGES, True) == [
        "[0, 1e-05]", "(1e-05, 0.0001]", "(0.0001, 0.001]", "(0.001, 0.01]", "(0.01, ∞)"]


def test_pole_and_ik_pole_metrics_by_hand() -> None:
    t = pole_task(0)
    s = type(t.test)(x=np.array([[-0.75], [0.3], [0.25], [0.8]], np.float32),
                     y=np.array([-1.0, 20.0, np.inf, 1 / 0.55], np.float32),
                     dist=np.array([1.0, 0.05, 0.0, 0.55]), exact=np.array([0, 0, 1, 0], bool))
    dec = np.array([-1.5, 21.0, 7.0, 1 / 0.55 + 0.5])
    m = pole_metrics(t, s, dec, np.array([False, False, True, False]), pole=0.2503)
    assert m["rmse_far"] == pytest.approx(0.5, rel=1e-6) and m["exact_pole_bottom"] == 1.0
    assert m["coverage"] == 1.0 and m["pole_error"] == pytest.approx(3e-4)
    m = pole_metrics(t, s, dec, np.array([False, True, False, False]))
    assert m["exact_pole_bottom"] == 0.0 and m["coverage"] == pytest.approx(2 / 3)
    # learned pole: linear interpolation of the sign change nearest a
    xs = np.linspace(0.0, 1.0, 11)
    assert learned_pole(xs, xs - 0.27, 0.25) == pytest.approx(0.27)
    # (x − 0.05)(x − 0.62) is 0.031 at 0 and −0.026 at 0.1: the chord crosses at 0.031/0.057·0.1
    assert learned_pole(xs, (xs - 0.05) * (xs - 0.62), 0.25) == pytest.approx(0.0031 / 0.057)
    k = ik_pole_task(0)
    s2 = type(k.test)(x=np.zeros((3, 2), np.float32),
                      y=np.array([[1, -2], [-3, 4], [np.inf, -np.inf]], np.float32),
                      dist=np.array([0.5, 0.5, 0.0]), exact=np.array([0, 0, 1], bool))
    m2 = ik_pole_metrics(k, s2, np.array([[2.0, -2.0], [1.0, 4.5], [0.0, 0.0]]),
                         np.array([False, False, False]))
    # errors 1, 0, 4, 0.5 → median 0.75; signs agree on 3 of 4; the singular row is not ⊥
    assert m2["median_abs_err"] == pytest.approx(0.75) and m2["sign_agreement"] == 0.75
    assert m2["singular_bottom"] == 0.0


def test_calibration_candidates_span_observed_q() -> None:
    from zpml_core.training import calibrate_tau_infer

    rng = np.random.default_rng(0)
    n = 2000
    q = 10.0 ** rng.uniform(-3, 1, n) * rng.choice([-1.0, 1.0], n)  # |Q| in [1e-3, 10]
    y = rng.normal(size=n)
    rep = calibrate_tau_infer(q * y, q, y, target_coverage=0.9)
    taus = [r["tau"] for r in rep.table]
    assert taus == sorted(taus) and min(taus) == 1e-9
    assert max(taus) == pytest.approx(np.abs(q).max())  # the whole observed range
    # quantile candidates: the 10 % quantile of |Q| is a candidate, and it is chosen
    # (coverage exactly >= 0.9 there; P/Q = y exactly, so rmse is tiny)
    s = np.sort(np.abs(q))
    assert rep.tau_infer == pytest.approx(s[round(0.1 * (n - 1))], rel=1e-12)
    assert rep.coverage >= 0.9 and rep.tau_infer > 2e-4  # not capped at a tau_train
    curve = rep.curve
    assert curve["tau"] == taus and len(curve["coverage"]) == len(taus)
    assert all(a >= b for a, b in zip(curve["coverage"], curve["coverage"][1:], strict=False))
    capped = calibrate_tau_infer(q * y, q, y, target_coverage=0.0, tau_train=1e-2)
    assert max(r["tau"] for r in capped.table) == 1e-2
    # |Q| up to finfo.max: every candidate finite (the grid is built in log space)
    big = np.full(10, np.finfo(np.float64).max)
    rep = calibrate_tau_infer(np.ones(10), big, np.ones(10), target_coverage=0.0)
    taus = [r["tau"] for r in rep.table]
    assert all(math.isfinite(t) for t in taus) and max(taus) == big[0]


def _bench(tmp: Path, backend: str, fit: str | None, overrides: bool) -> dict[str, Any]:
    """One tiny bench run; ``fit=None`` leaves ``--fit`` out (the per-task default:
    ``angle_l1`` on the pole task, ``angle`` on ik_ref); ``overrides`` sets the denominator
    head, the inputs and the batch size explicitly instead of taking the task defaults."""
    from zpml_core.cli import main as cli_main

    out = tmp / backend
    extra = ["--q-head", "softplus", "--inputs", "raw", "--batch-size", "32"] if overrides else []
    assert cli_main(["bench", "--tasks", "pole,ik_ref", "--seeds", "1", "--epochs", "1",
                     "--n-samples", "200", "--backends", backend,
                     *([] if fit is None else ["--fit", fit]),
                     *extra, "--out", str(out), "--quiet"]) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(s)["task"] for s in lines] == ["pole", "ik_ref"]
    # per-task defaults: the pole task keeps the guide's head on raw inputs in batches of
    # 64; ik_ref gets a positive Q on quantile features in batches of 128
    defaults = [("linear", "raw", 64), ("softplus", "quantile", 128)]
    for s, want, dflt in zip(lines, (fit or "angle_l1", fit or "angle"), defaults, strict=True):
        rec = json.loads(s)
        assert rec["backend"] == backend and rec["fit"] == want and Path(rec["log"]).exists()
        got = (rec["q_head"], rec["inputs"], rec["batch_size"])
        assert got == (("softplus", "raw", 32) if overrides else dflt)
    summary = json.loads((out / "summary.json").read_text())
    assert {g["task"] for g in summary["groups"]} == {"pole", "ik_ref"}
    assert set(summary["predict_zero"]) == {"pole", "ik_ref"}
    for name in ("pole", "ik_ref"):
        assert (out / f"bench_{name}.png").read_bytes()[:8] == PNG_MAGIC
    return summary


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_bench_end_to_end(tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip(backend)
    pytest.importorskip("matplotlib")
    if backend == "jax":
        pytest.importorskip("optax")
        monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    summary = _bench(tmp_path, backend, "angle" if backend == "torch" else None,
                     overrides=backend == "jax")
    text = capsys.readouterr().out
    assert "torch.set_num_threads(1)" in text or backend == "jax"
    assert "| predict-0 |" in text and "mse (1e-05, 0.0001]" in text
    g = next(g for g in summary["groups"] if g["task"] == "ik_ref")
    assert g["runs"] == 1 and g["metrics"]["tau_infer"]["median"] == 1e-6


def test_bench_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from zpml_core.cli import main as cli_main

    for bad in (["--tasks", "nope"], ["--fit", "mse"], ["--seeds", "0"], ["--backends", "tf"],
                ["--batch-size", "0"]):
        assert cli_main(["bench", *bad]) == 2
    assert "--tasks" in capsys.readouterr().err
