"""Gradients at bottom positions (semantics §1.6, design rule 5), torch and jax.

For every op, the gradient of ``sum(value)`` w.r.t. each input, on a grid of edge inputs:

* is never NaN;
* is exactly 0 at bottom positions (safe operands are substituted before computing);
* equals the analytic derivative (computed independently in numpy) at non-bottom
  positions whose operands are normal (or ±0) and whose analytic derivative is finite —
  there it is finite too. Non-bottom positions whose true derivative is infinite
  (``inv`` at 1e-160, ``decode`` with a tiny D) may be ±inf (semantics §1.6, §10 #7), never NaN.
  Subnormal operands are signed zeros under DAZ (semantics §10 #1): there the gradient is the
  one at that zero (finite where that is finite; e.g. ``pow(1e-320, 0.5)`` is +inf like
  ``pow(0, 0.5)``).

Float64 gradients of torch and jax agree everywhere, except where the true derivative
``-N/D²`` is finite but ``D⁻²`` overflows (``|D| < 2**-511``, only reachable in
``decode``): JAX's quotient rule forms ``D⁻²`` and reports ±inf, torch the finite value
(``-1e162`` for ``N=1e-160, D=1e-161``).
"""

from __future__ import annotations

import itertools
import math

import array_api_compat
import numpy as np
import pytest
from conftest import requested_backends

from zpml_core import decode, encode, get_backend_by_name, lift_targets, scm, strict_inference

pytestmark = pytest.mark.autodiff

INF, NAN = math.inf, math.nan
TINY = float(np.finfo(np.float64).smallest_normal)
ATOL = 1e-290  # JAX flushes subnormal intermediates of the backward pass to 0
RTOL = 1e-12

UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")
BINARY = ("add", "sub", "mul", "div")

X_EDGE = [0.0, -0.0, 1.0, -1.0, 0.3, 2.5, -2.5, 709.0, 710.0, -746.0, 1e-160, -1e-160,
          1e-320, -1e-320, 1e-308, 1e308, -1e308, 1e200, INF, -INF, NAN]
Y_EDGE = [0.0, -0.0, 2.0, -3.0, 0.5, 1e308, 1e200, 1e-60, 1e-154, 7.4e-155, 2.0**-511,
          1e-161, 1e-320, INF, -INF, NAN]
BASE_EDGE = [0.0, -0.0, 1.0, 2.0, 0.5, 4.0, -2.0, -8.0, 1e-160, 1e-320, 1e308, INF, NAN]
EXPO_EDGE = [0.0, 0.5, 1 / 3, -0.5, -1.0, 2.0, 3.0, 1025.0, 1e308, -1e308, 1e-320, INF, NAN]


def grads(backend, f, *args):
    """Gradients of the scalar ``f(*arrays)`` w.r.t. every argument, as float64 numpy."""
    args = [np.asarray(a, dtype=np.float64) for a in args]
    if backend.name == "torch":
        import torch

        ts = [torch.tensor(a, requires_grad=True) for a in args]
        out = f(*ts)
        if not out.requires_grad:  # output not connected to any input: zero gradients
            return [np.zeros(a.shape) for a in args]
        gs = torch.autograd.grad(out, ts, allow_unused=True)
        return [np.zeros(a.shape) if g is None else g.numpy() for g, a in zip(gs, args, strict=True)]
    if backend.name == "jax":
        import jax
        import jax.numpy as jnp

        gs = jax.grad(f, argnums=tuple(range(len(args))))(*[jnp.asarray(a) for a in args])
        return [np.asarray(g) for g in gs]
    raise NotImplementedError(f"no gradient helper for backend {backend.name!r}")


def _sum(x):
    # torch Tensor.sum() and jax Array.sum() both exist
    return x.sum()


def _normal_or_zero(*xs):
    ok = np.ones(np.shape(xs[0]), dtype=bool)
    for x in xs:
        ok &= (np.abs(x) >= TINY) | (x == 0)
    return ok


