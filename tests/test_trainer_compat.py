"""``SCMTrainer`` as a zeroproofml 0.6.1 user reaches for it: ``.optimizer``,
``.scheduler``, ``.device``, ``.scaler``, ``train_step(batch)``, ``predict(x)`` (strict
decoding at the calibrated ``tau_infer``), ``load_trusted_checkpoint``, and loading the
checkpoints zeroproofml writes — without unsafe pickle.

The zeroproofml files in ``tests/data/`` were written by zeroproofml 0.6.1 itself
(``tests/data/make_zeroproofml_checkpoints.py``); the parameters they hold were read back
in that interpreter into ``zeroproofml-0.6.1-expected.json`` (the expectation here).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zpml_core.inference import InferenceResult
from zpml_core.losses import implicit_loss
from zpml_core.training import ArrayLoader, CheckpointError, SCMTrainer, TrainingConfig

DATA = Path(__file__).resolve().parent / "data"
ZP_FULL = DATA / "zeroproofml-0.6.1-adam.pt"
ZP_OLD = DATA / "zeroproofml-0.6.1-model-only.pt"
ZP_PICKLED = DATA / "zeroproofml-0.6.1-pickled.pt"
EXPECTED = json.loads((DATA / "zeroproofml-0.6.1-expected.json").read_text())
TRAIN_KEYS = {"loss", "coverage", "tau_train", "bottom_frac", "denom_abs_min", "denom_abs_mean",
              "denom_abs_available"}


def fit_loss(outputs: Any, lifted: Any) -> Any:
    return implicit_loss(outputs[0], outputs[1], lifted[0], lifted[1])


def data(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    return x, (1.0 / (x[:, 0] - 0.5)).astype(np.float32)


def make(backend: str, *, scheduler: bool = False, **cfg: Any) -> SCMTrainer:
    x, y = data()
    sched = None
    if backend == "torch":
        import torch
        from zpml_backends.torch_training import RationalHead

        torch.manual_seed(0)
        model: Any = RationalHead(1)
        opt: Any = torch.optim.Adam(model.parameters(), lr=1e-2)
        if scheduler:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    else:
        import optax
        from zpml_backends.jax_training import rational_head_apply, rational_head_init

        model, opt = (rational_head_apply, rational_head_init(0, 1)), optax.adam(1e-2)
    cfg.setdefault("max_epochs", 1)
    cfg.setdefault("seed", 3)
    return SCMTrainer(model, opt, fit_loss, ArrayLoader(x, y, batch_size=16), scheduler=sched,
                      config=TrainingConfig(**cfg))


def params(tr: SCMTrainer) -> list[np.ndarray]:
    if tr.backend == "torch":
        return [p.detach().numpy().copy() for p in tr.model.parameters()]
    import jax

    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tr.params)]


@pytest.mark.autodiff
def test_members(backend_name: str) -> None:
    tr = make(backend_name, scheduler=backend_name == "torch")
    assert tr.optimizer is tr.engine.optimizer
    assert tr.scaler is None  # no loss scaling on CPU (zeroproofml: a disabled GradScaler)
    if backend_name == "torch":
        import torch

        assert isinstance(tr.optimizer, torch.optim.Adam)
        assert isinstance(tr.scheduler, torch.optim.lr_scheduler.StepLR)
        assert tr.device == torch.device("cpu")
    else:
        import jax

        assert tr.scheduler is None
        assert tr.device == jax.devices()[0]


@pytest.mark.autodiff
def test_train_step_is_one_fit_step(backend_name: str) -> None:
    """``train_step(batch)`` = one step of ``fit`` on a one-batch loader: same metrics,
    same parameters bit for bit, one step counted, parameters updated."""
    x, y = data()
    a, b = make(backend_name), make(backend_name)
    before = params(b)
    logs = a.fit()
    m = b.train_step((x, y))
    assert set(m) == TRAIN_KEYS and math.isfinite(m["loss"])
    assert m == logs[0] and b.history == [m]
    assert b.global_step == 1 and b.current_epoch == 0
    for pa, pb in zip(params(a), params(b), strict=True):
        np.testing.assert_array_equal(pa, pb)
    assert any(not np.array_equal(p, q) for p, q in zip(params(b), before, strict=True))
    b.train_step((x, y))
    assert b.global_step == 2 and len(b.history) == 2


@pytest.mark.autodiff
def test_predict_decodes_at_the_calibrated_tau(backend_name: str, tmp_path: Path) -> None:
    x, y = data(32)
    tr = make(backend_name, tau_train_min=1e-4, tau_train_max=1e-3)
    with pytest.raises(RuntimeError, match="calibrate_tau_infer"):
        tr.predict(x)
    P, Q = (_np(a) for a in tr.model_outputs(x))
    tau = float(np.sort(np.abs(Q))[8]) * (1 + 1e-6)  # 9 of 32 below it (|Q| distinct)
    res = tr.predict(x, tau_infer=tau)
    assert isinstance(res, InferenceResult)
    below = np.abs(Q) < tau
    assert _np(res.bottom_mask).tolist() == below.tolist() and below.sum() == 9
    d = _np(res.decoded)
    assert np.isnan(d[below]).all()
    np.testing.assert_array_equal(d[~below], (P / Q)[~below])
    rep = tr.calibrate_tau_infer([(x, y)], target_coverage=0.5)
    got = tr.predict(x)
    np.testing.assert_array_equal(_np(got.bottom_mask), np.abs(Q) < rep.tau_infer)
    path = tmp_path / "c"
    tr.save_checkpoint(path)
    fresh = make(backend_name, tau_train_min=1e-4, tau_train_max=1e-3)
    fresh.load_checkpoint(path)
    assert fresh.tau_infer == rep.tau_infer
    np.testing.assert_array_equal(_np(fresh.predict(x).bottom_mask), _np(got.bottom_mask))
    with pytest.raises(ValueError, match="tau_infer"):
        tr.predict(x, tau_infer=0.0)


def _np(a: Any) -> np.ndarray:
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


@pytest.mark.autodiff
def test_trusted_load_of_own_checkpoint_is_the_safe_load(backend_name: str, tmp_path: Path) -> None:
    tr = make(backend_name)
    tr.fit()
    tr.save_checkpoint(tmp_path / "c")
    a, b = make(backend_name), make(backend_name)
    assert a.load_checkpoint(tmp_path / "c") == b.load_trusted_checkpoint(tmp_path / "c")
    for pa, pb, pt in zip(params(a), params(b), params(tr), strict=True):
        np.testing.assert_array_equal(pa, pt)
        np.testing.assert_array_equal(pb, pt)


# ---------------------------------------------------------------------------------------
# zeroproofml 0.6.1 checkpoints (torch: zeroproofml trains torch models only)


def tiny_model() -> Any:
    """The module of ``tests/data/make_zeroproofml_checkpoints.py``."""
    import torch
    from torch import nn

    class TinyRational(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = nn.Linear(3, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p, q = self.head(torch.tanh(self.hidden(x))).unbind(-1)
            return p, q

    torch.manual_seed(123)  # not the generator's seed: loading must set the values
    return TinyRational()


def zp_trainer(*, scheduler: bool = True, model: Any = None) -> SCMTrainer:
    import torch

    model = tiny_model() if model is None else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if scheduler else None
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 3, generator=g), torch.randn(12, generator=g)
    return SCMTrainer(model, opt, fit_loss, [(x[:4], y[:4]), (x[4:8], y[4:8])], scheduler=sched,
                      config=TrainingConfig(max_epochs=3, scheduler_cadence="per_epoch"))


def assert_expected_params(model: Any) -> None:
    state = model.state_dict()
    assert sorted(state) == sorted(EXPECTED["params"])
    for key, value in EXPECTED["params"].items():
        np.testing.assert_array_equal(state[key].numpy(), np.asarray(value, dtype=np.float32))


def test_fixture_files_are_present() -> None:
    for f in (ZP_FULL, ZP_OLD, ZP_PICKLED):
        assert f.is_file() and f.stat().st_size < 20_000, f
    assert EXPECTED["zeroproofml"] == "0.6.1"


def test_load_model_state_of_a_zeroproofml_checkpoint() -> None:
    for f in (ZP_FULL, ZP_OLD):
        tr = zp_trainer()
        meta = tr.load_model_state(f)
        assert meta["imported_from"] == "zeroproofml"
        assert_expected_params(tr.model)
        assert tr.global_step == 0 and tr.optimizer.state_dict()["state"] == {}


def test_resume_from_a_zeroproofml_checkpoint() -> None:
    tr = zp_trainer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no config-hash warning: another scheme
        meta = tr.load_checkpoint(ZP_FULL)
    assert meta["zeroproofml_schema_version"] == 2
    assert_expected_params(tr.model)
    assert (tr.current_epoch, tr.global_step) == (EXPECTED["epoch"], EXPECTED["global_step"])
    assert tr.optimizer.param_groups[0]["lr"] == EXPECTED["lr"]
    assert float(tr.optimizer.state_dict()["state"][0]["step"]) == EXPECTED["adam_step"]
    assert tr.scheduler.last_epoch == EXPECTED["epoch"]
    logs = tr.fit()  # continues: epochs 1 and 2 of max_epochs=3
    assert len(logs) == 4 and tr.global_step == EXPECTED["global_step"] + 4
    assert tr.optimizer.param_groups[0]["lr"] == EXPECTED["lr"] / 4


def test_pre_schema_zeroproofml_checkpoint_resumes_at_defaults() -> None:
    tr = zp_trainer(scheduler=False)  # also: no scheduler here, one in the file's groups
    tr.load_checkpoint(ZP_OLD)
    assert_expected_params(tr.model)
    assert (tr.current_epoch, tr.global_step) == (0, 0)
    assert float(tr.optimizer.state_dict()["state"][0]["step"]) == EXPECTED["adam_step"]


def test_pickled_zeroproofml_checkpoint_needs_the_trusted_load() -> None:
    import pickle

    tr = zp_trainer()
    before = [p.detach().clone() for p in tr.model.parameters()]
    with pytest.raises(CheckpointError, match="load_trusted_checkpoint") as err:
        tr.load_checkpoint(ZP_PICKLED)
    assert isinstance(err.value.__cause__, pickle.UnpicklingError)
    with pytest.raises(CheckpointError, match="load_trusted_checkpoint"):
        tr.load_model_state(ZP_PICKLED)
    for p, q in zip(tr.model.parameters(), before, strict=True):
        assert bool((p == q).all())
    meta = tr.load_trusted_checkpoint(ZP_PICKLED)
    assert meta["best_metric"] == 0.75 and type(meta["best_metric"]) is float
    assert_expected_params(tr.model)


def test_zeroproofml_checkpoint_of_another_model_is_refused() -> None:
    from torch import nn

    tr = zp_trainer(model=nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(CheckpointError, match="missing keys"):
        tr.load_model_state(ZP_FULL)


def test_foreign_unsealed_files(tmp_path: Path) -> None:
    import torch

    payload = torch.load(ZP_FULL, weights_only=True)
    tr = zp_trainer()
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "schema_version": 3}, newer)
    with pytest.raises(CheckpointError, match="schema 3"):
        tr.load_checkpoint(newer)
    no_opt = tmp_path / "no_opt.pt"
    torch.save({k: v for k, v in payload.items() if k != "optimizer"}, no_opt)
    with pytest.raises(CheckpointError, match="without optimizer state"):
        tr.load_checkpoint(no_opt)
    tr.load_model_state(no_opt)  # the weights alone are enough there
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    for f in (other, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError):
            tr.load_checkpoint(f)
    with pytest.raises(CheckpointError, match="integrity seal"):
        tr.load_checkpoint(other)


def test_load_checkpoint_mapping(tmp_path: Path) -> None:
    import torch

    from zpml_core.training import load_checkpoint_mapping

    m = load_checkpoint_mapping(ZP_FULL)
    assert m["schema_version"] == 2 and m["epoch"] == EXPECTED["epoch"]
    np.testing.assert_array_equal(m["model"]["head.bias"].numpy(),
                                  np.asarray(EXPECTED["params"]["head.bias"], dtype=np.float32))
    with pytest.raises(CheckpointError, match="trusted=True"):
        load_checkpoint_mapping(ZP_PICKLED)
    assert load_checkpoint_mapping(ZP_PICKLED, trusted=True)["best_metric"] == 0.75
    tr = zp_trainer()
    tr.save_checkpoint(tmp_path / "own")
    own = load_checkpoint_mapping(tmp_path / "own")
    assert json.loads(own["metadata_json"])["backend"] == "torch"
    assert torch.equal(own["model"]["head.bias"], tr.model.state_dict()["head.bias"])
    with pytest.raises(CheckpointError):
        load_checkpoint_mapping(tmp_path / "missing")
    with pytest.raises(TypeError, match="trusted"):
        load_checkpoint_mapping(ZP_FULL, trusted="yes")  # type: ignore[arg-type]


def test_corrupt_unsealed_files_get_the_seal_error_not_the_pickle_hint(tmp_path: Path) -> None:
    """Only a torch zip archive is read as a zeroproofml checkpoint: random bytes, a
    truncated zeroproofml file or another zip keep the seal error (no advice to unpickle)."""
    import zipfile

    from zpml_core.training import load_checkpoint_mapping

    rng = np.random.default_rng(0)
    files = {"random": rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
             "truncated": ZP_PICKLED.read_bytes()[:5000]}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with zipfile.ZipFile(tmp_path / "zip", "w") as z:
        z.writestr("a.txt", "not a checkpoint")
    tr = zp_trainer()
    for name in (*files, "zip"):
        for load in (tr.load_checkpoint, tr.load_model_state, tr.load_trusted_checkpoint,
                     load_checkpoint_mapping):
            with pytest.raises(CheckpointError) as err:
                load(tmp_path / name)
            assert "integrity seal" in err.value.reason, (name, load)
            assert "load_trusted_checkpoint" not in err.value.reason, (name, load)
            assert "trusted=True" not in err.value.reason, (name, load)
