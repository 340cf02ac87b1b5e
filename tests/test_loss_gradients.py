"""Gradients of the losses: torch vs JAX (float64, 1e-12), central finite differences,
independent analytic gradients, and detached/non-differentiable outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import requested_backends

from zpml_core.autodiff.policies import GradientPolicy, gradient_policy
from zpml_core.losses import (
    LossConfig,
    SCMTrainingLoss,
    coverage,
    implicit_loss,
    margin_loss,
    rejection_loss,
    scm_separation_losses,
    sign_consistency_loss,
    soft_coverage_loss,
)

pytestmark = pytest.mark.autodiff


def grads(backend_name: str, fn: Callable[..., Any], inputs: list[np.ndarray],
          wrt: tuple[int, ...] = (0, 1), dtype: str = "float64") -> list[np.ndarray]:
    """Gradients of the scalar ``fn(*inputs)`` w.r.t. ``inputs[i]``, ``i in wrt``."""
    if backend_name == "torch":
        import torch

        ts = [torch.tensor(np.asarray(x, dtype=dtype), requires_grad=i in wrt)
              for i, x in enumerate(inputs)]
        out = fn(*ts)
        gs = torch.autograd.grad(out, [ts[i] for i in wrt], allow_unused=True)
        return [np.zeros(inputs[i].shape) if g is None else g.numpy()
                for i, g in zip(wrt, gs, strict=True)]
    import jax
    import jax.numpy as jnp

    js = [jnp.asarray(np.asarray(x, dtype=dtype)) for x in inputs]
    gs = jax.grad(lambda *a: fn(*a), argnums=wrt)(*js)
    return [np.asarray(g) for g in gs]


def value(backend_name: str, fn: Callable[..., Any], inputs: list[np.ndarray]) -> float:
    if backend_name == "torch":
        import torch

        return float(fn(*[torch.tensor(x) for x in inputs]))
    import jax.numpy as jnp

    return float(fn(*[jnp.asarray(x) for x in inputs]))


def batch(n=41, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=n)
    Q = rng.normal(size=n) * rng.choice([1e-3, 0.1, 1.0], size=n)
    Yn = rng.normal(size=n)
    Yd = np.where(rng.random(n) < 0.4, rng.choice([0.0, 2e-4, -6e-4], size=n), rng.normal(size=n))
    return [P, Q, Yn, Yd]


# every loss as a scalar function of (P, Q, Y_n, Y_d); thresholds chosen so that no
# element sits on a kink of relu/abs (finite differences need smoothness)
LOSSES: dict[str, Callable[..., Any]] = {
    "implicit": lambda P, Q, Yn, Yd: implicit_loss(P, Q, Yn, Yd),
    "implicit_detach": lambda P, Q, Yn, Yd: implicit_loss(P, Q, Yn, Yd, 1e-3, detach_scale=True),
    "margin": lambda P, Q, Yn, Yd: margin_loss(Q, 0.05),
    "margin_population": lambda P, Q, Yn, Yd: margin_loss(Q, 0.05, Yd != 0),
    "margin_conditional": lambda P, Q, Yn, Yd: margin_loss(Q, 0.05, Yd != 0,
                                                           reduction="conditional"),
    "sign": lambda P, Q, Yn, Yd: sign_consistency_loss(P, Q, Yn, Yd),
    "sign_mask": lambda P, Q, Yn, Yd: sign_consistency_loss(P, Q, Yn, Yd, 1e-2,
                                                            abs(Yd) < 0.5),
    "soft_coverage": lambda P, Q, Yn, Yd: soft_coverage_loss(Q, 0.01, 0.05, 0.95),
    "separation": lambda P, Q, Yn, Yd: sum(scm_separation_losses(Q, mask_censored=Yd == 0,
                                                                 tau_bot=3e-4, tau_finite=0.05)),
    "training_total": lambda P, Q, Yn, Yd: SCMTrainingLoss(
        LossConfig(tau_train=0.05, lambda_margin=3.0, lambda_rej=1.0))(
            implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd, is_bottom=abs(Q) < 0.05,
            mask_finite=Yd != 0)[0],
}


# Independent analytic gradients (numpy float64) of the LOSSES above: every autodiff
# backend is held to them at 1e-12, so torch/JAX parity is also checked in single-backend
# runs (e.g. one nox session per backend).


def _sgn(x):
    return np.sign(x)  # derivative of |x|, 0 at 0


def _d_implicit(P, Q, Yn, Yd, g=1e-9, detach=False):
    n = P.size
    r = P * Yd - Q * Yn
    s = Q**2 * Yd**2 + P**2 * Yn**2 + g
    dP, dQ = 2 * r * Yd / s / n, -2 * r * Yn / s / n
    if not detach:
        dP = dP - r**2 * 2 * P * Yn**2 / s**2 / n
        dQ = dQ - r**2 * 2 * Q * Yd**2 / s**2 / n
    return dP, dQ


def _d_margin(Q, tau, m=None, conditional=False):
    m = np.ones(Q.shape, bool) if m is None else m
    t = np.where(m, np.maximum(tau - np.abs(Q), 0.0), 0.0)
    denom = max(m.sum(), 1) if conditional else Q.size
    return -2 * t * _sgn(Q) / denom


def _d_sign(P, Q, Yn, Yd, g=1e-9, m=None, eps=1e-3):
    if m is None:
        m = np.abs(Yd) <= eps
    n_p = np.sqrt(P**2 + Q**2 + g)
    n_t = np.sqrt(Yn**2 + Yd**2 + g)
    dot = P * Yn + Q * Yd
    cos = dot / (n_p * n_t)
    active = m & (np.abs(cos) < 1)
    dP = -(Yn / (n_p * n_t) - dot * P / (n_p**3 * n_t))
    dQ = -(Yd / (n_p * n_t) - dot * Q / (n_p**3 * n_t))
    return np.where(active, dP, 0.0) / P.size, np.where(active, dQ, 0.0) / P.size


def _d_soft(Q, tau, T, target):
    p = 1 / (1 + np.exp(-(np.abs(Q) - tau) / T))
    short = max(target - p.mean(), 0.0)
    return -2 * short * p * (1 - p) * _sgn(Q) / T / Q.size


def _d_separation(Q, cens, tb, tf):
    nc, nf = max(cens.sum(), 1), max((~cens).sum(), 1)
    down = np.where(cens, 2 * np.maximum(np.abs(Q) - tb, 0) * _sgn(Q) / nc, 0.0)
    up = np.where(~cens, -2 * np.maximum(tf - np.abs(Q), 0) * _sgn(Q) / nf, 0.0)
    return down + up


def analytic(name, P, Q, Yn, Yd):
    z = np.zeros_like(P)
    if name == "implicit":
        return _d_implicit(P, Q, Yn, Yd)
    if name == "implicit_detach":
        return _d_implicit(P, Q, Yn, Yd, 1e-3, detach=True)
    if name == "margin":
        return z, _d_margin(Q, 0.05)
    if name == "margin_population":
        return z, _d_margin(Q, 0.05, Yd != 0)
    if name == "margin_conditional":
        return z, _d_margin(Q, 0.05, Yd != 0, conditional=True)
    if name == "sign":
        return _d_sign(P, Q, Yn, Yd)
    if name == "sign_mask":
        return _d_sign(P, Q, Yn, Yd, 1e-2, np.abs(Yd) < 0.5)
    if name == "soft_coverage":
        return z, _d_soft(Q, 0.01, 0.05, 0.95)
    if name == "separation":
        return z, _d_separation(Q, Yd == 0, 3e-4, 0.05)
    assert name == "training_total"
    fP, fQ = _d_implicit(P, Q, Yn, Yd)
    sP, sQ = _d_sign(P, Q, Yn, Yd)
    return fP + sP, fQ + 3.0 * _d_margin(Q, 0.05, Yd != 0) + sQ  # rejection: no gradient


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_analytic(backend, name, seed):
    inputs = batch(seed=seed)
    got = grads(backend.name, LOSSES[name], inputs)
    for a, e, wrt in zip(got, analytic(name, *inputs), "PQ", strict=True):
        scale = max(np.max(np.abs(e)), 1e-300)
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12 * scale,
                                   err_msg=f"{name}: d/d{wrt}")


def _both_autodiff_backends() -> bool:
    names, _ = requested_backends()
    return "torch" in names and "jax" in names


@pytest.mark.skipif(not _both_autodiff_backends(),
                    reason="torch-vs-jax parity needs both backends in ZPML_TEST_BACKENDS")
@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_agree_torch_vs_jax(name, seed):
    inputs = batch(seed=seed)
    gt = grads("torch", LOSSES[name], inputs)
    gj = grads("jax", LOSSES[name], inputs)
    for a, b, wrt in zip(gt, gj, "PQ", strict=True):
        scale = max(np.max(np.abs(a)), 1e-300)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale,
                                   err_msg=f"{name}: d/d{wrt}")
        assert np.isfinite(a).all()
    assert np.any(gt[1] != 0), "degenerate test data: zero gradient"


# detach_scale changes the gradient on purpose (it is not the derivative of the value):
# covered by the analytic test below instead
@pytest.mark.parametrize("name", [k for k in LOSSES if k != "implicit_detach"])
def test_gradients_match_central_differences(backend, name):
    fn = LOSSES[name]
    inputs = batch(n=13, seed=5)
    analytic = grads(backend.name, fn, inputs)
    for k, wrt in enumerate((0, 1)):
        fd = np.zeros_like(inputs[wrt])
        for i in range(inputs[wrt].size):
            h = 1e-6 * max(1.0, abs(inputs[wrt][i]))
            plus = [x.copy() for x in inputs]
            minus = [x.copy() for x in inputs]
            plus[wrt][i] += h
            minus[wrt][i] -= h
            fd[i] = (value(backend.name, fn, plus) - value(backend.name, fn, minus)) / (2 * h)
        scale = max(np.max(np.abs(fd)), 1e-12)
        np.testing.assert_allclose(analytic[k], fd, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=f"{name}: d/d{'PQ'[k]}")


def test_implicit_analytic_gradients(backend):
    P, Q, Yn, Yd = batch(seed=2)
    n, g = P.size, 1e-3
    r = P * Yd - Q * Yn
    s = Q**2 * Yd**2 + P**2 * Yn**2 + g
    # detached scale: only the residual is differentiated
    dP_det = 2 * r * Yd / s / n
    dQ_det = -2 * r * Yn / s / n
    # full: quotient rule through s
    dP = dP_det - r**2 * 2 * P * Yn**2 / s**2 / n
    dQ = dQ_det - r**2 * 2 * Q * Yd**2 / s**2 / n
    for detach, (eP, eQ) in ((True, (dP_det, dQ_det)), (False, (dP, dQ))):
        gP, gQ = grads(backend.name, lambda *a, d=detach: implicit_loss(*a, g, detach_scale=d),
                       [P, Q, Yn, Yd])
        np.testing.assert_allclose(gP, eP, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(gQ, eQ, rtol=1e-12, atol=1e-15)


def test_margin_analytic_gradient(backend):
    Q = np.array([0.0, 0.01, -0.02, 0.2, np.nan, np.inf, -0.04])
    m = np.array([True, True, True, True, False, False, True])
    tau = 0.05
    (gQ,) = grads(backend.name, lambda Q, m: margin_loss(Q, tau, m != 0), [Q, m * 1.0],
                  wrt=(0,))
    t = np.where(m, np.maximum(tau - np.abs(np.where(m, Q, tau)), 0.0), 0.0)
    sgn = np.where(m, np.sign(np.where(m, Q, 1.0)), 0.0)
    expected = -2 * t * sgn / Q.size
    np.testing.assert_array_equal(np.isfinite(gQ), True)  # non-finite Q off the mask: no leak
    np.testing.assert_allclose(gQ, expected, rtol=1e-12, atol=0)


def test_sign_gradient_finite_on_tiny_and_zero_predictions(backend):
    # zero tuples and tiny non-zero tuples on singular targets: the scaled norm keeps
    # value and gradient finite (gamma/s² would overflow to inf for s ~ 1e-160)
    P = np.array([0.0, 1e-160, -3e-200, 1e-30])
    Q = np.array([0.0, 0.0, 1e-170, -2e-30])
    Yn, Yd = np.ones(4), np.zeros(4)
    for dtype in ("float64", "float32"):
        gP, gQ = grads(backend.name, lambda *a: sign_consistency_loss(*a), [P, Q, Yn, Yd],
                       dtype=dtype)
        assert np.isfinite(gP).all() and np.isfinite(gQ).all(), (dtype, gP, gQ)


def test_sign_gradient_is_scale_invariant_direction(backend):
    # d(1 − cos)/dP for the pair ((3, 4), (1, 0)) with gamma=0: analytic
    P, Q, Yn, Yd = (np.array([v]) for v in (3.0, 4.0, 1.0, 0.0))
    gP, gQ = grads(backend.name, lambda *a: sign_consistency_loss(*a, gamma=0.0), [P, Q, Yn, Yd])
    # cos = P / sqrt(P² + Q²): dcos/dP = Q² / r³, dcos/dQ = −P·Q / r³ (r = 5)
    np.testing.assert_allclose(gP, [-16 / 125], rtol=1e-14)
    np.testing.assert_allclose(gQ, [12 / 125], rtol=1e-14)


def test_breakdown_is_detached(backend):
    P, Q, Yn, Yd = batch(seed=4)
    loss_fn = SCMTrainingLoss()
    for key in ("fit", "margin", "sign", "rejection", "total"):
        def f(P, Q, Yn, Yd, key=key):
            _, br = loss_fn(implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd, is_bottom=abs(Q) < 1e-3)
            if backend.name == "torch":
                assert not br[key].requires_grad
                return br[key] * 0.0 + (P * 0.0).sum()  # keep a differentiable path
            return br[key]
        gP, gQ = grads(backend.name, f, [P, Q, Yn, Yd])
        assert not np.any(gP) and not np.any(gQ), key


def test_rejection_loss_never_carries_gradient(backend):
    h = np.array([0.9, 0.1, 0.6, 0.0])
    for p in GradientPolicy:
        def f(h, p=p):
            out = rejection_loss(h, 0.99, policy=p)
            return out if backend.name != "torch" else out + (h * 0.0).sum()
        (g,) = grads(backend.name, f, [h], wrt=(0,))
        assert not np.any(g), p


@pytest.mark.parametrize(("policy", "attached"), [
    (GradientPolicy.CLAMP, True), (GradientPolicy.PASSTHROUGH, True),
    (GradientPolicy.PROJECT, False), (GradientPolicy.REJECT, False),
])
def test_coverage_gradient_by_policy(backend, policy, attached):
    h = np.array([0.9, 0.1, 0.6, 0.0])
    expected = np.full(4, -0.25 if attached else 0.0)

    def f(h, p=None):
        out = coverage(None, h, policy=p)
        return out if backend.name != "torch" else out + (h * 0.0).sum()

    (g,) = grads(backend.name, lambda h: f(h, policy), [h], wrt=(0,))
    np.testing.assert_allclose(g, expected, rtol=1e-6)  # default float may be float32
    with gradient_policy(policy):  # resolved through get_policy("coverage")
        (g,) = grads(backend.name, f, [h], wrt=(0,))
    np.testing.assert_allclose(g, expected, rtol=1e-6)


@pytest.mark.skipif(not _both_autodiff_backends(),
                    reason="torch-vs-jax parity needs both backends in ZPML_TEST_BACKENDS")
def test_gradients_agree_at_kinks():
    # Q exactly 0 and exactly at the thresholds: the subgradient conventions agree
    # (|x|' = sign(x), 0 at 0, on both; relu passes at 0 and is squared)
    Q = np.array([0.0, -0.0, 0.05, -0.05, 1e-3, 0.01, -0.2, 0.0])
    P, Yn, Yd = np.ones(8), np.ones(8), np.array([0, 1, 0, 1, 0, 1, 0, 1.0])
    fns = {
        "margin": lambda P, Q, Yn, Yd: margin_loss(Q, 0.05),
        "margin_mask": lambda P, Q, Yn, Yd: margin_loss(Q, 0.05, Yd != 0,
                                                        reduction="conditional"),
        "separation": lambda P, Q, Yn, Yd: sum(scm_separation_losses(
            Q, mask_censored=Yd == 0, tau_bot=1e-3, tau_finite=0.05)),
        "soft": lambda P, Q, Yn, Yd: soft_coverage_loss(Q, 0.0, 0.05, 1.0),
        "sign_parallel": lambda P, Q, Yn, Yd: sign_consistency_loss(
            P * 3.0, Q * 0.0 + 4.0, Yn * 6.0, Yd * 0.0 + 8.0, gamma=0.0,
            mask_singular=Yd == Yd),
    }
    for name, fn in fns.items():
        gt = grads("torch", fn, [P, Q, Yn, Yd])
        gj = grads("jax", fn, [P, Q, Yn, Yd])
        for a, b in zip(gt, gj, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15, err_msg=name)
    # at Q = 0 the margin gradient is 0 on both (symmetric subgradient)
    (gq,) = grads("jax", lambda Q: margin_loss(Q, 0.05), [np.array([0.0, 0.01])], wrt=(0,))
    assert gq[0] == 0.0 and gq[1] != 0.0