# JAX differentiates x/y w.r.t. y as -x·y**-2, which underflows to 0 once y² overflows
# (|y| ≳ 1.3e154) while torch's -x/y/y still gives e.g. -1e-92 for (1e308, 1e200): a
# framework difference far below any meaningful gradient, allowed for ∂/∂(denominator).
ATOL_DENOM = 1e-80


def check_grad(name, g, bottom, analytic, normal, atol=ATOL, analytic_daz=None):
    """The module docstring's three rules (``analytic_daz``: the derivative at the
    flushed, signed-zero operands, where it differs from finiteness)."""
    g = np.asarray(g)
    assert not np.isnan(g).any(), f"{name}: NaN gradient at {np.argwhere(np.isnan(g)).ravel().tolist()}"
    assert (g[bottom] == 0).all(), f"{name}: gradient at ⊥ not 0: {g[bottom][g[bottom] != 0]}"
    with np.errstate(all="ignore"):
        fin = np.isfinite(analytic)
    cmp = ~bottom & normal & fin
    assert np.isfinite(g[cmp]).all(), f"{name}: non-finite gradient where the derivative is finite"
    np.testing.assert_allclose(g[cmp], analytic[cmp], rtol=RTOL, atol=atol, err_msg=name)
    # subnormal (DAZ) operands at non-⊥ positions: the gradient at the signed zero
    dz = ~bottom & ~normal
    if analytic_daz is None:
        assert np.isfinite(g[dz]).all(), f"{name}: non-finite gradient at a DAZ (subnormal) operand"
    else:
        with np.errstate(all="ignore"):
            fin_dz = np.isfinite(analytic_daz)
        assert np.isfinite(g[dz & fin_dz]).all(), f"{name}: non-finite gradient at a DAZ operand"
        inf_dz = dz & ~fin_dz
        np.testing.assert_array_equal(g[inf_dz], analytic_daz[inf_dz], err_msg=f"{name} (DAZ)")


def _bottom(backend, res):
    return np.asarray(backend.to_numpy(res.bottom))


# ---------------------------------------------------------------------------------------


def _d_unary(op, x):
    with np.errstate(all="ignore"):
        return {
            "inv": -1.0 / (x * x),
            "neg": -np.ones_like(x),
            "log": 1.0 / x,
            "exp": np.exp(x),
            "sqrt": 0.5 / np.sqrt(x),
            "sin": np.cos(x),
            "cos": -np.sin(x),
            "tan": 1.0 / np.cos(x) ** 2,
        }[op]


@pytest.mark.parametrize("op", UNARY)
def test_unary_gradients(backend, arr, op):
    x = np.array(X_EDGE)
    (g,) = grads(backend, lambda t: _sum(getattr(scm, op)(t).value), x)
    b = _bottom(backend, getattr(scm, op)(arr(x)))
    assert b.any() and not b.all()
    check_grad(f"d{op}/dx", g, b, _d_unary(op, x), _normal_or_zero(x))


def _d_binary(op, x, y):
    with np.errstate(all="ignore"):
        if op == "add":
            return np.ones_like(x), np.ones_like(y)
        if op == "sub":
            return np.ones_like(x), -np.ones_like(y)
        if op == "mul":
            return y.copy(), x.copy()
        return 1.0 / y, -(x / y) / y


@pytest.mark.parametrize("op", BINARY)
def test_binary_gradients(backend, arr, op):
    pairs = np.array(list(itertools.product(X_EDGE, Y_EDGE)))
    x, y = pairs[:, 0].copy(), pairs[:, 1].copy()
    gx, gy = grads(backend, lambda a, c: _sum(getattr(scm, op)(a, c).value), x, y)
    b = _bottom(backend, getattr(scm, op)(arr(x), arr(y)))
    ax, ay = _d_binary(op, x, y)
    normal = _normal_or_zero(x, y)
    check_grad(f"d{op}/dx", gx, b, ax, normal)
    check_grad(f"d{op}/dy", gy, b, ay, normal, atol=ATOL_DENOM if op == "div" else ATOL)


