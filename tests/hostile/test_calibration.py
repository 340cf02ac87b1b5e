"""Class "calibration": ``calibrate_tau_infer``/``evaluate_tau`` never report a wrong
statistic and never fail on something the user did not pass.

* Shapes: ``y_true`` must have ``P``'s shape and ``Q`` ``P``'s leading shape; a target
  column ``(N, 1)`` next to ``(N,)`` predictions (README example with ``x`` of shape
  ``(N, 1)``) used to be compared all-pairs (RMSE 8.5e3 instead of 0.028) → now
  ``ValueError`` naming the arrays and shapes.
* dtypes: default candidates start at ``max(1e-9, finfo(Q.dtype).smallest_normal)``, so
  float16 data calibrates; a user candidate that underflows in ``Q``'s dtype →
  ``ValueError`` naming ``candidates[i]``; the RMSE is computed without overflow (no
  RuntimeWarning, no inf for representable errors).
* numpy bools are not numbers.

Expected values are computed independently with float64 numpy from the definitions.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

from zpml_core.training import calibrate_tau_infer, evaluate_tau


def readme_data(n: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, n)
    y = 1.0 / (x - 0.25)
    P, Q = np.ones(n), (x - 0.25) * (1 + 1e-3 * rng.standard_normal(n))
    return P, Q, y


def stats_np(P: np.ndarray, Q: np.ndarray, y: np.ndarray, tau: float) -> tuple[float, float]:
    """(coverage, rmse) from the definitions: a sample is accepted when its targets are
    finite, |Q| >= tau and P/Q is finite; RMSE over the accepted samples' elements."""
    P, Q, y = (np.asarray(a, dtype=np.float64) for a in (P, Q, y))
    Qe = Q.reshape(Q.shape + (1,) * (P.ndim - Q.ndim))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = P / Qe
    rows = lambda m: m.reshape(m.shape[0], -1).all(axis=1)  # noqa: E731
    fin = rows(np.isfinite(y))
    acc = fin & (np.abs(Q) >= tau) & rows(np.isfinite(d))
    err = (d - np.where(np.isfinite(y), y, 0.0))[acc]
    return acc.sum() / fin.sum(), math.sqrt(np.mean(err**2))


def _on(xp: Any, a: np.ndarray, dtype: Any = None) -> Any:
    x = xp.asarray(a)
    return x if dtype is None else xp.astype(x, dtype)


def test_readme_example_rmse_and_column_targets(xp: Any) -> None:
    P, Q, y = readme_data()
    rep = calibrate_tau_infer(_on(xp, P), _on(xp, Q), _on(xp, y), target_coverage=0.95,
                              tau_train=2e-4)
    cov, rmse = stats_np(P, Q, y, rep.tau_infer)
    assert rep.coverage == pytest.approx(cov, rel=1e-12)
    assert rep.rmse == pytest.approx(rmse, rel=1e-9) and rep.rmse < 0.1
    col = _on(xp, y[:, None])
    for call in (lambda: calibrate_tau_infer(_on(xp, P), _on(xp, Q), col, tau_train=2e-4),
                 lambda: evaluate_tau(_on(xp, P), _on(xp, Q), col, 1e-4)):
        with pytest.raises(ValueError, match=r"y_true has shape \(500, 1\) but P has shape \(500,\)"):
            call()


def test_other_mismatched_shapes(xp: Any) -> None:
    P, Q, y = readme_data(50)
    cases = [
        ((P, Q[:, None], y), r"Q has shape \(50, 1\)"),
        ((P[:, None], Q, y), r"y_true has shape \(50,\) but P has shape \(50, 1\)"),
        ((P, Q[:10], y), r"Q has shape \(10,\)"),
        ((np.stack([P, P], 1), Q, y), r"y_true has shape \(50,\)"),
    ]
    for (p, q, t), match in cases:
        with pytest.raises(ValueError, match=match):
            calibrate_tau_infer(_on(xp, p), _on(xp, q), _on(xp, t), target_coverage=0.0)
        with pytest.raises(ValueError, match=match):
            evaluate_tau(_on(xp, p), _on(xp, q), _on(xp, t), 1e-3)


