"""Conformance cases for ``zpml_core.losses`` (semantics §5) and the gradient policies of the
losses (semantics §6): forward rows (group ``losses``) and gradient rows (group ``grad``).

Imported by :func:`zpml_conformance.cases.all_cases`; an ImportError here (no
``zpml_core.losses``) leaves the table without loss rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from zpml_conformance.cases import (
    Case,
    GradSpec,
    Inputs,
    _mask,
    _rand,
    _smooth,
    _sprinkle,
    edge_values,
)

from zpml_core import losses
from zpml_core.autodiff import GradientPolicy
from zpml_core.losses import LossConfig, SCMTrainingLoss

__all__ = ["FAMILIES"]

_SHORT = {"float64": "f64", "float32": "f32"}
#: losses are means over all elements: float32 summation order differs per library
_LOSS_TOL = {"float64": 1e-12, "float32": 4e-6}
_POLICIES = ("CLAMP", "PROJECT", "REJECT", "PASSTHROUGH")


def _targets(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype,
             frac_inf: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Lifted targets ``(Y_n, Y_d)`` of random data with ±inf / NaN (semantics §3.1)."""
    y = _rand(rng, shape, dt, -2, 2)
    u = rng.random(shape)
    y = np.where(u < frac_inf / 3, np.inf, y)
    y = np.where((u >= frac_inf / 3) & (u < 2 * frac_inf / 3), -np.inf, y)
    y = np.where((u >= 2 * frac_inf / 3) & (u < frac_inf), np.nan, y).astype(dt)
    fin = np.isfinite(y)
    yn = np.where(fin, y, np.where(y < 0, -1.0, 1.0)).astype(dt)
    yd = fin.astype(dt)
    return yn, yd


