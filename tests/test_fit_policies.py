"""Gradient policies on the fit losses' singular paths (``tau_train=``), torch and JAX.

The expected gradient under a policy is derived here from the unpolicied gradient with
the documented rule (not from the library's rule function): REJECT → 0 where
``|Q| < tau``; CLAMP → 0 there and ``clip(g, −1, 1)`` elsewhere; PROJECT → the
component along ``(P, Q)`` removed there; PASSTHROUGH → unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from zpml_core.autodiff.policies import (
    GradientPolicy,
    gradient_policy,
    policy_registry_snapshot,
    register_policy,
    restore_policy_registry,
)
from zpml_core.losses import (
    LossConfig,
    SCMTrainingLoss,
    implicit_loss,
    projective_distance_loss,
)
from zpml_core.training import ArrayLoader, SCMTrainer, TrainingConfig

pytestmark = pytest.mark.autodiff

TAU = 1e-2
LOSSES = {"implicit": implicit_loss, "angle": projective_distance_loss}


def batch(n: int = 24, seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    P = rng.normal(size=n) * 3.0
    Q = rng.normal(size=n)
    Q[: n // 3] *= 1e-3  # a third on singular paths (|Q| < TAU)
    Yn = rng.normal(size=n) * 10.0
    Yd = np.ones(n)
    Yd[::4] = 0.0
    Yn[::4] = np.sign(Yn[::4])
    return [P, Q, Yn, Yd]


def expected(policy: GradientPolicy, P, Q, gP, gQ) -> tuple[np.ndarray, np.ndarray]:
    bottom = np.abs(Q) < TAU
    if policy is GradientPolicy.PASSTHROUGH:
        return gP, gQ
    if policy is GradientPolicy.REJECT:
        return np.where(bottom, 0.0, gP), np.where(bottom, 0.0, gQ)
    if policy is GradientPolicy.CLAMP:
        return np.where(bottom, 0.0, np.clip(gP, -1, 1)), np.where(bottom, 0.0, np.clip(gQ, -1, 1))
    norm = np.hypot(P, Q)
    u, v = P / norm, Q / norm
    d = u * gP + v * gQ
    return np.where(bottom, gP - u * d, gP), np.where(bottom, gQ - v * d, gQ)


def torch_grads(fn, data, *, policy=None, around="backward", scale=1.0, compiled=False):
    import torch

    P, Q, Yn, Yd = (torch.tensor(x) for x in data)
    P.requires_grad_(True)
    Q.requires_grad_(True)

    def f(p, q):
        return fn(p, q, Yn, Yd, tau_train=TAU) * scale

    g = torch.compile(f, fullgraph=True, backend="aot_eager") if compiled else f
    if policy is None:
        out = g(P, Q)
        out.backward()
    elif around == "backward":
        out = g(P, Q)
        with gradient_policy(policy):
            out.backward()
    else:
        with gradient_policy(policy):
            out = g(P, Q)
            out.backward()
    return P.grad.numpy(), Q.grad.numpy()


def jax_grads(fn, data, *, policy=None, scale=1.0):
    import jax
    import jax.numpy as jnp

    P, Q, Yn, Yd = (jnp.asarray(x) for x in data)
    step = jax.jit(jax.grad(lambda p, q: fn(p, q, Yn, Yd, tau_train=TAU) * scale, (0, 1)))
    if policy is None:
        gP, gQ = step(P, Q)
    else:
        with gradient_policy(policy):
            gP, gQ = step(P, Q)
    return np.asarray(gP), np.asarray(gQ)


def grads(backend_name: str, fn, data, **kw) -> tuple[np.ndarray, np.ndarray]:
    if backend_name == "torch":
        return torch_grads(fn, data, **kw)
    if backend_name == "jax":
        kw.pop("around", None)
        return jax_grads(fn, data, **kw)
    pytest.skip(f"{backend_name}: no gradient path tested here")


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("policy", list(GradientPolicy))
@pytest.mark.parametrize("around", ["backward", "forward"])
def test_policy_rule_on_singular_paths(backend_name, loss, policy, around):
    if backend_name != "torch" and around == "backward":
        pytest.skip("only eager torch reads a context around the backward pass")
    data = batch()
    fn = LOSSES[loss]
    # scale: per-element gradients beyond 1 so that CLAMP's clip acts
    base = grads(backend_name, fn, data, scale=200.0)
    assert (np.abs(base[0]) > 1).any() and (np.abs(data[1]) < TAU).any()
    got = grads(backend_name, fn, data, policy=policy, around=around, scale=200.0)
    want = expected(policy, data[0], data[1], *base)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-15)
    if policy is not GradientPolicy.PASSTHROUGH:  # the policy really changed something
        assert not (np.array_equal(got[0], base[0]) and np.array_equal(got[1], base[1]))


def test_default_is_passthrough_and_changes_no_bit(backend_name):
    data = batch(seed=6)
    for fn in LOSSES.values():
        def ungated(P, Q, Yn, Yd, tau_train=None, fn=fn):
            return fn(P, Q, Yn, Yd)  # the same computation without tau_train

        gated = grads(backend_name, fn, data)
        plain = grads(backend_name, ungated, data)
        np.testing.assert_array_equal(gated[0], plain[0])
        np.testing.assert_array_equal(gated[1], plain[1])


def test_gate_on_broadcast_operands(backend_name):
    # P (k,) and Q (B, 1) next to (B, k) targets: the pair is gated on its broadcast
    rng = np.random.default_rng(11)
    P, Q = rng.normal(size=3), rng.normal(size=(4, 1)) * np.array([[1e-4], [1.0], [1.0], [1e-4]])
    Yn, Yd = rng.normal(size=(4, 3)), np.ones((4, 3))
    base = grads(backend_name, projective_distance_loss, [P, Q, Yn, Yd])
    got = grads(backend_name, projective_distance_loss, [P, Q, Yn, Yd],
                policy=GradientPolicy.REJECT, around="forward")
    assert got[0].shape == (3,) and got[1].shape == (4, 1)
    # REJECT: the rows with |Q| < tau contribute nothing; the others as before
    Pk, Qk, Ynk, Ydk = np.broadcast_to(P, (2, 3)), Q[1:3], Yn[1:3], Yd[1:3]
    keep = grads(backend_name, projective_distance_loss, [Pk, Qk, Ynk, Ydk])
    np.testing.assert_allclose(got[0], keep[0].sum(axis=0) * 2 / 4, rtol=1e-12)
    np.testing.assert_allclose(got[1][[0, 3]], 0.0)
    np.testing.assert_allclose(got[1][1:3], keep[1] * 2 / 4, rtol=1e-12)
    assert not np.allclose(got[0], base[0])


def test_registered_policy_applies_without_context(backend_name):
    data = batch(seed=7)
    base = grads(backend_name, projective_distance_loss, data)
    snap = policy_registry_snapshot()
    try:
        register_policy("fit_loss", GradientPolicy.REJECT)
        got = grads(backend_name, projective_distance_loss, data)
    finally:
        restore_policy_registry(snap)
    want = expected(GradientPolicy.REJECT, data[0], data[1], *base)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_torch_compile_uses_the_forward_time_policy(backend_name):
    if backend_name != "torch":
        pytest.skip("torch.compile")
    data = batch(seed=8)
    base = torch_grads(projective_distance_loss, data, scale=200.0)
    for policy in (GradientPolicy.PROJECT, GradientPolicy.CLAMP):
        got = torch_grads(projective_distance_loss, data, policy=policy, around="forward",
                          scale=200.0, compiled=True)
        want = expected(policy, data[0], data[1], *base)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------
# SCMTrainer: LossConfig.fit, TrainingConfig.gradient_policy, parity of the default


def _trainer(backend_name: str, loss_fn: Any, **cfg: Any) -> SCMTrainer:
    from test_training import data, make_model

    x, y = data(48, seed=3)
    model, opt = make_model(backend_name, seed=1, lr=1e-2)
    return SCMTrainer(model=model, optimizer=opt, loss_fn=loss_fn,
                      train_loader=ArrayLoader(x, y, batch_size=16, shuffle=True),
                      config=TrainingConfig(max_epochs=2, seed=0, tau_train_min=5e-5,
                                            tau_train_max=2e-4, **cfg))


def _manual(scm: SCMTrainingLoss, fit_fn):
    """The trainer's documented wiring of an SCMTrainingLoss, with ``fit_fn`` as the fit."""

    def loss(outputs, lifted, tau):
        P, Q = outputs
        Yn, Yd = lifted
        total, _ = scm(fit_fn(P, Q, Yn, Yd), P, Q, Yn, Yd, is_bottom=abs(Q) < tau,
                       mask_finite=Yd != 0, tau_train=tau)
        return total

    return loss


