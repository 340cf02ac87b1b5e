"""Forward-mode AD through the gradient-policy gate, and reverse mode unchanged.

Class of failure: a custom-gradient mechanism with reverse mode only (``jax.custom_vjp``)
makes ``jax.jvp``/``jacfwd``/``hessian`` raise, and a torch gate that is skipped when
``requires_grad`` is False lets ``torch.func.jvp`` ignore the policy silently.

Rules checked, for every policy, on torch and JAX (expected values derived from the rule
and the ungated derivative, i.e. the derivative under PASSTHROUGH, which has no gate):

* forward mode: ``jvp_P(t) = T'_P(jvp_PASS(t))`` with the linear tangent map
  ``T'`` = 0 at bottom for PROJECT and CLAMP (CLAMP does not clip tangents: clipping
  is not linear), 0 everywhere for REJECT;
* reverse mode: ``vjp_P(w) = vjp_PASS(T_P(w))`` with the policy's cotangent transform
  (CLAMP: 0 at bottom, ``clip(w, -1, 1)`` elsewhere) — the semantics of before;
* ``jacfwd == jacrev`` (unit cotangents are never clipped), ``hessian ==
  jacrev(jacrev)``, and ``vmap``/``jit`` of ``jvp`` agree with ``jvp``; a ``jvp`` under
  ``torch.compile`` applies the policy too (Dynamo drops autograd.Functions there);
* ``SCMTrainingLoss``: jvp, jacfwd and hessian run and are finite; jvp equals
  ``jacrev · t`` for the linear policies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from zpml_core import decode, scm, strict_inference
from zpml_core.autodiff import GradientPolicy, gradient_policy
from zpml_core.losses import SCMTrainingLoss

pytestmark = pytest.mark.autodiff

C, P, R, T = (GradientPolicy.CLAMP, GradientPolicy.PROJECT, GradientPolicy.REJECT,
              GradientPolicy.PASSTHROUGH)
POLICIES = [C, P, R, T]

# bottoms from: y == 0, NaN, inf, an overflowing quotient, log of negatives, ... (no
# finite output whose true derivative overflows: that is not a gate question)
X = np.array([1.0, 2.0, 3.0, -4.0, 1e300, np.nan, 1.0, 2.0, 0.5, 7.0, 0.0, 1e-320])
Y = np.array([0.5, 0.0, 2.0, 0.1, 1e-10, 1.0, np.inf, 3.0, -0.25, 4.0, 2.0, 1.5])
TX = np.array([1.0, -2.0, 0.5, 3.0, 1.0, 1.0, 2.0, -1.0, 0.25, 1.5, 1.0, 1.0])
TY = np.array([0.5, 1.0, -1.5, 2.0, 1.0, 1.0, 1.0, 0.5, 1.0, -2.0, 1.0, 3.0])
W = np.array([10.0, 10.0, -0.3, -5.0, 2.0, 7.0, 1.0, -0.9, 3.0, 4.0, -8.0, 2.5])

FUNCS: dict[str, Callable[[Any, Any], Any]] = {
    "div": lambda a, b: scm.div(a, b),
    "mul": lambda a, b: scm.mul(a, b),
    "log": lambda a, b: scm.log(a),
    "sqrt": lambda a, b: scm.sqrt(b),
    "decode": lambda a, b: decode(a, b),
    "strict_inference": lambda a, b: tuple(strict_inference(a, b))[:2],
}


def tangent_rule(t: np.ndarray, bottom: np.ndarray, policy: GradientPolicy) -> np.ndarray:
    if policy is T:
        return t
    if policy is R:
        return np.zeros_like(t)
    return np.where(bottom, 0.0, t)


def cotangent_rule(g: np.ndarray, bottom: np.ndarray, policy: GradientPolicy) -> np.ndarray:
    if policy is T:
        return g
    if policy is R:
        return np.zeros_like(g)
    if policy is P:
        return np.where(bottom, 0.0, g)
    return np.where(bottom, 0.0, np.clip(g, -1.0, 1.0))


def close(got: Any, want: Any, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, equal_nan=False, err_msg=what)


# ---------------------------------------------------------------------------------------
# one interface over both frameworks: derivatives of value(x, y) as numpy arrays


class Jax:
    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp

    def a(self, v: np.ndarray) -> Any:
        return self.jnp.asarray(v)

    def value(self, name: str) -> Callable[[Any, Any], Any]:
        return lambda a, b: FUNCS[name](a, b)[0]

    def bottom(self, name: str) -> np.ndarray:
        return np.asarray(FUNCS[name](self.a(X), self.a(Y))[1])

    def jvp(self, f: Callable[..., Any], tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
        return np.asarray(self.jax.jvp(f, (self.a(X), self.a(Y)), (self.a(tx), self.a(ty)))[1])

    def jit_jvp(self, f: Callable[..., Any]) -> np.ndarray:
        jax = self.jax
        g = jax.jit(lambda x, y, tx, ty: jax.jvp(f, (x, y), (tx, ty))[1])
        return np.asarray(g(self.a(X), self.a(Y), self.a(TX), self.a(TY)))

    def vmap_jvp(self, f: Callable[..., Any]) -> np.ndarray:
        jax = self.jax

        def one(x: Any, y: Any, tx: Any, ty: Any) -> Any:
            return jax.jvp(lambda u, v: f(u[None], v[None])[0], (x, y), (tx, ty))[1]

        return np.asarray(jax.vmap(one)(self.a(X), self.a(Y), self.a(TX), self.a(TY)))

    def vjp(self, f: Callable[..., Any], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, pull = self.jax.vjp(f, self.a(X), self.a(Y))
        gx, gy = pull(self.a(w))
        return np.asarray(gx), np.asarray(gy)

    def jacfwd(self, f: Callable[..., Any]) -> np.ndarray:
        return np.asarray(self.jax.jacfwd(f, argnums=(0, 1))(self.a(X), self.a(Y)))

    def jacrev(self, f: Callable[..., Any]) -> np.ndarray:
        return np.asarray(self.jax.jacrev(f, argnums=(0, 1))(self.a(X), self.a(Y)))

    def hessians(self, loss: Callable[..., Any]) -> tuple[np.ndarray, np.ndarray]:
        jax = self.jax
        x = (self.a(X), self.a(Y))
        h = jax.hessian(loss, argnums=(0, 1))(*x)
        rr = jax.jacrev(jax.jacrev(loss, argnums=(0, 1)), argnums=(0, 1))(*x)
        return np.asarray(h), np.asarray(rr)

    def sum_w(self, f: Callable[..., Any], w: np.ndarray) -> Callable[..., Any]:
        wa = self.a(w)
        return lambda a, b: self.jnp.sum(wa * self.jnp.where(self.jnp.isnan(f(a, b)), 0.0,
                                                             f(a, b)))


class Torch:
    def __init__(self) -> None:
        import torch
        import torch.func

        self.torch, self.func = torch, torch.func

    def a(self, v: np.ndarray) -> Any:
        return self.torch.from_numpy(np.array(v, dtype=np.float64))

    def value(self, name: str) -> Callable[[Any, Any], Any]:
        return lambda a, b: FUNCS[name](a, b)[0]

    def bottom(self, name: str) -> np.ndarray:
        return FUNCS[name](self.a(X), self.a(Y))[1].numpy()

    def jvp(self, f: Callable[..., Any], tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
        out = self.func.jvp(f, (self.a(X), self.a(Y)), (self.a(tx), self.a(ty)))[1]
        return out.detach().numpy()

    def dual_jvp(self, f: Callable[..., Any]) -> np.ndarray:
        import torch.autograd.forward_ad as fwad

        with fwad.dual_level():
            x = fwad.make_dual(self.a(X), self.a(TX))
            y = fwad.make_dual(self.a(Y), self.a(TY))
            return fwad.unpack_dual(f(x, y)).tangent.detach().numpy()

    def vmap_jvp(self, f: Callable[..., Any]) -> np.ndarray:
        func = self.func

        def one(x: Any, y: Any, tx: Any, ty: Any) -> Any:
            return func.jvp(lambda u, v: f(u[None], v[None])[0], (x, y), (tx, ty))[1]

        return func.vmap(one)(self.a(X), self.a(Y), self.a(TX), self.a(TY)).detach().numpy()

    def vjp(self, f: Callable[..., Any], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, pull = self.func.vjp(f, self.a(X), self.a(Y))
        gx, gy = pull(self.a(w))
        return gx.detach().numpy(), gy.detach().numpy()

    def backward(self, f: Callable[..., Any], w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.a(X).requires_grad_(True), self.a(Y).requires_grad_(True)
        (f(x, y) * self.a(w)).sum().backward()
        # an argument the function ignores gets no .grad (vjp gives zeros)
        return tuple(np.zeros_like(v) if t.grad is None else t.grad.numpy()  # type: ignore[return-value]
                     for t, v in ((x, X), (y, Y)))

    def jacfwd(self, f: Callable[..., Any]) -> np.ndarray:
        j = self.func.jacfwd(f, argnums=(0, 1))(self.a(X), self.a(Y))
        return np.stack([t.detach().numpy() for t in j])

    def jacrev(self, f: Callable[..., Any]) -> np.ndarray:
        j = self.func.jacrev(f, argnums=(0, 1))(self.a(X), self.a(Y))
        return np.stack([t.detach().numpy() for t in j])

    def hessians(self, loss: Callable[..., Any]) -> tuple[np.ndarray, np.ndarray]:
        func = self.func
        x = (self.a(X), self.a(Y))
        h = func.hessian(loss, argnums=(0, 1))(*x)
        rr = func.jacrev(func.jacrev(loss, argnums=(0, 1)), argnums=(0, 1))(*x)
        return (np.array([[t.detach().numpy() for t in r] for r in h]),
                np.array([[t.detach().numpy() for t in r] for r in rr]))

    def sum_w(self, f: Callable[..., Any], w: np.ndarray) -> Callable[..., Any]:
        wa = self.a(w)
        return lambda a, b: (wa * self.torch.nan_to_num(f(a, b), nan=0.0)).sum()


@pytest.fixture
def ad(backend: Any) -> Any:
    if backend.name == "jax":
        return Jax()
    if backend.name == "torch":
        return Torch()
    pytest.skip(f"{backend.name}: no autodiff")


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", list(FUNCS))
def test_jvp_is_tangent_rule_of_ungated_derivative(ad: Any, name: str,
                                                    policy: GradientPolicy) -> None:
    f = ad.value(name)
    bottom = ad.bottom(name)
    assert bottom.any() and not bottom.all()
    with gradient_policy(T):
        free = ad.jvp(f, TX, TY)
    with gradient_policy(policy):
        got = ad.jvp(f, TX, TY)
        want = tangent_rule(free, bottom, policy)
        close(got, want, f"{name} jvp {policy}")
        close(ad.vmap_jvp(f), want, f"{name} vmap(jvp) {policy}")
        if isinstance(ad, Jax):
            close(ad.jit_jvp(f), want, f"{name} jit(jvp) {policy}")
        else:
            close(ad.dual_jvp(f), want, f"{name} forward_ad {policy}")
    if policy is not T:
        assert np.all(got[bottom] == 0.0)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", list(FUNCS))
def test_reverse_mode_is_cotangent_rule(ad: Any, name: str, policy: GradientPolicy) -> None:
    # the semantics reverse mode always had: the cotangent entering the gate is
    # transformed by the policy (CLAMP clips W's entries of magnitude > 1)
    f = ad.value(name)
    bottom = ad.bottom(name)
    with gradient_policy(T):
        want = ad.vjp(f, cotangent_rule(W, bottom, policy))
    with gradient_policy(policy):
        got = ad.vjp(f, W)
        if isinstance(ad, Torch):
            back = ad.backward(f, W)
            for g, w in zip(back, want, strict=True):
                close(g, w, f"{name} .backward() {policy}")
    for g, w in zip(got, want, strict=True):
        close(g, w, f"{name} vjp {policy}")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", ["div", "decode", "strict_inference"])
def test_torch_compiled_jvp_applies_policy(backend: Any, name: str,
                                           policy: GradientPolicy) -> None:
    # Dynamo drops autograd.Functions under torch.func.jvp: the compiled gate must
    # still mask the tangent (it used to pass it unchanged: a silent wrong result)
    if backend.name != "torch":
        pytest.skip("torch.compile")
    import types

    import torch

    ad = Torch()
    f = ad.value(name)

    def jvp(x: Any, y: Any, tx: Any, ty: Any) -> Any:
        return torch.func.jvp(f, (x, y), (tx, ty))[1]

    code = jvp.__code__.replace(co_name=f"jvp_{name}_{policy.name}")  # own compile cache
    own = types.FunctionType(code, jvp.__globals__, code.co_name, None, jvp.__closure__)
    with gradient_policy(policy):
        got = torch.compile(own, fullgraph=True, backend="aot_eager")(
            ad.a(X), ad.a(Y), ad.a(TX), ad.a(TY))
    with gradient_policy(T):
        free = ad.jvp(f, TX, TY)
    close(got.detach().numpy(), tangent_rule(free, ad.bottom(name), policy),
          f"compiled jvp {name} {policy}")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", ["div", "decode", "strict_inference"])
def test_jacfwd_equals_jacrev(ad: Any, name: str, policy: GradientPolicy) -> None:
    # unit cotangents are never clipped, so even CLAMP's two modes agree here
    f = ad.value(name)
    with gradient_policy(policy):
        close(ad.jacfwd(f), ad.jacrev(f), f"{name} jacfwd vs jacrev {policy}")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", ["div", "decode", "log"])
def test_hessian_forward_over_reverse(ad: Any, name: str, policy: GradientPolicy) -> None:
    loss = ad.sum_w(ad.value(name), W)
    with gradient_policy(policy):
        h, rr = ad.hessians(loss)
    bottom = ad.bottom(name)
    finite = np.isfinite(X) & np.isfinite(Y) & ~bottom
    # forward-over-reverse equals reverse-over-reverse (same gradient function)
    close(h, rr, f"{name} hessian {policy}")
    if policy is R:
        assert np.all(h == 0.0)
    else:
        assert np.isfinite(h[:, :, finite][:, :, :, finite]).all()


@pytest.mark.parametrize("policy", POLICIES)
def test_clamp_forward_mode_does_not_clip(ad: Any, policy: GradientPolicy) -> None:
    # documented: clipping applies to cotangents; a tangent of 50 passes unclipped
    f = ad.value("div")
    tx = np.full_like(X, 50.0)
    with gradient_policy(T):
        free = ad.jvp(f, tx, np.zeros_like(Y))
    with gradient_policy(policy):
        got = ad.jvp(f, tx, np.zeros_like(Y))
    bottom = ad.bottom("div")
    if policy in (C, P):
        close(got, np.where(bottom, 0.0, free), "div 50-tangent")
        assert np.abs(got).max() > 1.0


# ---------------------------------------------------------------------------------------
# SCMTrainingLoss: the combined objective (several gates inside) in forward mode

P_ = np.array([1.0, -2.0, 0.5, 3.0, 0.25, 2.0])
Q_ = np.array([0.5, 1e-6, -1.0, 0.0, 2.0, 0.01])
YN = np.array([2.0, 1.0, -0.5, 1.0, 0.1, np.inf])
YD = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("policy", POLICIES)
def test_training_loss_forward_mode(backend: Any, policy: GradientPolicy) -> None:
    loss_fn = SCMTrainingLoss()
    if backend.name == "jax":
        import jax
        import jax.numpy as jnp

        args = [jnp.asarray(v) for v in (P_, Q_, YN, YD)]

        def total(p: Any, q: Any) -> Any:
            return loss_fn(jnp.asarray(0.5), p, q, args[2], args[3])[0]

        tp, tq = jnp.ones_like(args[0]), jnp.linspace(-1.0, 1.0, 6)
        with gradient_policy(policy):
            _, t_out = jax.jvp(total, (args[0], args[1]), (tp, tq))
            gp, gq = jax.grad(total, argnums=(0, 1))(args[0], args[1])
            jf = jax.jacfwd(total, argnums=(0, 1))(args[0], args[1])
            h = jax.hessian(total, argnums=(0, 1))(args[0], args[1])
        t_out, gp, gq = float(t_out), np.asarray(gp), np.asarray(gq)
        jf = [np.asarray(j) for j in jf]
        h = np.asarray(h)
        tp, tq = np.asarray(tp), np.asarray(tq)
    elif backend.name == "torch":
        import torch
        import torch.func as func

        args = [torch.from_numpy(v.copy()) for v in (P_, Q_, YN, YD)]

        def total(p: Any, q: Any) -> Any:
            return loss_fn(torch.tensor(0.5, dtype=torch.float64), p, q, args[2], args[3])[0]

        tp, tq = torch.ones(6, dtype=torch.float64), torch.linspace(-1.0, 1.0, 6,
                                                                     dtype=torch.float64)
        with gradient_policy(policy):
            t_out = float(func.jvp(total, (args[0], args[1]), (tp, tq))[1])
            gp, gq = (g.detach().numpy() for g in func.grad(total, argnums=(0, 1))(*args[:2]))
            jf = [j.detach().numpy() for j in func.jacfwd(total, argnums=(0, 1))(*args[:2])]
            h = np.array([[t.detach().numpy() for t in r]
                          for r in func.hessian(total, argnums=(0, 1))(*args[:2])])
        tp, tq = tp.numpy(), tq.numpy()
    else:
        pytest.skip("no autodiff")
    assert np.isfinite(t_out) and np.isfinite(h).all()
    assert all(np.isfinite(j).all() for j in jf)
    if policy is not C:  # linear policies: forward and reverse are one linear map
        # (accumulated in different orders: agreement to rounding of the largest term)
        atol = 1e-12 * max(1.0, float(np.abs(gp).max()), float(np.abs(gq).max()))
        np.testing.assert_allclose(t_out, gp @ tp + gq @ tq, rtol=1e-10, atol=atol)
        np.testing.assert_allclose(jf[0], gp, rtol=1e-10, atol=atol)
        np.testing.assert_allclose(jf[1], gq, rtol=1e-10, atol=atol)
