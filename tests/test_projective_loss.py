"""``projective_distance_loss``: value against exact rational arithmetic, the bound
``[0, 1]``, scale invariance, poles, hostile magnitudes, shapes, dtypes, gradients."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from zpml_core.losses import LossConfig, projective_distance_loss

RNG_SEED = 12


def exact(P, Q, Yn, Yd, power: int = 2) -> float:
    """The mean of ``(P·Yd − Q·Yn)² / ((P² + Q²)(Yn² + Yd²))`` in exact rationals (an
    all-zero tuple contributes 0); ``power=1``: of its square roots (each element's
    rational correctly rounded to float64 before ``math.sqrt``)."""
    total = Fraction(0)
    n = 0
    for p, q, yn, yd in np.broadcast(P, Q, Yn, Yd):
        p, q, yn, yd = (Fraction(float(v)) for v in (p, q, yn, yd))
        den = (p * p + q * q) * (yn * yn + yd * yd)
        e = Fraction(0) if den == 0 else (p * yd - q * yn) ** 2 / den
        total += e if power == 2 else Fraction(math.sqrt(float(e)))
        n += 1
    return float(total / max(n, 1))


def sample(n: int, seed: int, *, spread: float = 3.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(4):
        mag = 10.0 ** rng.uniform(-spread, spread, n)
        out.append(np.where(rng.random(n) < 0.5, -mag, mag))
    out[3][: n // 4] = 0.0  # pole targets (Y_d = 0)
    out[1][n // 4: n // 3] = 0.0  # predicted poles (Q = 0)
    return out


@pytest.mark.parametrize("power", [2, 1])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-14), ("float32", 3e-6)])
def test_value_matches_exact_arithmetic(arr, dtype, rtol, power):
    data = [x.astype(dtype) for x in sample(64, RNG_SEED)]
    got = float(arr.np(projective_distance_loss(*(arr(x, dtype) for x in data), power=power)))
    want = exact(*data, power=power)
    assert got == pytest.approx(want, rel=rtol)


@pytest.mark.parametrize("power", [2, 1])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_hostile_magnitudes_are_finite_and_exact(arr, xp, dtype, power):
    fi = np.finfo(dtype)
    big, tiny = float(fi.max), float(fi.smallest_normal)
    P = np.array([big, -big, tiny, big, 1.0, tiny * 4, 3.0, 0.0], dtype)
    Q = np.array([big, big, tiny, tiny, big, -tiny, 0.0, 0.0], dtype)
    Yn = np.array([1.0, 1.0, -tiny, big, big, 2.0, 1.0, 1.0], dtype)
    Yd = np.array([1.0, 1.0, tiny, -big, tiny, 1.0, 0.0, 1.0], dtype)
    out = arr.np(projective_distance_loss(*(arr(x, dtype) for x in (P, Q, Yn, Yd)), power=power))
    assert np.isfinite(out) and 0.0 <= float(out) <= 1.0
    # per element, against exact arithmetic (the zero tuple contributes 0)
    for i in range(len(P)):
        one = arr.np(projective_distance_loss(*(arr(x[i:i + 1], dtype) for x in (P, Q, Yn, Yd)),
                                              power=power))
        want = exact(P[i:i + 1], Q[i:i + 1], Yn[i:i + 1], Yd[i:i + 1], power=power)
        assert float(one) == pytest.approx(want, rel=1e-5, abs=1e-30), i


def test_bounded_zero_at_match_and_scale_invariant(arr):
    P, Q, Yn, Yd = sample(200, RNG_SEED + 1, spread=30.0)
    out = float(arr.np(projective_distance_loss(arr(P), arr(Q), arr(Yn), arr(Yd))))
    assert 0.0 <= out <= 1.0
    # exact match (including the point at infinity) → 0; scaling either tuple by a power
    # of two changes no bit; by another constant at most rounding
    c = np.float64(-3.0)
    assert float(arr.np(projective_distance_loss(arr(P), arr(Q), arr(c * P), arr(c * Q)))) \
        == pytest.approx(0.0, abs=1e-30)
    for s in (2.0 ** 600, 2.0 ** -600, -0.5):
        scaled = float(arr.np(projective_distance_loss(arr(s * P), arr(s * Q), arr(Yn), arr(Yd))))
        assert scaled == out
    scaled = float(arr.np(projective_distance_loss(arr(7.3 * P), arr(7.3 * Q), arr(Yn), arr(Yd))))
    assert scaled == pytest.approx(out, rel=1e-13)


def test_opposite_sign_costs_like_a_wrong_direction(arr):
    # implicit loss's defect: for a large target y the prediction −y is nearly free;
    # the angle charges sin²(2·atan(y)) — the same as any prediction at that angle
    y = 1e3
    wrong_sign = float(arr.np(projective_distance_loss(arr([-y]), arr([1.0]), arr([y]), arr([1.0]))))
    assert wrong_sign == pytest.approx(np.sin(2 * np.arctan(y)) ** 2, rel=1e-10)
    pole = float(arr.np(projective_distance_loss(arr([5.0]), arr([0.0]), arr([-1.0]), arr([0.0]))))
    assert pole == 0.0  # (5, 0) and (−1, 0) are the same projective point


def test_nan_inf_empty_and_shapes(arr, xp):
    nan = float(arr.np(projective_distance_loss(arr([np.nan, 1.0]), arr([1.0, 1.0]),
                                                arr([1.0, 1.0]), arr([1.0, 1.0]))))
    assert np.isnan(nan)
    inf = float(arr.np(projective_distance_loss(arr([np.inf]), arr([1.0]), arr([1.0]), arr([1.0]))))
    assert np.isnan(inf)
    assert float(arr.np(projective_distance_loss(*(arr(np.zeros(0)) for _ in range(4))))) == 0.0
    # one shared denominator (B, 1) next to (B, k) numerators: one angle per numerator
    rng = np.random.default_rng(RNG_SEED + 2)
    P, Yn, Yd = rng.normal(size=(3, 5, 2))
    Q = rng.normal(size=(5, 1))
    got = float(arr.np(projective_distance_loss(arr(P), arr(Q), arr(Yn), arr(Yd))))
    assert got == pytest.approx(exact(P, np.broadcast_to(Q, P.shape), Yn, Yd), rel=1e-14)
    with pytest.raises(ValueError, match="all-pairs"):
        projective_distance_loss(arr(np.ones(4)), arr(np.ones(4)), arr(np.ones((4, 1))),
                                 arr(np.ones((4, 1))))
    with pytest.raises((ValueError, TypeError), match="tau_train"):
        projective_distance_loss(arr([1.0]), arr([1.0]), arr([1.0]), arr([1.0]), tau_train=-1.0)


def test_half_precision_is_computed_in_float32(arr, xp):
    if not hasattr(xp, "float16"):
        pytest.skip("the library has no float16")
    P, Q, Yn, Yd = (x.astype("float16") for x in sample(32, RNG_SEED + 3, spread=2.0))
    out = projective_distance_loss(*(arr(x, "float16") for x in (P, Q, Yn, Yd)))
    assert out.dtype == xp.float16
    assert float(arr.np(out)) == pytest.approx(exact(P, Q, Yn, Yd), rel=2e-3)


def test_complex_uses_moduli(arr, xp):
    rng = np.random.default_rng(RNG_SEED + 4)
    P, Q, Yn, Yd = (rng.normal(size=6) + 1j * rng.normal(size=6) for _ in range(4))
    got = projective_distance_loss(*(arr(x, "complex128") for x in (P, Q, Yn, Yd)))
    want = np.mean(np.abs(P * Yd - Q * Yn) ** 2
                   / ((np.abs(P) ** 2 + np.abs(Q) ** 2) * (np.abs(Yn) ** 2 + np.abs(Yd) ** 2)))
    assert float(arr.np(got)) == pytest.approx(float(want), rel=1e-13)
    with pytest.raises(TypeError, match="tau_train"):
        projective_distance_loss(*(arr(x, "complex128") for x in (P, Q, Yn, Yd)), tau_train=0.1)


@pytest.mark.autodiff
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradient_matches_analytic_and_is_finite(backend_name, dtype):
    from test_loss_gradients import grads

    rng = np.random.default_rng(RNG_SEED + 5)
    P, Q, Yn, Yd = (rng.normal(size=9) for _ in range(4))
    Yd[:3] = 0.0
    gP, gQ = grads(backend_name, projective_distance_loss, [P, Q, Yn, Yd], dtype=dtype)
    # d/dP of r²/(n1·n2)/N with r = P·Yd − Q·Yn, n1 = P² + Q², n2 = Yn² + Yd²
    r, n1, n2 = P * Yd - Q * Yn, P * P + Q * Q, Yn * Yn + Yd * Yd
    wantP = (2 * r * Yd / (n1 * n2) - r * r * 2 * P / (n1 * n1 * n2)) / len(P)
    wantQ = (-2 * r * Yn / (n1 * n2) - r * r * 2 * Q / (n1 * n1 * n2)) / len(P)
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(gP, wantP, rtol=tol, atol=tol * 1e-3)
    np.testing.assert_allclose(gQ, wantQ, rtol=tol, atol=tol * 1e-3)
    # huge and tiny tuples: finite gradients, orthogonal to (P, Q) (scale invariance)
    fi = np.finfo(dtype)
    P2 = np.array([float(fi.max) / 2, float(fi.smallest_normal) * 8, 3.0])
    Q2 = np.array([float(fi.max) / 3, -float(fi.smallest_normal) * 2, 0.0])
    g2 = grads(backend_name, projective_distance_loss, [P2, Q2, np.ones(3), np.ones(3)],
               dtype=dtype)
    assert all(np.isfinite(g).all() for g in g2)


def test_l1_form_is_scale_invariant_and_zero_at_match(arr):
    P, Q, Yn, Yd = sample(200, RNG_SEED + 6, spread=30.0)
    out = float(arr.np(projective_distance_loss(arr(P), arr(Q), arr(Yn), arr(Yd), power=1)))
    assert 0.0 <= out <= 1.0
    for s in (2.0 ** 600, 2.0 ** -600, -0.5):
        assert float(arr.np(projective_distance_loss(arr(s * P), arr(s * Q), arr(Yn), arr(Yd),
                                                     power=1))) == out
    match = projective_distance_loss(arr(P), arr(Q), arr(-3.0 * P), arr(-3.0 * Q), power=1)
    assert float(arr.np(match)) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("power,exc", [(3, ValueError), (0, ValueError), (2.0, TypeError),
                                       (True, TypeError), ("1", TypeError)])
def test_power_validation(power, exc):
    with pytest.raises(exc, match="power"):
        projective_distance_loss(np.ones(2), np.ones(2), np.ones(2), np.ones(2), power=power)
    # a numpy integer is an integer
    one = projective_distance_loss(np.ones(2), np.zeros(2), np.ones(2), np.ones(2), power=np.int64(1))
    assert float(one) == pytest.approx(np.sqrt(0.5), rel=1e-15)


@pytest.mark.autodiff
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_l1_gradient_matches_analytic_and_is_finite_at_a_perfect_fit(backend_name, dtype):
    from test_loss_gradients import grads

    def l1(*a):
        return projective_distance_loss(*a, power=1)

    rng = np.random.default_rng(RNG_SEED + 7)
    P, Q, Yn, Yd = (rng.normal(size=9) for _ in range(4))
    Yd[:3] = 0.0
    gP, gQ = grads(backend_name, l1, [P, Q, Yn, Yd], dtype=dtype)
    # d/dP of |r|/sqrt(n1·n2)/N with r = P·Yd − Q·Yn, n1 = P² + Q², n2 = Yn² + Yd²
    r, n1, n2 = P * Yd - Q * Yn, P * P + Q * Q, Yn * Yn + Yd * Yd
    d = np.sqrt(n1 * n2)
    wantP = (np.sign(r) * Yd / d - np.abs(r) * P / (n1 * d)) / len(P)
    wantQ = (-np.sign(r) * Yn / d - np.abs(r) * Q / (n1 * d)) / len(P)
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(gP, wantP, rtol=tol, atol=tol * 1e-3)
    np.testing.assert_allclose(gQ, wantQ, rtol=tol, atol=tol * 1e-3)
    # a perfect fit (r = 0, the point at infinity included): the subgradient 0, not NaN
    P3, Q3 = np.array([2.0, 5.0, 0.0]), np.array([1.0, 0.0, 0.0])
    g3 = grads(backend_name, l1, [P3, Q3, 3.0 * P3, 3.0 * Q3], dtype=dtype)
    for g in g3:
        np.testing.assert_array_equal(g, np.zeros(3))


def test_angle_l1_fit_is_the_power_1_loss(arr):
    from zpml_core.losses import SCMTrainingLoss

    P, Q, Yn, Yd = (arr(x) for x in sample(32, RNG_SEED + 8))
    got = SCMTrainingLoss(LossConfig(fit="angle_l1")).fit_loss(P, Q, Yn, Yd)
    assert float(arr.np(got)) == float(arr.np(projective_distance_loss(P, Q, Yn, Yd, power=1)))


@pytest.mark.parametrize("fit,exc", [("mse", ValueError), (None, TypeError), (1, TypeError),
                                     ("Angle", ValueError)])
def test_loss_config_fit_validation(fit, exc):
    with pytest.raises(exc, match="fit"):
        LossConfig(fit=fit)  # type: ignore[arg-type]
    assert LossConfig().fit == "implicit" and LossConfig(fit="angle").fit == "angle"
