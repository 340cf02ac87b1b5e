"""Class "overflow inside losses": every loss is finite for every finite input.

Inputs are drawn (seeded) log-uniformly over the whole finite range of each float dtype
— subnormals to ``finfo.max``, both signs — plus the exact edge values 0, −0, ±max,
±smallest normal, ±smallest subnormal, ±1, in float16, bfloat16, float32, float64,
complex64 and complex128 (skipped where the library lacks the dtype: numpy has no
bfloat16, array-api-strict no float16/bfloat16). Expected values are computed here
independently, element by element, with mpmath at 160 bits from the semantics formulas and
the documented saturation rule (``zpml_core.losses`` docstring: each element at most
``S``; ``implicit_loss`` exact below ``S/2^14``, saturated in ``[S/2^14, S]`` above),
with a rounding bound derived from the dtype's epsilon. Gradients (torch, JAX): never
NaN, and finite wherever the true gradient (mpmath) is representable.
"""

from __future__ import annotations

import math

import ml_dtypes
import mpmath
import numpy as np
import pytest

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

N = 64
REAL = ("float16", "bfloat16", "float32", "float64")
ALL = (*REAL, "complex64", "complex128")
_NP = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32,
       "float64": np.float64}
_REAL_OF = {"complex64": "float32", "complex128": "float64"}


def _finfo(real: str):
    return ml_dtypes.finfo(ml_dtypes.bfloat16) if real == "bfloat16" else np.finfo(_NP[real])


def _real(name: str) -> str:
    return _REAL_OF.get(name, name)


def _compute(real: str) -> str:
    """The documented computation dtype: half types are computed in float32."""
    return "float32" if real in ("float16", "bfloat16") else real