def test_shared_denominator_matches_definition(xp: Any) -> None:
    P, Q, y = readme_data(200)
    P2 = np.stack([P, 3 * P], axis=1)
    y2 = np.stack([y, 3 * y + 0.01], axis=1)
    y2[5, 1] = np.inf  # one sample with a bottom target in one column
    for tau in (1e-6, 1e-3, 5e-2):
        r = evaluate_tau(_on(xp, P2), _on(xp, Q), _on(xp, y2), tau)
        cov, rmse = stats_np(P2, Q, y2, tau)
        assert r["coverage"] == pytest.approx(cov, rel=1e-12)
        assert r["rmse"] == pytest.approx(rmse, rel=1e-9)
        assert r["false_finite_frac"] == (0.0 if abs(Q[5]) < tau else 1.0)


def _half_dtypes(xp: Any, backend_name: str) -> list[Any]:
    out = []
    if backend_name != "strict":  # array-api-strict has no float16
        out.append(xp.float16)
    if backend_name == "torch":  # (JAX bfloat16: same code path, 81 more compiles)
        out.append(xp.bfloat16)
    return out


def test_default_candidates_reach_the_exact_target_coverage(xp: Any) -> None:
    """The rule's largest feasible threshold is a default candidate. 100 finite-target
    samples with ``|Q| = 1e-3, 2e-3, …, 0.1`` and 20 bottom-target samples with tiny
    ``|Q|`` (which shift every quantile of ``|Q|`` over all samples): at coverage 0.95 the
    5 smallest finite-target samples may be rejected, so the answer is ``tau = 6e-3``
    (coverage exactly 0.95); any larger threshold rejects a sixth one."""
    q = np.concatenate([np.arange(1, 101) * 1e-3, np.full(20, 1e-6)])
    y = np.concatenate([np.ones(100), np.full(20, np.inf)])
    P = np.ones(120)
    rep = calibrate_tau_infer(xp.asarray(P), xp.asarray(q), xp.asarray(y), target_coverage=0.95)
    assert rep.tau_infer == pytest.approx(6e-3, rel=1e-12)
    assert rep.coverage == 0.95
    # per sample the smallest |Q| counts, a NaN entry is bottom at every threshold
    q2 = np.stack([q, np.full(120, 1.0)], axis=1)
    q2[100:, 1] = np.nan  # bottom targets: no effect on coverage
    q2[0, 1] = np.nan  # one finite-target sample always rejected: 4 more may go
    P2, y2 = np.ones((120, 2, 3)), np.repeat(np.repeat(y[:, None, None], 2, 1), 3, 2)
    rep2 = calibrate_tau_infer(xp.asarray(P2), xp.asarray(q2), xp.asarray(y2),
                               target_coverage=0.95)
    assert rep2.tau_infer == pytest.approx(6e-3, rel=1e-12)
    assert rep2.coverage == 0.95


def test_half_precision_default_candidates(xp: Any, backend: Any, backend_name: str) -> None:
    P, Q, y = readme_data()
    dts = _half_dtypes(xp, backend_name)
    if not dts:
        pytest.skip(f"{backend_name} has no half-precision dtype")
    for dt in dts:
        p, q, t = (_on(xp, a, dt) for a in (P, Q, y))
        tiny = float(xp.finfo(dt).smallest_normal)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing escapes (overflow in casts, ...)
            rep = calibrate_tau_infer(p, q, t, target_coverage=0.9)
            # (JAX compiles strict inference once per threshold: 81 more compiles)
            if backend_name != "jax":
                rep2 = calibrate_tau_infer(p, q, t, target_coverage=0.9, tau_train=2e-4)
                assert max(r["tau"] for r in rep2.table) == 2e-4
        assert min(r["tau"] for r in rep.table) >= max(1e-9, tiny)
        assert rep.coverage >= 0.9 and math.isfinite(rep.rmse)
        # the definition on the half-precision values (read back exactly via float32)
        q64, y64 = (np.asarray(backend.to_numpy(xp.astype(a, xp.float32)), dtype=np.float64)
                    for a in (q, t))
        cov, _ = stats_np(np.ones(500), q64, y64, rep.tau_infer)
        # (tau itself is compared in Q's dtype: allow one sample at the threshold)
        assert rep.coverage == pytest.approx(cov, abs=1.5 / 500)


