"""TrainingConfig validation, curriculum, sampler helpers, ArrayLoader, tau calibration.

Framework-free except where a test says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from zpml_core.autodiff.policies import GradientPolicy
from zpml_core.training import (
    AdaptiveSampler,
    AdaptiveSamplerConfig,
    ArrayLoader,
    LinearRamp,
    LossWeightsCurriculum,
    TrainingConfig,
    calibrate_tau_infer,
    ema_update,
    evaluate_tau,
    perturbed_threshold,
    sampling_weights,
    singularity_prob,
)
from zpml_core.training.config import config_hash, config_identity


def test_import_training_imports_no_framework() -> None:
    code = (
        "import sys, zpml_core.training, zpml_core.utils.logging;"
        "bad=[m for m in ('numpy','torch','jax') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_defaults_and_derived() -> None:
    c = TrainingConfig()
    assert c.max_epochs == 1 and c.gradient_accumulation_steps == 1
    assert c.tau_train_min == c.tau_train_max == 1e-4 and c.tau_infer == 1e-6
    assert c.amp_enabled is False and c.amp_dtype == "float16"
    assert TrainingConfig(mixed_precision=True).amp_enabled
    assert TrainingConfig(mixed_precision=True, use_amp=False).amp_enabled is False
    assert TrainingConfig(use_amp=True).amp_enabled
    assert TrainingConfig(tau_train_min=5e-5, tau_train_max=2e-4).tau_eval == pytest.approx(1.25e-4)
    assert TrainingConfig(amp_dtype="bfloat16").amp_dtype == "bfloat16"
    assert TrainingConfig(gradient_policy=GradientPolicy.PROJECT).gradient_policy is GradientPolicy.PROJECT


GOOD = {"log_hook": print, "val_loader": [], "loss_weights": {"a": 1}, "seed": 3}


@pytest.mark.parametrize(
    ("name", "value", "exc"),
    [
        ("max_epochs", 0, ValueError),
        ("max_epochs", 1.0, TypeError),
        ("max_epochs", True, TypeError),
        ("gradient_accumulation_steps", 0, ValueError),
        ("gradient_accumulation_steps", "2", TypeError),
        ("mixed_precision", 1, TypeError),
        ("use_amp", "yes", TypeError),
        ("amp_dtype", "float32", ValueError),
        ("tau_train_min", 0.0, ValueError),
        ("tau_train_min", -1e-4, ValueError),
        ("tau_train_min", float("nan"), ValueError),
        ("tau_train_min", "1e-4", TypeError),
        ("tau_train_max", float("inf"), ValueError),
        ("tau_train_max", None, TypeError),
        ("tau_infer", 0.0, ValueError),
        ("tau_infer", True, TypeError),
        ("coverage_threshold", 1.5, ValueError),
        ("coverage_threshold", "0.9", TypeError),
        ("coverage_threshold", False, TypeError),
        ("coverage_patience", 0, ValueError),
        ("coverage_patience", 2.5, TypeError),
        ("learning_rate", 0.0, ValueError),
        ("learning_rate", "1e-3", TypeError),
        ("gradient_policy", "clamp", TypeError),
        ("log_hook", 3, TypeError),
        ("val_loader", 3, TypeError),
        ("loss_weights", [1.0], TypeError),
        ("loss_weights", {"a": -1.0}, ValueError),
        ("loss_weights", {"a": True}, TypeError),
        ("loss_weights", {"": 1.0}, ValueError),
        ("loss_curriculum", {"a": 1}, TypeError),
        ("scheduler_cadence", "per_step", ValueError),
        ("seed", -1, ValueError),
        ("seed", 1.5, TypeError),
        ("device", 3, TypeError),
        ("allow_bottom_unreachable", None, TypeError),
    ],
)
def test_invalid_values_name_the_argument(name: str, value: object, exc: type) -> None:
    kwargs = {name: value}
    with pytest.raises(exc, match=name):
        TrainingConfig(**kwargs)  # type: ignore[arg-type]


def test_tau_relations() -> None:
    with pytest.raises(ValueError, match="tau_train_min"):
        TrainingConfig(tau_train_min=2e-4, tau_train_max=1e-4)
    with pytest.raises(ValueError, match="tau_infer"):
        TrainingConfig(tau_infer=1e-3)  # above tau_train
    TrainingConfig(tau_infer=1e-4)  # equal allowed


def test_config_hash_tracks_behaviour_not_hooks() -> None:
    a = TrainingConfig(max_epochs=3, seed=1, log_hook=print)
    b = dataclasses.replace(a, log_hook=None, val_loader=[1])
    c = dataclasses.replace(a, tau_train_max=2e-4)
    h = lambda cfg: config_hash(config_identity(cfg, optimizer_lrs=[1e-3]))  # noqa: E731
    assert h(a) == h(b) != h(c)
    assert h(a).startswith("cfg:sha256:")
    assert h(a) != config_hash(config_identity(a, optimizer_lrs=[1e-2]))


def test_linear_ramp() -> None:
    r = LinearRamp(0.0, 1.0, 2, 6)
    assert [r.value(e) for e in range(9)] == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    s = LinearRamp(1.0, 5.0, 3, 3)
    assert [s.value(e) for e in (2, 3, 4)] == [1.0, 1.0, 5.0]
    with pytest.raises(ValueError, match="end_epoch"):
        LinearRamp(0, 1, 3, 2)
    with pytest.raises(TypeError, match="start_epoch"):
        LinearRamp(0, 1, 1.5, 2)  # type: ignore[arg-type]


def test_loss_weights_curriculum() -> None:
    cur = LossWeightsCurriculum({"margin": LinearRamp(0.0, 1.0, 0, 2)})
    assert cur.weights(1, {"margin": 9.0, "sign": 2}) == {"margin": 0.5, "sign": 2.0}
    assert cur.weights(5) == {"margin": 1.0}
    cfg = TrainingConfig(loss_weights={"sign": 2.0}, loss_curriculum=cur)
    assert cfg.weights_at(0) == {"sign": 2.0, "margin": 0.0}
    assert TrainingConfig().weights_at(0) is None
    with pytest.raises(TypeError, match="LinearRamp"):
        LossWeightsCurriculum({"a": 1.0})  # type: ignore[dict-item]


def test_perturbed_threshold() -> None:
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    a = [perturbed_threshold(5e-5, 2e-4, rng=g1) for _ in range(100)]
    b = [perturbed_threshold(5e-5, 2e-4, rng=g2) for _ in range(100)]
    assert a == b and all(5e-5 <= t < 2e-4 for t in a) and len(set(a)) == 100
    g = np.random.default_rng(0)
    state = g.bit_generator.state
    assert perturbed_threshold(1e-4, 1e-4, rng=g) == 1e-4
    assert g.bit_generator.state == state  # no draw when lo == hi
    assert perturbed_threshold(-1.0, -1.0) == -1.0
    with pytest.raises(ValueError, match="lo"):
        perturbed_threshold(2.0, 1.0)
    assert isinstance(perturbed_threshold(0.0, 1.0), float)


def test_sampler_formulas_match_reference_example() -> None:
    q = np.array([0.0, 1e-4, 0.1, 1.0], dtype=np.float32)
    p = singularity_prob(q, 1e-4)
    np.testing.assert_allclose(p, [0.50025, 0.5, 0.26914, 4.544e-5], rtol=1e-4)
    s = AdaptiveSampler((np.arange(4.0), np.arange(4.0)))
    assert s.prob.dtype == np.float32 and np.all(s.weights == 1)
    w = s.update(q)
    np.testing.assert_allclose(w, [1.05002, 1.05, 1.02691, 1.0000045], rtol=1e-5)
    np.testing.assert_allclose(ema_update(np.array(1.0), np.array(0.0), 0.25), 0.75)
    np.testing.assert_allclose(
        sampling_weights(np.array([0.2, 0.9]), np.array([False, True]), alpha=2.0, s_min=0.1),
        [1.4, 1.2],
    )
    with pytest.raises(ValueError, match="batch_size"):
        AdaptiveSamplerConfig(batch_size=0)


def test_adaptive_sampler_dataloader_oversamples() -> None:
    x = np.arange(100.0)
    s = AdaptiveSampler((x, x), AdaptiveSamplerConfig(batch_size=25, seed=0, alpha=50.0))
    q = np.ones(100)
    q[:10] = 0.0
    s.update(q)
    loader = s.dataloader()
    drawn = np.concatenate([b[0] for b in loader])
    assert drawn.shape == (100,)
    assert np.mean(drawn < 10) > 0.18  # 10 % of the data, weight 3.5 vs 1 → 28 % expected


def test_adaptive_sampler_torch_dataset() -> None:
    torch = pytest.importorskip("torch")
    ds = torch.utils.data.TensorDataset(torch.arange(8.0), torch.arange(8.0))
    s = AdaptiveSampler(ds, AdaptiveSamplerConfig(batch_size=4, seed=1))
    batches = list(s.dataloader())
    assert len(batches) == 2 and batches[0][0].shape == (4,)


def test_array_loader() -> None:
    x = np.arange(10)
    assert [b[0].tolist() for b in ArrayLoader(x, batch_size=4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(ArrayLoader(x, batch_size=4)) == 3
    assert len(ArrayLoader(x, batch_size=4, drop_last=True)) == 2
    a = ArrayLoader(x, x * 2, batch_size=5, shuffle=True, seed=3)
    e1, e2 = [np.concatenate([b[0] for b in a]) for _ in range(2)]
    assert sorted(e1) == list(range(10)) and not np.array_equal(e1, e2)
    b = ArrayLoader(x, x * 2, batch_size=5, shuffle=True, seed=3)
    assert np.array_equal(np.concatenate([t[0] for t in b]), e1)
    state = a.state_dict()
    nxt = np.concatenate([t[0] for t in a])
    b.load_state_dict(state)
    assert np.array_equal(np.concatenate([t[0] for t in b]), nxt)
    for xb, yb in a:
        assert np.array_equal(yb, xb * 2)
    with pytest.raises(ValueError, match="rows"):
        ArrayLoader(x, np.arange(3))
    with pytest.raises(ValueError, match="batch_size"):
        ArrayLoader(x, batch_size=0)


# ---------------------------------------------------------------------------------------
# tau calibration


def _calibration_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # y = 1/x on a grid; a model P=1, Q=x + noise near the pole
    x = np.linspace(-1, 1, 401)
    with np.errstate(divide="ignore"):
        y = 1.0 / x
    q = x + 1e-3 * np.sin(50 * x)
    p = np.ones_like(x)
    return p, q, y


def test_evaluate_tau_counts() -> None:
    p = np.array([1.0, 1.0, 1.0, 1.0])
    q = np.array([1.0, 1e-3, 1e-8, 0.5])
    y = np.array([1.0, 1000.0, np.inf, 3.0])
    r = evaluate_tau(p, q, y, 1e-6)
    assert r["coverage"] == 1.0  # all three finite targets accepted
    assert math.isclose(r["rmse"], math.sqrt(1.0 / 3.0))  # (2 − 3)² over 3 elements
    assert r["false_finite_frac"] == 0.0 and r["bottom_frac"] == 0.25
    r = evaluate_tau(p, q, y, 1e-2)
    assert math.isclose(r["coverage"], 2 / 3)
    assert math.isclose(evaluate_tau(p, q, y, 1e-9)["false_finite_frac"], 1.0)


def test_calibrate_picks_largest_feasible_tau() -> None:
    p, q, y = _calibration_data()
    rep = calibrate_tau_infer(p, q, y, target_coverage=0.9)
    assert rep.coverage >= 0.9
    bigger = [r for r in rep.table if r["tau"] > rep.tau_infer]
    assert bigger and all(r["coverage"] < 0.9 for r in bigger)
    # an error bound forces a larger (safer) tau than the smallest feasible one
    loose = calibrate_tau_infer(p, q, y, target_coverage=0.5, max_error=1e9)
    tight = calibrate_tau_infer(p, q, y, target_coverage=0.5, max_error=10.0)
    assert tight.rmse <= 10.0 and tight.tau_infer <= loose.tau_infer
    capped = calibrate_tau_infer(p, q, y, target_coverage=0.5, tau_train=1e-3)
    assert capped.tau_infer <= 1e-3
    meta = rep.as_metadata()
    assert meta["tau_infer"] == rep.tau_infer and "rule" in meta


def test_calibrate_infeasible_and_bad_args() -> None:
    p, q, y = _calibration_data()
    with pytest.raises(ValueError, match="no candidate"):
        calibrate_tau_infer(p, q, y, target_coverage=1.0, max_error=1e-12)
    with pytest.raises(ValueError, match="target_coverage"):
        calibrate_tau_infer(p, q, y, target_coverage=1.5)
    with pytest.raises(ValueError, match="candidates"):
        calibrate_tau_infer(p, q, y, candidates=[])
    with pytest.raises(ValueError, match=r"candidates\[0\]"):
        calibrate_tau_infer(p, q, y, candidates=[-1.0])
    rep = calibrate_tau_infer(p, q, y, target_coverage=0.5, candidates=[1e-6, 1e-3, 1e-2])
    assert rep.tau_infer == 1e-2 and len(rep.table) == 3


def test_calibrate_any_backend(xp) -> None:
    p, q, y = _calibration_data()
    ref = calibrate_tau_infer(p, q, y, target_coverage=0.9)
    got = calibrate_tau_infer(xp.asarray(p), xp.asarray(q), xp.asarray(y), target_coverage=0.9)
    assert got.tau_infer == ref.tau_infer
