"""Loss values (semantics §5) on every backend, against the semantics examples and against
independent numpy float64 implementations of the semantics formulas written here; dtypes,
argument validation, and tracing (``jax.jit`` / ``torch.compile(fullgraph=True)``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zpml_core import _xp
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

RTOL = {"float64": 1e-12, "float32": 1e-5}


# ---------------------------------------------------------------------------------------
# independent reference formulas (numpy float64, literal semantics §5)


@np.errstate(all="ignore")
def ref_implicit(P, Q, Yn, Yd, gamma=1e-9):
    e = (P * Yd - Q * Yn) ** 2
    s = Q**2 * Yd**2 + P**2 * Yn**2
    return np.mean(e / (s + gamma))


@np.errstate(all="ignore")
def ref_margin(Q, tau=1e-4, m=None, reduction="population"):
    if m is None:
        return np.mean(np.maximum(tau - np.abs(Q), 0.0) ** 2)
    m = np.broadcast_to(m, Q.shape)
    Qs = np.where(m, Q, tau)
    t = np.where(m, np.maximum(tau - np.abs(Qs), 0.0) ** 2, 0.0)
    if reduction == "population":
        return np.mean(t)
    c = m.sum()
    return t.sum() / (c if c > 0 else 1)


@np.errstate(all="ignore")
def ref_sign(P, Q, Yn, Yd, gamma=1e-9, m=None, eps=1e-3):
    P, Q, Yn, Yd = np.broadcast_arrays(P, Q, Yn, Yd)
    if m is None:
        m = np.isfinite(np.abs(Yd)) & (np.abs(Yd) <= eps)
    m = np.broadcast_to(m, P.shape)
    P, Q = np.where(m, P, 0.0), np.where(m, Q, 1.0)
    Yn, Yd = np.where(m, Yn, 0.0), np.where(m, Yd, 1.0)

    def norm(a, b):
        s = np.maximum(np.abs(a), np.abs(b))
        s = np.where(s == 0, 1.0, s)
        return s * np.sqrt(np.abs(a / s) ** 2 + np.abs(b / s) ** 2 + gamma / s**2)

    dot = np.real(P * np.conj(Yn) + Q * np.conj(Yd))
    cos = np.clip(dot / (norm(P, Q) * norm(Yn, Yd)), -1.0, 1.0)
    return np.mean(np.where(m, 1.0 - cos, 0.0))


def ref_rejection(h, target=0.95, dtype=np.float64):
    cov = dtype(1.0) - np.mean(np.asarray(h, dtype=dtype), dtype=dtype)
    return np.maximum(dtype(target) - cov, dtype(0.0)) ** 2


@np.errstate(all="ignore")
def ref_soft(Q, tau, T, target):
    p = 1.0 / (1.0 + np.exp(-(np.abs(Q) - tau) / T))
    return max(target - np.mean(p), 0.0) ** 2


@np.errstate(all="ignore")
def ref_separation(Q, cens, tau_bot=1e-2, tau_fin=5e-2):
    cens = np.broadcast_to(cens, Q.shape)
    aq = np.abs(Q)
    down = np.where(cens, np.maximum(aq - tau_bot, 0.0) ** 2, 0.0)
    up = np.where(~cens, np.maximum(tau_fin - aq, 0.0) ** 2, 0.0)
    nc, nf = cens.sum(), (~cens).sum()
    return down.sum() / max(nc, 1), up.sum() / max(nf, 1)


def random_batch(n=257, seed=0, singular=0.3):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=n) * rng.choice([1e-3, 1.0, 1e2], size=n)
    Q = rng.normal(size=n) * rng.choice([1e-5, 1e-3, 1.0], size=n)
    Yn = rng.normal(size=n)
    Yd = np.where(rng.random(n) < singular, rng.choice([0.0, 1e-4, -5e-4], size=n),
                  rng.normal(size=n))
    return P, Q, Yn, Yd


def close(actual, expected, dtype, what=""):
    a = float(np.asarray(actual))
    assert math.isclose(a, float(expected), rel_tol=RTOL[dtype], abs_tol=0.0), (
        f"{what}: {a!r} vs expected {float(expected)!r}"
    )


def default_float_np(xp):
    return np.dtype(str(_xp.default_float(xp)).split(".")[-1])


# ---------------------------------------------------------------------------------------
# semantics examples (float64, every backend)

EX = dict(P=[1, 2, 0, 3, 1e-3], Q=[1, 0.5, 0, 1e-5, -2], Yn=[1, 4, 1, 1, -1], Yd=[1, 1, 0, 0, 1])


def test_implicit_spec_example(arr):
    P, Q, Yn, Yd = (arr(EX[k]) for k in ("P", "Q", "Yn", "Yd"))
    for detach in (False, True):
        out = implicit_loss(P, Q, Yn, Yd, detach_scale=detach)
        assert out.shape == () and out.dtype == P.dtype
        close(arr.np(out), 0.19980000000227224, "float64")


def test_implicit_all_zero_tuple_gamma0_is_zero(arr):
    # every loss is finite for finite input: 0/0 (all-zero tuples, gamma=0) gives 0
    # (the reference and the semantics example give NaN; DEVIATIONS.md)
    out = implicit_loss(arr([0.0]), arr([0.0]), arr([0.0]), arr([0.0]), gamma=0.0)
    assert arr.np(out) == 0.0


def test_margin_spec_examples(arr):
    close(arr.np(margin_loss(arr([0, 5e-5, 1e-4, 2e-4, -5e-5]))), 3e-9, "float64")
    Q = arr([0, 5e-5, 1e-4, 2e-4, -5e-5, np.nan, np.inf])
    m = arr([True, False, True, True, False, False, False], "bool")
    close(arr.np(margin_loss(Q, mask_finite=m)), 1.4285714285714286e-9, "float64")
    close(arr.np(margin_loss(Q, mask_finite=m, reduction="conditional")),
          3.3333333333333334e-9, "float64")
    empty = arr([False] * 7, "bool")
    assert arr.np(margin_loss(Q, mask_finite=empty, reduction="conditional")) == 0.0
    assert arr.np(margin_loss(Q, mask_finite=empty)) == 0.0
    # no mask: NaN propagates
    assert np.isnan(arr.np(margin_loss(Q)))


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ((1, 0, 1, 0), 1e-9),
        ((-1, 0, 1, 0), 1.999999999),
        ((0, 0, 1, 0), 1.0),
        ((1, 1, -1, 0), 1.7071067806562175),
        ((1e200, 1e200, 1, 0), 0.29289321916700584),
    ],
)
def test_sign_spec_single_elements(arr, row, expected):
    P, Q, Yn, Yd = (arr([v]) for v in row)
    out = arr.np(sign_consistency_loss(P, Q, Yn, Yd))
    # the semantics formula, evaluated here in float64, to 1e-12 ...
    close(out, ref_sign(*(np.array([float(v)]) for v in row)), "float64", str(row))
    # ... and the semantics' printed values (1e-9 and 1.999999999 are shown rounded; 1 − cos
    # near cos = 1 carries an absolute rounding error of ~1e-16, i.e. ~1e-7 relative)
    assert math.isclose(float(out), expected, rel_tol=1e-7), (row, float(out))


def test_sign_spec_gamma0_zero_tuple_and_mixed_batch(arr):
    # a zero prediction has no direction: with gamma=0 it gets cos = 0 — the gamma → 0
    # limit of the gamma > 0 value (0, 0 | 1, 0) → 1 — instead of the reference's NaN
    z = arr([0.0])
    assert arr.np(sign_consistency_loss(z, z, arr([1.0]), z, gamma=0.0)) == 1.0
    P, Q, Yn, Yd = (arr(EX[k]) for k in ("P", "Q", "Yn", "Yd"))
    close(arr.np(sign_consistency_loss(P, Q, Yn, Yd)), 0.20000000011222224, "float64")


def test_coverage_and_rejection_spec_example(arr, xp):
    h = arr([True, False, False, False], "bool")
    dt = _xp.default_float(xp)
    cov = coverage(None, h)
    assert cov.dtype == dt and cov.shape == ()
    assert arr.np(cov) == 0.75
    rej = rejection_loss(h)
    assert rej.dtype == dt and rej.shape == ()
    dtn = default_float_np(xp)
    close(arr.np(rej), ref_rejection([1, 0, 0, 0], 0.95, dtn.type), dtn.name)
    # decision #11: agreement with the reference's float32 value within 1e-6
    assert abs(float(arr.np(rej)) - 0.03999999538064003) < 1e-6
    assert arr.np(rejection_loss(h, target_coverage=0.5)) == 0.0


def test_soft_coverage_spec_example(arr):
    out = soft_coverage_loss(arr([0, 1e-4, 1e-3, 1]), tau=1e-4, temperature=1e-4, target=0.95)
    close(arr.np(out), 0.06645851636656258, "float64")


def test_separation_spec_example(arr):
    Q = arr([0, 0.02, 0.04, 0.1, 0.005])
    down, up = scm_separation_losses(Q, mask_censored=arr([1, 1, 0, 0, 0], "bool"))
    close(arr.np(down), 5e-05, "float64")
    close(arr.np(up), 7.083333333333334e-4, "float64")
    # empty groups → 0 (no NaN, no host sync)
    d0, _ = scm_separation_losses(Q, mask_censored=arr([0] * 5, "bool"))
    assert arr.np(d0) == 0.0
    d1, u1 = scm_separation_losses(Q, mask_censored=arr([1] * 5, "bool"))
    assert arr.np(u1) == 0.0
    close(arr.np(d1), ref_separation(np.array([0, .02, .04, .1, .005]), True)[0], "float64")


def test_training_loss_spec_example(arr, xp):
    P, Q, Yn, Yd = arr([1, 2, 0, 3]), arr([1, 0.5, 1e-5, 1e-5]), arr([1, 4, 1, 1]), arr([1, 1, 0, 1])
    loss_fn = SCMTrainingLoss()
    total, br = loss_fn(implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd)
    assert set(br) == {"fit", "margin", "sign", "rejection", "total"}
    close(arr.np(total), 0.5249983337105557, "float64", "total")
    close(arr.np(br["fit"]), 0.27499833330555573, "float64", "fit")
    close(arr.np(br["margin"]), 4.05e-9, "float64", "margin")
    close(arr.np(br["sign"]), 0.25, "float64", "sign")
    assert arr.np(br["rejection"]) == 0.0 and br["rejection"].dtype == total.dtype
    for v in br.values():
        assert _xp.is_array(v) and v.shape == ()  # 0-d arrays, never Python floats
        assert _xp.namespace(v) is xp

    # with is_bottom / mask_finite / tau_train: a bool is_bottom gives the rejection
    # term in P's dtype (loss dtypes follow the operands, not the default float)
    total, br = loss_fn(implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd,
                        is_bottom=abs(Q) < 1e-4, mask_finite=Yd != 0, tau_train=2e-4)
    rej = ref_rejection([0, 0, 1, 1], 0.95, np.float64)
    close(arr.np(br["rejection"]), rej, "float64", "rejection")
    assert br["rejection"].dtype == P.dtype
    margin = ref_margin(np.array([1, .5, 1e-5, 1e-5]), 2e-4, np.array([1, 1, 0, 1], bool))
    expected = 0.27499833330555573 + 0.1 * margin + 0.25 + 0.01 * float(rej)
    close(arr.np(total), expected, "float64", "total")
    close(arr.np(br["total"]), expected, "float64", "breakdown total")
    # the reference multiplies λ_rej in float32; zpml_core casts first: within 1e-6 (#11)
    assert abs(float(arr.np(total)) - 0.5270233340277517) < 1e-6


# ---------------------------------------------------------------------------------------
# random batches against the reference formulas (float64 and float32)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_losses_match_formulas_random(arr, dtype):
    P, Q, Yn, Yd = (x.astype(dtype).astype(np.float64) for x in random_batch())
    A = [arr(x, dtype) for x in (P, Q, Yn, Yd)]
    mf = Yd != 0
    close(arr.np(implicit_loss(*A)), ref_implicit(P, Q, Yn, Yd), dtype, "implicit")
    close(arr.np(implicit_loss(*A, gamma=0.5)), ref_implicit(P, Q, Yn, Yd, 0.5), dtype)
    close(arr.np(margin_loss(A[1], 1e-3)), ref_margin(Q, 1e-3), dtype, "margin")
    for red in ("population", "conditional"):
        close(arr.np(margin_loss(A[1], 1e-3, arr(mf, "bool"), reduction=red)),
              ref_margin(Q, 1e-3, mf, red), dtype, red)
    close(arr.np(sign_consistency_loss(*A)), ref_sign(P, Q, Yn, Yd), dtype, "sign")
    ms = np.abs(Yd) < 0.6
    close(arr.np(sign_consistency_loss(*A, gamma=1e-3, mask_singular=arr(ms, "bool"))),
          ref_sign(P, Q, Yn, Yd, 1e-3, ms), dtype, "sign mask")
    close(arr.np(sign_consistency_loss(*A, epsilon_sing=0.5)),
          ref_sign(P, Q, Yn, Yd, eps=0.5), dtype, "sign eps")
    close(arr.np(soft_coverage_loss(A[1], 1e-3, 1e-3, 0.9)), ref_soft(Q, 1e-3, 1e-3, 0.9),
          dtype, "soft")
    cens = Yd == 0
    d, u = scm_separation_losses(A[1], mask_censored=arr(cens, "bool"), tau_bot=1e-4,
                                 tau_finite=1e-2)
    rd, ru = ref_separation(Q, cens, 1e-4, 1e-2)
    close(arr.np(d), rd, dtype, "push_down")
    close(arr.np(u), ru, dtype, "push_up")
    for out in (implicit_loss(*A), margin_loss(A[1]), sign_consistency_loss(*A),
                soft_coverage_loss(A[1], 0.0, 1.0, 1.0), d, u):
        assert out.dtype == A[0].dtype and out.shape == ()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_loss_matches_formulas_random(arr, xp, dtype):
    P, Q, Yn, Yd = (x.astype(dtype).astype(np.float64) for x in random_batch(seed=3))
    A = [arr(x, dtype) for x in (P, Q, Yn, Yd)]
    cfg = LossConfig(gamma=1e-6, tau_train=1e-3, epsilon_sing=1e-3, lambda_margin=0.5,
                     lambda_sign=2.0, lambda_rej=0.25, target_coverage=0.9)
    h = np.abs(Q) < 1e-3
    total, br = SCMTrainingLoss(cfg)(implicit_loss(*A, gamma=1e-6), *A,
                                     is_bottom=arr(h, "bool"), mask_finite=arr(Yd != 0, "bool"))
    fit = ref_implicit(P, Q, Yn, Yd, 1e-6)
    margin = ref_margin(Q, 1e-3, Yd != 0)
    sign = ref_sign(P, Q, Yn, Yd, 1e-6)
    rej = float(ref_rejection(h, 0.9, np.dtype(dtype).type))
    close(arr.np(br["fit"]), fit, dtype, "fit")
    close(arr.np(br["margin"]), margin, dtype, "margin")
    close(arr.np(br["sign"]), sign, dtype, "sign")
    close(arr.np(br["rejection"]), rej, dtype, "rejection")
    close(arr.np(total), fit + 0.5 * margin + 2.0 * sign + 0.25 * rej, dtype, "total")
    # every output in the operands' dtype (a bool is_bottom follows P, not the default float)
    for v in (total, *br.values()):
        assert v.dtype == A[0].dtype


def test_sign_broadcast_and_int_mask(arr):
    # (2, 3) operands from (2, 3), (3,) and (2, 1) inputs (one-way: every operand
    # broadcasts to the largest one, P); mask given as 0/1 integers of shape (3,)
    P = np.array([[1.0, 0.5, -3.0], [-2.0, 4.0, 1e-3]])
    Q = np.array([0.5, -1.0, 3.0])
    Yn, Yd = np.array([[1.0], [-1.0]]), np.array([[0.0, 1e-4, 2e-4], [1e-4, 0.0, 5.0]])
    m = np.array([1, 0, 1])
    out = sign_consistency_loss(arr(P), arr(Q), arr(Yn), arr(Yd), mask_singular=arr(m, "int64"))
    close(arr.np(out), ref_sign(P, Q, Yn, Yd, m=m.astype(bool)), "float64")
    out = sign_consistency_loss(arr(P), arr(Q), arr(Yn), arr(Yd))
    close(arr.np(out), ref_sign(P, Q, Yn, Yd), "float64")
    # (2, 1) next to (3,) would broadcast to (2, 3), larger than every operand: refused
    # (tests/hostile/test_loss_shapes.py covers the class)
    with pytest.raises(ValueError, match="all-pairs"):
        sign_consistency_loss(arr(P[:, :1]), arr(Q), arr(Q), arr(Yd[:, :1]))


def test_off_mask_non_finite_does_not_leak(arr):
    P = arr([np.nan, 1.0, np.inf])
    Q = arr([np.inf, 2.0, np.nan])
    Yn, Yd = arr([1.0, 1.0, 1.0]), arr([1.0, 0.0, 1.0])  # only element 1 is singular
    close(arr.np(sign_consistency_loss(P, Q, Yn, Yd)),
          ref_sign(np.array([0.0, 1.0, 0.0]), np.array([1.0, 2.0, 1.0]), np.array([1.0] * 3),
                   np.array([1.0, 0.0, 1.0])), "float64")
    d, u = scm_separation_losses(arr([np.nan, 0.5, 0.001]),
                                 mask_censored=arr([False, True, True], "bool"))
    close(arr.np(d), ref_separation(np.array([0, .5, .001]), np.array([0, 1, 1], bool))[0],
          "float64")
    assert np.isnan(arr.np(u))  # the NaN is in the finite group: it propagates there


def test_complex_branches(arr):
    rng = np.random.default_rng(7)
    z = lambda: rng.normal(size=9) + 1j * rng.normal(size=9)  # noqa: E731
    P, Q, Yn = z(), z(), z()
    Yd = np.where(np.arange(9) % 3 == 0, 0.0, 1.0) * z()
    A = [arr(x, "complex128") for x in (P, Q, Yn, Yd)]
    out = sign_consistency_loss(*A)
    assert out.dtype == _xp.namespace(out).float64
    close(arr.np(out), ref_sign(P, Q, Yn, Yd), "float64", "complex sign")
    e = np.abs(P * Yd - Q * Yn) ** 2
    s = np.abs(Q * Yd) ** 2 + np.abs(P * Yn) ** 2
    close(arr.np(implicit_loss(*A)), np.mean(e / (s + 1e-9)), "float64", "complex implicit")
    close(arr.np(margin_loss(A[1], 2.0)), np.mean(np.maximum(2.0 - np.abs(Q), 0) ** 2),
          "float64", "complex margin")


def test_integer_inputs_are_promoted(arr, xp):
    P, Q, Yn, Yd = (arr(v, "int64") for v in ([1, 2], [1, 0], [1, 1], [1, 0]))
    out = implicit_loss(P, Q, Yn, Yd)
    assert out.dtype == _xp.default_float(xp)
    close(arr.np(out), ref_implicit(*(np.array(v, float) for v in ([1, 2], [1, 0], [1, 1],
                                                                   [1, 0]))),
          default_float_np(xp).name)


def test_coverage_soft_bottom_and_int(arr, xp):
    out = coverage(arr([1.0, 2.0], "float32"), arr([0, 1, 1, 1], "int64"))
    assert arr.np(out) == 0.25 and out.dtype == _xp.namespace(out).float32  # outputs' dtype
    out = coverage(None, arr([0, 1, 1, 1], "int64"))
    assert arr.np(out) == 0.25 and out.dtype == _xp.default_float(xp)  # nothing floating
    h = arr([0.25, 0.5], "float32")
    out = coverage(None, h)
    assert out.dtype == h.dtype  # a soft is_bottom gives its own dtype
    assert arr.np(out) == 0.625
    for p in GradientPolicy:
        assert arr.np(coverage(None, h, policy=p)) == 0.625


def test_rejection_policy_reject_is_zero(arr, xp):
    h = arr([True, True, False, False], "bool")
    assert arr.np(rejection_loss(h)) > 0
    out = rejection_loss(h, policy=GradientPolicy.REJECT)
    assert arr.np(out) == 0.0 and out.dtype == _xp.default_float(xp) and out.shape == ()
    with gradient_policy(GradientPolicy.REJECT):
        assert arr.np(rejection_loss(h)) == 0.0
        assert arr.np(rejection_loss(h, policy=GradientPolicy.PROJECT)) > 0
        _, br = SCMTrainingLoss()(arr(0.0), arr([1.0]), arr([1.0]), arr([1.0]), arr([1.0]),
                                      is_bottom=h)
        assert arr.np(br["rejection"]) == 0.0


# ---------------------------------------------------------------------------------------
# argument validation


def _small(arr):
    return arr([1.0, 2.0, 3.0]), arr([0.5, 1e-5, -1.0]), arr([1.0, 1.0, 1.0]), arr([1.0, 0.0, 1.0])


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda A: implicit_loss(*A, gamma=-1.0), ValueError, "gamma"),
        (lambda A: implicit_loss(*A, gamma=math.nan), ValueError, "gamma must be finite"),
        (lambda A: implicit_loss(*A, gamma="1e-9"), TypeError, "gamma"),
        (lambda A: implicit_loss(*A, gamma=None), TypeError, "gamma"),
        (lambda A: implicit_loss(*A, detach_scale=1), TypeError, "detach_scale"),
        (lambda A: margin_loss(A[1], -1e-4), ValueError, "tau_train"),
        (lambda A: margin_loss(A[1], math.inf), ValueError, "tau_train"),
        (lambda A: margin_loss(A[1], True), TypeError, "tau_train"),
        (lambda A: margin_loss(A[1], reduction="mean"), ValueError, "reduction"),
        (lambda A: sign_consistency_loss(*A, gamma=-1.0), ValueError, "gamma"),
        (lambda A: sign_consistency_loss(*A, epsilon_sing=-1e-3), ValueError, "epsilon_sing"),
        (lambda A: rejection_loss(A[3] == 0, target_coverage=1.5), ValueError,
         "target_coverage"),
        (lambda A: rejection_loss(A[3] == 0, target_coverage=-0.1), ValueError,
         "target_coverage"),
        (lambda A: rejection_loss(A[3] == 0, policy="reject"), TypeError, "policy"),
        (lambda A: coverage(None, A[3] == 0, policy="clamp"), TypeError, "policy"),
        (lambda A: coverage(None, [True, False]), TypeError, "is_bottom"),
        (lambda A: soft_coverage_loss(A[1], 1e-4, 1e-4, 0.9, mode="over"), ValueError, "mode"),
        (lambda A: soft_coverage_loss(A[1], -1.0, 1e-4, 0.9), ValueError, "tau"),
        (lambda A: soft_coverage_loss(A[1], 1e-4, 0.0, 0.9), ValueError, "temperature"),
        (lambda A: soft_coverage_loss(A[1], 1e-4, 1e-4, 1.1), ValueError, "target"),
        (lambda A: scm_separation_losses(A[1], mask_censored=A[3] == 0, tau_bot=0.1,
                                         tau_finite=0.05), ValueError, "tau_finite"),
        (lambda A: scm_separation_losses(A[1], mask_censored=A[3] == 0, tau_bot=-1.0),
         ValueError, "tau_bot"),
        (lambda A: scm_separation_losses(A[1], mask_censored=None), TypeError,
         "mask_censored"),
        (lambda A: SCMTrainingLoss()(A[0][0], *A, tau_train=-1.0), ValueError, "tau_train"),
        (lambda A: SCMTrainingLoss()("0.1", *A), TypeError, "fit_loss"),
        (lambda A: SCMTrainingLoss()(A[0][0], *A, is_bottom=[True]), TypeError, "is_bottom"),
    ],
)
def test_argument_errors(arr, call, exc, match):
    with pytest.raises(exc, match=match):
        call(_small(arr))


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        # float masks are rejected, naming the argument
        (lambda A, arr: margin_loss(A[1], mask_finite=arr([1.0, 0.0, 1.0])), TypeError,
         "mask_finite"),
        (lambda A, arr: sign_consistency_loss(*A, mask_singular=arr([0.5, 0.0, 1.0])),
         TypeError, "mask_singular"),
        (lambda A, arr: scm_separation_losses(A[1], mask_censored=arr([1.0, 0.0, 1.0])),
         TypeError, "mask_censored"),
        # wrong shapes
        (lambda A, arr: margin_loss(A[1], mask_finite=arr([True, False], "bool")), ValueError,
         "mask_finite"),
        # masks must not enlarge Q (one-way broadcast)
        (lambda A, arr: margin_loss(A[1], mask_finite=arr([[True] * 3] * 2, "bool")),
         ValueError, "mask_finite"),
        (lambda A, arr: sign_consistency_loss(*A, mask_singular=arr([[1, 0, 1]] * 2, "bool")),
         ValueError, "mask_singular"),
        (lambda A, arr: scm_separation_losses(A[1], mask_censored=arr([True] * 4, "bool")),
         ValueError, "mask_censored"),
        (lambda A, arr: SCMTrainingLoss()(A[0][0], *A, mask_finite=arr([True] * 2, "bool")),
         ValueError, "mask_finite"),
        (lambda A, arr: SCMTrainingLoss()(A[0][0], *A, mask_singular=arr([1.0, 0.0, 1.0])),
         TypeError, "mask_singular"),
        (lambda A, arr: coverage(None, arr([1 + 0j], "complex128")), TypeError, "is_bottom"),
        # operand shapes
        (lambda A, arr: implicit_loss(A[0], arr([1.0, 2.0]), A[2], A[3]), ValueError, "Q"),
    ],
)
def test_mask_and_shape_errors(arr, call, exc, match):
    with pytest.raises(exc, match=match):
        call(_small(arr), arr)


def test_masks_broadcast_to_q(arr):
    Q = arr([[1e-5, 2e-5], [1.0, 3e-5]])
    m = arr([True, False], "bool")  # (2,) → (2, 2)
    close(arr.np(margin_loss(Q, 1e-4, m)),
          ref_margin(arr.np(Q), 1e-4, np.array([True, False])), "float64")
    close(arr.np(margin_loss(Q, 1e-4, True)), ref_margin(arr.np(Q), 1e-4), "float64")


def test_mixed_libraries_raise(arr, backend):
    A = list(_small(arr))
    other = np.array([1.0, 2.0, 3.0]) if backend.name != "numpy" else [1.0, 2.0, 3.0]
    with pytest.raises(TypeError):
        implicit_loss(A[0], other, A[2], A[3])
    with pytest.raises(TypeError):
        margin_loss(A[1], mask_finite=other if backend.name != "numpy" else [True])
    with pytest.raises(TypeError):
        SCMTrainingLoss()(A[0][0], A[0], A[1], A[2], A[3], is_bottom=other)


def test_mixed_libraries_message_names_both(backend, arr):
    if backend.name == "numpy":
        pytest.skip("needs two array libraries; covered by the other backends' runs")
    with pytest.raises(TypeError, match="different libraries"):
        sign_consistency_loss(arr([1.0]), np.array([1.0]), arr([1.0]), arr([0.0]))


@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("gamma", -1e-9, ValueError),
        ("tau_train", -1.0, ValueError),
        ("epsilon_sing", math.inf, ValueError),
        ("lambda_margin", -0.1, ValueError),
        ("lambda_sign", math.nan, ValueError),
        ("lambda_rej", -1.0, ValueError),
        ("target_coverage", 1.01, ValueError),
        ("target_coverage", -0.01, ValueError),
        ("gamma", "1e-9", TypeError),
        ("lambda_sign", None, TypeError),
        ("tau_train", True, TypeError),
    ],
)
def test_loss_config_validation(field, value, exc):
    with pytest.raises(exc, match=field):
        LossConfig(**{field: value})


def test_loss_config_values_and_immutability():
    cfg = LossConfig(tau_train=0, lambda_sign=2, target_coverage=1)
    assert cfg.tau_train == 0.0 and type(cfg.tau_train) is float
    assert cfg.lambda_sign == 2.0 and type(cfg.lambda_sign) is float
    assert cfg.to_dict() == {"gamma": 1e-9, "tau_train": 0.0, "epsilon_sing": 1e-3,
                             "lambda_margin": 0.1, "lambda_sign": 2.0, "lambda_rej": 0.01,
                             "target_coverage": 1.0, "fit": "implicit"}
    with pytest.raises(AttributeError):
        cfg.gamma = 1.0  # type: ignore[misc]
    loss = SCMTrainingLoss(cfg)
    assert loss.config is cfg
    with pytest.raises(AttributeError):
        loss.config = LossConfig()  # type: ignore[misc]
    assert SCMTrainingLoss().config == LossConfig()
    with pytest.raises(TypeError, match="config"):
        SCMTrainingLoss({"gamma": 1.0})  # type: ignore[arg-type]


def test_numpy_scalar_thresholds_accepted():
    Q = np.array([0.0, 1e-4])
    assert margin_loss(Q, np.float32(1e-3)) == margin_loss(Q, float(np.float32(1e-3)))


# ---------------------------------------------------------------------------------------
# tracing: every loss under jax.jit / torch.compile(fullgraph=True); thresholds and
# policies changed between calls take effect (no stale trace)


def _compiler(backend):
    if backend.name == "torch":
        import torch

        torch._dynamo.reset()
        return lambda f, **kw: torch.compile(f, fullgraph=True)
    import jax

    return lambda f, static=(): jax.jit(f, static_argnames=static)


def _all_losses(P, Q, Yn, Yd):
    fit = implicit_loss(P, Q, Yn, Yd)
    total, br = SCMTrainingLoss()(fit, P, Q, Yn, Yd, is_bottom=abs(Q) < 1e-3,
                                  mask_finite=Yd != 0, mask_singular=abs(Yd) < 1e-3)
    d, u = scm_separation_losses(Q, mask_censored=Yd == 0)
    return (fit, implicit_loss(P, Q, Yn, Yd, detach_scale=True), margin_loss(Q, 1e-3),
            margin_loss(Q, 1e-3, Yd != 0, reduction="conditional"),
            sign_consistency_loss(P, Q, Yn, Yd), coverage(P, abs(Q) < 1e-3),
            rejection_loss(abs(Q) < 1e-3), soft_coverage_loss(Q, 1e-3, 1e-2, 0.9), d, u,
            total, *br.values())


@pytest.mark.autodiff
def test_every_loss_traces_and_matches_eager(backend, arr):
    A = [arr(x) for x in random_batch(n=64, seed=11)]
    eager = _all_losses(*A)
    traced = _compiler(backend)(_all_losses)(*A)
    assert len(traced) == len(eager)
    for i, (t, e) in enumerate(zip(traced, eager, strict=True)):
        assert t.dtype == e.dtype
        close(arr.np(t), arr.np(e), "float64", f"output {i}")


@pytest.mark.autodiff
def test_changed_thresholds_take_effect_under_tracing(backend, arr):
    Q = arr([0.0, 5e-5, 1e-4, 2e-4, 1e-3])
    P, Yn, Yd = arr([1.0] * 5), arr([1.0] * 5), arr([1.0, 0.0, 1.0, 1e-4, 1.0])

    def f(P, Q, Yn, Yd, tau, gamma):
        fit = implicit_loss(P, Q, Yn, Yd, gamma=gamma)
        total, _ = SCMTrainingLoss()(fit, P, Q, Yn, Yd, tau_train=tau)
        return margin_loss(Q, tau), sign_consistency_loss(P, Q, Yn, Yd, gamma=gamma), total

    g = _compiler(backend)(f, static=("tau", "gamma"))
    for tau, gamma in [(1e-4, 1e-9), (2e-4, 1e-9), (5e-4, 1e-2), (1e-4, 1e-9), (0.0, 0.0)]:
        for t, e in zip(g(P, Q, Yn, Yd, tau, gamma), f(P, Q, Yn, Yd, tau, gamma), strict=True):
            close(arr.np(t), arr.np(e), "float64", f"tau={tau} gamma={gamma}")


@pytest.mark.autodiff
def test_changed_policy_changes_traced_forward_values(backend, arr):
    # rejection_loss reads the policy in its forward pass: REJECT → 0
    h = arr([True, True, False, False], "bool")

    def f(h):
        return rejection_loss(h), SCMTrainingLoss()(arr(0.0), arr([1.0]), arr([1.0]),
                                                    arr([1.0]), arr([1.0]), is_bottom=h)[0]

    g = _compiler(backend)(f)
    base = [float(arr.np(v)) for v in g(h)]
    assert base[0] > 0 and base[1] > 0
    with gradient_policy(GradientPolicy.REJECT):
        assert [float(arr.np(v)) for v in g(h)] == [0.0, 0.0]
        with gradient_policy(GradientPolicy.PROJECT):
            assert [float(arr.np(v)) for v in g(h)] == base
    assert [float(arr.np(v)) for v in g(h)] == base
    from zpml_core.autodiff.policies import (
        policy_registry_snapshot,
        register_policy,
        restore_policy_registry,
    )

    snap = policy_registry_snapshot()
    try:
        register_policy("rejection_loss", GradientPolicy.REJECT)
        assert [float(arr.np(v)) for v in g(h)] == [0.0, 0.0]
    finally:
        restore_policy_registry(snap)
    assert [float(arr.np(v)) for v in g(h)] == base


# ---------------------------------------------------------------------------------------
# array thresholds (a threshold scheduled inside a jitted step, scheduled thresholds)


def test_tau_train_as_0d_array(arr, xp):
    Q = arr([0.0, 5e-5, 1e-4, 2e-4, 1e-3])
    P, Yn, Yd = arr([1.0] * 5), arr([2.0] * 5), arr([1.0, 0.0, 1.0, 1.0, 1.0])
    m = arr([True, False, True, True, True], "bool")
    loss_fn = SCMTrainingLoss()
    for tau in (1e-4, 3e-4, 0.0):
        for t_arr, t in ((arr(tau), tau), (arr(tau, "float32"), float(np.float32(tau)))):
            close(arr.np(margin_loss(Q, t_arr, m)), arr.np(margin_loss(Q, t, m)), "float64")
            a = loss_fn(arr(0.5), P, Q, Yn, Yd, mask_finite=m, tau_train=t_arr)
            b = loss_fn(arr(0.5), P, Q, Yn, Yd, mask_finite=m, tau_train=t)
            for k in b[1]:
                close(arr.np(a[1][k]), arr.np(b[1][k]), "float64", k)
    with pytest.raises(ValueError, match="tau_train"):
        margin_loss(Q, arr([1e-4, 2e-4]))
    with pytest.raises(TypeError, match="tau_train"):
        margin_loss(Q, arr(True, "bool"))
    with pytest.raises(TypeError, match="tau_train"):
        loss_fn(arr(0.5), P, Q, Yn, Yd, tau_train=arr(1e-4, "complex128"))


@pytest.mark.autodiff
def test_array_tau_train_never_retraces(backend, arr):
    P, Q, Yd = arr([1.0, 2.0, 3.0]), arr([0.0, 5e-5, 0.5]), arr([1.0, 0.0, 1.0])
    traces = []

    def f(tau):
        fit = implicit_loss(P, Q, P, Yd)
        return SCMTrainingLoss()(fit, P, Q, P, Yd, is_bottom=abs(Q) < tau, tau_train=tau)[0]

    if backend.name == "torch":
        import torch
        from torch._dynamo.testing import CompileCounter

        torch._dynamo.reset()
        counter = CompileCounter()
        g = torch.compile(f, fullgraph=True, backend=counter)

        def count() -> int:
            return int(counter.frame_count)
    else:
        import jax

        def f_counted(tau):
            traces.append(1)
            return f(tau)

        g = jax.jit(f_counted)

        def count() -> int:
            return len(traces)
    for tau in (1e-4, 7e-4):  # warm-up (jax retraces once if its policy keys were new)
        g(arr(tau))
    n = count()
    for tau in (2e-4, 5e-5, 1e-3):
        close(arr.np(g(arr(tau))), arr.np(SCMTrainingLoss()(implicit_loss(P, Q, P, Yd), P, Q, P,
                                                             Yd, is_bottom=abs(Q) < tau,
                                                             tau_train=tau)[0]),
              "float64", f"tau={tau}")
    assert count() == n  # new threshold values: no retrace, no recompile


# ---------------------------------------------------------------------------------------
# per-call loss weights (SCMTrainingLoss(..., loss_weights=...))


def _weights_case(arr):
    P, Q = arr([1.0, 2.0, 0.5, 3.0]), arr([1.0, 0.5, 1e-5, 2e-5])
    Yn, Yd = arr([1.0, 4.0, 1.0, 1.0]), arr([1.0, 1.0, 0.0, 1.0])
    return implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd, abs(Q) < 1e-4


def test_loss_weight_keys_constant():
    from zpml_core.losses import LOSS_WEIGHT_KEYS

    assert LOSS_WEIGHT_KEYS == ("fit", "margin", "sign", "rejection", "lambda_margin",
                                "lambda_sign", "lambda_rej")


def test_loss_weights_replace_the_configured_weight(arr):
    fit, P, Q, Yn, Yd, h = _weights_case(arr)
    cfg = LossConfig(tau_train=1e-3, lambda_margin=0.3, lambda_sign=0.7, lambda_rej=0.2)
    _, br = SCMTrainingLoss(cfg)(fit, P, Q, Yn, Yd, is_bottom=h)
    t = {k: float(arr.np(v)) for k, v in br.items()}
    for weights, (wf, wm, ws, wr) in [
        ({}, (1.0, 0.3, 0.7, 0.2)),
        ({"margin": 2.0}, (1.0, 2.0, 0.7, 0.2)),
        ({"lambda_margin": 2.0}, (1.0, 2.0, 0.7, 0.2)),  # alias: same rule
        ({"fit": 0.5, "sign": 0.0, "lambda_rej": 3.0}, (0.5, 0.3, 0.0, 3.0)),
        ({"rejection": 0.0, "lambda_sign": 4.0}, (1.0, 0.3, 4.0, 0.0)),
    ]:
        total, br2 = SCMTrainingLoss(cfg)(fit, P, Q, Yn, Yd, is_bottom=h, loss_weights=weights)
        expected = wf * t["fit"] + wm * t["margin"] + ws * t["sign"] + wr * t["rejection"]
        close(arr.np(total), expected, "float64", str(weights))
        for k in ("fit", "margin", "sign", "rejection"):  # the breakdown stays unweighted
            assert float(arr.np(br2[k])) == t[k]
        # array weights (0-d) give the same value
        aw = {k: arr(v) for k, v in weights.items()}
        total_a, _ = SCMTrainingLoss(cfg)(fit, P, Q, Yn, Yd, is_bottom=h, loss_weights=aw)
        close(arr.np(total_a), expected, "float64", f"array {weights}")


@pytest.mark.parametrize(
    ("weights", "exc", "match"),
    [
        ({"margins": 1.0}, ValueError, r"unknown key 'margins'.*'fit', 'margin'"),
        ({"lambda_fit": 1.0}, ValueError, "lambda_fit"),
        ({"margin": 1.0, "lambda_margin": 2.0}, ValueError, "twice"),
        ({"margin": -1.0}, ValueError, r"loss_weights\['margin'\]"),
        ({"sign": float("nan")}, ValueError, r"loss_weights\['sign'\]"),
        ({"sign": float("inf")}, ValueError, r"loss_weights\['sign'\]"),
        ({"fit": True}, TypeError, r"loss_weights\['fit'\]"),
        ({"fit": "1"}, TypeError, r"loss_weights\['fit'\]"),
        ({"fit": None}, TypeError, r"loss_weights\['fit'\]"),
        ([("fit", 1.0)], TypeError, "loss_weights must be a mapping"),
    ],
)
def test_loss_weights_errors(arr, weights, exc, match):
    fit, P, Q, Yn, Yd, _ = _weights_case(arr)
    with pytest.raises(exc, match=match):
        SCMTrainingLoss()(fit, P, Q, Yn, Yd, loss_weights=weights)


def test_loss_weights_array_errors(arr):
    fit, P, Q, Yn, Yd, _ = _weights_case(arr)
    with pytest.raises(ValueError, match=r"loss_weights\['margin'\]"):
        SCMTrainingLoss()(fit, P, Q, Yn, Yd, loss_weights={"margin": arr([1.0, 2.0])})
    with pytest.raises(TypeError, match=r"loss_weights\['margin'\]"):
        SCMTrainingLoss()(fit, P, Q, Yn, Yd, loss_weights={"margin": arr(True, "bool")})


@pytest.mark.autodiff
def test_traced_loss_weights_never_retrace(backend, arr):
    _, P, Q, Yn, Yd, _ = _weights_case(arr)
    loss = SCMTrainingLoss(LossConfig(tau_train=1e-3))

    def f(wm, ws):
        return loss(implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd, is_bottom=abs(Q) < 1e-4,
                    loss_weights={"margin": wm, "lambda_sign": ws})[0]

    if backend.name == "torch":
        import torch
        from torch._dynamo.testing import CompileCounter

        torch._dynamo.reset()
        counter = CompileCounter()
        g = torch.compile(f, fullgraph=True, backend=counter)

        def count() -> int:
            return int(counter.frame_count)
    else:
        import jax

        traces = []

        def f_counted(wm, ws):
            traces.append(1)
            return f(wm, ws)

        g = jax.jit(f_counted)

        def count() -> int:
            return len(traces)
    g(arr(0.5), arr(1.0))
    n = count()
    for wm, ws in ((2.0, 0.0), (0.0, 3.0), (1e-3, 0.25)):
        close(arr.np(g(arr(wm), arr(ws))), arr.np(f(wm, ws)), "float64", f"{wm}, {ws}")
    assert count() == n  # new weight values: no retrace, no recompile


@pytest.mark.autodiff
def test_zero_weights_zero_gradient(backend, arr):
    import test_loss_gradients as tg

    P, Q, Yn, Yd = tg.batch(seed=3)

    def f(P, Q, Yn, Yd):
        return SCMTrainingLoss()(implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd,
                                 loss_weights={"fit": 0.0, "margin": 0.0, "sign": 0.0})[0] \
            + (P * 0.0).sum()

    gP, gQ = tg.grads(backend.name, f, [P, Q, Yn, Yd])
    assert not np.any(gP) and not np.any(gQ)