def test_half_precision_candidates_that_underflow(xp: Any, backend_name: str) -> None:
    P, Q, y = readme_data(50)
    if backend_name == "strict":
        pytest.skip("array-api-strict has no float16")
    p, q, t = (_on(xp, a, xp.float16) for a in (P, Q, y))
    with pytest.raises(ValueError, match=r"candidates\[1\]=1e-09 underflows.*float16"):
        calibrate_tau_infer(p, q, t, candidates=[1e-3, 1e-9], target_coverage=0.0)
    with pytest.raises(ValueError, match=r"tau=1e-09 underflows"):
        evaluate_tau(p, q, t, 1e-9)
    with pytest.raises(ValueError, match=r"tau_train=1e-06"):
        calibrate_tau_infer(p, q, t, tau_train=1e-6, target_coverage=0.0)
    # a subnormal float16 threshold does not round to 0: accepted (it acts as the
    # smallest normal, subnormals counting as zero)
    rep = calibrate_tau_infer(p, q, t, candidates=[1e-6, 1e-3], target_coverage=0.0)
    assert [r["tau"] for r in rep.table] == [1e-6, 1e-3]
    # float32/float64 data keep the 1e-9 floor (JAX: the 81 compiles are not worth it)
    if backend_name != "jax":
        rep = calibrate_tau_infer(_on(xp, P), _on(xp, Q), _on(xp, y), target_coverage=0.0)
        assert min(r["tau"] for r in rep.table) == 1e-9


def test_rmse_never_overflows(xp: Any, backend_name: str) -> None:
    # float64 errors of 2e200 (their squares overflow): rmse = 2e200 exactly
    big = np.array([1e200, -1e200, 1e200, -1e200])
    r = evaluate_tau(_on(xp, big), _on(xp, np.ones(4)), _on(xp, -big), 1e-3)
    assert r["rmse"] == pytest.approx(2e200, rel=1e-12) and r["coverage"] == 1.0
    # float16: errors up to 1.2e5 (beyond float16's max) and squares far beyond
    if backend_name == "strict":
        return
    h = np.array([6e4, -6e4, 1.0, 2.0], dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate_tau(_on(xp, h), _on(xp, np.ones(4), xp.float16), _on(xp, -h), 1e-3)
    e = 2.0 * h.astype(np.float64)
    assert r["rmse"] == pytest.approx(math.sqrt(np.mean(e**2)), rel=1e-6)


@pytest.mark.parametrize("name", ["target_coverage", "max_error", "tau_train"])
def test_numpy_bools_are_not_numbers(name: str) -> None:
    P, Q, y = readme_data(50)
    with pytest.raises(TypeError, match=name):
        calibrate_tau_infer(P, Q, y, **{name: np.True_})
    with pytest.raises(TypeError, match=r"candidates\[0\]"):
        calibrate_tau_infer(P, Q, y, candidates=[np.True_])
    with pytest.raises(TypeError, match="tau"):
        evaluate_tau(P, Q, y, np.True_)
    ok = {"target_coverage": np.float64(0.5), "max_error": np.float32(1e3), "tau_train": np.float64(1e-2)}
    rep = calibrate_tau_infer(P, Q, y, **{**{"target_coverage": 0.5}, name: ok[name]})
    assert rep.tau_infer > 0
