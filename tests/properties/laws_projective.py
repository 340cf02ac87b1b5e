"""Reusable properties of the projective helpers (semantics §2, §3) and strict inference (§4).

Each law takes the hypothesis ``data`` object, the namespace ``xp`` and (optionally) the
functions under test, so planted copies can be checked with the same code.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

from zpml_core import projective
from zpml_core.inference import InferenceConfig, strict_inference
from zpml_core.testing import (
    SMALL_SHAPES,
    assert_close,
    assert_scm_equal,
    note_reproduction,
    projective_tuples,
    scm_arrays,
    targets,
    to_numpy,
)

from .laws import _fail, consts, daz, dtypes, log2_ratio, log2abs, near_overflow, to_xp


@functools.lru_cache(maxsize=256)
def _tuples(xp: Any, dtype: str, shape: tuple[int, ...], allow_nonfinite: bool) -> Any:
    return projective_tuples(xp, dtype=dtype, shape=shape, allow_nonfinite=allow_nonfinite)


def draw_tuple(data: Any, xp: Any, *, allow_nonfinite: bool = True
               ) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    dt = data.draw(st.sampled_from(dtypes(xp)), label="dtype")
    shape = data.draw(st.sampled_from(SMALL_SHAPES), label="shape")
    n, d = data.draw(_tuples(xp, dt, shape, allow_nonfinite), label="(N, D)")
    return n, d, to_numpy(n), to_numpy(d)


@functools.lru_cache(maxsize=8)
def _pow2_exponents(dtype: Any) -> st.SearchStrategy[int]:
    """``k`` in ``[-64, 64]`` with ``2**k`` a normal number of ``dtype`` (float16:
    ``[-14, 15]``)."""
    fi = np.finfo(dtype)
    return st.integers(max(-64, int(fi.minexp)), min(64, int(fi.maxexp) - 1))


def _normal_or_special(c: np.ndarray, sc: np.ndarray, lam: Any) -> np.ndarray:
    """``c`` and its scaled copy ``sc = c·λ`` (``λ`` a power of two) are both 0, both
    non-finite, or both normal with ``sc`` exact (not rounded by underflow/overflow)."""
    tiny = consts(c.dtype)[0]
    with np.errstate(all="ignore"):
        exact = np.isfinite(sc) & (sc / lam == c)
        return (~np.isfinite(c) & ~np.isfinite(sc)) | ((c == 0) & (sc == 0)) | (
            (np.abs(c) >= tiny) & (np.abs(sc) >= tiny) & exact
        )


# ---------------------------------------------------------------------------------------
# decode


def _decode_scaled(xp: Any, decode: Any, n: Any, d: Any, nn: np.ndarray, dn: np.ndarray,
                   lam: Any) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """``decode(N, D)``, ``decode(λN, λD)`` and the scaled numpy components."""
    with np.errstate(all="ignore"):
        sn, sd = nn * lam, dn * lam
    note_reproduction(decode, n, d)
    r1 = decode(n, d)
    note_reproduction(decode, to_xp(xp, sn), to_xp(xp, sd))
    r2 = decode(to_xp(xp, sn), to_xp(xp, sd))
    return r1, r2, sn, sd


def decode_scale_pow2(data: Any, xp: Any, decode: Any = projective.decode) -> None:
    """``decode(λN, λD) == decode(N, D)`` bit for bit for ``λ = ±2**k`` (exact scaling),
    masks exact. Domain: elements whose components stay in the same class (zero,
    non-finite, normal) when scaled — a component scaled into the subnormal range is a
    signed zero by decision #1, one scaled past ``max`` is infinite."""
    n, d, nn, dn = draw_tuple(data, xp)
    k = data.draw(_pow2_exponents(nn.dtype), label="k")
    sign = data.draw(st.sampled_from([1.0, -1.0]), label="sign")
    lam = nn.dtype.type(sign * 2.0**k)
    r1, r2, sn, sd = _decode_scaled(xp, decode, n, d, nn, dn, lam)
    dom = _normal_or_special(nn, sn, lam) & _normal_or_special(dn, sd, lam)
    _compare_on(r2, r1, dom, ulps=0, msg=f"decode(λN, λD) != decode(N, D) for λ = {lam!r}")