def test_div_gradient_finite_by_probe(backend, arr):
    # semantics §10 #3: the |x|/y² probe guarantees a finite ∂/∂y at every non-⊥ position
    pairs = np.array(list(itertools.product(X_EDGE, Y_EDGE)))
    x, y = pairs[:, 0].copy(), pairs[:, 1].copy()
    gx, gy = grads(backend, lambda a, c: _sum(scm.div(a, c).value), x, y)
    assert np.isfinite(gx).all() and np.isfinite(gy).all()


def test_pow_gradient_wrt_base(backend, arr):
    pairs = np.array(list(itertools.product(BASE_EDGE, EXPO_EDGE)))
    x, e = pairs[:, 0].copy(), pairs[:, 1].copy()
    gx, _ = grads(backend, lambda a, c: _sum(scm.pow(a, c).value), x, e)
    b = _bottom(backend, scm.pow(arr(x), arr(e)))
    with np.errstate(all="ignore"):
        analytic = np.where(e == 0, 0.0, e * np.power(x, e - 1))
        xz = np.where(np.abs(x) < TINY, np.copysign(0.0, x), x)
        ez = np.where(np.abs(e) < TINY, np.copysign(0.0, e), e)
        analytic_daz = np.where(ez == 0, 0.0, ez * np.power(xz, ez - 1))
    check_grad("dpow/dx", gx, b, analytic, _normal_or_zero(x, e), analytic_daz=analytic_daz)


@pytest.mark.parametrize(("x", "e"), [(0.0, 0.5), (0.0, 1 / 3), (-0.0, 0.5), (1e-320, 0.5)])
def test_pow_gradient_at_zero_base_not_nan(backend, x, e):
    # 0**0.5 = 0 is not ⊥; its true derivative is +inf (semantics §1.6) — never NaN.
    (gx, ge) = grads(backend, lambda a, c: _sum(scm.pow(a, c).value), [x], [e])
    assert not np.isnan(gx).any(), f"d(x**{e})/dx at x={x!r} is NaN"
    assert not np.isnan(ge).any()


def test_pow_gradient_wrt_exponent(backend, arr):
    # d(x**e)/de = x**e · log x is defined for x ≥ 0 only; checked there (and 0 at ⊥
    # everywhere, including negative bases with non-integral exponents)
    pairs = np.array(list(itertools.product(BASE_EDGE, EXPO_EDGE)))
    x, e = pairs[:, 0].copy(), pairs[:, 1].copy()
    _, ge = grads(backend, lambda a, c: _sum(scm.pow(a, c).value), x, e)
    b = _bottom(backend, scm.pow(arr(x), arr(e)))
    assert (ge[b] == 0).all()
    with np.errstate(all="ignore"):
        analytic = np.where(x == 0, 0.0, np.power(x, e) * np.log(x))
    nonneg = ~(x < 0)
    check_grad("dpow/de", ge[nonneg], b[nonneg], analytic[nonneg], _normal_or_zero(x, e)[nonneg])


# ---------------------------------------------------------------------------------------
# projective / inference functions


def test_decode_gradients(backend, arr):
    ns = [0.0, -0.0, 1.0, -3.0, 1e308, 1e-320, INF, NAN, 1e200]
    ds = [0.0, -0.0, 2.0, -0.5, 1e-5, 1e-200, 1e-320, 1e-308, 1e308, INF, NAN]
    pairs = np.array(list(itertools.product(ns, ds)))
    n, d = pairs[:, 0].copy(), pairs[:, 1].copy()
    gn, gd = grads(backend, lambda a, c: _sum(decode(a, c).value), n, d)
    b = _bottom(backend, decode(arr(n), arr(d)))
    with np.errstate(all="ignore"):
        an, ad = 1.0 / d, -(n / d) / d
    normal = _normal_or_zero(n, d)
    check_grad("ddecode/dN", gn, b, an, normal)
    check_grad("ddecode/dD", gd, b, ad, normal, atol=ATOL_DENOM)