@pytest.mark.parametrize("fit", ["implicit", "angle"])
def test_trainer_uses_loss_config_fit(backend_name, fit):
    if backend_name not in ("torch", "jax"):
        pytest.skip("SCMTrainer backends")
    scm = SCMTrainingLoss(LossConfig(fit=fit))
    ref_fit = (lambda P, Q, Yn, Yd: implicit_loss(P, Q, Yn, Yd, 1e-9)) if fit == "implicit" \
        else projective_distance_loss
    got = [m["loss"] for m in _trainer(backend_name, scm).fit()]
    want = [m["loss"] for m in _trainer(backend_name, _manual(scm, ref_fit)).fit()]
    # default policy (PASSTHROUGH on the fit's singular paths): today's numbers, bit for bit
    assert got == want
    other = SCMTrainingLoss(LossConfig(fit="angle" if fit == "implicit" else "implicit"))
    assert [m["loss"] for m in _trainer(backend_name, other).fit()][1:] != got[1:]


def _linear_model(backend_name: str) -> tuple[Any, Any]:
    """``P = a·x + b``, ``Q = c·(x − 1/2)``: samples at ``x ≈ 1/2`` lie on singular paths."""
    if backend_name == "torch":
        import torch

        class Linear(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.8], dtype=torch.float64))

            def forward(self, x):
                return self.w[0] * x[:, 0] + self.w[1], self.w[2] * (x[:, 0] - 0.5)

        model = Linear()
        return model, torch.optim.SGD(model.parameters(), lr=0.1)
    import jax.numpy as jnp
    import optax

    def apply(w, x):
        return w[0] * x[:, 0] + w[1], w[2] * (x[:, 0] - 0.5)

    return (apply, jnp.asarray([0.3, -0.2, 0.8])), optax.sgd(0.1)


