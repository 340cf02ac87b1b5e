"""Class: a finite loss with non-finite gradients must not be applied.

Rule: an optimizer update whose (accumulated, averaged) gradients hold a NaN or ±inf is
skipped — parameters and optimizer state keep their values, the group's gradients are
discarded — the train record says ``update_skipped = 1.0`` (only such records have the
key), a
``NonFiniteGradientWarning`` names the step, and training continues. A non-finite
*loss* stops training with ``FloatingPointError`` whose message is true about the state
left behind. Both backends (eager torch: skip in ``finalize``; JAX: a select inside the
one jitted step).

The expected parameters come from an independent run that never sees the bad batch
(the skipped update must equal "that batch group did not exist"), not from our output.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from zpml_core.losses import implicit_loss
from zpml_core.training import ArrayLoader, NonFiniteGradientWarning, SCMTrainer, TrainingConfig

pytestmark = pytest.mark.autodiff

BATCHES = 4  # per epoch, 16 rows each


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16 * BATCHES, 1)).astype(np.float32)
    y = (1.0 / (x[:, 0] - 0.5)).astype(np.float32)
    return x, y


def _model(backend: str, *, lr: float = 1e-2, opt: str = "adam") -> tuple[Any, Any]:
    if backend == "torch":
        import torch
        from zpml_backends.torch_training import RationalHead

        torch.manual_seed(0)
        m = RationalHead(1)
        cls = torch.optim.Adam if opt == "adam" else torch.optim.SGD
        return m, cls(m.parameters(), lr=lr)
    import optax
    from zpml_backends.jax_training import rational_head_apply, rational_head_init

    return (rational_head_apply, rational_head_init(0, 1)), (optax.adam(lr) if opt == "adam" else optax.sgd(lr))


def _bad_grad_loss(backend: str, bad: int, kind: str) -> Any:
    """The implicit loss plus a term whose VALUE is finite at every step but whose
    GRADIENT is NaN (``kind="nan"``: d sqrt(u)/du = inf times du/dP = 0) or +inf
    (``kind="inf"``: du/dP = 1) at global step ``bad`` only, and exactly 0 elsewhere."""

    def loss_fn(outputs: Any, lifted: Any, global_step: Any = None) -> Any:
        P, Q = outputs
        Y_n, Y_d = lifted
        fit = implicit_loss(P, Q, Y_n, Y_d)
        if backend == "torch":
            e = 1.0 if global_step == bad else 0.0
            zero = P * 0.0 if kind == "nan" else e * (P - P.detach())
            return fit + (1.0 - e + zero).sqrt().sum() * 1e-3
        import jax
        import jax.numpy as jnp

        e = (global_step == bad).astype(P.dtype)
        zero = P * 0.0 if kind == "nan" else e * (P - jax.lax.stop_gradient(P))
        return fit + jnp.sum(jnp.sqrt(1.0 - e + zero)) * 1e-3

    return loss_fn


def _params(tr: SCMTrainer) -> list[np.ndarray]:
    if tr.backend == "torch":
        return [p.detach().numpy().copy() for p in tr.model.parameters()]
    import jax

    return [np.asarray(a).copy() for a in jax.tree_util.tree_leaves(tr.params)]


def _opt_state(tr: SCMTrainer) -> list[np.ndarray]:
    if tr.backend == "torch":
        out = []
        for st in tr.engine.optimizer.state_dict()["state"].values():  # type: ignore[attr-defined]
            out += [np.asarray(v.detach().numpy()).copy() for v in st.values()]
        return out
    import jax

    return [np.asarray(a).copy() for a in jax.tree_util.tree_leaves(tr.engine.opt_state)]  # type: ignore[attr-defined]


def _trainer(backend: str, loader: Any, loss: Any, **cfg: Any) -> SCMTrainer:
    model, opt = _model(backend, lr=cfg.pop("lr", 1e-2), opt=cfg.pop("opt", "adam"))
    cfg.setdefault("tau_train_min", 1e-4)
    cfg.setdefault("tau_train_max", 1e-4)  # constant: no tau draws to keep in step
    return SCMTrainer(model=model, optimizer=opt, loss_fn=loss, train_loader=loader,
                      config=TrainingConfig(max_epochs=10, **cfg))


@pytest.mark.parametrize("kind", ["nan", "inf"])
@pytest.mark.parametrize(("accumulation", "bad", "group"), [
    (1, 4, (4,)),      # the last batch of epoch 0 is an update on its own
    (1, 2, (2,)),      # mid-epoch
    (2, 3, (3, 4)),    # first batch of a group: the whole group's update is skipped
    (2, 4, (3, 4)),    # last batch of a group
])
def test_update_with_nonfinite_gradients_is_skipped(backend_name: str, kind: str, accumulation: int,
                                                    bad: int, group: tuple[int, ...]) -> None:
    x, y = _data()
    batches = [(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]) for i in range(BATCHES)]
    tr = _trainer(backend_name, batches, _bad_grad_loss(backend_name, bad, kind),
                  gradient_accumulation_steps=accumulation)
    with pytest.warns(NonFiniteGradientWarning, match=rf"step {group[-1]} \(epoch 0") as rec:
        logs = tr.fit(epochs=2)
    assert len(rec) == 1 and "update due at this step was skipped" in str(rec[0].message)
    assert issubclass(NonFiniteGradientWarning, RuntimeWarning)
    # the record of the update step says so; every loss stayed finite; training went on
    assert [m.get("update_skipped") for m in logs] == [1.0 if s == group[-1] else None
                                                      for s in range(1, 2 * BATCHES + 1)]
    assert all(math.isfinite(m["loss"]) for m in logs) and tr.global_step == 2 * BATCHES
    assert all(np.all(np.isfinite(p)) for p in _params(tr))
    assert all(np.all(np.isfinite(s)) for s in _opt_state(tr))

    # independent reference: the bad group's batches never existed in epoch 0
    keep = [b for s, b in enumerate(batches, start=1) if s not in group]
    ref = _trainer(backend_name, keep, _bad_grad_loss(backend_name, -1, kind),
                   gradient_accumulation_steps=accumulation)
    ref.fit(epochs=1)
    ref.train_loader = batches
    ref.fit(epochs=1)
    # parameters and optimizer state (moments AND step counters: a skipped update is
    # not counted) equal the run without the bad group
    for a, b in zip(_params(tr) + _opt_state(tr), _params(ref) + _opt_state(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_skipped_update_leaves_state_bit_identical(backend_name: str) -> None:
    """A single bad step on a trained model: parameters AND optimizer state (incl. the
    step counter) are exactly those before it."""
    x, y = _data()
    batches = [(x[:16], y[:16])]
    tr = _trainer(backend_name, batches, _bad_grad_loss(backend_name, 3, "nan"))
    tr.fit(epochs=2)
    before_p, before_s = _params(tr), _opt_state(tr)
    with pytest.warns(NonFiniteGradientWarning, match="step 3"):
        (m,) = tr.fit(epochs=1)
    assert m["update_skipped"] == 1.0 and math.isfinite(m["loss"])
    for a, b in zip(before_p + before_s, _params(tr) + _opt_state(tr), strict=True):
        np.testing.assert_array_equal(a, b)
    (m,) = tr.fit(epochs=1)  # the next good step is applied again
    assert "update_skipped" not in m
    assert any(not np.array_equal(a, b) for a, b in zip(before_p, _params(tr), strict=True))


def test_train_step_carries_the_flag_in_the_metrics_vector(backend_name: str) -> None:
    """No extra host transfer: the gradient flag is one more entry of the vector the
    trainer already reads (RAW_KEYS + grads_nonfinite: 0 iff finite), on update and
    non-update steps."""
    from zpml_core.training.engine import StepArgs
    from zpml_core.training.metrics import RAW_KEYS

    x, y = _data()
    tr = _trainer(backend_name, [(x[:16], y[:16])], _bad_grad_loss(backend_name, 2, "nan"),
                  gradient_accumulation_steps=2)
    tr.engine.begin_fit()
    prepared = tr._prepare((x[:16], y[:16]))
    out = []
    for step, update in ((1, False), (2, True)):
        vec = tr.engine.train_step(prepared, StepArgs(1e-4, 0, step, None), update=update, group_size=step)
        values = tr.engine.to_host(vec)
        assert len(values) == len(RAW_KEYS) + 1
        out.append(float(values[-1]) == 0.0)
        tr.engine.finalize(True, out[-1])
    assert out == [True, False]


@pytest.mark.parametrize("accumulation", [1, 2])
def test_nan_loss_with_later_steps_in_flight_leaves_the_state_before_it(
        backend_name: str, accumulation: int) -> None:
    """A non-finite loss at step 6 (epoch 1, batch 1) while steps 7 and 8 — finite —
    are already dispatched (JAX runs ahead of the host; with accumulation 2 step 6 ends
    a group): parameters AND optimizer state are those after step 5, as from a run that
    only ever saw steps 1..5 (with accumulation 2 step 5 is only accumulated: the state
    after step 4)."""
    x, y = _data()
    batches = [(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]) for i in range(BATCHES)]

    def nan_at(bad: int) -> Any:
        def loss_fn(outputs: Any, lifted: Any, global_step: Any = None) -> Any:
            P, Q = outputs
            fit = implicit_loss(P, Q, *lifted)
            if backend_name == "torch":
                return fit * (float("nan") if global_step == bad else 1.0)
            import jax.numpy as jnp

            return jnp.where(global_step == bad, jnp.nan, fit)

        return loss_fn

    tr = _trainer(backend_name, batches, nan_at(6), gradient_accumulation_steps=accumulation)
    with pytest.raises(FloatingPointError, match=r"at step 6 \(epoch 1, batch 1"):
        tr.fit(epochs=3)
    assert tr.global_step == 5
    good = batches + batches[:1] if accumulation == 1 else batches
    ref = _trainer(backend_name, good, nan_at(-1), gradient_accumulation_steps=accumulation)
    ref.fit(epochs=1)
    for a, b in zip(_params(tr) + _opt_state(tr), _params(ref) + _opt_state(ref), strict=True):
        np.testing.assert_array_equal(a, b)


def test_nan_loss_message_is_true_when_parameters_already_overflowed(backend_name: str) -> None:
    """SGD with a huge step overflows the parameters to ±inf with FINITE gradients; the
    next loss is NaN. The error must not pretend the kept parameters are healthy."""
    x, y = _data()
    loader = ArrayLoader(x, y, batch_size=16)
    tr = _trainer(backend_name, loader, _bad_grad_loss(backend_name, -1, "nan"), opt="sgd",
                  lr=float("inf"))
    with pytest.raises(FloatingPointError, match=r"step 2 .*parameters were already not finite"):
        tr.fit(epochs=1)
    assert tr.global_step == 1


def test_nan_loss_message_names_unrolled_back_buffers() -> None:
    """torch modules with buffers updated by the forward pass (BatchNorm): the message
    says those are not rolled back (and the parameters are)."""
    torch = pytest.importorskip("torch")

    class BN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = torch.nn.BatchNorm1d(1)
            self.lin = torch.nn.Linear(1, 2)

        def forward(self, x: Any) -> Any:
            p, q = self.lin(self.bn(x)).unbind(-1)
            return p, q

    def nan_at_2(outputs: Any, lifted: Any, global_step: Any = None) -> Any:
        P, Q = outputs
        loss = implicit_loss(P, Q, *lifted)
        return loss * float("nan") if global_step == 2 else loss

    torch.manual_seed(0)
    m = BN()
    x, y = _data()
    tr = SCMTrainer(model=m, optimizer=torch.optim.Adam(m.parameters(), lr=1e-2), loss_fn=nan_at_2,
                    train_loader=ArrayLoader(x, y, batch_size=16), config=TrainingConfig(max_epochs=1))
    with pytest.raises(FloatingPointError, match="parameters and optimizer state are those from before") as err:
        tr.fit()
    assert "BatchNorm running statistics) are not rolled back" in str(err.value)


def test_per_optimizer_update_scheduler_does_not_step_on_a_skipped_update() -> None:
    torch = pytest.importorskip("torch")
    x, y = _data()
    batches = [(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]) for i in range(BATCHES)]
    model, opt = _model("torch")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    tr = SCMTrainer(model=model, optimizer=opt, loss_fn=_bad_grad_loss("torch", 2, "inf"),
                    train_loader=batches, scheduler=sched,
                    config=TrainingConfig(max_epochs=1, scheduler_cadence="per_optimizer_update"))
    with pytest.warns(NonFiniteGradientWarning):
        tr.fit()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5 ** (BATCHES - 1), rel=0, abs=0)