def _strict_loss(P, Q):
    # decoded is NaN at ⊥; the meaningful loss masks it out with the result's own mask
    r = strict_inference(P, Q)
    xp = array_api_compat.array_namespace(r[0])
    b = r[1]
    while b.ndim < r[0].ndim:  # the mask lives on Q's shape
        b = b[..., None]
    return xp.sum(xp.where(b, 0.0, r[0]))


def test_strict_inference_gradients(backend, arr):
    P = np.array([1.0, 1.0, 1.0, INF, NAN, 1.0, 1.0, 1e308, 0.0, 2.0, 1e-320, -3.0])
    Q = np.array([0.0, -0.0, 1e-7, 1.0, 1.0, INF, NAN, 1e-5, 1e-3, -4.0, 1.0, 1e-320])
    gP, gQ = grads(backend, _strict_loss, P, Q)
    b = _bottom_strict(backend, arr, P, Q)
    with np.errstate(all="ignore"):
        aP, aQ = 1.0 / Q, -(P / Q) / Q
    normal = _normal_or_zero(P, Q)
    check_grad("dstrict/dP", gP, b, aP, normal)
    check_grad("dstrict/dQ", gQ, b, aQ, normal, atol=ATOL_DENOM)
    assert b.tolist() == [True, True, True, True, True, True, True, True, False, False, False, True]


def _bottom_strict(backend, arr, P, Q):
    return np.asarray(backend.to_numpy(strict_inference(arr(P), arr(Q))[1]))


def test_strict_inference_gradients_broadcast(backend, arr):
    P = np.array([[1.0, 2.0], [NAN, 1.0], [1.0, 1.0], [1e308, 1.0], [3.0, -1.0]])
    Q = np.array([1.0, 1.0, 0.0, 1e-5, 2.0])
    gP, gQ = grads(backend, _strict_loss, P, Q)
    assert not np.isnan(gP).any() and not np.isnan(gQ).any()
    np.testing.assert_array_equal(gP, [[1.0, 1.0], [0, 0], [0, 0], [0, 0], [0.5, 0.5]])
    np.testing.assert_allclose(gQ, [-3.0, 0.0, 0.0, 0.0, -2.0 / 4.0], rtol=1e-15)


