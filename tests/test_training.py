"""SCMTrainer on every autodiff backend (torch, jax): one loop, backend-supplied steps.

Runs per backend through the ``backend_name`` fixture; numpy/strict skip by the
``autodiff`` marker (no autodiff, no training).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zpml_core.autodiff.policies import GradientPolicy
from zpml_core.losses import LossConfig, SCMTrainingLoss, implicit_loss
from zpml_core.training import (
    ArrayLoader,
    CheckpointError,
    LinearRamp,
    LossWeightsCurriculum,
    SCMTrainer,
    TrainingConfig,
    read_checkpoint_metadata,
)
from zpml_core.utils.logging import JsonlLogger, read_jsonl

pytestmark = pytest.mark.autodiff

TRAIN_KEYS = {"loss", "coverage", "tau_train", "bottom_frac", "denom_abs_min", "denom_abs_mean",
              "denom_abs_available"}


def data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    y = (1.0 / (x[:, 0] - 0.5)).astype(np.float32)
    return x, y


def fit_loss(outputs: Any, lifted: Any, tau: Any = None) -> Any:
    P, Q = outputs
    Y_n, Y_d = lifted
    return implicit_loss(P, Q, Y_n, Y_d)


def make_model(backend: str, seed: int = 0, lr: float = 1e-2, opt: str = "adam") -> tuple[Any, Any]:
    if backend == "torch":
        import torch
        from zpml_backends.torch_training import RationalHead

        torch.manual_seed(seed)
        model = RationalHead(1)
        cls = torch.optim.Adam if opt == "adam" else torch.optim.SGD
        return model, cls(model.parameters(), lr=lr)
    import optax
    from zpml_backends.jax_training import rational_head_apply, rational_head_init

    o = optax.adam(lr) if opt == "adam" else optax.sgd(lr)
    return (rational_head_apply, rational_head_init(seed, 1)), o


def params_np(trainer: SCMTrainer) -> list[np.ndarray]:
    if trainer.backend == "torch":
        return [p.detach().cpu().numpy().copy() for p in trainer.model.parameters()]
    import jax

    return [np.asarray(a) for a in jax.tree_util.tree_leaves(trainer.params)]


def trainer_for(backend: str, *, loader: Any = None, loss: Any = fit_loss, seed_model: int = 0,
                lr: float = 1e-2, opt: str = "adam", **cfg: Any) -> SCMTrainer:
    x, y = data()
    model, optimizer = make_model(backend, seed_model, lr, opt)
    cfg.setdefault("max_epochs", 2)
    loader = ArrayLoader(x, y, batch_size=16, shuffle=True) if loader is None else loader
    return SCMTrainer(model=model, optimizer=optimizer, loss_fn=loss, train_loader=loader,
                      config=TrainingConfig(**cfg))


# ---------------------------------------------------------------------------------------


def test_fit_logs_schema_records(backend_name: str, tmp_path: Path) -> None:
    x, y = data(32, seed=1)
    path = tmp_path / "runs" / "m.jsonl"
    tr = trainer_for(backend_name, max_epochs=3, seed=0, tau_train_min=5e-5, tau_train_max=2e-4,
                     val_loader=ArrayLoader(x, y, batch_size=10), log_hook=JsonlLogger(path))
    logs = tr.fit()
    assert len(logs) == 12 and set(logs[0]) == TRAIN_KEYS
    assert all(math.isfinite(m["loss"]) for m in logs)
    assert all(5e-5 <= m["tau_train"] < 2e-4 for m in logs)
    assert [m["tau_train"] for m in logs] == tr.last_thresholds
    recs = read_jsonl(path, validate=True)
    assert [r["phase"] for r in recs] == (["train"] * 4 + ["eval"]) * 3
    train = [r for r in recs if r["phase"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 13))
    assert [r["epoch"] for r in train] == [0] * 4 + [1] * 4 + [2] * 4
    ev = recs[4]
    assert ev["step"] == 4 and ev["epoch"] == 0 and ev["metrics"]["epoch"] == 0.0
    for key in ("val_loss", "val_coverage", "val_tau_eval", "val_bottom_frac", "val_denom_abs_min",
                "val_denom_abs_mean", "val_denom_abs_available", "val_strict_coverage",
                "val_strict_bottom_frac", "val_gap_frac", "val_rmse_accepted"):
        assert key in ev["metrics"]  # (metric_log v2: metrics only under "metrics")
    assert ev["metrics"]["val_tau_eval"] == pytest.approx(1.25e-4)
    assert tr.current_epoch == 3
    # (was: a silent []; fit() past max_epochs now says that it ran nothing)
    with pytest.warns(UserWarning, match="ran no epoch"):
        assert tr.fit() == []


def test_same_seed_bit_identical_jsonl(backend_name: str, tmp_path: Path) -> None:
    x, y = data(32, seed=1)
    texts = []
    for run in range(2):
        path = tmp_path / f"run{run}.jsonl"
        tr = trainer_for(backend_name, max_epochs=2, seed=7, tau_train_min=5e-5,
                         tau_train_max=2e-4, val_loader=ArrayLoader(x, y, batch_size=10),
                         log_hook=JsonlLogger(path))
        tr.fit()
        tr.config.log_hook.close()  # type: ignore[union-attr]
        texts.append(path.read_bytes())
    assert texts[0] == texts[1] and len(texts[0]) > 0
    other = trainer_for(backend_name, max_epochs=2, seed=8, tau_train_min=5e-5, tau_train_max=2e-4)
    assert [m["tau_train"] for m in other.fit()] != [r["metrics"]["tau_train"] for r in
                                                     map(__import__("json").loads,
                                                         texts[0].decode().splitlines())
                                                     if r["phase"] == "train"]


def test_resume_equals_uninterrupted(backend_name: str, tmp_path: Path) -> None:
    x, y = data(32, seed=1)
    common = dict(max_epochs=4, seed=3, tau_train_min=5e-5, tau_train_max=2e-4,
                  gradient_accumulation_steps=3)
    full_log = tmp_path / "full.jsonl"
    full = trainer_for(backend_name, val_loader=ArrayLoader(x, y, batch_size=10),
                       log_hook=JsonlLogger(full_log), **common)
    full.fit()

    part_log = tmp_path / "part.jsonl"
    first = trainer_for(backend_name, val_loader=ArrayLoader(x, y, batch_size=10),
                        log_hook=JsonlLogger(part_log), **common)
    first.fit(epochs=2)
    ckpt = tmp_path / "ckpt" / "c.bin"
    first.save_checkpoint(ckpt)
    # a fresh trainer: other initial weights, fresh optimizer, fresh loader and RNGs
    second = trainer_for(backend_name, seed_model=99, val_loader=ArrayLoader(x, y, batch_size=10),
                         log_hook=JsonlLogger(part_log), **common)
    meta = second.load_checkpoint(ckpt)
    assert meta["epoch"] == 2 and second.current_epoch == 2 and second.global_step == 8
    second.fit()
    for a, b in zip(params_np(full), params_np(second), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r for r in read_jsonl(part_log)] == [r for r in read_jsonl(full_log)]


def test_checkpoint_metadata(backend_name: str, tmp_path: Path) -> None:
    tr = trainer_for(backend_name, max_epochs=1, tau_train_min=5e-5, tau_train_max=2e-4,
                     tau_infer=1e-6, gradient_policy=GradientPolicy.PROJECT)
    tr.fit()
    path = tmp_path / "c.ckpt"
    tr.save_checkpoint(path, tau_infer=3e-6, metadata={"note": "x"})
    meta = read_checkpoint_metadata(path)
    assert meta["backend"] == backend_name
    assert meta["tau_train_min"] == 5e-5 and meta["tau_train_max"] == 2e-4
    assert meta["tau_infer"] == 3e-6 and meta["gradient_policy"] == "project"
    assert set(meta["versions"]) >= {"zpml_core", "python", "numpy", backend_name}
    assert meta["config_hash"].startswith("cfg:sha256:") and meta["user"] == {"note": "x"}
    # schema 3: sealed files (sha256 in the zip comment), JAX pytree key paths
    assert meta["schema_version"] == 3 and meta["global_step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ckpt"]  # no temp file left


def test_config_hash_mismatch_warns(backend_name: str, tmp_path: Path) -> None:
    tr = trainer_for(backend_name, max_epochs=1)
    tr.fit()
    tr.save_checkpoint(tmp_path / "c")
    with pytest.warns(UserWarning, match="early stopping"):  # (no val_loader)
        other = trainer_for(backend_name, max_epochs=1, coverage_threshold=0.5)
    with pytest.warns(RuntimeWarning, match="config_hash"):
        other.load_checkpoint(tmp_path / "c")
    with pytest.warns(UserWarning, match="ran no epoch"):  # (was: a silent [])
        assert other.fit() == []  # resumed at epoch 1 of max 1


def test_load_rejects_other_backend_and_schema(backend_name: str, tmp_path: Path) -> None:
    # (was: _restore raised ValueError after the engine had already loaded the state;
    # now the metadata is checked first and CheckpointError names the file)
    from zpml_core.training.checkpoint import write_checkpoint

    tr = trainer_for(backend_name, max_epochs=1)
    for field, value, match in (("schema_version", 4, "schema_version 4"),
                                ("backend", "other", "'other' backend")):
        meta = {**tr.checkpoint_metadata(), field: value}
        path = str(tmp_path / f"c_{field}")
        write_checkpoint(path, lambda s, m=meta: tr.engine.save(s, m))
        with pytest.raises(CheckpointError, match=match) as err:
            tr.load_checkpoint(path)
        assert err.value.path == path and isinstance(err.value, ValueError)


def test_unsafe_checkpoint_is_refused(backend_name: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # sealed with a valid hash, so only the safe loader (weights_only / allow_pickle=False)
    # stands between the pickled object and its execution (was: the raw UnpicklingError /
    # ValueError; now CheckpointError naming the file, with the loader error as cause)
    from zpml_core.training.checkpoint import write_checkpoint

    tr = trainer_for(backend_name, max_epochs=1)
    path = str(tmp_path / "evil")
    if backend_name == "torch":
        import pickle

        import torch

        write_checkpoint(path, lambda s: torch.save(
            {"metadata_json": "{}", "model": {}, "payload": _Evil()}, s))
        with pytest.raises(CheckpointError, match="weights_only") as err:
            tr.load_checkpoint(path)
        assert isinstance(err.value.__cause__, pickle.UnpicklingError)
    else:
        write_checkpoint(path, lambda s: np.savez(s, __meta__=np.array([{"a": 1}], dtype=object)))
        with pytest.raises(CheckpointError, match="allow_pickle") as err:
            tr.load_checkpoint(path)
        assert "pickle" in str(err.value.__cause__)
    assert "pwned" not in capsys.readouterr().out


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("pwned",))


def test_nan_loss_stops_with_step_and_keeps_last_good_state(backend_name: str) -> None:
    x, y = data()
    loader = ArrayLoader(x, y, batch_size=16)

    def nan_at(bad: int) -> Any:
        def loss_fn(outputs: Any, lifted: Any, global_step: Any = None) -> Any:
            loss = fit_loss(outputs, lifted)
            if backend_name == "torch":
                return loss * (float("nan") if global_step == bad else 1.0)
            import jax.numpy as jnp

            return jnp.where(global_step == bad, jnp.nan, loss)

        return loss_fn

    tr = trainer_for(backend_name, loader=loader, loss=nan_at(5), max_epochs=3)
    with pytest.raises(FloatingPointError, match=r"step 5 \(epoch 1, batch 0"):
        tr.fit()
    assert tr.global_step == 4
    ref = trainer_for(backend_name, loader=loader, loss=nan_at(-1), max_epochs=1)
    ref.fit()  # exactly the 4 good steps, same loss graph
    for a, b in zip(params_np(tr), params_np(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gradient_accumulation_averages_over_actual_group(backend_name: str) -> None:
    x, y = data(48)
    # 3 batches of 16 with accumulation 2: update 1 averages batches 0-1, update 2 (the
    # partial group flushed at epoch end) uses batch 2 alone
    acc = trainer_for(backend_name, loader=ArrayLoader(x, y, batch_size=16), opt="sgd", lr=0.1,
                      max_epochs=1, gradient_accumulation_steps=2)
    acc.fit()
    big = trainer_for(backend_name, loader=[(x[:32], y[:32]), (x[32:], y[32:])], opt="sgd",
                      lr=0.1, max_epochs=1)
    big.fit()
    for a, b in zip(params_np(acc), params_np(big), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_early_stop_on_coverage(backend_name: str) -> None:
    x, y = data(32)

    if backend_name == "torch":
        import torch

        class Zero(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lin = torch.nn.Linear(1, 1)

            def forward(self, v: Any) -> Any:
                p = self.lin(v)[:, 0]
                return p, p * 0.0

        model: Any = Zero()
        opt: Any = torch.optim.SGD(model.parameters(), lr=0.1)
    else:
        import jax.numpy as jnp
        import optax

        model = (lambda prm, v: (v[:, 0] * prm["w"], v[:, 0] * 0.0), {"w": jnp.ones(())})
        opt = optax.sgd(0.1)
    tr = SCMTrainer(model=model, optimizer=opt, loss_fn=fit_loss,
                    train_loader=ArrayLoader(x, y, batch_size=16),
                    config=TrainingConfig(max_epochs=10, coverage_threshold=0.9,
                                          coverage_patience=2,
                                          val_loader=ArrayLoader(x, y, batch_size=16)))
    logs = tr.fit()
    assert len(tr.val_history) == 2 and len(logs) == 4
    assert all(v["val_coverage"] == 0.0 for v in tr.val_history)
    assert all(m["coverage"] == 0.0 and m["bottom_frac"] == 1.0 for m in logs)
    assert tr.val_history[-1]["val_strict_coverage"] == 0.0


def test_validation_uses_strict_masks(backend_name: str) -> None:
    # a frozen model P = 1, Q = x: the strict metrics are known in closed form
    xs = np.array([[-1.0], [-1e-7], [0.0], [5e-7], [2e-6], [0.5], [1.0], [2.0]], dtype=np.float32)
    ys = np.array([-1.0, -1e7, np.inf, 2e6, 5e5, 2.0, 1.0, 0.75], dtype=np.float32)
    if backend_name == "torch":
        import torch

        class Frozen(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.k = torch.nn.Parameter(torch.ones(()))

            def forward(self, v: Any) -> Any:
                return self.k * torch.ones_like(v[:, 0]), v[:, 0]

        model: Any = Frozen()
        opt: Any = torch.optim.SGD(model.parameters(), lr=0.0)
    else:
        import jax.numpy as jnp
        import optax

        model = (lambda prm, v: (prm["k"] * jnp.ones_like(v[:, 0]), v[:, 0]), {"k": jnp.ones(())})
        opt = optax.sgd(0.0)
    tr = SCMTrainer(model=model, optimizer=opt, loss_fn=fit_loss,
                    train_loader=[(xs, ys)],
                    config=TrainingConfig(tau_infer=1e-6, tau_train_min=1e-6, tau_train_max=1e-6))
    v = tr.validate([(xs[:4], ys[:4]), (xs[4:], ys[4:])])
    assert v is not None
    # strict bottom at |Q| < 1e-6: -1e-7, 0, 5e-7 → 3 of 8
    assert v["strict_bottom_frac"] == pytest.approx(3 / 8)
    assert v["strict_coverage"] == pytest.approx(5 / 8)
    assert v["accepted_frac"] == pytest.approx(5 / 7)  # 7 finite targets
    assert v["rmse_accepted"] == pytest.approx(math.sqrt(0.0625 / 5), rel=1e-4)  # 1/2 vs 0.75
    assert v["false_finite_frac"] == 0.0
    assert v["coverage"] == pytest.approx(5 / 8)  # tau_eval = 1e-6
    assert v["denom_abs_min"] == pytest.approx((0.0 * 4 + 2e-6 * 4) / 8)  # weighted batch minima
    assert tr.validate() is None  # no val_loader
    assert tr.validate([]) is None
    tr.metric_reducers["denom_abs_min"] = lambda items: min(val for val, _ in items)
    assert tr.validate([(xs[:4], ys[:4]), (xs[4:], ys[4:])])["denom_abs_min"] == 0.0  # type: ignore[index]


def test_loss_keywords_and_curriculum(backend_name: str) -> None:
    # the logged loss is the curriculum weight: passes through traced (jax) or eagerly
    seen: dict[str, Any] = {}

    def weighted(outputs: Any, lifted: Any, *, loss_weights: Any, epoch: Any, tau: Any,
                 inputs: Any, targets: Any, global_step: Any) -> Any:
        seen["types"] = type(tau), type(epoch)
        assert inputs.shape[0] == targets.shape[0]
        return fit_loss(outputs, lifted) * 0.0 + loss_weights["margin"] + loss_weights["sign"]

    cur = LossWeightsCurriculum({"margin": LinearRamp(0.0, 1.0, 0, 2)})
    tr = trainer_for(backend_name, loss=weighted, max_epochs=3, loss_weights={"sign": 10.0},
                     loss_curriculum=cur)
    logs = tr.fit()
    assert [round(m["loss"], 5) for m in logs[::4]] == [10.0, 10.5, 11.0]


def test_scm_training_loss_passes_straight(backend_name: str) -> None:
    loss_fn = SCMTrainingLoss(LossConfig(tau_train=1e-4, target_coverage=0.95, lambda_margin=0.1,
                                         lambda_sign=1.0, lambda_rej=0.01))
    x, y = data(32)
    tr = trainer_for(backend_name, loss=loss_fn, max_epochs=2, seed=0,
                     val_loader=ArrayLoader(x, y, batch_size=16))
    logs = tr.fit()
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert tr.val_history and math.isfinite(tr.val_history[-1]["val_loss"])


def test_gradient_policy_is_wired(backend_name: str) -> None:
    # a loss through an SCM op: REJECT zeroes every gradient flowing through it
    from zpml_core import scm

    def through_div(outputs: Any, lifted: Any) -> Any:
        P, Q = outputs
        v, _ = scm.div(P, Q)
        Y_n, _ = lifted
        import array_api_compat

        xp = array_api_compat.array_namespace(v)
        return xp.mean((v - Y_n) ** 2)

    before = params_np(trainer_for(backend_name, loss=through_div, max_epochs=1))
    rej = trainer_for(backend_name, loss=through_div, max_epochs=1,
                      gradient_policy=GradientPolicy.REJECT)
    rej.fit()
    for a, b in zip(before, params_np(rej), strict=True):
        np.testing.assert_array_equal(a, b)
    proj = trainer_for(backend_name, loss=through_div, max_epochs=1,
                       gradient_policy=GradientPolicy.PROJECT)
    proj.fit()
    assert any(not np.array_equal(a, b) for a, b in zip(before, params_np(proj), strict=True))


def test_mixed_precision_runs(backend_name: str) -> None:
    tr = trainer_for(backend_name, max_epochs=2, mixed_precision=True, amp_dtype="float16")
    logs = tr.fit()
    assert all(math.isfinite(m["loss"]) for m in logs)
    assert all(p.dtype == np.float32 for p in params_np(tr))  # master weights stay f32


def test_semantic_batches(backend_name: str) -> None:
    x, y = data(16)
    labels = ["finite"] * 15 + ["bottom"]
    tr = trainer_for(backend_name, loader=[(x, y, labels)], max_epochs=1)
    assert len(tr.fit()) == 1
    bad = trainer_for(backend_name, loader=[(x, y, ["missing"] * 16)], max_epochs=1)
    with pytest.raises(ValueError, match="missing"):
        bad.fit()


def test_bad_batches_and_models(backend_name: str) -> None:
    x, _ = data(16)
    with pytest.raises(TypeError, match="batches must be"):
        trainer_for(backend_name, loader=[(x,)], max_epochs=1).fit()
    with pytest.raises(TypeError, match="collides"):
        trainer_for(backend_name, loss=lambda outputs, targets: 0.0)
    with pytest.raises(TypeError, match="no backend"):
        SCMTrainer(model=object(), optimizer=object(), loss_fn=fit_loss, train_loader=[])
    model, opt = make_model(backend_name)
    with pytest.raises(TypeError, match="config"):
        SCMTrainer(model=model, optimizer=opt, loss_fn=fit_loss, train_loader=[], config={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs"):
        trainer_for(backend_name).fit(epochs=0)


def test_predict_and_calibrate(backend_name: str) -> None:
    x, y = data(64)
    tr = trainer_for(backend_name, max_epochs=2, tau_train_min=5e-5, tau_train_max=2e-4)
    tr.fit()
    P, Q = tr.model_outputs(x)
    assert tuple(P.shape) == (64,) and tuple(Q.shape) == (64,)
    # (was capped at tau_train_max: candidates now span the observed |Q|; tau_train= caps)
    rep = tr.calibrate_tau_infer([(x, y)], target_coverage=0.5)
    q_abs = np.abs(np.asarray(tr._np(Q)))
    assert rep.tau_infer > 2e-4 and rep.tau_infer <= q_abs.max() and tr.tau_infer == rep.tau_infer
    assert tr.checkpoint_metadata()["tau_infer"] == rep.tau_infer
    _, bottom, gap = tr.predict(x)  # above tau_train_max: no gap band
    assert not np.asarray(tr._np(gap)).any()
    np.testing.assert_array_equal(np.asarray(tr._np(bottom)), q_abs < rep.tau_infer)
    capped = tr.calibrate_tau_infer([(x, y)], target_coverage=0.5, tau_train=2e-4)
    assert capped.tau_infer <= 2e-4 and tr.tau_infer == capped.tau_infer


def test_jax_step_compiles_once_for_many_taus(backend_name: str) -> None:
    if backend_name != "jax":
        pytest.skip("jit cache check is JAX-specific")
    tr = trainer_for(backend_name, loader=[data(16)] * 6, max_epochs=3, tau_train_min=5e-5,
                     tau_train_max=2e-4, gradient_accumulation_steps=2)
    tr.fit(epochs=1)
    size = tr.engine._train_jit._cache_size()  # update=False / update=True (+ committed args)
    tr.fit()
    assert len(set(tr.last_thresholds)) == 18
    assert tr.engine._train_jit._cache_size() == size <= 3  # 12 new taus, no new trace


def test_learning_rate_metadata_warning(backend_name: str) -> None:
    # (was torch only: an optax optimizer hides its rate, so the value is unused there too)
    with pytest.warns(DeprecationWarning, match="metadata only"):
        trainer_for(backend_name, learning_rate=5e-3)


def test_torch_scheduler_cadence(backend_name: str) -> None:
    if backend_name != "torch":
        pytest.skip("schedulers are torch objects; optax puts schedules in the optimizer")
    import torch

    x, y = data()
    model, opt = make_model("torch", lr=1.0, opt="sgd")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    tr = SCMTrainer(model=model, optimizer=opt, loss_fn=fit_loss,
                    train_loader=ArrayLoader(x, y, batch_size=16),
                    config=TrainingConfig(max_epochs=3, scheduler_cadence="per_epoch"),
                    scheduler=sched)
    tr.fit()
    assert opt.param_groups[0]["lr"] == 0.125


def test_config_is_shared_not_copied(backend_name: str) -> None:
    cfg = TrainingConfig(max_epochs=1)
    model, opt = make_model(backend_name)
    tr = SCMTrainer(model=model, optimizer=opt, loss_fn=fit_loss, train_loader=[data(8)],
                    config=cfg)
    assert tr.config is cfg
    assert dataclasses.replace(cfg, max_epochs=2).max_epochs == 2


def test_jax_scm_loss_with_sampled_tau_compiles_once(backend_name: str) -> None:
    if backend_name != "jax":
        pytest.skip("jit cache check is JAX-specific")
    import warnings

    tr = trainer_for(backend_name, loss=SCMTrainingLoss(), loader=[data(16)] * 3, max_epochs=3,
                     tau_train_min=5e-5, tau_train_max=2e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback to a static tau
        tr.fit(epochs=1)
        size = tr.engine._train_jit._cache_size()
        tr.fit()
    assert not tr.engine._tau_static
    assert len(set(tr.last_thresholds)) == 9
    assert tr.engine._train_jit._cache_size() == size


def test_jax_static_tau_fallback_for_float_only_losses(backend_name: str) -> None:
    # a loss that insists on a Python-float tau still trains (recompiling per tau), with
    # a warning that says why
    if backend_name != "jax":
        pytest.skip("the traced/static tau distinction is JAX-specific")

    def float_tau(outputs: Any, lifted: Any, tau: Any) -> Any:
        return fit_loss(outputs, lifted) * (1.0 + float(tau))

    tr = trainer_for(backend_name, loss=float_tau, loader=[data(16)] * 2, max_epochs=1,
                     tau_train_min=5e-5, tau_train_max=2e-4)
    with pytest.warns(UserWarning, match="recompiles"):
        logs = tr.fit()
    assert tr.engine._tau_static and len(logs) == 2
