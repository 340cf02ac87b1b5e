"""Gradient policies as real autodiff hooks (semantics §6, decision #8).

For each policy the gradient reaching the inputs of ``scm.div`` (and of ``decode`` /
``strict_inference``) equals the policy transform of the upstream gradient times the
analytic partial derivatives, element by element, on torch and JAX; gradients stay
finite (except PASSTHROUGH); the eager-PyTorch backward override; and no stale trace
under ``jax.jit`` / ``torch.compile`` when the policy or the registry changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from zpml_core import decode, scm, strict_inference
from zpml_core.autodiff.policies import (
    GradientPolicy,
    gradient_policy,
    policy_registry_snapshot,
    register_policy,
    restore_policy_registry,
)

pytestmark = pytest.mark.autodiff

C, P, R, T = (GradientPolicy.CLAMP, GradientPolicy.PROJECT, GradientPolicy.REJECT,
              GradientPolicy.PASSTHROUGH)
ALL = [C, P, R, T]


@pytest.fixture(autouse=True)
def _clean_registry():
    snap = policy_registry_snapshot()
    yield
    restore_policy_registry(snap)


def transform(g: np.ndarray, bottom: np.ndarray, policy: GradientPolicy) -> np.ndarray:
    """The policy table of semantics §6.1, independently in numpy."""
    if policy is T:
        return g
    if policy is R:
        return np.zeros_like(g)
    if policy is P:
        return np.where(bottom, 0.0, g)
    return np.where(bottom, 0.0, np.clip(g, -1.0, 1.0))


# x / y with ⊥ from: y == 0, NaN x, inf y, mask_x, and the |x|/y² probe (y tiny)
X = np.array([1.0, 2.0, 3.0, -4.0, 5.0, np.nan, 1.0, 2.0, 0.5, 7.0])
Y = np.array([0.5, 0.0, 2.0, 0.1, 1e-160, 1.0, np.inf, 3.0, -0.25, 4.0])
MASK_X = np.array([False] * 9 + [True])
BOTTOM = np.array([False, True, False, False, True, True, True, False, False, True])
W = np.array([10.0, 10.0, -0.3, -5.0, 2.0, 7.0, 1.0, -0.9, 3.0, 4.0])  # upstream dL/dvalue


def grads(backend_name: str, f: Callable[..., Any], inputs: list[np.ndarray],
          wrt: tuple[int, ...] = (0, 1)) -> list[np.ndarray]:
    if backend_name == "torch":
        import torch

        ts = [torch.tensor(x, requires_grad=i in wrt) for i, x in enumerate(inputs)]
        out = f(*ts)
        gs = torch.autograd.grad(out, [ts[i] for i in wrt])
        return [g.numpy() for g in gs]
    import jax
    import jax.numpy as jnp

    gs = jax.grad(f, argnums=wrt)(*[jnp.asarray(x) for x in inputs])
    return [np.asarray(g) for g in gs]


def div_loss(x, y, w, m):
    return (scm.div(x, y, mask_x=m).value * w).sum()


def expected_div_grads(policy: GradientPolicy) -> tuple[np.ndarray, np.ndarray]:
    g = transform(W, BOTTOM, policy)
    ys = np.where(BOTTOM, 1.0, Y)
    xs = np.where(BOTTOM, 0.0, X)
    gx = np.where(BOTTOM, 0.0, g / ys)
    gy = np.where(BOTTOM, 0.0, -g * xs / ys**2)
    return gx, gy


def check(actual: list[np.ndarray], expected: tuple[np.ndarray, ...], what: str = "") -> None:
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-14, atol=0, err_msg=what)
        assert np.isfinite(a).all(), what


# ---------------------------------------------------------------------------------------
# the transform, element by element


def test_div_bottom_mask_is_as_designed(arr):
    r = scm.div(arr(X), arr(Y), mask_x=arr(MASK_X, "bool"))
    np.testing.assert_array_equal(arr.np(r.bottom), BOTTOM)


@pytest.mark.parametrize("policy", ALL)
def test_div_gradient_is_policy_transform(backend, policy):
    with gradient_policy(policy):
        gx, gy = grads(backend.name, div_loss, [X, Y, W, MASK_X])
    check([gx, gy], expected_div_grads(policy), str(policy))


def test_default_policy_is_clamp_and_registry_applies(backend):
    gx, gy = grads(backend.name, div_loss, [X, Y, W, MASK_X])
    check([gx, gy], expected_div_grads(C), "default")
    register_policy("scm_ops", P)
    gx, gy = grads(backend.name, div_loss, [X, Y, W, MASK_X])
    check([gx, gy], expected_div_grads(P), "registry scm_ops=PROJECT")
    with gradient_policy(R):  # context beats registry
        gx, gy = grads(backend.name, div_loss, [X, Y, W, MASK_X])
    check([gx, gy], expected_div_grads(R), "context")


@pytest.mark.parametrize("policy", [C, P, R])
def test_gradients_finite_with_singular_downstream(backend, policy):
    # downstream log|v| is singular at the bottom carrier v = 0: the cotangent there is
    # ±inf/NaN; every policy except PASSTHROUGH zeroes it before it reaches x and y
    def f(x, y):
        v = scm.div(x, y).value
        return (v * v + 1.0).sum() + (abs(v) ** 0.5).sum() + (1.0 / v).sum() * 0.0

    x = np.array([1.0, 2.0, np.nan, 4.0, -1.0])
    y = np.array([2.0, 0.0, 1.0, np.inf, 1e-200])
    with gradient_policy(policy):
        gx, gy = grads(backend.name, f, [x, y])
    assert np.isfinite(gx).all() and np.isfinite(gy).all(), (policy, gx, gy)
    bottom = np.array([False, True, True, True, True])
    assert not gx[bottom].any() and not gy[bottom].any()


def test_complex_clamp_leaves_off_bottom_unchanged(backend):
    # CLAMP on complex values: 0 at ⊥, unchanged elsewhere (semantics §6.1)
    x = np.array([3 + 4j, 1 + 1j, 2 - 1j])
    y = np.array([1 + 0j, 0j, 0.5 + 0j])
    w = np.array([10.0, 10.0, -8.0])

    def f(x, y, w):
        v = scm.div(x, y).value
        return (v.real * w).sum()

    with gradient_policy(C):
        (gx,) = grads(backend.name, f, [x, y, w], wrt=(0,))
    # d Re(x/y)/d Re(x) = Re(1/y); unclipped upstream w (|w| > 1), 0 at the bottom
    np.testing.assert_allclose(gx.real, [10.0, 0.0, -16.0], rtol=1e-14)


@pytest.mark.parametrize("policy", ALL)
def test_decode_gradient_is_policy_transform(backend, policy):
    N = np.array([1.0, 2.0, 3.0, np.inf, -6.0])
    D = np.array([0.5, 0.0, -2.0, 1.0, 3.0])
    w = np.array([4.0, 9.0, 0.5, 2.0, -3.0])
    bottom = np.array([False, True, False, True, False])

    def f(N, D, w):
        return (decode(N, D).value * w).sum()

    with gradient_policy(policy):
        gN, gD = grads(backend.name, f, [N, D, w])
    g = transform(w, bottom, policy)
    Ds, Ns = np.where(bottom, 1.0, D), np.where(bottom, 0.0, N)
    check([gN, gD], (np.where(bottom, 0.0, g / Ds), np.where(bottom, 0.0, -g * Ns / Ds**2)),
          str(policy))


@pytest.mark.parametrize("policy", ALL)
def test_strict_inference_gradient_is_policy_transform(backend, policy):
    # P has a trailing axis: the bottom mask (Q's shape) is expanded for the gate
    Pm = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, -6.0], [np.nan, 1.0]])
    Q = np.array([0.5, 1e-9, -2.0, 1.0])
    w = np.array([[3.0, -0.5], [2.0, 2.0], [0.25, -7.0], [1.0, 1.0]])
    bottom = np.array([False, True, False, True])[:, None]

    def g_fn(P, Q, w):
        # NaN at bottom in the value; the gradient must still be finite there
        d = strict_inference(P, Q).decoded
        return (d * w).sum()

    with gradient_policy(policy):
        gP, gQ = grads(backend.name, g_fn, [Pm, Q, w])
    gw = transform(np.broadcast_to(w, Pm.shape), np.broadcast_to(bottom, Pm.shape), policy)
    Qs = np.where(bottom[:, 0], 1.0, Q)[:, None]
    Ps = np.where(bottom, 0.0, Pm)
    eP = np.where(bottom, 0.0, gw / Qs)
    eQ = np.where(bottom[:, 0], 0.0, (-gw * Ps / Qs**2).sum(axis=1))
    check([gP, gQ], (eP, eQ), str(policy))


# ---------------------------------------------------------------------------------------
# when the policy is read (decision #8)


def test_torch_backward_context_overrides_forward_policy(backend):
    if backend.name != "torch":
        pytest.skip("eager backward override is a PyTorch feature (JAX traces the "
                    "backward inside the grad call)")
    import torch

    def run(fwd: GradientPolicy | None, bwd: GradientPolicy | None) -> list[np.ndarray]:
        x = torch.tensor(X, requires_grad=True)
        y = torch.tensor(Y, requires_grad=True)
        w, m = torch.tensor(W), torch.tensor(MASK_X)
        if fwd is None:
            loss = (scm.div(x, y, mask_x=m).value * w).sum()
        else:
            with gradient_policy(fwd):
                loss = (scm.div(x, y, mask_x=m).value * w).sum()
        if bwd is None:
            loss.backward()
        else:
            with gradient_policy(bwd):
                loss.backward()
        return [x.grad.numpy(), y.grad.numpy()]

    # the seed guide's pattern: forward under the default, backward under PROJECT
    check(run(None, P), expected_div_grads(P), "guide pattern")
    check(run(R, P), expected_div_grads(P), "backward context wins")
    check(run(T, R), expected_div_grads(R), "PASSTHROUGH forward keeps the gate in eager")
    check(run(P, None), expected_div_grads(P), "forward-time policy without a context")
    check(run(None, None), expected_div_grads(C), "default")


def test_jax_context_around_grad_applies(backend):
    if backend.name != "jax":
        pytest.skip("JAX-specific: the context around jax.grad / jax.vjp")
    import jax
    import jax.numpy as jnp

    f = div_loss
    args = [jnp.asarray(a) for a in (X, Y, W, MASK_X)]
    for policy in ALL:
        with gradient_policy(policy):
            gx, gy = jax.grad(f, argnums=(0, 1))(*args)
        check([np.asarray(gx), np.asarray(gy)], expected_div_grads(policy), str(policy))
    # jax.vjp: the forward (and the custom_vjp's residuals) are taken inside the context
    with gradient_policy(R):
        _, vjp = jax.vjp(lambda x: scm.div(x, args[1]).value, args[0])
    (gx,) = vjp(args[2])
    assert not np.asarray(gx).any()


def test_gate_is_identity_forward_and_skipped_without_grad(backend, arr):
    x, y = arr(X), arr(Y)
    plain = arr.np(scm.div(x, y).value)
    if backend.name == "torch":
        import torch

        xg = torch.tensor(X, requires_grad=True)
        v = scm.div(xg, y).value
        assert v.grad_fn is not None
        np.testing.assert_array_equal(v.detach().numpy(), plain)
        assert scm.div(x, y).value.grad_fn is None  # nothing requires grad: no gate
        with torch.no_grad():
            assert scm.div(xg, y).value.grad_fn is None
    else:
        import jax

        out = jax.jit(lambda a, b: scm.div(a, b).value)(x, y)
        np.testing.assert_array_equal(np.asarray(out), plain)


def test_torch_func_grad_and_vmap(backend):
    if backend.name != "torch":
        pytest.skip("torch.func transforms")
    import torch

    x, y, w = (torch.tensor(a) for a in (X, Y, W))
    m = torch.tensor(MASK_X)

    def f(x, y):
        return (scm.div(x, y, mask_x=m).value * w).sum()

    for policy in ALL:
        with gradient_policy(policy):
            gx, gy = torch.func.grad(f, argnums=(0, 1))(x, y)
        check([gx.numpy(), gy.numpy()], expected_div_grads(policy), f"func.grad {policy}")
    # per-row gradients through vmap (generate_vmap_rule)
    xs = torch.stack([x, x * 2])
    with gradient_policy(P):
        gxs = torch.func.vmap(torch.func.grad(lambda a: f(a, y)))(xs)
    ex, _ = expected_div_grads(P)
    np.testing.assert_allclose(gxs[0].numpy(), ex, rtol=1e-14)
    np.testing.assert_allclose(gxs[1].numpy(), ex, rtol=1e-14)  # d/dx of x/y: same


# ---------------------------------------------------------------------------------------
# no stale trace: jax.jit and torch.compile


def _compiled_grad(backend_name: str) -> Callable[[], list[np.ndarray]]:
    """A compiled function computing d/dx, d/dy of the div loss (one compilation cache)."""
    if backend_name == "torch":
        import torch

        torch._dynamo.reset()
        cf = torch.compile(div_loss, fullgraph=True)

        def run() -> list[np.ndarray]:
            x = torch.tensor(X, requires_grad=True)
            y = torch.tensor(Y, requires_grad=True)
            cf(x, y, torch.tensor(W), torch.tensor(MASK_X)).backward()
            return [x.grad.numpy(), y.grad.numpy()]
        return run
    import jax
    import jax.numpy as jnp

    g = jax.jit(jax.grad(div_loss, argnums=(0, 1)))
    args = [jnp.asarray(a) for a in (X, Y, W, MASK_X)]
    return lambda: [np.asarray(a) for a in g(*args)]


def test_changed_policy_takes_effect_under_compilation(backend):
    run = _compiled_grad(backend.name)
    for policy in [None, P, None, R, T, C, P]:
        if policy is None:
            got = run()
        else:
            with gradient_policy(policy):
                got = run()
        check(got, expected_div_grads(policy or C), f"compiled, policy {policy}")


def test_changed_registry_takes_effect_under_compilation(backend):
    run = _compiled_grad(backend.name)
    check(run(), expected_div_grads(C), "before")
    register_policy("scm_ops", R)
    check(run(), expected_div_grads(R), "registry REJECT")
    register_policy("scm_ops", P)
    check(run(), expected_div_grads(P), "registry PROJECT")
    restore_policy_registry({k: v for k, v in policy_registry_snapshot().items()
                             if k != "scm_ops"})
    check(run(), expected_div_grads(C), "restored")


def test_jax_grad_of_jitted_forward_and_jitted_vjp(backend):
    if backend.name != "jax":
        pytest.skip("JAX-specific composition")
    import jax
    import jax.numpy as jnp

    f = jax.jit(div_loss)
    args = [jnp.asarray(a) for a in (X, Y, W, MASK_X)]
    for policy in [P, None, R, None]:
        if policy is None:
            got = jax.grad(f, argnums=(0, 1))(*args)
        else:
            with gradient_policy(policy):
                got = jax.grad(f, argnums=(0, 1))(*args)
        check([np.asarray(a) for a in got], expected_div_grads(policy or C), str(policy))


def test_torch_compiled_backward_uses_forward_time_policy(backend):
    # documented limitation: a compiled graph's backward cannot look at Python state,
    # so under torch.compile the context must enclose the forward pass
    if backend.name != "torch":
        pytest.skip("torch.compile specific")
    import torch

    torch._dynamo.reset()
    cf = torch.compile(div_loss, fullgraph=True)
    x = torch.tensor(X, requires_grad=True)
    y = torch.tensor(Y, requires_grad=True)
    loss = cf(x, y, torch.tensor(W), torch.tensor(MASK_X))
    with gradient_policy(P):
        loss.backward()
    check([x.grad.numpy(), y.grad.numpy()], expected_div_grads(C), "forward-time CLAMP")


def test_policy_context_is_per_thread_under_compilation(backend):
    run = _compiled_grad(backend.name)
    out: dict[str, list[np.ndarray]] = {}

    def worker() -> None:
        out["thread"] = run()  # a new thread does not inherit the context

    with gradient_policy(R):
        check(run(), expected_div_grads(R), "main thread, REJECT")
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        check(run(), expected_div_grads(R), "main thread again")
    check(out["thread"], expected_div_grads(C), "other thread, default")