def test_trainer_gradient_policy_reaches_the_fit(backend_name):
    if backend_name not in ("torch", "jax"):
        pytest.skip("SCMTrainer backends")
    rng = np.random.default_rng(9)
    x = np.concatenate([0.5 + rng.uniform(-1e-5, 1e-5, 8), rng.uniform(-1, 1, 24)])[:, None]
    y = 2.0 + x[:, 0]  # finite targets everywhere: the near-pole samples pull Q away
    scm = SCMTrainingLoss(LossConfig(fit="angle", lambda_rej=0.0, tau_train=1.5e-3))

    def run(policy: GradientPolicy | None) -> tuple[list[float], list[np.ndarray]]:
        model, opt = _linear_model(backend_name)
        tr = SCMTrainer(model=model, optimizer=opt, loss_fn=scm,
                        train_loader=ArrayLoader(x, y, batch_size=32),
                        config=TrainingConfig(max_epochs=1, seed=0, tau_train_min=1e-3,
                                              tau_train_max=2e-3, gradient_policy=policy))
        losses = [m["loss"] for m in tr.fit()]
        from test_training import params_np

        return losses, params_np(tr)

    plain, w_plain = run(None)
    rejected, w_rej = run(GradientPolicy.REJECT)
    assert rejected == plain  # one step: its loss is computed before the update
    # REJECT removed the near-pole samples' fit gradient, so the update differs: the
    # expected update is the plain one without those samples' fit contribution
    assert not np.array_equal(w_plain[0], w_rej[0])