def test_lift_targets_gradient(backend):
    y = np.array([1.5, -0.0, INF, -INF, NAN, 1e308])
    (g,) = grads(backend, lambda t: _sum(lift_targets(t)[0]), y)
    np.testing.assert_array_equal(g, [1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    (g,) = grads(backend, lambda t: _sum(lift_targets(t)[1]), y)
    np.testing.assert_array_equal(g, np.zeros(6))


def test_encode_gradient(backend, arr):
    v = np.array([1.5, NAN, -2.0, INF])
    bottom = np.array([False, True, False, True])

    def f(t):
        return _sum(encode(t, backend.asarray(bottom))[0])

    (g,) = grads(backend, f, v)
    np.testing.assert_array_equal(g, [1.0, 0.0, 1.0, 0.0])


# ---------------------------------------------------------------------------------------
# torch vs jax parity (float64, non-⊥ positions)


def _other_autodiff(backend):
    names, _ = requested_backends()
    for n in names:
        b = get_backend_by_name(n)
        if n != backend.name and b.supports_autodiff:
            return b
    pytest.skip("gradient parity needs a second autodiff backend (only one requested)")


def _parity_cases():
    pairs = np.array(list(itertools.product(X_EDGE, Y_EDGE)))
    pw = np.array(list(itertools.product(BASE_EDGE, EXPO_EDGE)))
    cases = {op: (lambda t, op=op: _sum(getattr(scm, op)(t).value), [np.array(X_EDGE)]) for op in UNARY}
    for op in BINARY:
        cases[op] = (lambda a, c, op=op: _sum(getattr(scm, op)(a, c).value), [pairs[:, 0].copy(), pairs[:, 1].copy()])
    cases["pow"] = (lambda a, c: _sum(scm.pow(a, c).value), [pw[:, 0].copy(), pw[:, 1].copy()])
    cases["decode"] = (lambda a, c: _sum(decode(a, c).value), [pairs[:, 0].copy(), pairs[:, 1].copy()])
    cases["strict_inference"] = (_strict_loss, [pairs[:, 0].copy(), pairs[:, 1].copy()])
    return cases


PARITY = _parity_cases()


@pytest.mark.parametrize("name", list(PARITY))
def test_gradients_agree_torch_jax(backend, name):
    other = _other_autodiff(backend)
    f, args = PARITY[name]
    g1 = grads(backend, f, *args)
    g2 = grads(other, f, *args)
    for i, (a, c) in enumerate(zip(g1, g2, strict=True)):
        a, c = a.copy(), c.copy()
        if name == "decode" and i == 1:
            # JAX forms D⁻², which overflows for |D| < 2**-511 although -N/D² may be
            # finite there: compare those positions by sign only
            d = np.asarray(args[1])
            jax_g, torch_g = (a, c) if backend.name == "jax" else (c, a)
            band = (np.abs(d) < 2.0**-511) & np.isinf(jax_g) & np.isfinite(torch_g)
            assert (np.sign(jax_g[band]) == np.sign(torch_g[band])).all()
            a[band] = c[band] = 0.0
        # compare everywhere, incl. ±inf and the 0 at ⊥ (NaN itself is reported above);
        # atol: see ATOL_DENOM
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=ATOL_DENOM, equal_nan=True,
                                   err_msg=f"{name} d/darg{i}: {backend.name} vs {other.name}")


# ---------------------------------------------------------------------------------------
# focused cases (minimal repros of the grid checks above)


def _pow_base(a, c):
    return _sum(scm.pow(a, c).value)


ZERO_OPERAND_CASES = [
    # (name, f, args, index of the argument, expected derivative)
    ("mul dx at x=0", lambda a, c: _sum(scm.mul(a, c).value), ([0.0], [3.0]), 0, 3.0),
    ("mul dy at y=-0", lambda a, c: _sum(scm.mul(a, c).value), ([2.0], [-0.0]), 1, 2.0),
    ("div dx at x=0", lambda a, c: _sum(scm.div(a, c).value), ([0.0], [4.0]), 0, 0.25),
    ("decode dN at N=0", lambda a, c: _sum(decode(a, c).value), ([0.0], [4.0]), 0, 0.25),
    ("strict_inference dP at P=0", _strict_loss, ([0.0], [1e-3]), 0, 1000.0),
    ("pow de at e=0", _pow_base, ([2.0], [0.0]), 1, math.log(2.0)),
    ("pow dx at x=0, e=2", _pow_base, ([0.0], [2.0]), 0, 0.0),
    ("pow dx at x=3, e=0", _pow_base, ([3.0], [0.0]), 0, 0.0),
    ("pow dx at x=0, e=1", _pow_base, ([0.0], [1.0]), 0, 1.0),
]


@pytest.mark.parametrize(("name", "f", "args", "k", "expected"), ZERO_OPERAND_CASES,
                         ids=[c[0] for c in ZERO_OPERAND_CASES])
def test_gradient_at_exact_zero_operand(backend, name, f, args, k, expected):
    # ±0 is an ordinary (non-subnormal) operand: the derivative is the analytic one, as in
    # the reference (semantics §1.6: non-⊥ gradients are not guarded). A DAZ flush must not
    # cut the gradient of an exact zero.
    g = grads(backend, f, *args)[k]
    assert not np.isnan(g).any(), f"{name}: NaN"
    np.testing.assert_allclose(g, [expected], rtol=1e-14, atol=0, err_msg=name)


@pytest.mark.parametrize("D", [1e-154, 7.4e-155, 1e-161, 1e-300])
@pytest.mark.parametrize("N", [0.0, -0.0])
def test_decode_gradient_zero_numerator_tiny_denominator(backend, N, D):
    # decode(0, D) = 0 is not ⊥ for a normal D; ∂/∂D = -N/D² = 0 — never NaN
    _, gd = grads(backend, lambda a, c: _sum(decode(a, c).value), [N], [D])
    assert not np.isnan(gd).any(), f"d decode/dD at (N={N!r}, D={D!r}) is NaN"
    assert gd[0] == 0