def _sat(real: str) -> float:
    """S: the documented bound of one loss element (2^(⌊log2 max⌋//2 − 2); float16: max)."""
    if real == "float16":
        return float(np.finfo(np.float16).max)
    e = math.floor(math.log2(float(np.finfo(_NP[_compute(real)]).max)))
    return math.ldexp(1.0, e // 2 - 2)


def _eps(real: str) -> float:
    return float(np.finfo(_NP[_compute(real)]).eps)


def _out_eps(real: str) -> float:
    return float(_finfo(real).eps)


def _draw(real: str, rng: np.random.Generator, n: int = N) -> np.ndarray:
    """float64 values exactly representable in ``real``: log-uniform magnitudes from the
    smallest subnormal to max, random signs, and every edge value once."""
    fi = _finfo(real)
    hi, tiny, sub = float(fi.max), float(fi.smallest_normal), float(fi.smallest_subnormal)
    with np.errstate(over="ignore"):
        mags = np.minimum(np.exp(rng.uniform(np.log(sub), np.log(hi), n)), hi)
    x = mags * rng.choice([-1.0, 1.0], n)
    edges = [0.0, -0.0, hi, -hi, tiny, -tiny, sub, -sub, 1.0, -1.0]
    x[rng.choice(n, len(edges), replace=False)] = edges
    return x.astype(_NP[real]).astype(np.float64)


def _operand(name: str, rng: np.random.Generator, n: int = N) -> np.ndarray:
    real = _real(name)
    if name.startswith("complex"):
        return _draw(real, rng, n) + 1j * _draw(real, rng, n)
    return _draw(real, rng, n)


def _dtype_or_skip(xp, name: str):
    dt = getattr(xp, name, None)
    if dt is None:
        pytest.skip(f"the library has no {name}")
    return dt


def _to(backend, xp, x: np.ndarray, name: str):
    return xp.astype(backend.asarray(x), _dtype_or_skip(xp, name))


def _value(backend, out) -> float:
    xp = backend.namespace()
    if out.dtype != xp.float64:  # exact: float16/bfloat16 ⊂ float32 (torch has no numpy
        out = xp.astype(out, xp.float32)  # bfloat16)
    return float(np.asarray(backend.to_numpy(out)).astype(np.float64))


def _mp(x):
    return mpmath.mpc(complex(x)) if isinstance(x, complex | np.complexfloating) else \
        mpmath.mpf(float(x))


def _within(got: float, lo: float, hi: float, what: str, real: str) -> None:
    """``got`` finite and in ``[lo, hi]`` widened by the output dtype's smallest normal
    (results below it may be flushed or rounded to a subnormal)."""
    assert math.isfinite(got), f"{what}: {got!r} is not finite"
    atol = float(_finfo(real).smallest_normal)
    assert lo - atol <= got <= hi + atol, (
        f"{what}: {got!r} outside the expected [{lo!r}, {hi!r}]")


# ---------------------------------------------------------------------------------------
# independent references (mpmath, 160 bits)


def _implicit_bounds(P, Q, Yn, Yd, gamma: float, real: str) -> tuple[float, float]:
    S, eps = _sat(real), _eps(real)
    lo_sum = hi_sum = mpmath.mpf(0)
    with mpmath.workprec(160):
        for p, q, yn, yd in zip(map(_mp, P), map(_mp, Q), map(_mp, Yn), map(_mp, Yd),
                                strict=True):
            e = abs(p * yd - q * yn) ** 2
            s = abs(q * yd) ** 2 + abs(p * yn) ** 2
            den = s + gamma
            f = mpmath.inf if den == 0 and e > 0 else (0 if den == 0 else e / den)
            # rounding: the residual cancels (condition (|P·Y_d| + |Q·Y_n|)² / den)
            err = 0 if den == 0 else 64 * eps * ((abs(p * yd) + abs(q * yn)) ** 2 + s) / den
            if real == "float16":  # computed in float32 (S = 2^61 there), clipped at max
                lo, hi = min(max(f - err, 0), S), min(f + err, S)
            elif f <= S / 2**14:
                lo, hi = max(f - err, 0), f + err
            else:
                lo, hi = S / 2**14, S
            lo_sum += lo
            hi_sum += hi
    n = len(P)
    r = 8 * eps + 2 * _out_eps(real)
    return float(lo_sum / n) * (1 - r), float(hi_sum / n) * (1 + r)


def _sign_expected(P, Q, Yn, Yd, gamma: float, eps_sing: float, real: str) -> float:
    eps_c = float(np.asarray(eps_sing, dtype=_NP[_compute(real)]))
    total = mpmath.mpf(0)
    with mpmath.workprec(160):
        for p, q, yn, yd in zip(map(_mp, P), map(_mp, Q), map(_mp, Yn), map(_mp, Yd),
                                strict=True):
            if not abs(yd) <= eps_c:
                continue
            dot = mpmath.re(p * mpmath.conj(yn) + q * mpmath.conj(yd))
            n1 = mpmath.sqrt(abs(p) ** 2 + abs(q) ** 2 + gamma)
            n2 = mpmath.sqrt(abs(yn) ** 2 + abs(yd) ** 2 + gamma)
            total += 1 - min(max(dot / (n1 * n2), -1), 1)
    return float(total / len(P))


def _sq_sat_mean(ts, real: str, count: int | None = None) -> float:
    """mean of min(t, sqrt(S))² over ``ts`` (the saturated squared shortfalls)."""
    root = mpmath.sqrt(_sat(real))
    with mpmath.workprec(160):
        vals = [min(t, root) ** 2 for t in ts]
        n = len(vals) if count is None else max(count, 1)
        return float(mpmath.fsum(vals) / n) if vals else 0.0


def _c(real: str, v: float) -> float:
    """A Python threshold as the computation dtype holds it (clamped to its max)."""
    fmax = float(np.finfo(_NP[_compute(real)]).max)
    return float(np.asarray(min(v, fmax), dtype=_NP[_compute(real)]))


# ---------------------------------------------------------------------------------------
# values


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("gamma", [1e-9, 0.0])
def test_implicit_loss_finite_and_exact_or_saturated(backend, xp, name, gamma):
    real = _real(name)
    for seed in range(3):
        rng = np.random.default_rng([seed, 11])
        ops = [_operand(name, rng) for _ in range(4)]
        lifted = rng.random(N) < 0.25  # some lifted targets (Y_d ∈ {0, 1})
        ops[3] = np.where(lifted, (rng.random(N) < 0.5).astype(float), ops[3])
        got = _value(backend, implicit_loss(*(_to(backend, xp, x, name) for x in ops),
                                            gamma=gamma))
        lo, hi = _implicit_bounds(*ops, _c(real, gamma) if gamma else 0.0, real)
        _within(got, lo, hi, f"implicit_loss {name} gamma={gamma} seed={seed}", real)


@pytest.mark.parametrize("name", ALL)
def test_sign_consistency_loss_finite_and_close(backend, xp, name):
    real = _real(name)
    for seed in range(3):
        rng = np.random.default_rng([seed, 12])
        ops = [_operand(name, rng) for _ in range(4)]
        got = _value(backend, sign_consistency_loss(*(_to(backend, xp, x, name) for x in ops)))
        want = _sign_expected(*ops, _c(real, 1e-9), 1e-3, real)
        tol = 64 * _eps(real) + 2 * _out_eps(real) * want
        _within(got, want - tol, want + tol, f"sign_consistency_loss {name} seed={seed}", real)
        assert got <= 2.0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tau", [1e-4, 1e30, 1e300])
def test_margin_and_separation_finite_and_close(backend, xp, name, tau):
    real = _real(name)
    eps = 8 * _eps(real) + 2 * _out_eps(real)
    rng = np.random.default_rng(13)
    q = _operand(name, rng)
    m = rng.random(N) < 0.6
    Q = _to(backend, xp, q, name)
    M = backend.asarray(m)
    t = _c(real, tau)
    with mpmath.workprec(160):
        aq = [abs(_mp(v)) for v in q]
        short = [max(t - a, 0) for a in aq]
        want = {
            "population": _sq_sat_mean(short, real),
            "masked": _sq_sat_mean([s if k else 0 for s, k in zip(short, m, strict=True)],
                                   real),
            "conditional": _sq_sat_mean([s for s, k in zip(short, m, strict=True) if k], real,
                                        int(m.sum())),
        }
        got = {
            "population": margin_loss(Q, tau),
            "masked": margin_loss(Q, tau, M),
            "conditional": margin_loss(Q, tau, M, reduction="conditional"),
        }
        tb, tf = _c(real, min(tau, 1e-2)), t
        want["push_down"] = _sq_sat_mean([max(a - tb, 0) for a, k in zip(aq, m, strict=True)
                                          if k], real, int(m.sum()))
        want["push_up"] = _sq_sat_mean([max(tf - a, 0) for a, k in zip(aq, m, strict=True)
                                        if not k], real, int((~m).sum()))
        got["push_down"], got["push_up"] = scm_separation_losses(
            Q, mask_censored=M, tau_bot=min(tau, 1e-2), tau_finite=tau)
    for k, w in want.items():
        g = _value(backend, got[k])
        _within(g, w * (1 - eps), w * (1 + eps), f"{k} {name} tau={tau}", real)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("temperature", [1e-4, 1e-300])
def test_soft_coverage_finite_and_close(backend, xp, name, temperature):
    real = _real(name)
    rng = np.random.default_rng(14)
    q = _operand(name, rng)
    got = _value(backend, soft_coverage_loss(_to(backend, xp, q, name), 1e-4, temperature, 0.95))
    tiny = float(np.finfo(_NP[_compute(real)]).smallest_normal)
    T, tau = max(_c(real, temperature), tiny), _c(real, 1e-4)
    with mpmath.workprec(160):
        z = [min(max((abs(_mp(v)) - tau) / T, -64), 64) for v in q]
        p = mpmath.fsum(1 / (1 + mpmath.exp(-x)) for x in z) / len(z)
        want = float(max(0.95 - p, 0) ** 2)
    tol = 32 * _eps(real) + 2 * _out_eps(real) * want
    _within(got, want - tol, want + tol, f"soft_coverage_loss {name} T={temperature}", real)


@pytest.mark.parametrize("name", REAL)
def test_soft_bottom_coverage_and_rejection_finite(backend, xp, name):
    rng = np.random.default_rng(15)
    h = _draw(name, rng)
    H = _to(backend, xp, h, name)
    S = _sat(name)
    with mpmath.workprec(160):
        mean = mpmath.fsum(min(max(_mp(v), -S), S) for v in h) / len(h)
        cov = 1 - mean
        short = min(max(mpmath.mpf(_c(name, 0.95)) - cov, 0), mpmath.sqrt(S))
        want = {"coverage": float(cov), "rejection": float(short**2)}
    tol = 16 * _eps(name) + 2 * _out_eps(name)
    for k, out in (("coverage", coverage(None, H)), ("rejection", rejection_loss(H))):
        g, w = _value(backend, out), want[k]
        _within(g, w - tol * (abs(w) + S / N), w + tol * (abs(w) + S / N), f"{k} {name}", name)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("lam", [None, 1e300])
def test_training_loss_finite_and_consistent(backend, xp, name, lam):
    real = _real(name)
    rng = np.random.default_rng(16)
    ops = [_operand(name, rng) for _ in range(4)]
    A = [_to(backend, xp, x, name) for x in ops]
    cfg = LossConfig() if lam is None else LossConfig(lambda_margin=lam, lambda_sign=lam,
                                                      lambda_rej=lam)
    is_bottom = backend.asarray(np.abs(ops[1]) < 1e-4)
    total, br = SCMTrainingLoss(cfg)(implicit_loss(*A), *A, is_bottom=is_bottom,
                                     mask_finite=backend.asarray(ops[3] != 0))
    vals = {k: _value(backend, v) for k, v in br.items()}
    for k, v in vals.items():
        assert math.isfinite(v), (k, v, name)
    fmax = float(_finfo(real).max)
    # documented: a weight beyond the computation dtype's range acts as its finfo.max
    cmax = float(np.finfo(_NP[_compute(real)]).max)
    lm, ls, lr = (min(v, cmax) for v in (cfg.lambda_margin, cfg.lambda_sign, cfg.lambda_rej))
    want = min(vals["fit"] + lm * vals["margin"] + ls * vals["sign"] + lr * vals["rejection"],
               fmax)
    tol = 8 * _eps(real) + 4 * _out_eps(real)
    _within(_value(backend, total), want * (1 - tol), want * (1 + tol), f"total {name}", real)


# ---------------------------------------------------------------------------------------
# gradients (torch, JAX): never NaN; finite wherever the true gradient is representable


def _grads(backend, fn, arrays, name):
    if backend.name == "torch":
        import torch

        ts = [a.clone().requires_grad_(True) for a in arrays[:2]] + list(arrays[2:])
        out = fn(*ts)
        gs = torch.autograd.grad(out, ts[:2], allow_unused=True)
        return [np.zeros(N) if g is None else g.double().numpy() for g in gs]
    import jax

    gs = jax.grad(lambda p, q: fn(p, q, *arrays[2:]), argnums=(0, 1))(*arrays[:2])
    return [np.asarray(g.astype("float32") if name in ("float16", "bfloat16") else g,
                       dtype=np.float64) for g in gs]


def _implicit_true_grad(P, Q, Yn, Yd, gamma: float, real: str):
    """(|dP|, |dQ|, unsaturated) per element of the mean, mpmath."""
    S = _sat(real)
    out = []
    with mpmath.workprec(160):
        for p, q, yn, yd in zip(map(_mp, P), map(_mp, Q), map(_mp, Yn), map(_mp, Yd),
                                strict=True):
            r = p * yd - q * yn
            den = (q * yd) ** 2 + (p * yn) ** 2 + gamma
            if den == 0:
                out.append((mpmath.inf, mpmath.inf, False))
                continue
            e = r * r
            dp = (2 * r * yd * den - e * 2 * p * yn**2) / den**2 / len(P)
            dq = (-2 * r * yn * den - e * 2 * q * yd**2) / den**2 / len(P)
            out.append((abs(dp), abs(dq), e / den <= S / 2**14))
    return out


@pytest.mark.autodiff
@pytest.mark.parametrize("name", REAL)
def test_gradients_never_nan_and_finite_where_representable(backend, xp, name):
    real = name
    fmax = float(_finfo(real).max)
    loss = SCMTrainingLoss()
    fns = {
        "implicit_loss": lambda P, Q, Yn, Yd: implicit_loss(P, Q, Yn, Yd),
        "sign_consistency_loss": lambda P, Q, Yn, Yd: sign_consistency_loss(P, Q, Yn, Yd),
        "margin_loss": lambda P, Q, Yn, Yd: margin_loss(Q, 1e30, Yd != 0),
        "scm_separation_losses": lambda P, Q, Yn, Yd: sum(
            scm_separation_losses(Q, mask_censored=Yd == 0, tau_finite=1e30)),
        "soft_coverage_loss": lambda P, Q, Yn, Yd: soft_coverage_loss(Q, 1e-4, 1e-4, 0.95),
        "SCMTrainingLoss": lambda P, Q, Yn, Yd: loss(
            implicit_loss(P, Q, Yn, Yd), P, Q, Yn, Yd, is_bottom=abs(Q) < 1e-4,
            mask_finite=Yd != 0)[0],
    }
    for seed in range(2):
        rng = np.random.default_rng([seed, 17])
        ops = [_draw(real, rng) for _ in range(4)]
        ops[3] = np.where(rng.random(N) < 0.3, 0.0, ops[3])
        A = [_to(backend, xp, x, name) for x in ops]
        truth = _implicit_true_grad(*ops, _c(real, 1e-9), real)
        for fname, fn in fns.items():
            gP, gQ = _grads(backend, fn, A, name)
            for g, which in ((gP, "P"), (gQ, "Q")):
                assert not np.isnan(g).any(), f"{fname} d/d{which} {name}: NaN at {np.isnan(g).nonzero()}"
            if fname in ("implicit_loss", "SCMTrainingLoss"):
                ok = np.array([u and dp <= fmax / 2**10 and dq <= fmax / 2**10
                               for dp, dq, u in truth])
                bad = ok & ~(np.isfinite(gP) & np.isfinite(gQ))
            else:  # bounded gradients: finite everywhere
                bad = ~(np.isfinite(gP) & np.isfinite(gQ))
            assert not bad.any(), (f"{fname} {name} seed={seed}: non-finite gradient at "
                                   f"{bad.nonzero()[0]} although the true one is representable")
