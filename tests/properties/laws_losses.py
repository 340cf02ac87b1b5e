"""Reusable properties of the training losses (semantics §5).

Each law takes the hypothesis ``data`` object, the namespace ``xp`` and optionally the
loss under test (so planted copies can be checked with the same code).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from hypothesis import strategies as st

from zpml_core import losses, projective
from zpml_core.testing import (
    assert_close,
    note_reproduction,
    scm_arrays,
    targets,
    to_numpy,
)

from .laws import dtypes, np_dtype, to_xp

#: non-empty shapes, few of them: every loss kernel is jit-compiled per shape on JAX
NONEMPTY = ((), (3,), (2, 3))


def moderate(dtype: str) -> dict[str, Any]:
    """Moderate magnitudes, the domain of the exactness laws (not of finiteness, which
    holds for every finite input): ``|v| <= 1e3`` (float16: ``<= 16``, so that products
    of three such values stay below its max 65504); no subnormals."""
    bound = 16.0 if dtype == "float16" else 1e3
    return {"min_value": -bound, "max_value": bound, "allow_nan": False,
            "allow_infinity": False, "allow_subnormal": False}


#: the exactness laws' default (float32/float64 bound), e.g. for planted copies
MODERATE = moderate("float64")


def _scalar(a: Any) -> float:
    v = to_numpy(a)
    assert v.shape == (), f"a loss must be a 0-d array, got shape {v.shape}"
    return float(v)


@functools.lru_cache(maxsize=512)
def _arrays(xp: Any, dtype: str, shape: tuple[int, ...], kind: str) -> Any:
    if kind == "moderate":
        return scm_arrays(xp, dtype=dtype, shape=shape, elements=moderate(dtype),
                          edge_fraction=0.0, bottom_fraction=0.3)
    if kind == "nonzero":  # |v| in [1e-3, 1e3] (float16: [1e-2, 16])
        lo, hi = (1e-2, 16.0) if dtype == "float16" else (1e-3, 1e3)
        el = st.floats(lo, hi).flatmap(lambda v: st.sampled_from([v, -v]))
        return scm_arrays(xp, dtype=dtype, shape=shape, elements=el, edge_fraction=0.0,
                          bottom_fraction=0.3)
    if kind == "any":  # the whole range, ±inf and NaN included
        return scm_arrays(xp, dtype=dtype, shape=shape, bottom_fraction=0.3)
    if kind == "finite":  # the whole finite range: subnormals to max, edge values
        return scm_arrays(xp, dtype=dtype, shape=shape, allow_nan=False,
                          allow_infinity=False, bottom_fraction=0.3)
    if kind == "targets":  # moderate finite values and ±inf/NaN
        return targets(xp, dtype=dtype, shape=shape, elements=moderate(dtype))
    if kind == "targets_full":  # the whole finite range and ±inf/NaN
        return targets(xp, dtype=dtype, shape=shape)
    raise ValueError(kind)


def _draw(data: Any, xp: Any, kind: str, dt: str, shape: tuple[int, ...], label: str) -> Any:
    return data.draw(_arrays(xp, dt, shape, kind), label=label)


def _setup(data: Any, xp: Any, *others: Any) -> tuple[str, tuple[int, ...]]:
    dt = data.draw(st.sampled_from(dtypes(xp, *others)), label="dtype")
    shape = data.draw(st.sampled_from(NONEMPTY), label="shape")
    return dt, shape


def _lifted(data: Any, xp: Any, dt: str, shape: tuple[int, ...],
            kind: str = "targets") -> tuple[Any, Any]:
    y = _draw(data, xp, kind, dt, shape, "y")
    return projective.lift_targets(y)


def losses_nonnegative(data: Any, xp: Any) -> None:
    """Every loss is ``≥ 0`` and finite for every finite input — the whole finite range
    of every float dtype, subnormals to ``max`` (any ``gamma``, ``tau``, masks);
    ``sign_consistency_loss ≤ 2`` and ``soft_coverage_loss ≤ 1`` (within 4 eps of the
    dtype)."""
    dt, shape = _setup(data, xp)
    p = _draw(data, xp, "finite", dt, shape, "P")
    q = _draw(data, xp, "finite", dt, shape, "Q")
    yn, yd = _lifted(data, xp, dt, shape, "targets_full")
    gamma = data.draw(st.sampled_from([1e-9, 1e-3, 1.0]), label="gamma")
    tau = data.draw(st.sampled_from([0.0, 1e-4, 1e-2, 10.0]), label="tau")
    values = {}
    note_reproduction(losses.implicit_loss, p.value, q.value, yn, yd, gamma)
    values["implicit"] = _scalar(losses.implicit_loss(p.value, q.value, yn, yd, gamma))
    for red in ("population", "conditional"):
        note_reproduction(losses.margin_loss, q.value, tau, p.bottom, reduction=red)
        values[f"margin {red}"] = _scalar(losses.margin_loss(q.value, tau, p.bottom,
                                                             reduction=red))
    values["margin no mask"] = _scalar(losses.margin_loss(q.value, tau))
    note_reproduction(losses.sign_consistency_loss, p.value, q.value, yn, yd, gamma)
    sign = _scalar(losses.sign_consistency_loss(p.value, q.value, yn, yd, gamma))
    values["sign"] = sign
    target = data.draw(st.sampled_from([0.0, 0.5, 0.95, 1.0]), label="target")
    values["rejection"] = _scalar(losses.rejection_loss(q.bottom, target))
    soft = _scalar(losses.soft_coverage_loss(q.value, tau, 1e-3, target))
    values["soft_coverage"] = soft
    down, up = losses.scm_separation_losses(q.value, mask_censored=q.bottom,
                                            tau_bot=tau, tau_finite=2 * tau)
    values["separation down"], values["separation up"] = _scalar(down), _scalar(up)
    bad = {k: v for k, v in values.items() if not (np.isfinite(v) and v >= 0)}
    assert not bad, f"losses must be finite and >= 0 ({dt}): {bad}"
    eps = float(np.finfo(np_dtype(dt)).eps)
    assert sign <= 2.0 + 4 * eps, f"sign_consistency_loss > 2: {sign}"
    assert soft <= 1.0 + 4 * eps, f"soft_coverage_loss > 1: {soft}"


def implicit_zero_at_multiples(data: Any, xp: Any, implicit: Any = None) -> None:
    """``implicit_loss(c·Y_n, c·Y_d, Y_n, Y_d)`` is 0 for ``c ≠ 0``: exactly for lifted
    targets (``Y_d ∈ {0, 1}``) and ``c = ±2**k`` — every product is exact, so the cross
    products cancel exactly even where the compiler contracts ``P·Y_d − Q·Y_n`` into an
    FMA (XLA on CPU does) — and at most ``2·eps²`` otherwise (``c·Y_n`` is rounded, or an
    FMA keeps the rounding error of one product)."""
    implicit = implicit or losses.implicit_loss
    dt, shape = _setup(data, xp)
    lifted = data.draw(st.booleans(), label="lifted targets")
    if lifted:
        yn, yd = _lifted(data, xp, dt, shape)
    else:
        yn = _draw(data, xp, "moderate", dt, shape, "Y_n").value
        yd = _draw(data, xp, "moderate", dt, shape, "Y_d").value
    exact = data.draw(st.booleans(), label="power-of-two c")
    if exact:
        c = 2.0 ** data.draw(st.integers(-8, 8), label="k")
    else:
        c = float(np.asarray(data.draw(st.floats(1e-3, 1e3), label="|c|"),
                             dtype=np_dtype(dt)))
    c *= data.draw(st.sampled_from([1.0, -1.0]), label="sign")
    ynn, ydn = to_numpy(yn), to_numpy(yd)
    p, q = to_xp(xp, ynn * ynn.dtype.type(c)), to_xp(xp, ydn * ydn.dtype.type(c))
    detach = data.draw(st.booleans(), label="detach_scale")
    note_reproduction(implicit, p, q, yn, yd, detach_scale=detach)
    v = _scalar(implicit(p, q, yn, yd, detach_scale=detach))
    eps = float(np.finfo(np_dtype(dt)).eps)
    bound = 0.0 if exact and lifted else 2 * eps * eps
    assert 0.0 <= v <= bound, f"implicit_loss at a multiple (c={c!r}) is {v!r} > {bound!r}"


def implicit_scale_invariance(data: Any, xp: Any, implicit: Any = None) -> None:
    """``implicit_loss(λP, λQ, …, gamma=0)`` equals ``implicit_loss(P, Q, …, gamma=0)``:
    bit for bit for ``λ = ±2**k`` and within 8 ulp for any ``λ`` in ``±[1e-2, 1e2]``;
    with either ``detach_scale`` (same value). Domain: ``gamma = 0`` — with ``gamma > 0``
    the loss is ``e/(s + gamma/λ²)``, invariant only up to ``gamma/s``; ``P, Q`` of
    magnitude ``[1e-3, 1e3]`` so that ``s > 0`` and nothing over/underflows."""
    implicit = implicit or losses.implicit_loss
    dt, shape = _setup(data, xp)
    p = _draw(data, xp, "nonzero", dt, shape, "P").value
    q = _draw(data, xp, "nonzero", dt, shape, "Q").value
    yn, yd = _lifted(data, xp, dt, shape)
    exact = data.draw(st.booleans(), label="power-of-two λ")
    if exact:
        lam = 2.0 ** data.draw(st.integers(-8, 8), label="k")
    else:
        lam = data.draw(st.floats(1e-2, 1e2), label="|λ|")
    lam *= data.draw(st.sampled_from([1.0, -1.0]), label="sign")
    pn, qn = to_numpy(p), to_numpy(q)
    t = pn.dtype.type
    with np.errstate(all="ignore"):
        sp, sq = to_xp(xp, pn * t(lam)), to_xp(xp, qn * t(lam))
    detach = data.draw(st.booleans(), label="detach_scale")
    note_reproduction(implicit, p, q, yn, yd, 0.0, detach_scale=detach)
    base = implicit(p, q, yn, yd, 0.0, detach_scale=detach)
    note_reproduction(implicit, sp, sq, yn, yd, 0.0, detach_scale=detach)
    scaled = implicit(sp, sq, yn, yd, 0.0, detach_scale=detach)
    other = implicit(p, q, yn, yd, 0.0, detach_scale=not detach)
    if exact:
        assert_close(scaled, base, ulps=0, atol=0.0,
                     msg=f"implicit_loss not invariant to scaling (P, Q) by {lam!r}")
    else:
        # λP and λQ are rounded: e = (P·Y_d − Q·Y_n)² cancels, so the relative error is
        # bounded by the condition number κ = max (|P·Y_d| + |Q·Y_n|) / |P·Y_d − Q·Y_n|
        ynn, ydn = to_numpy(yn).astype(np.float64), to_numpy(yd).astype(np.float64)
        a, b = pn.astype(np.float64) * ydn, qn.astype(np.float64) * ynn
        with np.errstate(all="ignore"):
            kappa = np.where(a != b, (np.abs(a) + np.abs(b)) / np.abs(a - b), 0.0)
        eps = float(np.finfo(pn.dtype).eps)
        b0, s0 = _scalar(base), _scalar(scaled)
        bound = (16 + 8 * float(np.max(kappa, initial=0.0))) * eps * abs(b0)
        assert abs(s0 - b0) <= bound, (
            f"implicit_loss not invariant to scaling (P, Q) by {lam!r}: {s0!r} vs {b0!r} "
            f"(bound {bound!r})")
    assert_close(other, base, ulps=0, atol=0.0, msg="detach_scale changed the value")


def coverage_is_one_minus_mean(data: Any, xp: Any, coverage: Any = None) -> None:
    """``coverage(outputs, is_bottom)`` lies in [0, 1] and equals ``1 − mean(is_bottom)``
    over all elements (within 4 ulp of the library's default float)."""
    coverage = coverage or losses.coverage
    dt, shape = _setup(data, xp)
    v, b = _draw(data, xp, "any", dt, shape, "(outputs, is_bottom)")
    note_reproduction(coverage, v, b)
    c = coverage(v, b)
    cn = to_numpy(c)
    bn = to_numpy(b)
    expected = 1.0 - bn.mean()
    val = float(cn)
    assert 0.0 <= val <= 1.0, f"coverage {val} outside [0, 1]"
    eps = float(np.finfo(cn.dtype).eps)
    assert abs(val - expected) <= 4 * eps, f"coverage {val!r} != 1 - mean(bottom) = {expected!r}"


def margin_zero_above_tau(data: Any, xp: Any, margin: Any = None) -> None:
    """``margin_loss(Q, tau)`` is 0 when every ``|Q| ≥ tau`` (per reduction; with a mask,
    when every masked ``|Q| ≥ tau`` — non-finite ``Q`` off the mask does not leak), and
    ``> 0`` when some (masked) finite ``|Q| < tau``."""
    margin = margin or losses.margin_loss
    dt, shape = _setup(data, xp)
    q = _draw(data, xp, "any", dt, shape, "Q")
    tau = data.draw(st.sampled_from([0.0, 1e-6, 1e-4, 1.0]), label="tau")
    use_mask = data.draw(st.booleans(), label="use mask")
    red = data.draw(st.sampled_from(["population", "conditional"]), label="reduction")
    qn = to_numpy(q.value)
    m = ~to_numpy(q.bottom) if use_mask else np.ones(qn.shape, dtype=bool)
    t = qn.dtype.type(tau)
    with np.errstate(all="ignore"):
        below = m & (np.abs(qn) < t)
        nonfinite = m & ~np.isfinite(qn)
    mask = to_xp(xp, m) if use_mask else None
    note_reproduction(margin, q.value, tau, mask, reduction=red)
    val = _scalar(margin(q.value, tau, mask, reduction=red))
    if nonfinite.any():
        return  # NaN in a counted element propagates by definition (semantics §5.2)
    assert np.isfinite(val) and val >= 0, f"margin_loss = {val!r}"
    if not below.any():
        assert val == 0.0, f"margin_loss = {val!r} although every |Q| >= tau = {tau}"
    else:
        # relu(tau - |Q|)^2 may underflow to 0 for |Q| within sqrt(tiny) of tau
        gap = float(np.max(np.where(below, t - np.abs(qn), 0)))
        if gap * gap >= float(np.finfo(qn.dtype).smallest_normal) * int(qn.size) ** 2:
            assert val > 0, f"margin_loss = 0 although some |Q| < tau (gap {gap})"


LOSS_LAWS = (losses_nonnegative, implicit_zero_at_multiples, implicit_scale_invariance,
             coverage_is_one_minus_mean, margin_zero_above_tau)


def losses_match_numpy(data: Any, xp: Any, backend: Any) -> None:
    """Every loss on ``backend`` equals the numpy backend within 16 ulp (reductions may
    sum in a different order)."""
    from .laws_cross import on_backend

    dt, shape = _setup(data, xp, backend.namespace())
    p = _draw(data, xp, "finite", dt, shape, "P")
    q = _draw(data, xp, "finite", dt, shape, "Q")
    yn, yd = _lifted(data, xp, dt, shape, "targets_full")
    tau = data.draw(st.sampled_from([0.0, 1e-4, 1e-2]), label="tau")
    cases = {
        "implicit_loss": (losses.implicit_loss, (p.value, q.value, yn, yd), {}),
        "margin_loss": (losses.margin_loss, (q.value, tau, p.bottom),
                        {"reduction": "conditional"}),
        "sign_consistency_loss": (losses.sign_consistency_loss, (p.value, q.value, yn, yd),
                                  {}),
        "coverage": (losses.coverage, (q.value, q.bottom), {}),
        "rejection_loss": (losses.rejection_loss, (q.bottom, 0.9), {}),
        "soft_coverage_loss": (losses.soft_coverage_loss, (q.value, tau, 1e-3, 0.9), {}),
        "scm_separation_losses": (losses.scm_separation_losses, (q.value,),
                                  {"mask_censored": p.bottom, "tau_bot": tau,
                                   "tau_finite": 2 * tau}),
    }
    for name, (fn, args, kwargs) in cases.items():
        ref = fn(*args, **kwargs)
        bargs = tuple(on_backend(backend, a) for a in args)
        bkw = {k: on_backend(backend, v) for k, v in kwargs.items()}
        note_reproduction(fn, *bargs, **bkw)
        got = fn(*bargs, **bkw)
        refs = ref if isinstance(ref, tuple) else (ref,)
        gots = got if isinstance(got, tuple) else (got,)
        # coverage/rejection are computed in each library's default float (decision #12)
        default_float = name in ("coverage", "rejection_loss")
        atol = 1e-6 if default_float else None
        if name in ("soft_coverage_loss", "sign_consistency_loss"):
            # relu(target − mean(p))² and 1 − cos(angle) cancel: each term is exact only to
            # a few eps absolute (libm tanh / sqrt / division round differently)
            atol = 64 * float(np.finfo(np_dtype(dt)).eps)
        if name == "implicit_loss":
            # e/(s + gamma): a subnormal e (JAX flushes it, numpy keeps it) divided by gamma
            atol = 4 * float(np.finfo(np_dtype(dt)).smallest_normal) / 1e-9
        for g, r in zip(gots, refs, strict=True):
            assert_close(g, r, ulps=16, atol=atol,
                         check_dtype=not default_float,
                         msg=f"{name} on {backend.name} differs from numpy (expected)")
