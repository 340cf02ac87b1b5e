"""Class "loss dtype follows a global default" (and empty inputs) in the losses.

Rule (``zpml_core.losses`` docstring): a loss value has the (real) floating dtype of its
operands — for ``coverage``/``rejection_loss``/the rejection term, ``is_bottom``'s if it
is floating, else the predictions' (``outputs`` / ``P``), and the library's default
float only when nothing floating is given. So float64 inputs give the same
``SCMTrainingLoss`` total on every backend (torch's default float32 no longer leaks in).
An empty input gives the documented value (0; coverage 1) without any warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from zpml_core import _xp
from zpml_core.losses import (
    SCMTrainingLoss,
    coverage,
    implicit_loss,
    margin_loss,
    rejection_loss,
    scm_separation_losses,
    sign_consistency_loss,
    soft_coverage_loss,
)

NAMES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")


def _dtype_or_skip(xp, name):
    dt = getattr(xp, name, None)
    if dt is None:
        pytest.skip(f"the library has no {name}")
    return dt


def _arrays(backend, xp, name, shape=(6,), seed=0):
    dt = _dtype_or_skip(xp, name)
    rng = np.random.default_rng(seed)
    vals = [rng.normal(size=shape) for _ in range(4)]
    if name.startswith("complex"):
        vals = [v + 1j * rng.normal(size=shape) for v in vals]
    return [xp.astype(backend.asarray(v), dt) for v in vals]


def _every_loss(P, Q, Yn, Yd, xp, backend):
    h = backend.asarray(np.arange(int(np.prod(tuple(Q.shape)))).reshape(tuple(Q.shape)) % 3 == 0)
    total, br = SCMTrainingLoss()(implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd, is_bottom=h,
                                  mask_finite=backend.asarray(np.ones(tuple(Q.shape), bool)))
    down, up = scm_separation_losses(Q, mask_censored=h)
    return {
        "implicit_loss": implicit_loss(P, Q, Yn, Yd),
        "sign_consistency_loss": sign_consistency_loss(P, Q, Yn, Yd, epsilon_sing=10.0),
        "margin_loss": margin_loss(Q, 1.0),
        "margin_loss conditional": margin_loss(Q, 1.0, h, reduction="conditional"),
        "push_down": down, "push_up": up,
        "soft_coverage_loss": soft_coverage_loss(Q, 0.5, 0.1, 0.9),
        "coverage(outputs, bool)": coverage(P, h),
        "SCMTrainingLoss total": total,
        **{f"breakdown {k}": v for k, v in br.items()},
    }


@pytest.mark.parametrize("name", NAMES)
def test_every_loss_has_the_operands_real_dtype(backend, xp, name):
    P, Q, Yn, Yd = _arrays(backend, xp, name)
    want = _xp.real_dtype(xp, P.dtype)
    for label, out in _every_loss(P, Q, Yn, Yd, xp, backend).items():
        assert out.dtype == want, f"{label}: {out.dtype} for {name} operands"
        assert tuple(out.shape) == ()


@pytest.mark.parametrize("name", ("float16", "bfloat16", "float32", "float64"))
def test_coverage_and_rejection_dtype_rule(backend, xp, name):
    dt = _dtype_or_skip(xp, name)
    soft = xp.astype(backend.asarray(np.array([0.25, 0.5, 1.0, 0.0])), dt)
    bool_h = backend.asarray(np.array([True, False, False, False]))
    int_h = backend.asarray(np.array([1, 0, 0, 0]))
    default = _xp.default_float(xp)
    # a floating is_bottom gives its own dtype
    assert coverage(None, soft).dtype == dt
    assert rejection_loss(soft).dtype == dt
    # otherwise the outputs' (real) dtype ...
    assert coverage(soft, bool_h).dtype == dt
    assert coverage(soft, int_h).dtype == dt
    # ... and the library's default float only when nothing floating is given
    assert coverage(None, bool_h).dtype == default
    assert rejection_loss(bool_h).dtype == default
    P = xp.astype(backend.asarray(np.array([1.0, 2.0, 3.0, 4.0])), dt)
    _, br = SCMTrainingLoss()(implicit_loss(P, P, P, P), P, P, P, P, is_bottom=bool_h)
    assert br["rejection"].dtype == dt  # P's dtype, not the default float
    _, br = SCMTrainingLoss()(implicit_loss(P, P, P, P), P, P, P, P, is_bottom=soft)
    assert br["rejection"].dtype == dt


def test_float64_totals_agree_with_numpy_exactly_enough(backend, arr):
    # float64 inputs: the rejection term is float64 on every backend, so the total agrees
    # with the numpy computation to float64 rounding (torch's default float32 gave ~1e-10)
    rng = np.random.default_rng(5)
    P, Yn = rng.normal(size=64), rng.normal(size=64)
    Q = rng.normal(size=64) * 1e-3
    Yd = np.where(rng.random(64) < 0.3, 0.0, 1.0)
    h = np.abs(Q) < 1e-3

    def run(mk):
        A = [mk(x) for x in (P, Q, Yn, Yd)]
        total, br = SCMTrainingLoss()(implicit_loss(*A), *A, is_bottom=mk(h),
                                      mask_finite=mk(Yd != 0), tau_train=1e-3)
        return float(np.asarray(arr.backend.to_numpy(total) if mk is not np.asarray
                                else total)), br

    ref, _ = run(np.asarray)
    got, br = run(lambda x: arr(x, "bool" if x.dtype == bool else "float64"))
    # relu(0.95 − coverage)² with coverage = 1 − 5/64 … computed in float64 here
    frac = float(h.mean())
    rej = max(0.95 - (1.0 - frac), 0.0) ** 2
    assert abs(float(arr.np(br["rejection"])) - rej) <= 1e-15
    assert abs(got - ref) <= 1e-14 * abs(ref)


EMPTY_SHAPES = [(0,), (0, 3)]


@pytest.mark.parametrize("shape", EMPTY_SHAPES)
def test_empty_inputs_give_the_documented_value_without_warning(backend, xp, arr, shape):
    P = arr(np.zeros(shape))
    m = arr(np.zeros(shape, bool), "bool")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        total, br = SCMTrainingLoss()(implicit_loss(P, P, P, P), P, P, P, P, is_bottom=m,
                                      mask_finite=m, mask_singular=m)
        down, up = scm_separation_losses(P, mask_censored=m)
        values = {
            "implicit_loss": implicit_loss(P, P, P, P),
            "sign_consistency_loss": sign_consistency_loss(P, P, P, P),
            "margin_loss": margin_loss(P),
            "margin_loss masked": margin_loss(P, 1.0, m),
            "margin_loss conditional": margin_loss(P, 1.0, m, reduction="conditional"),
            "push_down": down, "push_up": up,
            "soft_coverage_loss": soft_coverage_loss(P, 1e-4, 1e-4, 0.95),
            "rejection_loss": rejection_loss(m),
            "SCMTrainingLoss total": total,
            **{f"breakdown {k}": v for k, v in br.items()},
        }
        cov = coverage(P, m)
    for label, v in values.items():
        assert arr.np(v) == 0.0, f"{label} of an empty input: {arr.np(v)!r}, documented 0"
        assert tuple(v.shape) == ()
    assert arr.np(cov) == 1.0  # nothing is bottom
