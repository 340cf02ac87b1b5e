"""Class "trainer controls silently ignored": every control of ``SCMTrainer`` /
``TrainingConfig`` either acts or is refused with an error naming it.

* ``loss_weights``/``loss_curriculum`` reach an ``SCMTrainingLoss`` (per epoch; traced in
  the JAX step, no recompilation); unknown keys, a term named twice, negative ramps, or
  weights for a loss that takes no ``loss_weights=`` → ``ValueError`` at construction.
* one-shot iterators as ``train_loader``/``val_loader`` → ``TypeError``; an epoch without
  batches (train or configured validation) → ``ValueError`` naming the epoch; controls
  that act only through validation (early stopping, ``per_validation_metric``
  schedules, ``metric_reducers`` keys) are refused or warned about without it.
* ``fit(epochs=k)`` runs exactly ``k`` more epochs; ``fit()`` past ``max_epochs`` warns.
* ``use_amp`` (a bool) sets ``mixed_precision``; numpy bools are not numbers.
* semantic ``missing`` labels are left out of the ``SCMTrainingLoss`` fit term and of
  ``calibrate_tau_infer``.

Expected losses come from the formulas, evaluated with float64 numpy on the model's
outputs (SGD with ``lr=0`` keeps the model fixed across epochs).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from zpml_core.losses import LossConfig, SCMTrainingLoss
from zpml_core.training import (
    ArrayLoader,
    LinearRamp,
    LossWeightsCurriculum,
    SCMTrainer,
    TrainingConfig,
)

from ._trainers import data, implicit_np, model, outputs_np, params_np

autodiff = pytest.mark.autodiff
B = 16
FIT_ONLY = {"margin": 0.0, "sign": 0.0, "rejection": 0.0}


def trainer(backend: str, *, loss: Any = None, loader: Any = None, lr: float = 0.0,
            **cfg: Any) -> SCMTrainer:
    x, y = data(B)
    m, opt = model(backend, lr=lr)
    return SCMTrainer(model=m, optimizer=opt, loss_fn=SCMTrainingLoss() if loss is None else loss,
                      train_loader=[(x, y)] if loader is None else loader,
                      config=TrainingConfig(**cfg))


def base_fit(tr: SCMTrainer, x: np.ndarray, y: np.ndarray) -> float:
    P, Q = outputs_np(tr.model_outputs(x))
    return float(np.mean(implicit_np(P, Q, y.astype(np.float64))))


# ---------------------------------------------------------------------------------------
# loss weights and curriculum


@autodiff
@pytest.mark.parametrize("aliases", [False, True])
def test_loss_weights_reach_scm_training_loss(backend_name: str, aliases: bool) -> None:
    x, y = data(B)
    zeros = ({"lambda_margin": 0.0, "lambda_sign": 0.0, "lambda_rej": 0.0} if aliases
             else FIT_ONLY)
    for w in (1.0, 2.5):
        tr = trainer(backend_name, loss_weights={"fit": w, **zeros})
        expected = w * base_fit(tr, x, y)
        (log,) = tr.fit()
        assert log["loss"] == pytest.approx(expected, rel=2e-5)


@autodiff
def test_margin_weight_with_the_sampled_threshold(backend_name: str) -> None:
    # fit 0, margin 3: loss = 3·mean(relu(tau − |Q|)²) with the trainer's tau = 0.5
    x, _ = data(B)
    tr = trainer(backend_name, loss=SCMTrainingLoss(LossConfig(tau_train=0.5)),
                 loss_weights={"fit": 0.0, "margin": 3.0, "sign": 0.0, "rejection": 0.0},
                 tau_train_min=0.5, tau_train_max=0.5)
    _, Q = outputs_np(tr.model_outputs(x))
    expected = 3.0 * np.mean(np.maximum(0.5 - np.abs(Q), 0.0) ** 2)
    assert expected > 0
    (log,) = tr.fit()
    assert log["loss"] == pytest.approx(expected, rel=2e-5)


@autodiff
def test_curriculum_reaches_scm_training_loss_without_recompiling(backend_name: str) -> None:
    x, y = data(B)
    cur = LossWeightsCurriculum({"fit": LinearRamp(1.0, 3.0, 0, 2)})
    tr = trainer(backend_name, loss_weights=FIT_ONLY, loss_curriculum=cur, max_epochs=4)
    base = base_fit(tr, x, y)
    tr.fit(epochs=1)
    size = tr.engine._train_jit._cache_size() if backend_name == "jax" else None
    tr.fit()
    losses = [m["loss"] for m in tr.history]
    assert losses == pytest.approx([base, 2 * base, 3 * base, 3 * base], rel=2e-5)
    if size is not None:  # the weights are traced arguments: one trace for all epochs
        assert tr.engine._train_jit._cache_size() == size


@autodiff
def test_a_weight_changes_the_trajectory(backend_name: str) -> None:
    runs = []
    for w in (1.0, 2.0):
        tr = trainer(backend_name, lr=0.05, loss_weights={"fit": w}, max_epochs=2)
        tr.fit()
        runs.append(params_np(tr))
    assert any(not np.array_equal(a, b) for a, b in zip(*runs, strict=True))


@autodiff
def test_weight_keys_are_checked_at_construction(backend_name: str) -> None:
    ramp = LinearRamp(0.0, 1.0, 0, 1)
    bad = [
        ({"loss_weights": {"foo": 1.0}}, "'foo'"),
        ({"loss_curriculum": LossWeightsCurriculum({"bar": ramp})}, "'bar'"),
        ({"loss_weights": {"margin": 1.0, "lambda_margin": 2.0}}, "twice"),
        ({"loss_weights": {"sign": 1.0},
          "loss_curriculum": LossWeightsCurriculum({"lambda_sign": ramp})}, "twice"),
        ({"loss_curriculum": LossWeightsCurriculum({"margin": LinearRamp(1.0, -1.0)})},
         "end_value"),
    ]
    for cfg, match in bad:
        with pytest.raises(ValueError, match=match):
            trainer(backend_name, **cfg)

    def no_weights(outputs: Any, lifted: Any) -> Any:
        return (outputs[0] * 0.0).sum()

    for cfg in ({"loss_weights": {"a": 1.0}}, {"loss_curriculum": LossWeightsCurriculum({"a": ramp})}):
        with pytest.raises(ValueError, match="loss_weights="):
            trainer(backend_name, loss=no_weights, **cfg)

    def any_weights(outputs: Any, lifted: Any, *, loss_weights: Any) -> Any:
        return (outputs[0] * 0.0).sum() + loss_weights["anything"]

    (log,) = trainer(backend_name, loss=any_weights, loss_weights={"anything": 4.0}).fit()
    assert log["loss"] == 4.0


@autodiff
def test_loss_config_tau_train_outside_the_range_warns(backend_name: str) -> None:
    with pytest.warns(UserWarning, match="LossConfig.tau_train=0.01 is not used"):
        trainer(backend_name, loss=SCMTrainingLoss(LossConfig(tau_train=1e-2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        trainer(backend_name, loss=SCMTrainingLoss(LossConfig(tau_train=1e-4)),
                tau_train_min=5e-5, tau_train_max=2e-4)


# ---------------------------------------------------------------------------------------
# loaders and epochs


def _one_shot(x: np.ndarray, y: np.ndarray) -> list[Any]:
    def gen() -> Iterator[Any]:
        yield x, y

    return [gen(), iter([(x, y)]), map(lambda b: b, [(x, y)]), zip([x], [y], strict=True)]


@autodiff
def test_one_shot_iterators_are_refused(backend_name: str) -> None:
    x, y = data(B)
    for it in _one_shot(x, y):
        with pytest.raises(TypeError, match=r"train_loader is a one-shot iterator.*re-iterable"):
            trainer(backend_name, loader=it)
        with pytest.raises(TypeError, match="val_loader is a one-shot iterator"):
            TrainingConfig(val_loader=it)
    cfg = TrainingConfig()
    cfg.val_loader = iter([(x, y)])  # mutated after validation: the trainer checks again
    m, opt = model(backend_name)
    with pytest.raises(TypeError, match="val_loader"):
        SCMTrainer(model=m, optimizer=opt, loss_fn=SCMTrainingLoss(), train_loader=[(x, y)],
                   config=cfg)
    for ok in ([(x, y)], ((x, y),), ArrayLoader(x, y, batch_size=8)):
        tr = trainer(backend_name, loader=ok, max_epochs=2, val_loader=ok)
        assert len(tr.fit()) == 2 * len(list(ok)) and len(tr.val_history) == 2


class _FirstEpochOnly:
    """Re-iterable on paper, but yields batches in its first pass only."""

    def __init__(self, batch: Any) -> None:
        self.batch, self.passes = batch, 0

    def __iter__(self) -> Iterator[Any]:
        self.passes += 1
        if self.passes == 1:
            yield self.batch


@autodiff
def test_epochs_without_batches_raise(backend_name: str) -> None:
    x, y = data(B)
    for empty in ([], ArrayLoader(x[:0], y[:0])):
        tr = trainer(backend_name, loader=empty)
        with pytest.raises(ValueError, match="no batches in epoch 0"):
            tr.fit()
    tr = trainer(backend_name, loader=_FirstEpochOnly((x, y)), max_epochs=3)
    with pytest.raises(ValueError, match="no batches in epoch 1"):
        tr.fit()
    assert len(tr.history) == 1 and tr.current_epoch == 1


@autodiff
def test_fit_epochs_runs_exactly_k_more(backend_name: str) -> None:
    tr = trainer(backend_name, max_epochs=1, loader=[data(B)] * 2)
    assert len(tr.fit()) == 2 and tr.current_epoch == 1
    assert len(tr.fit(epochs=2)) == 4 and tr.current_epoch == 3  # past max_epochs
    with pytest.warns(UserWarning, match="ran no epoch"):
        assert tr.fit() == []
    assert len(tr.fit(epochs=np.int64(1))) == 2 and tr.current_epoch == 4
    tr = trainer(backend_name, max_epochs=5)
    tr.fit(epochs=2)
    assert tr.current_epoch == 2
    assert len(tr.fit()) == 3 and tr.current_epoch == 5  # fit() runs up to max_epochs
    for bad, exc in ((0, ValueError), (-1, ValueError), (True, TypeError), (np.True_, TypeError),
                     (1.0, TypeError), ("1", TypeError)):
        with pytest.raises(exc, match="epochs"):
            tr.fit(epochs=bad)


@autodiff
def test_validation_only_controls_need_a_val_loader(backend_name: str) -> None:
    x, y = data(B)
    with pytest.raises(ValueError, match="val_loader yielded no batches after epoch 0"):
        trainer(backend_name, val_loader=[]).fit()
    for cfg in ({"coverage_threshold": 0.5}, {"coverage_patience": 1}):
        with pytest.warns(UserWarning, match=r"early stopping.*val_loader is None"):
            trainer(backend_name, **cfg)
    tr = trainer(backend_name, val_loader=[(x, y)])
    tr.metric_reducers["val_loss"] = min  # the prefixed name is not a reduced metric
    with pytest.raises(ValueError, match="metric_reducers has the key 'val_loss'"):
        tr.fit()
    if backend_name == "torch":
        import torch

        m, opt = model(backend_name)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
        with pytest.raises(ValueError, match=r"per_validation_metric.*never step"):
            SCMTrainer(model=m, optimizer=opt, loss_fn=SCMTrainingLoss(), train_loader=[(x, y)],
                       config=TrainingConfig(scheduler_cadence="per_validation_metric"),
                       scheduler=sched)


# ---------------------------------------------------------------------------------------
# mixed precision and numpy bools


def test_use_amp_sets_mixed_precision() -> None:
    for use_amp, mp, expected in ((True, False, True), (False, True, False), (None, True, True),
                                  (None, False, False)):
        c = TrainingConfig(use_amp=use_amp, mixed_precision=mp)
        assert c.mixed_precision is expected and c.amp_enabled is expected
        r = dataclasses.replace(c)
        assert r.mixed_precision is expected and r.amp_enabled is expected


@autodiff
def test_use_amp_turns_amp_on_in_the_engine(backend_name: str) -> None:
    x, _ = data(B)
    tr = trainer(backend_name, use_amp=True)
    if backend_name == "torch":
        import torch

        assert tr.model_outputs(x)[0].dtype == torch.bfloat16  # autocast (CPU: bfloat16)
    else:
        assert tr.engine.amp_dtype is not None
    assert tr.checkpoint_metadata()["mixed_precision"] is True


NUMERIC_FIELDS = ["learning_rate", "max_epochs", "gradient_accumulation_steps", "tau_train_min",
                  "tau_train_max", "tau_infer", "coverage_threshold", "coverage_patience", "seed"]


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_numpy_bools_are_not_numbers(field: str) -> None:
    for b in (True, np.True_, np.bool_(False)):
        with pytest.raises(TypeError, match=field):
            TrainingConfig(**{field: b})
    good = {"learning_rate": np.float64(1e-3), "max_epochs": np.int64(2),
            "gradient_accumulation_steps": np.int32(1), "tau_train_min": np.float64(1e-4),
            "tau_train_max": np.float32(1e-3), "tau_infer": np.float64(1e-6),
            "coverage_threshold": np.float64(0.5), "coverage_patience": np.int64(2),
            "seed": np.uint8(3)}
    value = getattr(TrainingConfig(**{field: good[field]}), field)
    assert value == good[field] and type(value) in (int, float)


def test_numpy_bools_elsewhere() -> None:
    x, y = data(4)
    for kw in ({"loss_weights": {"a": np.True_}},):
        with pytest.raises(TypeError, match="loss_weights"):
            TrainingConfig(**kw)
    for args, kw, name in (((np.True_, 1.0), {}, "start_value"), ((0.0, np.False_), {}, "end_value"),
                           ((0.0, 1.0), {"start_epoch": np.True_}, "start_epoch"),
                           ((0.0, 1.0), {"end_epoch": np.True_}, "end_epoch")):
        with pytest.raises(TypeError, match=name):
            LinearRamp(*args, **kw)
    assert LinearRamp(np.float64(0.0), np.int64(2), np.int64(0), np.int64(2)).value(1) == 1.0
    with pytest.raises(TypeError, match="batch_size"):
        ArrayLoader(x, y, batch_size=np.True_)
    with pytest.raises(TypeError, match="seed"):
        ArrayLoader(x, y, seed=np.True_)
    assert len(ArrayLoader(x, y, batch_size=np.int64(2), seed=np.int64(1))) == 2


# ---------------------------------------------------------------------------------------
# semantic "missing" labels


@autodiff
def test_missing_labels_are_left_out_of_the_fit_term(backend_name: str) -> None:
    x, y = data(B)
    labels = ["missing"] * 4 + ["finite"] * (B - 4)
    tr = trainer(backend_name, loader=[(x, y, labels)], loss_weights={"fit": 1.0, **FIT_ONLY})
    P, Q = outputs_np(tr.model_outputs(x))
    per = implicit_np(P, Q, y.astype(np.float64))
    expected = per[4:].sum() / B  # population mean; missing elements contribute 0
    (log,) = tr.fit()
    assert log["loss"] == pytest.approx(expected, rel=2e-5)
    # what the label "missing" lifts to, (0, 1), would have added P²/(Q² + gamma)
    assert abs(expected - per.mean()) > 1e-3 * expected


@autodiff
def test_missing_labels_are_left_out_of_calibration(backend_name: str) -> None:
    x, y = data(64)
    labels = ["missing"] * 10 + ["finite"] * 54
    tr = trainer(backend_name)
    with_missing = tr.calibrate_tau_infer([(x, y, labels)], target_coverage=0.5)
    without = tr.calibrate_tau_infer([(x[10:], y[10:])], target_coverage=0.5)
    def rows(rep: Any) -> list[list[float]]:
        return [[v for k, v in sorted(r.items()) if k != "false_finite_frac"] for r in rep.table]

    assert rows(with_missing) == rows(without)
    assert all(np.isnan(r["false_finite_frac"]) for r in with_missing.table)  # no bottom targets