def _compare_on(actual: Any, expected: Any, dom: np.ndarray, *, ulps: float, msg: str,
                atol: float | None = None) -> None:
    """``assert_scm_equal`` restricted to the elements where ``dom`` holds."""
    av, ab = to_numpy(actual[0]), to_numpy(actual[1])
    ev, eb = to_numpy(expected[0]), to_numpy(expected[1])
    if not dom.all():
        event("elements outside the law's domain excluded")
    assert_scm_equal((np.where(dom, av, 0), np.where(dom, ab, False)),
                     (np.where(dom, ev, 0), np.where(dom, eb, False)), ulps=ulps, atol=atol,
                     msg=msg)


def decode_scale_general(data: Any, xp: Any, decode: Any = projective.decode) -> None:
    """``decode(λN, λD)`` equals ``decode(N, D)`` within 4 ulps for any ``λ ≠ 0`` with
    ``|λ|`` in [1e-3, 1e3]; masks exact. Domain: away from the class boundaries (every
    non-zero finite component and its scaled copy in ``[4·tiny, max/4]``, the quotient
    not within a factor 4 of the overflow border) — at a boundary the rounding of ``λN``
    or ``λD`` legitimately decides the class."""
    n, d, nn, dn = draw_tuple(data, xp)
    mag = data.draw(st.floats(1e-3, 1e3), label="|λ|")
    sign = data.draw(st.sampled_from([1.0, -1.0]), label="sign")
    t = nn.dtype.type
    lam = t(sign * mag)
    r1, r2, sn, sd = _decode_scaled(xp, decode, n, d, nn, dn, lam)
    tiny, fmax, _ = consts(nn.dtype)

    def safe(c: np.ndarray, sc: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            ok = (np.abs(c) >= 4 * tiny) & (np.abs(sc) >= 4 * tiny)
            ok &= (np.abs(c) <= fmax / 4) & (np.abs(sc) <= fmax / 4)
        return (~np.isfinite(c)) | (c == 0) | ok

    with np.errstate(all="ignore"):
        lq = np.log2(np.abs(nn.astype(np.float64))) - np.log2(np.abs(dn.astype(np.float64)))
        border = math.log2(float(fmax))
        q_ok = ~np.isfinite(lq) | (np.abs(lq - border) > 2)
    dom = safe(nn, sn) & safe(dn, sd) & q_ok
    _compare_on(r2, r1, dom, ulps=4, msg=f"decode(λN, λD) != decode(N, D) for λ = {lam!r}")


def lift_decode_identity(data: Any, xp: Any, lift: Any = projective.lift_targets,
                         decode: Any = projective.decode) -> None:
    """``decode(*lift_targets(y))`` is ``y`` for finite targets — bit for bit, signed
    zeros kept; a subnormal ``y`` gives the zero of its sign (decision #1) — and bottom
    for ±inf/NaN. ``lift_targets`` itself follows semantics §3.1 (``-inf → (-1, 0)``)."""
    dt = data.draw(st.sampled_from(dtypes(xp)), label="dtype")
    shape = data.draw(st.sampled_from(SMALL_SHAPES), label="shape")
    y = data.draw(_targets(xp, dt, shape), label="y")
    yn = to_numpy(y)
    note_reproduction(lift, y)
    Yn, Yd = lift(y)
    an, ad = to_numpy(Yn), to_numpy(Yd)
    fin = np.isfinite(yn)
    one = np.ones((), yn.dtype)
    exp_n = np.where(fin, yn, np.where(yn == -np.inf, -one, one))
    exp_d = np.where(fin, one, 0 * one)
    assert_close(an, exp_n, ulps=0, atol=0.0, signed_zeros=True, msg="lift_targets: Y_n")
    assert_close(ad, exp_d, ulps=0, atol=0.0, signed_zeros=True, msg="lift_targets: Y_d")
    note_reproduction(decode, Yn, Yd)
    r = decode(Yn, Yd)
    expected = (np.where(fin, daz(np.where(fin, yn, 0)), 0 * one), ~fin)
    # Domain: DEVIATIONS.md §2 makes decode ⊥ when |N| > |D|·max·(1 − 2·eps), so finite
    # targets within ~4 ulp of max do not round-trip (decode(max, 1) is ⊥); excluded.
    dom = ~near_overflow(log2abs(yn), yn.dtype)
    _compare_on(r, expected, dom, ulps=0, atol=0.0, msg="decode(lift_targets(y)) != y")


@functools.lru_cache(maxsize=64)
def _targets(xp: Any, dtype: str, shape: tuple[int, ...]) -> Any:
    return targets(xp, dtype=dtype, shape=shape)


@functools.lru_cache(maxsize=64)
def _canonical(xp: Any, dtype: str, shape: tuple[int, ...]) -> Any:
    return scm_arrays(xp, dtype=dtype, shape=shape, canonical=True, bottom_fraction=0.2)


def encode_decode_roundtrip(data: Any, xp: Any, encode: Any = projective.encode,
                            decode: Any = projective.decode) -> None:
    """``decode(encode(v, b)) == (v, b)`` for well-formed SCM values (subnormal ``v``
    decodes to the zero of its sign, decision #1)."""
    dt = data.draw(st.sampled_from(dtypes(xp)), label="dtype")
    shape = data.draw(st.sampled_from(SMALL_SHAPES), label="shape")
    v, b = data.draw(_canonical(xp, dt, shape), label="(value, bottom)")
    note_reproduction(encode, v, b)
    n, d = encode(v, b)
    note_reproduction(decode, n, d)
    r = decode(n, d)
    vn, bn = to_numpy(v), to_numpy(b)
    dom = ~near_overflow(log2abs(vn), vn.dtype)  # DEVIATIONS.md §2, see lift_decode_identity
    _compare_on(r, (daz(vn), bn), dom, ulps=0, atol=0.0, msg="decode(encode(v, b)) != (v, b)")


def projectively_equal_reflexive(data: Any, xp: Any,
                                 equal: Any = projective.projectively_equal) -> None:
    """``projectively_equal(N, D, λN, λD, atol=0)`` is True for ``λ = ±2**k`` wherever the
    tuple is finite and its scaled copy stays normal (``N·λD`` and ``λN·D`` are the same
    correctly rounded number, so the difference is exactly 0) — in particular every
    tuple is projectively equal to itself (``λ = 1``); NaN/inf tuples never are."""
    n, d, nn, dn = draw_tuple(data, xp)
    k = data.draw(st.sampled_from([0, 0, 1, -1, 10, -10]), label="k")
    sign = data.draw(st.sampled_from([1.0, -1.0]), label="sign")
    lam = nn.dtype.type(sign * 2.0**k)
    with np.errstate(all="ignore"):
        sn, sd = nn * lam, dn * lam
        prod = np.abs(nn.astype(np.float64) * dn.astype(np.float64))
    note_reproduction(equal, n, d, to_xp(xp, sn), to_xp(xp, sd), atol=0.0)
    got = to_numpy(equal(n, d, to_xp(xp, sn), to_xp(xp, sd), atol=0.0))
    tiny, fmax, _ = consts(nn.dtype)
    fin = np.isfinite(nn) & np.isfinite(dn)
    # the products N·λD must neither overflow nor fall into the subnormal range (DAZ)
    with np.errstate(all="ignore"):
        dom = fin & _normal_or_special(nn, sn, lam) & _normal_or_special(dn, sd, lam) & (
            (prod == 0) | ((prod * abs(float(lam)) >= float(tiny))
                           & (prod * max(abs(float(lam)), 1.0) <= float(fmax) / 2)))
    bad = dom & ~got
    if bad.any():
        _fail(f"projectively_equal(N, D, λN, λD, atol=0) is False for λ = {lam!r}", bad,
              ("N", nn), ("D", dn))
    nonfin = ~fin & got
    if nonfin.any():
        _fail("a non-finite tuple is projectively equal to something", nonfin,
              ("N", nn), ("D", dn))


# ---------------------------------------------------------------------------------------
# renormalize

GAMMAS = (0.0, 1e-9, 1.0)


def renormalize_unit_norm(data: Any, xp: Any, renormalize: Any = projective.renormalize
                          ) -> None:
    """``renormalize(N, D, gamma)`` is finite with norm ``h/(h + gamma)`` (``h = ‖(N, D)‖``)
    within a few eps, so unit norm within ``gamma/h`` — for every finite tuple, huge ones
    included (overflow-safe norm, semantics §10 #21). Domain for ``gamma = 0``: ``h`` of the
    DAZ'd tuple at least the smallest normal (``(0, 0)/0`` is NaN by definition)."""
    n, d, nn, dn = draw_tuple(data, xp, allow_nonfinite=False)
    gamma = data.draw(st.sampled_from(GAMMAS), label="gamma")
    note_reproduction(renormalize, n, d, gamma)
    rn, rd = renormalize(n, d, gamma)
    an, ad = to_numpy(rn), to_numpy(rd)
    assert an.dtype == nn.dtype and ad.dtype == dn.dtype, (an.dtype, ad.dtype)
    tiny = consts(nn.dtype)[0]
    eps = float(np.finfo(nn.dtype).eps)
    with np.errstate(all="ignore"):
        h = np.hypot(daz(nn).astype(np.float64), daz(dn).astype(np.float64))
        dom = (h >= float(tiny)) if gamma == 0.0 else np.ones(h.shape, dtype=bool)
        norm = np.hypot(an.astype(np.float64), ad.astype(np.float64))
        # h/(h+γ) with h of the DAZ'd tuple (decision #1: a subnormal component is a
        # signed zero, so a tuple of subnormals renormalises to (0, 0)); h may be inf
        expected = np.where(dom, 1.0 / (1.0 + gamma / h), 0.0)
    bad = dom & ~(np.isfinite(an) & np.isfinite(ad))
    if bad.any():
        _fail("renormalize: non-finite output", bad, ("N", nn), ("D", dn), ("n", an), ("d", ad))
    bad = dom & ~(np.abs(norm - expected) <= 8 * eps)
    if bad.any():
        _fail("renormalize: norm is not h/(h + gamma)", bad, ("N", nn), ("D", dn),
              ("norm", norm), ("expected", expected))
    unit = dom & (h >= 1.0)
    bad = unit & ~(np.abs(norm - 1.0) <= gamma + 8 * eps)
    if bad.any():
        _fail(f"renormalize: norm not within gamma={gamma} of 1", bad, ("norm", norm))


def renormalize_scale_invariance(data: Any, xp: Any,
                                 renormalize: Any = projective.renormalize) -> None:
    """``renormalize(λN, λD, 0) == renormalize(N, D, 0)`` within 2 ulps for ``λ = 2**k``
    (exact scaling; same domain as :func:`decode_scale_pow2`, and ``h ≥ tiny``)."""
    n, d, nn, dn = draw_tuple(data, xp, allow_nonfinite=False)
    k = data.draw(_pow2_exponents(nn.dtype), label="k")
    lam = nn.dtype.type(2.0**k)
    with np.errstate(all="ignore"):
        sn, sd = nn * lam, dn * lam
    tiny, _, _ = consts(nn.dtype)
    note_reproduction(renormalize, n, d, 0.0)
    r1 = renormalize(n, d, 0.0)
    note_reproduction(renormalize, to_xp(xp, sn), to_xp(xp, sd), 0.0)
    r2 = renormalize(to_xp(xp, sn), to_xp(xp, sd), 0.0)
    with np.errstate(all="ignore"):
        h1 = np.hypot(daz(nn).astype(np.float64), daz(dn).astype(np.float64))
        h2 = np.hypot(daz(sn).astype(np.float64), daz(sd).astype(np.float64))
    dom = (_normal_or_special(nn, sn, lam) & _normal_or_special(dn, sd, lam)
           & (h1 >= float(tiny)) & (h2 >= float(tiny)))
    for a, e, what in ((r2[0], r1[0], "N"), (r2[1], r1[1], "D")):
        av, ev = to_numpy(a), to_numpy(e)
        assert_close(np.where(dom, av, 0), np.where(dom, ev, 0), ulps=2,
                     msg=f"renormalize(λN, λD) != renormalize(N, D) ({what}), λ = {lam!r}")


# ---------------------------------------------------------------------------------------
# lift_semantic_targets (semantics §3.2)

_TABLE = {  # label → (Y_n or None (= y), Y_d, finite, bottom, orientation, kind)
    "finite": (None, 1.0, True, False, 0, 0),
    "bottom": (1.0, 0.0, False, True, 0, 2),
    "censored_below": (-1.0, 0.0, False, True, -1, 2),
    "censored_above": (1.0, 0.0, False, True, 1, 2),
    "domain_invalid": (1.0, 0.0, False, True, 0, 2),
    "fault": (1.0, 0.0, False, True, 0, 1),
    "missing": (0.0, 1.0, False, False, 0, 0),
}


@functools.lru_cache(maxsize=64)
def _labelled(xp: Any, dtype: str, shape: tuple[int, ...]) -> Any:
    return targets(xp, dtype=dtype, shape=shape, status_labels=True)


def semantic_targets_table(data: Any, xp: Any,
                           lift: Any = projective.lift_semantic_targets) -> None:
    """``lift_semantic_targets`` follows the semantics §3.2 table element by element."""
    dt = data.draw(st.sampled_from(dtypes(xp)), label="dtype")
    shape = data.draw(st.sampled_from(SMALL_SHAPES), label="shape")
    y, labels = data.draw(_labelled(xp, dt, shape), label="(y, labels)")
    note_reproduction(lift, y, labels)
    res = lift(y, labels)
    yn = to_numpy(y)
    flat = np.asarray(labels, dtype=object).reshape(-1) if shape else np.asarray([labels])
    rows = [_TABLE[lab] for lab in flat]

    def col(i: int, dtype: Any) -> np.ndarray:
        return np.asarray([r[i] if r[i] is not None else 0.0 for r in rows],
                          dtype=dtype).reshape(shape)

    fin_label = col(2, bool)
    exp_n = np.where(fin_label, yn, col(0, yn.dtype))
    assert_close(res.Y_n, exp_n, ulps=0, atol=0.0, signed_zeros=True, msg="Y_n")
    assert_close(res.Y_d, col(1, yn.dtype), ulps=0, atol=0.0, msg="Y_d")
    for got, want, what in ((res.mask_finite, fin_label, "mask_finite"),
                            (res.mask_bottom, col(3, bool), "mask_bottom"),
                            (res.orientation_label, col(4, np.int64), "orientation_label"),
                            (res.bottom_kind, col(5, np.int64), "bottom_kind")):
        g = to_numpy(got)
        assert g.shape == want.shape, (what, g.shape, want.shape)
        if not np.array_equal(g.astype(want.dtype), want):
            _fail(f"lift_semantic_targets: {what} differs from semantics §3.2", g != want,
                  ("got", g), ("expected", want), ("label", flat.reshape(shape)))


# ---------------------------------------------------------------------------------------
# strict inference (semantics §4.2)

# thresholds are static (jit) arguments: few values, few compilations
TAUS = (1e-6, 1e-3)
TRAIN_FACTORS = (None, 1.0, 100.0)


@functools.lru_cache(maxsize=512)
def _q_arrays(xp: Any, dtype: str, shape: tuple[int, ...], taus: tuple[float, ...]) -> Any:
    return scm_arrays(xp, dtype=dtype, shape=shape, taus=taus, bottom_fraction=0.0,
                      edge_fraction=0.35)


def _p_shape(q_shape: tuple[int, ...], extra: bool) -> tuple[int, ...]:
    return (*q_shape, 2) if extra else q_shape


def strict_inference_invariants(data: Any, xp: Any, infer: Any = strict_inference) -> None:
    """``bottom == fault | semantic``; ``decoded`` is NaN exactly at bottom (expanded to
    P's shape) and ``daz(P)/Q`` elsewhere; ``gap`` never overlaps bottom and is exactly
    the band ``tau_infer ≤ |Q| < tau_train``; masks equal the semantics §4.2 predicates
    (``semantic = |Q| < max(tau_infer, tiny)`` in Q's dtype, ``fault = ¬fin(Q) |
    any(¬fin(P)) | any(¬fin(P/Q))``); provenance is ``fault + 2·semantic``."""
    dt = data.draw(st.sampled_from(dtypes(xp)), label="dtype")
    qs = data.draw(st.sampled_from(SMALL_SHAPES), label="Q shape")
    extra = data.draw(st.booleans(), label="P has a trailing axis")
    tau = data.draw(st.sampled_from(TAUS), label="tau_infer")
    fac = data.draw(st.sampled_from(TRAIN_FACTORS), label="tau_train / tau_infer")
    tau_train = None if fac is None else tau * fac
    taus = (tau,) if tau_train is None else (tau, tau_train)
    q = data.draw(_q_arrays(xp, dt, qs, taus), label="Q").value
    p = data.draw(_q_arrays(xp, dt, _p_shape(qs, extra), taus), label="P").value
    cfg = InferenceConfig(tau_infer=tau, tau_train=tau_train)
    note_reproduction(infer, p, q, config=cfg)
    res = infer(p, q, config=cfg)
    decoded, bottom, gap = (to_numpy(a) for a in res)
    fault, semantic = to_numpy(res.fault_mask), to_numpy(res.semantic_bottom_mask)
    prov = to_numpy(res.bottom_provenance)
    pn, qn = to_numpy(p), to_numpy(q)
    t = qn.dtype.type
    tiny, _, _ = consts(qn.dtype)
    for m, what in ((bottom, "bottom"), (gap, "gap"), (fault, "fault"),
                    (semantic, "semantic")):
        assert m.dtype == np.bool_ and m.shape == qn.shape, (what, m.dtype, m.shape)
    assert decoded.shape == pn.shape, (decoded.shape, pn.shape)
    if not np.array_equal(bottom, fault | semantic):
        _fail("bottom != fault | semantic", bottom != (fault | semantic),
              ("bottom", bottom), ("fault", fault), ("semantic", semantic))
    if (gap & bottom).any():
        _fail("gap overlaps bottom", gap & bottom, ("Q", qn))
    k = pn.ndim - qn.ndim

    def expand(m: np.ndarray) -> np.ndarray:
        return np.broadcast_to(m.reshape(m.shape + (1,) * k), pn.shape)

    def anyred(m: np.ndarray) -> np.ndarray:
        return m.any(axis=tuple(range(qn.ndim, m.ndim))) if k else m

    with np.errstate(all="ignore"):
        aq = np.abs(qn)
        sem_o = aq < t(max(tau, float(tiny)))
        fault0 = ~np.isfinite(qn) | anyred(~np.isfinite(pn))
        q_safe = np.where(expand(fault0 | sem_o), np.ones((), qn.dtype), expand(qn))
        fault_o = fault0 | anyred(~np.isfinite(pn / q_safe))
        quotient = daz(pn) / q_safe
    # DEVIATIONS.md §2: the quotient-overflow fault is the guard |P| > |Q|·max·(1 − 2·eps),
    # not ¬fin(P/Q); quotients within a few ulp of max are excluded from the comparison.
    border = anyred(near_overflow(log2_ratio(pn, expand(qn)), qn.dtype))
    fault_o = np.where(border, fault, fault_o)
    for got, want, what in ((semantic, sem_o, "semantic"), (fault, fault_o, "fault")):
        if not np.array_equal(got, want):
            _fail(f"{what} mask differs from semantics §4.2", got != want, ("Q", qn),
                  ("got", got), ("expected", want))
    bot_e = expand(bottom)
    nan_bad = np.isnan(decoded) != bot_e
    if nan_bad.any():
        _fail("decoded is not NaN exactly at bottom", nan_bad, ("decoded", decoded),
              ("bottom", bot_e))
    assert_close(np.where(bot_e, 0, decoded), np.where(bot_e, 0, quotient), ulps=0,
                 signed_zeros=True, msg="decoded != daz(P)/Q off bottom")
    if tau_train is not None and tau_train > tau:
        gap_o = (aq >= t(tau)) & (aq < t(tau_train)) & ~bottom
    else:
        gap_o = np.zeros(qn.shape, dtype=bool)
    if not np.array_equal(gap, gap_o):
        _fail("gap mask differs from semantics §4.2", gap != gap_o, ("Q", qn), ("gap", gap))
    if not np.array_equal(prov, fault.astype(prov.dtype) + 2 * semantic.astype(prov.dtype)):
        _fail("bottom_provenance != fault + 2*semantic", np.ones(prov.shape, bool),
              ("prov", prov))
