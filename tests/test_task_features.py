"""zpml_tasks.features: the quantile input features of the benchmark models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from zpml_tasks.data import ik_ref_task, pole_task
from zpml_tasks.features import MAX_KNOTS, QuantileFeatures


def test_uniform_grid_gives_the_exact_cdf() -> None:
    # 0, 1, …, 100 with 101 knots: every value is a knot, F̂(k) = k / 100
    x = np.arange(101, dtype=np.float64)[:, None]
    qf = QuantileFeatures.fit(x, n_knots=101)
    # (the quantile levels k/100 are rounded binary fractions: knots within 1e-12)
    np.testing.assert_allclose(qf.knots[0], x[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(qf.levels[0], x[:, 0] / 100, rtol=0, atol=1e-15)
    z = np.array([[-5.0], [0.0], [12.5], [50.0], [100.0], [1e300], [-np.inf], [np.inf]])
    out = qf.transform(z)
    assert out.shape == (8, 2) and out.dtype == np.float64
    np.testing.assert_array_equal(out[:, 0], z[:, 0])  # the raw input is kept as is
    np.testing.assert_allclose(out[:, 1], [-1.0, -1.0, -0.75, 0.0, 1.0, 1.0, -1.0, 1.0],
                               rtol=0, atol=1e-13)


def test_nan_maps_to_nan_and_dtypes() -> None:
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((500, 3)).astype(np.float32)
    qf = QuantileFeatures.fit(x32)
    out = qf.transform(np.array([[np.nan, 0.0, 1.0]], np.float32))
    assert out.dtype == np.float32 and np.isnan(out[0, 0]) and np.isnan(out[0, 3])
    assert np.all(np.isfinite(out[0, [1, 2, 4, 5]]))
    # integer inputs become float32 features; float64 stays float64
    assert qf.transform(np.zeros((2, 3), np.int64)).dtype == np.float32
    assert qf.transform(x32.astype(np.float64)).dtype == np.float64


def test_monotone_in_range_and_stable_on_ties() -> None:
    rng = np.random.default_rng(1)
    # half the column is exactly 0 (ties across many quantile levels), plus a constant column
    col = np.where(rng.random(4000) < 0.5, 0.0, rng.standard_normal(4000))
    x = np.stack([col, np.full(4000, 7.0)], 1)
    qf = QuantileFeatures.fit(x, n_knots=201)
    k, lv = qf.knots[0], qf.levels[0]
    assert np.all(np.diff(k) > 0) and np.all(np.diff(lv) >= 0)
    assert lv[0] >= 0 and lv[-1] <= 1
    # the tied knot 0 sits at the mean of its levels: inside the block of levels it spans
    share_below = float(np.mean(col < 0))
    i0 = int(np.flatnonzero(k == 0.0)[0])
    assert share_below - 0.01 <= lv[i0] <= share_below + float(np.mean(col == 0)) + 0.01
    z = np.sort(rng.standard_normal(1000) * 3)
    u = qf.transform(np.stack([z, np.full(1000, 7.0)], 1))
    assert np.all(np.diff(u[:, 2]) >= 0) and np.all(np.abs(u[:, 2]) <= 1)
    np.testing.assert_array_equal(u[:, 3], 0.0)  # a constant column has no spread: u = 0


def test_quantile_coordinate_stretches_the_crowded_singular_line() -> None:
    # ik_ref puts 15 % of the rows at θ2 ~ N(0, 1e-3²): the empirical CDF rises by about
    # 0.15·0.68 over ±1e-3 there, so u = 2F̂ − 1 changes by ~0.2 over 2e-3 rad (~100 per
    # rad) against 2·0.7/(2π) ≈ 0.22 per rad where θ2 is uniform
    t = ik_ref_task(0, 40_000)
    qf = QuantileFeatures.fit(t.train.x)
    probe = np.zeros((4, 4), np.float32)
    probe[:, 1] = [-1e-3, 1e-3, 1.0, 1.5]
    u = qf.transform(probe)[:, 5].astype(np.float64)
    near = (u[1] - u[0]) / 2e-3
    far = (u[3] - u[2]) / 0.5
    assert near > 50 and 0.1 < far < 0.5 and near / far > 200


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_magnitudes_give_finite_knots(dtype: type) -> None:
    # interpolating between −max and +max overflows (max − (−max) = inf); the knots must
    # still be finite and the map monotone, with ±max at ±1 and 0 in the middle
    big = float(np.finfo(dtype).max)
    x = np.array([[-big], [-big / 2], [0.0], [big / 2], [big]], dtype)
    qf = QuantileFeatures.fit(x, n_knots=9)
    assert np.all(np.isfinite(qf.knots[0])) and np.all(np.diff(qf.knots[0]) > 0)
    assert np.all(np.diff(qf.levels[0]) >= 0)
    u = qf.transform(np.array([[-big], [0.0], [big], [np.inf], [-np.inf]], dtype))[:, 1]
    np.testing.assert_array_equal(u, np.array([-1.0, 0.0, 1.0, 1.0, -1.0], dtype))
    two = QuantileFeatures.fit(np.array([[-big], [big]], dtype), n_knots=5)
    assert np.all(np.isfinite(two.knots[0]))
    np.testing.assert_array_equal(two.transform(np.array([[-big], [big]], dtype))[:, 1], [-1.0, 1.0])


def test_roundtrip_and_validation() -> None:
    t = pole_task(0)
    qf = QuantileFeatures.fit(t.train.x, n_knots=64)
    d = json.loads(json.dumps(qf.to_dict()))
    back = QuantileFeatures.from_dict(d)
    np.testing.assert_array_equal(back.transform(t.test.x), qf.transform(t.test.x))
    x = np.ones((10, 2))
    for bad, exc in ((True, TypeError), (3.0, TypeError), (1, ValueError), (0, ValueError),
                     (MAX_KNOTS + 1, ValueError)):
        with pytest.raises(exc, match="n_knots"):
            QuantileFeatures.fit(x, n_knots=bad)  # type: ignore[arg-type]
    for arr in (np.ones(10), np.ones((1, 2)), np.ones((5, 0))):
        with pytest.raises(ValueError, match="x must be 2-D"):
            QuantileFeatures.fit(arr)
    with pytest.raises(ValueError, match="finite"):
        QuantileFeatures.fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(TypeError, match="real numbers"):
        QuantileFeatures.fit(np.array([[1 + 1j], [2]]))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        QuantileFeatures.fit(x).transform(np.ones((3, 3)))
    with pytest.raises(ValueError, match="kind"):
        QuantileFeatures.from_dict({"kind": "other"})
    with pytest.raises(ValueError, match="strictly increasing"):
        QuantileFeatures.from_dict({"kind": "quantile", "knots": [[0.0, 0.0]], "levels": [[0.0, 1.0]]})
    with pytest.raises(ValueError, match="matching"):
        QuantileFeatures.from_dict({"kind": "quantile", "knots": [[0.0, 1.0]], "levels": [[0.0]]})


def test_run_with_quantile_inputs_records_the_feature_map(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from zpml_core.training import read_checkpoint_metadata
    from zpml_tasks.runner import run

    task = ik_ref_task(0, 2000)
    ckpt = tmp_path / "ik.ckpt"
    r = run(task, "torch", seed=0, fit="angle", epochs=1, checkpoint=str(ckpt))
    rec = r.record
    assert (rec["inputs"], rec["q_head"], rec["batch_size"], rec["schedule"]) == (
        "quantile", "softplus", 128, "cosine")
    meta = read_checkpoint_metadata(ckpt)["user"]  # the caller's metadata
    assert meta["inputs"] == "quantile"
    qf = QuantileFeatures.from_dict(meta["features"])
    np.testing.assert_array_equal(qf.transform(task.test.x),
                                  QuantileFeatures.fit(task.train.x).transform(task.test.x))
    raw = run(task, "torch", seed=0, fit="angle", epochs=1, inputs="raw", batch_size=64,
              checkpoint=str(tmp_path / "raw.ckpt"))
    assert (raw.record["inputs"], raw.record["batch_size"]) == ("raw", 64)
    assert read_checkpoint_metadata(tmp_path / "raw.ckpt")["user"] == {"task": "ik_ref"}
    assert math.isfinite(raw.record["metrics"]["mse"]) and math.isfinite(rec["metrics"]["mse"])
    with pytest.raises(ValueError, match="inputs"):
        run(task, "torch", seed=0, epochs=1, inputs="log")
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match="batch_size"):
            run(task, "torch", seed=0, epochs=1, batch_size=bad)  # type: ignore[arg-type]