def _pq(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> Inputs:
    p = _rand(rng, shape, dt, -2, 2)
    q = _rand(rng, shape, dt, -6, 1)  # many denominators near and below tau_train
    return {"P": p, "Q": q}


def _implicit_cases(dtype: str) -> Iterable[Case]:
    d = _SHORT[dtype]
    fn = losses.implicit_loss
    tol = _LOSS_TOL[dtype]

    def rand_1d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        yn, yd = _targets(rng, (64,), dt)
        return {**_pq(rng, (64,), dt), "Y_n": yn, "Y_d": yd}

    def rand_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        yn, yd = _targets(rng, (6, 8), dt)
        return {**_pq(rng, (6, 8), dt), "Y_n": yn, "Y_d": yd}

    def bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        yn, yd = _targets(rng, (8,), dt)
        return {"P": _rand(rng, (6, 8), dt), "Q": _rand(rng, (6, 1), dt, -6, 1),
                "Y_n": yn, "Y_d": yd}

    def spec_example(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        a = np.asarray  # semantics §5.1: loss 0.19980000000227224
        return {"P": a([1, 2, 0, 3, 1e-3], dt), "Q": a([1, .5, 0, 1e-5, -2], dt),
                "Y_n": a([1, 4, 1, 1, -1], dt), "Y_d": a([1, 1, 0, 0, 1], dt)}

    def edge(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        yn, yd = _targets(rng, e.shape, dt)
        return {"P": rng.permutation(e), "Q": rng.permutation(e), "Y_n": yn, "Y_d": yd}

    g = "losses"
    name = "losses.implicit_loss"
    yield Case(f"{name}/{d}/rand-1d", g, fn, rand_1d, dtype, rtol=tol)
    yield Case(f"{name}/{d}/rand-2d-gamma=0", g, fn, rand_2d, dtype, rtol=tol,
               kwargs={"gamma": 0.0})
    yield Case(f"{name}/{d}/bcast-detach", g, fn, bcast, dtype, rtol=tol,
               kwargs={"detach_scale": True, "gamma": 1e-3})
    yield Case(f"{name}/{d}/spec-example", g, fn, spec_example, dtype, rtol=tol)
    yield Case(f"{name}/{d}/spec-example-gamma=0", g, fn, spec_example, dtype, rtol=tol,
               kwargs={"gamma": 0.0})  # the all-zero tuple gives 0 (finite)
    yield Case(f"{name}/{d}/edge-1d", g, fn, edge, dtype, rtol=tol)


def _margin_cases(dtype: str) -> Iterable[Case]:
    d = _SHORT[dtype]
    fn = losses.margin_loss
    tol = _LOSS_TOL[dtype]
    g = "losses"
    name = "losses.margin_loss"

    def q_1d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        q = _rand(rng, (64,), dt, -6, -2)
        return {"Q": q}

    def q_edge(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        return {"Q": e, "mask_finite": np.isfinite(e) & (rng.random(e.shape) < 0.8)}

    def q_2d_mask(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        q = _sprinkle(rng, _rand(rng, (6, 8), dt, -6, -2), 0.2)
        return {"Q": q, "mask_finite": _mask(rng, (6, 8), 0.6)}

    def q_bcast_mask(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        q = _rand(rng, (6, 8), dt, -6, -2)
        return {"Q": q, "mask_finite": (_mask(rng, (8,), 0.6)).astype(np.int64)}

    def q_empty_mask(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"Q": _rand(rng, (6, 8), dt, -6, -2), "mask_finite": np.zeros((6, 8), bool)}

    def spec_example(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        # semantics §5.2: population 1.4285714285714286e-9, conditional 3.3333333333333334e-9
        return {"Q": np.asarray([0, 5e-5, 1e-4, 2e-4, -5e-5, np.nan, np.inf], dt),
                "mask_finite": np.asarray([1, 0, 1, 1, 0, 0, 0], bool)}

    yield Case(f"{name}/{d}/rand-1d", g, fn, q_1d, dtype, rtol=tol)
    yield Case(f"{name}/{d}/rand-1d-tau=1e-3", g, fn, q_1d, dtype, rtol=tol,
               kwargs={"tau_train": 1e-3})
    yield Case(f"{name}/{d}/rand-1d-tau=0", g, fn, q_1d, dtype, rtol=tol,
               kwargs={"tau_train": 0.0})
    yield Case(f"{name}/{d}/edge-1d-masked", g, fn, q_edge, dtype, rtol=tol)
    yield Case(f"{name}/{d}/masked-2d", g, fn, q_2d_mask, dtype, rtol=tol)
    yield Case(f"{name}/{d}/masked-2d-conditional", g, fn, q_2d_mask, dtype, rtol=tol,
               kwargs={"reduction": "conditional"})
    yield Case(f"{name}/{d}/masked-bcast-conditional", g, fn, q_bcast_mask, dtype, rtol=tol,
               kwargs={"reduction": "conditional", "tau_train": 1e-3})
    yield Case(f"{name}/{d}/empty-mask-conditional", g, fn, q_empty_mask, dtype, rtol=tol,
               kwargs={"reduction": "conditional"})
    yield Case(f"{name}/{d}/spec-example", g, fn, spec_example, dtype, rtol=tol)
    yield Case(f"{name}/{d}/spec-example-conditional", g, fn, spec_example, dtype, rtol=tol,
               kwargs={"reduction": "conditional"})


def _sign_inputs(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> Inputs:
    yn, _ = _targets(rng, shape, dt, 0.0)
    yd = np.where(rng.random(shape) < 0.5, 0.0,
                  rng.uniform(-3e-3, 3e-3, size=shape)).astype(dt)  # both sides of 1e-3
    return {**_pq(rng, shape, dt), "Y_n": np.sign(yn).astype(dt) * np.abs(yn), "Y_d": yd}


def _sign_cases(dtype: str) -> Iterable[Case]:
    d = _SHORT[dtype]
    fn = losses.sign_consistency_loss
    tol = _LOSS_TOL[dtype]
    g = "losses"
    name = "losses.sign_consistency_loss"

    def rand_1d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return _sign_inputs(rng, (64,), dt)

    def masked_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {**_sign_inputs(rng, (6, 8), dt), "mask_singular": _mask(rng, (6, 8), 0.5)}

    def masked_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {**_sign_inputs(rng, (6, 8), dt),
                "mask_singular": _mask(rng, (8,), 0.5).astype(np.int64)}

    def edge(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        return {"P": rng.permutation(e), "Q": rng.permutation(e), "Y_n": rng.permutation(e),
                "Y_d": np.where(rng.random(e.shape) < 0.6, 0.0, rng.permutation(e)).astype(dt)}

    def spec_example(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        a = np.asarray  # semantics §5.3 mixed batch: 0.20000000011222224
        return {"P": a([1, 2, 0, 3, 1e-3], dt), "Q": a([1, .5, 0, 1e-5, -2], dt),
                "Y_n": a([1, 4, 1, 1, -1], dt), "Y_d": a([1, 1, 0, 0, 1], dt)}

    yield Case(f"{name}/{d}/rand-1d", g, fn, rand_1d, dtype, rtol=tol)
    yield Case(f"{name}/{d}/rand-1d-eps=2e-3-gamma=1e-4", g, fn, rand_1d, dtype, rtol=tol,
               kwargs={"epsilon_sing": 2e-3, "gamma": 1e-4})
    yield Case(f"{name}/{d}/masked-2d", g, fn, masked_2d, dtype, rtol=tol)
    yield Case(f"{name}/{d}/masked-bcast-gamma=0", g, fn, masked_bcast, dtype, rtol=tol,
               kwargs={"gamma": 0.0})
    yield Case(f"{name}/{d}/edge-1d", g, fn, edge, dtype, rtol=tol)
    yield Case(f"{name}/{d}/spec-example", g, fn, spec_example, dtype, rtol=tol)


def _coverage_cases(dtype: str) -> Iterable[Case]:
    d = _SHORT[dtype]
    tol = _LOSS_TOL[dtype]
    g = "losses"

    def cov_bool(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"outputs": _rand(rng, (6, 8), dt), "is_bottom": _mask(rng, (6, 8), 0.3)}

    def cov_int(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"outputs": _rand(rng, (64,), dt),
                "is_bottom": _mask(rng, (64,), 0.1).astype(np.int64)}

    def cov_soft(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"outputs": _rand(rng, (6, 8), dt),
                "is_bottom": rng.random((6, 8)).astype(dt)}

    # coverage follows its operands' dtype: a floating is_bottom's, else the outputs'
    cov = losses.coverage
    yield Case(f"losses.coverage/{d}/bool-2d", g, cov, cov_bool, dtype, rtol=tol)
    yield Case(f"losses.coverage/{d}/int-1d", g, cov, cov_int, dtype, rtol=tol)
    yield Case(f"losses.coverage/{d}/soft-2d", g, cov, cov_soft, dtype, rtol=tol)
    for pol in _POLICIES:
        yield Case(f"losses.coverage/{d}/bool-2d-policy={pol.lower()}", g, cov, cov_bool,
                   dtype, rtol=tol, kwargs={"policy": GradientPolicy[pol]})

    def rej_bool(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"is_bottom": _mask(rng, (6, 8), 0.3)}

    def rej_spec(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        # semantics §5.4: coverage 0.75, rejection(0.95) ≈ 0.04, rejection(0.5) = 0
        return {"is_bottom": np.asarray([True, False, False, False])}

    rej = losses.rejection_loss
    # a bool is_bottom is the only operand: the value is in the library's default float.
    # relu(target − coverage)² cancels: float32 on torch (default float) agrees with the
    # float64 reference to ~1e-8 absolute (semantics decision #11 asks for 1e-6)
    df = ("out",)
    rt = {"out": (tol, 1e-7)}
    yield Case(f"losses.rejection_loss/{d}/bool-2d", g, rej, rej_bool, dtype, rtol=tol,
               default_float=df, tol=rt)
    yield Case(f"losses.rejection_loss/{d}/spec-example", g, rej, rej_spec, dtype, rtol=tol,
               default_float=df, tol=rt)
    yield Case(f"losses.rejection_loss/{d}/spec-example-target=0.5", g, rej, rej_spec, dtype,
               rtol=tol, default_float=df, kwargs={"target_coverage": 0.5}, tol=rt)
    for pol in _POLICIES:
        yield Case(f"losses.rejection_loss/{d}/bool-2d-policy={pol.lower()}", g, rej,
                   rej_bool, dtype, rtol=tol, default_float=df, policy=pol, tol=rt)

    def soft_q(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"Q": _sprinkle(rng, _rand(rng, (6, 8), dt, -6, 0), 0.1)}

    def soft_spec(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"Q": np.asarray([0, 1e-4, 1e-3, 1], dt)}  # semantics §5.5: 0.06645851636656258

    soft = losses.soft_coverage_loss
    kw = {"tau": 1e-4, "temperature": 1e-4, "target": 0.95}
    yield Case(f"losses.soft_coverage_loss/{d}/rand-2d", g, soft, soft_q, dtype, rtol=tol,
               kwargs=kw)
    yield Case(f"losses.soft_coverage_loss/{d}/rand-2d-T=1e-2-target=0.6", g, soft, soft_q,
               dtype, rtol=tol, kwargs={"tau": 1e-3, "temperature": 1e-2, "target": 0.6})
    yield Case(f"losses.soft_coverage_loss/{d}/spec-example", g, soft, soft_spec, dtype,
               rtol=tol, kwargs=kw)


def _separation_cases(dtype: str) -> Iterable[Case]:
    d = _SHORT[dtype]
    tol = _LOSS_TOL[dtype]
    g = "losses"
    fn = losses.scm_separation_losses

    def rand_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"Q": _rand(rng, (6, 8), dt, -4, 0), "mask_censored": _mask(rng, (6, 8), 0.4)}

    def bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"Q": _rand(rng, (6, 8), dt, -4, 0), "mask_censored": _mask(rng, (8,), 0.4)}

    def all_censored(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"Q": _rand(rng, (64,), dt, -4, 0), "mask_censored": np.ones(64, bool)}

    def spec_example(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        # semantics §5.6: (5e-05, 7.083333333333334e-4)
        return {"Q": np.asarray([0, .02, .04, .1, .005], dt),
                "mask_censored": np.asarray([1, 1, 0, 0, 0], bool)}

    name = "losses.scm_separation_losses"
    yield Case(f"{name}/{d}/rand-2d", g, fn, rand_2d, dtype, rtol=tol)
    yield Case(f"{name}/{d}/rand-2d-tau=1e-3,0.5", g, fn, rand_2d, dtype, rtol=tol,
               kwargs={"tau_bot": 1e-3, "tau_finite": 0.5})
    yield Case(f"{name}/{d}/bcast-mask", g, fn, bcast, dtype, rtol=tol)
    yield Case(f"{name}/{d}/all-censored", g, fn, all_censored, dtype, rtol=tol)
    yield Case(f"{name}/{d}/spec-example", g, fn, spec_example, dtype, rtol=tol)


_CONFIG = LossConfig(gamma=1e-6, tau_train=1e-3, epsilon_sing=2e-3, lambda_margin=0.5,
                     lambda_sign=0.3, lambda_rej=0.2, target_coverage=0.8)


def _training(config: LossConfig | None) -> Callable[..., Any]:
    loss = SCMTrainingLoss(config)

    def scm_training_loss(P: Any, Q: Any, Y_n: Any, Y_d: Any, **kw: Any) -> Any:
        fit = losses.implicit_loss(P, Q, Y_n, Y_d)
        return loss(fit, P, Q, Y_n, Y_d, **kw)

    return scm_training_loss


def _training_cases(dtype: str) -> Iterable[Case]:
    d = _SHORT[dtype]
    tol = _LOSS_TOL[dtype]
    g = "losses"

    def plain(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return _sign_inputs(rng, (64,), dt)

    def full(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        a = _sign_inputs(rng, (6, 8), dt)
        return {**a, "is_bottom": np.abs(a["Q"]) < 1e-4, "mask_finite": a["Y_d"] != 0,
                "mask_singular": _mask(rng, (8,), 0.5)}

    def spec_example(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        a = np.asarray  # semantics §5.7: total 0.5249983337105557
        return {"P": a([1, 2, 0, 3], dt), "Q": a([1, .5, 1e-5, 1e-5], dt),
                "Y_n": a([1, 4, 1, 1], dt), "Y_d": a([1, 1, 0, 1], dt)}

    def spec_example_full(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        a = spec_example(rng, dt)  # total 0.5270233340277517 with tau_train=2e-4
        return {**a, "is_bottom": np.abs(a["Q"]) < 1e-4, "mask_finite": a["Y_d"] != 0}

    name = "losses.SCMTrainingLoss"
    # with a bool is_bottom the rejection term is computed in P's dtype (loss dtypes
    # follow the operands), so every output has the case's dtype
    for label, cfg in (("default", None), ("config", _CONFIG)):
        fn = _training(cfg)
        # without is_bottom the rejection term is a 0 in fit_loss's dtype (semantics §5.7)
        yield Case(f"{name}/{d}/{label}-1d", g, fn, plain, dtype, rtol=tol)
        yield Case(f"{name}/{d}/{label}-2d-masks", g, fn, full, dtype, rtol=tol)
        yield Case(f"{name}/{d}/{label}-2d-masks-tau=2e-4", g, fn, full, dtype, rtol=tol,
                   kwargs={"tau_train": 2e-4})
    fn = _training(None)
    yield Case(f"{name}/{d}/spec-example", g, fn, spec_example, dtype, rtol=tol)
    yield Case(f"{name}/{d}/spec-example-full", g, fn, spec_example_full, dtype, rtol=tol,
               kwargs={"tau_train": 2e-4})
    for pol in ("REJECT", "PROJECT"):
        yield Case(f"{name}/{d}/default-2d-masks-policy={pol.lower()}", g, fn, full, dtype,
                   rtol=tol, policy=pol)


# ---- gradients of every loss -----------------------------------------------------------


def _loss_scalar(out: Any, inputs: Mapping[str, Any], xp: Any) -> Any:
    return out


def _first(out: Any, inputs: Mapping[str, Any], xp: Any) -> Any:
    return out[0]


def _sum_pair(out: Any, inputs: Mapping[str, Any], xp: Any) -> Any:
    return out[0] + 3.0 * out[1]


def _all_zero(wrt: tuple[str, ...]) -> Callable[[Mapping[str, np.ndarray]],
                                                Mapping[str, np.ndarray]]:
    def zero_at(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        return {k: np.ones(inputs[k].shape, dtype=bool) for k in wrt}

    return zero_at


def _away(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype, lo: float,
          hi: float) -> np.ndarray:
    """Signed values with magnitudes in [lo, hi] (away from 0 and from kinks)."""
    return _smooth(rng, shape, dt, lo, hi)


def _grad_loss_cases(dtype: str) -> Iterable[Case]:
    d = _SHORT[dtype]
    n = 24
    g = "grad"
    pq = ("P", "Q")

    def fit_inputs(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        yn, yd = _targets(rng, (n,), dt)
        return {"P": _away(rng, (n,), dt, 0.2, 2.0), "Q": _away(rng, (n,), dt, 0.2, 2.0),
                "Y_n": yn, "Y_d": yd}

    fd = GradSpec(pq, _loss_scalar, fd=True, scaled_atol=True)
    yield Case(f"grad.losses.implicit_loss/{d}/rand-1d", g, losses.implicit_loss, fit_inputs,
               dtype, grad=fd)
    yield Case(f"grad.losses.implicit_loss/{d}/rand-1d-detach", g, losses.implicit_loss,
               fit_inputs, dtype, kwargs={"detach_scale": True},
               grad=GradSpec(pq, _loss_scalar, scaled_atol=True))

    def margin_inputs(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        q = _away(rng, (n,), dt, 2e-5, 3e-4)
        q = np.where(np.abs(np.abs(q) - 1e-4) < 5e-6, q * 1.2, q).astype(dt)  # off the kink
        return {"Q": q, "mask_finite": _mask(rng, (n,), 0.7)}

    qspec = GradSpec(("Q",), _loss_scalar, fd=True, fd_floor=1e-4, scaled_atol=True)
    yield Case(f"grad.losses.margin_loss/{d}/masked-1d", g, losses.margin_loss, margin_inputs,
               dtype, grad=qspec)
    yield Case(f"grad.losses.margin_loss/{d}/masked-1d-conditional", g, losses.margin_loss,
               margin_inputs, dtype, kwargs={"reduction": "conditional"}, grad=qspec)

    def sign_inputs(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        a = _sign_inputs(rng, (n,), dt)
        return {**a, "P": _away(rng, (n,), dt, 0.2, 2.0), "Q": _away(rng, (n,), dt, 0.2, 2.0)}

    yield Case(f"grad.losses.sign_consistency_loss/{d}/rand-1d", g,
               losses.sign_consistency_loss, sign_inputs, dtype, grad=fd)

    def cov_soft(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"outputs": _rand(rng, (n,), dt), "is_bottom": rng.random(n).astype(dt)}

    for pol in _POLICIES:
        attached = pol in ("CLAMP", "PASSTHROUGH")
        # computed in is_bottom's dtype (it is floating here)
        spec = GradSpec(("is_bottom",), _loss_scalar, fd=attached, policy=pol,
                        zero_at=None if attached else _all_zero(("is_bottom",)),
                        scaled_atol=True, rtol=1e-6)
        yield Case(f"grad.losses.coverage/{d}/soft-1d-policy={pol.lower()}", g,
                   losses.coverage, cov_soft, dtype, grad=spec)
        yield Case(f"grad.losses.rejection_loss/{d}/soft-1d-policy={pol.lower()}", g,
                   losses.rejection_loss, cov_soft_rej, dtype,
                   grad=GradSpec(("is_bottom",), _loss_scalar, policy=pol,
                                 zero_at=_all_zero(("is_bottom",))))

    def soft_q(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"Q": _away(rng, (n,), dt, 1e-5, 5e-4)}

    yield Case(f"grad.losses.soft_coverage_loss/{d}/rand-1d", g, losses.soft_coverage_loss,
               soft_q, dtype, kwargs={"tau": 1e-4, "temperature": 1e-4, "target": 0.95},
               grad=qspec)

    def sep_inputs(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        q = _away(rng, (n,), dt, 1e-3, 0.2)
        for t in (1e-2, 5e-2):  # off the kinks at tau_bot and tau_finite
            q = np.where(np.abs(np.abs(q) - t) < 1e-3, q * 1.3, q)
        return {"Q": q.astype(dt), "mask_censored": _mask(rng, (n,), 0.4)}

    yield Case(f"grad.losses.scm_separation_losses/{d}/rand-1d", g,
               losses.scm_separation_losses, sep_inputs, dtype,
               grad=GradSpec(("Q",), _sum_pair, fd=True, fd_floor=1e-3, scaled_atol=True))

    def train_inputs(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        a = sign_inputs(rng, dt)
        return {**a, "is_bottom": _mask(rng, (n,), 0.3), "mask_finite": a["Y_d"] != 0}

    for label, cfg in (("default", None), ("config", _CONFIG)):
        yield Case(f"grad.losses.SCMTrainingLoss/{d}/{label}-1d", g, _training(cfg),
                   train_inputs, dtype,
                   grad=GradSpec(pq, _first, fd=True, scaled_atol=True))
    for pol in _POLICIES:
        yield Case(f"grad.losses.SCMTrainingLoss/{d}/default-1d-policy={pol.lower()}", g,
                   _training(None), train_inputs, dtype,
                   grad=GradSpec(pq, _first, fd=True, policy=pol, scaled_atol=True))


def cov_soft_rej(rng: np.random.Generator, dt: np.dtype) -> Inputs:
    return {"is_bottom": rng.random(24).astype(dt)}


FAMILIES: tuple[Callable[[str], Iterable[Case]], ...] = (
    _implicit_cases,
    _margin_cases,
    _sign_cases,
    _coverage_cases,
    _separation_cases,
    _training_cases,
    _grad_loss_cases,
)
