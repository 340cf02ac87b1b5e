"""Reusable SCM properties: each law takes the hypothesis ``data`` object, the namespace
``xp`` and the op(s) under test, so the same code checks the real ops and planted copies.

Oracles are written in numpy from semantics §1.2 with decision §10 #1 (DAZ: an operand with
``|x| < smallest_normal`` counts as a signed zero in every predicate and computation).
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import event, given
from hypothesis import settings as Settings
from hypothesis import strategies as st

from zpml_core import get_backend, scm
from zpml_core.scm import SCMArray
from zpml_core.testing import (
    SMALL_SHAPES,
    _rounder,
    _width,
    assert_scm_equal,
    note_reproduction,
    scm_arrays,
    to_numpy,
)
from zpml_core.testing import _np_dtype as np_dtype  # numpy dtype of a name (bfloat16 too)

BINARY = ("add", "sub", "mul", "div")
UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")
ALL_OPS = (*BINARY, *UNARY, "pow")
SCM_OPS: dict[str, Callable[..., SCMArray]] = {n: getattr(scm, n) for n in ALL_OPS}

#: value tolerance (ulps) against the numpy IEEE oracle: correctly rounded ops exact,
#: libm functions a few ulps (semantics §0, §9 #8: backends differ by 1–2 ulp)
ORACLE_ULPS = {
    "add": 0, "sub": 0, "mul": 0, "div": 0, "inv": 0, "neg": 0,
    "sqrt": 1, "exp": 4, "log": 4, "sin": 4, "cos": 4, "tan": 4, "pow": 4,
}
#: exact exp overflow borders (semantics §1.2 notes; bfloat16: exp(88.5) is finite, exp(89) not)
EXP_MAX = {"float64": 709.782712893384, "float32": 88.72283172607422, "float16": 11.0859375,
           "bfloat16": 88.5}

#: every real floating dtype the property suite draws, where the library has it
ALL_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _ml_dtypes() -> bool:
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=16)
def dtypes(xp: Any, *others: Any) -> tuple[str, ...]:
    """The floating dtypes drawn for ``xp`` (and every namespace in ``others``): float16
    and bfloat16 wherever the libraries have them, float32, float64."""
    return tuple(
        n for n in ALL_DTYPES
        if all(hasattr(ns, n) for ns in (xp, *others))
        and (n != "bfloat16" or _ml_dtypes())
    )


def is_float(dtype: Any) -> bool:
    """Real floating numpy dtype (ml_dtypes' bfloat16 included)."""
    return bool(np.issubdtype(dtype, np.floating)) or getattr(dtype, "name", "") == "bfloat16"


def floats_of(dtype: str) -> st.SearchStrategy[float]:
    """hypothesis' ``floats`` of the dtype (bfloat16: float32 rounded to bfloat16)."""
    f = st.floats(width=_width(dtype))
    return f.map(_rounder(dtype)) if dtype == "bfloat16" else f


def compute_eps(dtype: Any) -> float:
    """The precision libraries compute in: half types are computed in float32."""
    dt = np_dtype(dtype) if isinstance(dtype, str) else dtype
    return float(np.finfo(np.float32 if dt.itemsize == 2 else dt).eps)


def run(law: Callable[..., None], xp: Any, *args: Any, label: str = "",
        settings: Settings | None = None) -> None:
    """Run ``law(data, xp, *args)`` as a hypothesis test (current profile unless
    ``settings`` is given). The name shows up in hypothesis' report and keys its database."""

    calls = [0]

    # one function whatever the logging: derandomized profiles seed from its digest
    def inner(data: Any) -> None:
        calls[0] += 1
        law(data, xp, *args)

    name = re.sub(r"\W", "_", f"{law.__name__}__{label or get_backend(xp).name}")
    inner.__name__ = inner.__qualname__ = name
    log = os.environ.get("ZPML_PROPERTY_LOG")  # e.g. for the nightly run's counts
    test = given(data=st.data())(inner)
    if settings is not None:
        test = settings(test)
    start = time.perf_counter()
    try:
        test()
    finally:
        if log:
            with open(log, "a") as f:
                f.write(f"{name}\t{get_backend(xp).name}\t{calls[0]}\t"
                        f"{time.perf_counter() - start:.1f}\n")


# ---------------------------------------------------------------------------------------
# operands


def partner_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes broadcast-compatible with ``shape``, from a small fixed set (few jit compiles)."""
    out = [shape, shape, (), (1,) * len(shape)]
    if len(shape) >= 1:
        out.append(shape[-1:])
    if shape == (3,):
        out.append((2, 3))
    if shape == (2, 3):
        out += [(2, 1), (1, 3)]
    return out


@dataclass
class Call:
    """One drawn op call: the op's arguments in ``xp`` and exact numpy copies."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    np_args: tuple[Any, ...] = field(default=())
    np_kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, fn: Callable[..., SCMArray]) -> SCMArray:
        note_reproduction(fn, *self.args, **self.kwargs)
        return fn(*self.args, **self.kwargs)


def to_xp(xp: Any, a: Any) -> Any:
    """Exact copy of numpy data (or a Python scalar, unchanged) into ``xp`` (bfloat16 goes
    through float32: not every library imports ml_dtypes' bfloat16 from numpy)."""
    if isinstance(a, np.ndarray | np.generic):
        a = np.asarray(a)
        if a.dtype.name == "bfloat16":
            return xp.astype(get_backend(xp).asarray(a.astype(np.float32)), xp.bfloat16)
        return get_backend(xp).asarray(a)
    return a


def _np(a: Any) -> Any:
    return None if a is None else (a if isinstance(a, float) else to_numpy(a))


@functools.lru_cache(maxsize=8)
def exponent_elements(dtype: str) -> st.SearchStrategy[float]:
    """Exponents: small integers (negative bases stay defined), halves, edge values."""
    t = np_dtype(dtype).type
    special = [0.5, -0.5, 1 / 3, 1.5, 1e308, -1e308, 1025.0, -1075.0, 127.0, 129.0, 17.0,
               -25.0]
    with np.errstate(all="ignore"):
        special = [float(t(v)) for v in special if np.isfinite(t(v))]
    return st.one_of(
        st.integers(-8, 8).map(float),
        st.sampled_from(special),
        floats_of(dtype),
    )


@functools.lru_cache(maxsize=4096)
def _scm(xp: Any, dtype: str, shape: tuple[int, ...], edge_fraction: float, elements: Any,
         bottom_fraction: float) -> Any:
    return scm_arrays(xp, dtype=dtype, shape=shape, edge_fraction=edge_fraction,
                      elements=elements, bottom_fraction=bottom_fraction)


@functools.lru_cache(maxsize=64)
def _exponents(xp: Any, dtype: str, shape: tuple[int, ...]) -> Any:
    return scm_arrays(xp, shape=shape, dtype=dtype, edge_fraction=0.1,
                      elements=exponent_elements(dtype))


def draw_call(
    data: Any,
    xp: Any,
    name: str,
    *,
    dtype: str | None = None,
    edge_fraction: float = 0.25,
    elements: Any = None,
    bottom_fraction: float = 0.1,
    broadcast: bool = False,
) -> Call:
    """Draw arguments for op ``name``: operands of one shape and, for all operands or
    none, masks (few distinct signatures, so JAX compiles each kernel a few times only).
    ``broadcast=True`` draws broadcast-compatible shapes, swaps operands and picks each
    mask independently."""
    dt = dtype or data.draw(st.sampled_from(dtypes(xp)), label="dtype")
    sx = data.draw(st.sampled_from(SMALL_SHAPES), label="shape")
    x = data.draw(_scm(xp, dt, sx, edge_fraction, elements, bottom_fraction), label="x")
    use_mx = data.draw(st.booleans(), label="use masks")
    sy = data.draw(st.sampled_from(partner_shapes(sx)), label="partner shape") \
        if broadcast else sx
    if name == "pow":
        if data.draw(st.integers(0, 3), label="exponent kind") == 0:
            e: Any = data.draw(exponent_elements(dt), label="exponent (Python float)")
        else:
            e = data.draw(_exponents(xp, dt, sy), label="e").value
        kwargs = {"mask": x.bottom} if use_mx else {}
        return Call(name, (x.value, e), kwargs, (_np(x.value), _np(e)),
                    {k: _np(v) for k, v in kwargs.items()})
    if name in BINARY:
        y = data.draw(_scm(xp, dt, sy, edge_fraction, elements, bottom_fraction), label="y")
        use_my = use_mx
        if broadcast:
            if data.draw(st.booleans(), label="swap"):
                x, y = y, x
            use_my = data.draw(st.booleans(), label="use mask_y")
        kwargs = {}
        if use_mx:
            kwargs["mask_x"] = x.bottom
        if use_my:
            kwargs["mask_y"] = y.bottom
        return Call(name, (x.value, y.value), kwargs, (_np(x.value), _np(y.value)),
                    {k: _np(v) for k, v in kwargs.items()})
    kwargs = {"mask": x.bottom} if use_mx else {}
    return Call(name, (x.value,), kwargs, (_np(x.value),),
                {k: _np(v) for k, v in kwargs.items()})


# ---------------------------------------------------------------------------------------
# numpy oracle (semantics §1.2 + DAZ)


def consts(dtype: Any) -> tuple[Any, Any, Any]:
    """(tiny, max, sqrt_tiny) as numpy scalars of ``dtype``."""
    dt = np_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    fi = np.finfo(dt)
    t = dt.type
    tiny = t(fi.smallest_normal)
    return tiny, t(fi.max), t(np.sqrt(tiny))  # exact: tiny is an even power of two


def daz(a: np.ndarray) -> np.ndarray:
    """Subnormal → signed zero (decision #1)."""
    if not is_float(a.dtype):
        return a
    tiny = consts(a.dtype)[0]
    return np.where(np.abs(a) < tiny, np.copysign(np.zeros((), a.dtype), a), a)


def base_bottom(call: Call) -> np.ndarray:
    """``B0``: masks and non-finite operands, broadcast (semantics §1.2)."""
    arrs = [np.asarray(a) for a in call.np_args]
    shape = np.broadcast_shapes(*(a.shape for a in arrs))
    b = np.zeros(shape, dtype=bool)
    for a in arrs:
        b = b | ~np.isfinite(a)
    for m in call.np_kwargs.values():
        if m is not None:
            b = b | m
    return b


def oracle(call: Call) -> tuple[np.ndarray, np.ndarray]:
    """(value, bottom) the semantics prescribes, computed in numpy in the operands' dtype."""
    name = call.name
    x = np.asarray(call.np_args[0])
    dt = x.dtype
    tiny, _, sqrt_tiny = consts(dt)
    b = base_bottom(call)
    xd = daz(x)
    with np.errstate(all="ignore"):
        if name in BINARY:
            y = np.asarray(call.np_args[1])
            yd = daz(y)
            if name in ("add", "sub"):  # DAZ: two subnormals must not sum to a normal
                r = xd + yd if name == "add" else xd - yd
                b = b | ~np.isfinite(r)
            elif name == "mul":
                r = xd * yd
                b = b | ~np.isfinite(r)
            else:  # div: y ≈ 0 (|y| < sqrt(tiny): y·y underflows) or |x|/y² overflows
                b = b | (np.abs(y) < sqrt_tiny) | ~np.isfinite(np.abs(x) / (y * y))
                r = xd / y
        elif name == "pow":
            e = np.asarray(call.np_args[1], dtype=dt)
            ed = daz(e)
            b = b | ((np.abs(x) < tiny) & (e <= -tiny))
            b = b | ((x <= -tiny) & (ed != np.floor(ed)))
            r = xd ** ed
            b = b | ~np.isfinite(r)
            # IEEE pow: a zero result is -0 only for a negative base and an odd integral
            # exponent. numpy's scalar-exponent fast path computes x**0.5 as sqrt(x) and
            # returns -0.0 for (-0.0)**0.5, so the sign is set explicitly here.
            odd = (np.floor(ed) == ed) & (np.fmod(ed, 2) != 0)
            neg_zero = np.signbit(xd) & odd
            r = np.where(r == 0, np.where(neg_zero, -np.zeros((), dt), np.zeros((), dt)), r)
        elif name == "inv":
            b = b | (np.abs(x) < tiny)
            r = np.ones((), dt) / x
        elif name == "neg":
            r = -x
        elif name == "log":
            b = b | (x < tiny)
            r = np.log(x)
        elif name == "exp":
            b = b | (x > dt.type(EXP_MAX[dt.name]))
            r = np.exp(xd)
        elif name == "sqrt":
            b = b | (x <= -tiny)
            r = np.sqrt(xd)
        else:
            r = getattr(np, name)(xd)
        r = np.asarray(r, dtype=dt)
        r = np.broadcast_to(r, b.shape)
        return np.where(b, np.zeros((), dt), r), b


def near_overflow(log2_quotient: np.ndarray, dtype: Any) -> np.ndarray:
    """Where a quotient/power with the given ``log2`` magnitude lies within a few ulps of
    the overflow border of ``dtype`` (``log2`` computed in float64)."""
    fi = np.finfo(dtype)
    border = math.log2(float(fi.max))
    with np.errstate(all="ignore"):
        return np.abs(log2_quotient - border) < 64 * float(fi.eps) + 1e-11


def log2abs(a: Any) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.log2(np.abs(np.asarray(daz(np.asarray(a)), dtype=np.float64)))


def log2_ratio(a: Any, b: Any, power: int = 1) -> np.ndarray:
    """``log2(|a| / |b|**power)`` in float64 (no overflow; NaN for 0/0 or inf/inf)."""
    with np.errstate(all="ignore"):
        return log2abs(a) - power * log2abs(b)


def div_overflow_band(call: Call) -> np.ndarray:
    """Where ``|x|/(y·y)`` lies within a few ulps of ``max``: DEVIATIONS.md §2 decides ⊥
    there by the guard ``|x| > fl(y·y)·ovf`` (``ovf = max·(1 − 2·eps)``) instead of the
    exact semantics §1.2 probe, so semantics-oracle mask comparisons exclude the band."""
    x, y = (np.asarray(a) for a in call.np_args)
    band = near_overflow(log2_ratio(x, y, 2), x.dtype)
    return np.broadcast_to(band, base_bottom(call).shape)


def pow_boundary_band(call: Call) -> np.ndarray:
    """Elements whose ``|x|**e`` lies within a few ulps of the overflow border: there the
    libm of each library decides ⊥ (semantics §10 #2 keeps result-finiteness for pow), so
    cross-library mask comparisons exclude them (libm differences in the last ulp)."""
    x = np.asarray(call.np_args[0])
    e = np.asarray(call.np_args[1], dtype=x.dtype)
    fi = np.finfo(x.dtype)
    with np.errstate(all="ignore"):
        t = np.asarray(e, np.float64) * log2abs(x)
        band = np.abs(t - math.log2(float(fi.max))) < 64 * compute_eps(x.dtype) * 1024
    return np.broadcast_to(band, base_bottom(call).shape)


# ---------------------------------------------------------------------------------------
# per-op laws


def _fail(msg: str, where: np.ndarray, *arrays: tuple[str, np.ndarray]) -> None:
    idx = [tuple(int(k) for k in i) for i in np.argwhere(where)][:8]
    lines = [msg]
    for i in idx:
        parts = ", ".join(f"{n}={np.asarray(a)[i]!r}" for n, a in arrays)
        lines.append(f"  at {list(i)}: {parts}")
    raise AssertionError("\n".join(lines))


def check_absorption(call: Call, r: SCMArray) -> None:
    """A bottom operand (mask bit or non-finite value) makes the result bottom; the value
    at bottom is +0; no NaN/inf ever appears in a value; dtype/shape are preserved."""
    name = call.name
    v, b = to_numpy(r.value), to_numpy(r.bottom)
    b0 = base_bottom(call)
    assert b.dtype == np.bool_, f"bottom dtype {b.dtype}"
    assert b.shape == b0.shape == v.shape, (b.shape, v.shape, b0.shape)
    assert v.dtype == np.asarray(call.np_args[0]).dtype, (v.dtype, call.np_args[0].dtype)
    if (b0 & ~b).any():
        _fail(f"{name}: a bottom operand did not give a bottom result", b0 & ~b,
              ("value", v), ("bottom", b))
    if (~np.isfinite(v)).any():
        _fail(f"{name}: non-finite value", ~np.isfinite(v), ("value", v), ("bottom", b))
    bad = b & ((v != 0) | np.signbit(v))
    if bad.any():
        _fail(f"{name}: the value at bottom is not +0", bad, ("value", v))


def check_oracle(call: Call, r: SCMArray, backend_name: str) -> None:
    """Masks equal the semantics §1.2 predicate (with DAZ) exactly; values equal the IEEE
    result on DAZ'd operands within ``ORACLE_ULPS``; signed zeros agree."""
    name = call.name
    ev, eb = oracle(call)
    av, ab = to_numpy(r.value), to_numpy(r.bottom)
    band = None
    if name == "pow" and backend_name != "numpy":
        band = pow_boundary_band(call)
    elif name == "div":
        band = div_overflow_band(call)
    if band is not None and band.any():
        event(f"{name}: elements at the overflow border excluded")
        av, ab = np.where(band, ev, av), np.where(band, eb, ab)
    assert_scm_equal((av, ab), (ev, eb), ulps=ORACLE_ULPS[name],
                     msg=f"{name}: result differs from the semantics oracle (expected)")


def check_matches_numpy(call: Call, r: SCMArray, fn: Callable[..., SCMArray],
                        backend_name: str) -> None:
    """Differential fuzzing: the same call on the numpy copies of the operands gives the
    same masks and values within ``ORACLE_ULPS`` (pow: the overflow border excluded)."""
    if backend_name == "numpy":
        return
    if np.asarray(call.np_args[0]).dtype.name == "bfloat16":
        return  # numpy has no bfloat16 (ml_dtypes' is rejected): the oracle covers it
    import array_api_compat.numpy as np_xp

    name = call.name
    args = tuple(np_xp.asarray(a) if isinstance(a, np.ndarray | np.generic) else a
                 for a in call.np_args)
    kwargs = {k: np_xp.asarray(v) for k, v in call.np_kwargs.items()}
    ref = fn(*args, **kwargs)
    ev, eb = to_numpy(ref.value), to_numpy(ref.bottom)
    av, ab = to_numpy(r.value), to_numpy(r.bottom)
    if name == "pow":
        band = pow_boundary_band(call)
        if band.any():
            av, ab = np.where(band, ev, av), np.where(band, eb, ab)
    assert_scm_equal((av, ab), (ev, eb), ulps=ORACLE_ULPS[name],
                     msg=f"{name} on {backend_name} differs from numpy (expected)")


def bottom_absorption(data: Any, xp: Any, name: str, fn: Callable[..., SCMArray]) -> None:
    """Property: see :func:`check_absorption`."""
    call = draw_call(data, xp, name)
    check_absorption(call, call(fn))


def spec_oracle(data: Any, xp: Any, name: str, fn: Callable[..., SCMArray]) -> None:
    """Property: see :func:`check_oracle`."""
    call = draw_call(data, xp, name)
    check_oracle(call, call(fn), get_backend(xp).name)


def contract(data: Any, xp: Any, name: str, fn: Callable[..., SCMArray]) -> None:
    """Three properties on one draw: bottom absorption, the semantics oracle, and differential
    fuzzing against the numpy backend (skipped on numpy itself)."""
    call = draw_call(data, xp, name)
    r = call(fn)
    be = get_backend(xp).name
    check_absorption(call, r)
    check_oracle(call, r, be)
    check_matches_numpy(call, r, fn, be)


def check_daz(call: Call, r: SCMArray, xp: Any, fn: Callable[..., SCMArray]) -> None:
    """Decision #1: subnormal operands count as signed zero — ``op(x) == op(daz(x))``
    (masks exact, values within the smallest-normal floor, signed zeros kept)."""
    dz_args = tuple(to_xp(xp, daz(a)) if isinstance(a, np.ndarray) else a
                    for a in call.np_args)
    r2 = Call(call.name, dz_args, call.kwargs)(fn)
    assert_scm_equal(r, r2, ulps=0, msg=f"{call.name}(x) != {call.name}(daz(x))")


def daz_invariance(data: Any, xp: Any, name: str, fn: Callable[..., SCMArray]) -> None:
    """Property: see :func:`check_daz` (operands with many edge values)."""
    call = draw_call(data, xp, name, edge_fraction=0.5)
    check_daz(call, call(fn), xp, fn)


# subnormals of every dtype: 5e-324 / 1e-310 (float64), 1e-45 / 1e-40 (float32, bfloat16),
# 6e-8 (float16); in a wider dtype the smaller ones are normal numbers or round to zero
ZERO_HEAVY = (0.0, -0.0, 5e-324, -5e-324, 1e-310, -1e-310, 1e-45, -1e-45, 1e-40, -1e-40,
              6e-8, -6e-8, 1.0, -1.0, 2.0, -2.0, 0.5, -3.0, math.inf, -math.inf)


@functools.lru_cache(maxsize=8)
def zero_heavy(dtype: str) -> st.SearchStrategy[float]:
    t = np_dtype(dtype).type
    with np.errstate(all="ignore"):
        vals = {float(t(v)) for v in ZERO_HEAVY} | {-0.0}
    return st.sampled_from(sorted(vals, key=lambda v: (v, math.copysign(1, v))))


def check_signed_zeros(call: Call, r: SCMArray) -> None:
    """Signed zeros follow IEEE on DAZ'd operands: ``neg(±0) = ∓0``, ``sqrt(-0.0) = -0.0``,
    ``mul``/``div`` zero signs are the xor of the operand signs, ``(-0.0)**3 = -0.0``,
    ``sin/tan(±0) = ±0``, subnormals behave as the zero of their sign; the whole result
    equals the semantics oracle."""
    name = call.name
    ev, eb = oracle(call)
    av, ab = to_numpy(r.value), to_numpy(r.bottom)
    ok = ~ab & ~eb & (av == 0) & (ev == 0)
    bad = ok & (np.signbit(av) != np.signbit(ev))
    if bad.any():
        _fail(f"{name}: wrong sign of a zero result (expected = IEEE on DAZ'd operands)",
              bad, ("actual", av), ("expected", ev))
    if name == "div":  # DEVIATIONS.md §2 border, as in check_oracle
        band = div_overflow_band(call)
        av, ab = np.where(band, ev, av), np.where(band, eb, ab)
    assert_scm_equal((av, ab), (ev, eb), ulps=ORACLE_ULPS[name],
                     msg=f"{name} on zero-heavy operands differs from the semantics oracle")


def signed_zero_rules(data: Any, xp: Any, name: str, fn: Callable[..., SCMArray]) -> None:
    """Property: see :func:`check_signed_zeros` (operands from ``ZERO_HEAVY`` only)."""
    dt = data.draw(st.sampled_from(dtypes(xp)), label="dtype")
    call = draw_call(data, xp, name, dtype=dt, edge_fraction=0.0,
                     elements=zero_heavy(dt), bottom_fraction=0.05)
    check_signed_zeros(call, call(fn))


@functools.lru_cache(maxsize=32)
def special_values(xp: Any, dtype: str) -> st.SearchStrategy[float]:
    """Half zeros/subnormals/small integers, a quarter edge values, a quarter any float."""
    from zpml_core.testing import edge_values

    zh = zero_heavy(dtype)
    return st.one_of(zh, zh, st.sampled_from(edge_values(xp, dtype)), floats_of(dtype))


def zero_rules(data: Any, xp: Any, name: str, fn: Callable[..., SCMArray]) -> None:
    """Signed-zero rules and DAZ invariance on one draw of zero/subnormal-heavy operands
    (:func:`check_signed_zeros`, :func:`check_daz`)."""
    dt = data.draw(st.sampled_from(dtypes(xp)), label="dtype")
    call = draw_call(data, xp, name, dtype=dt, edge_fraction=0.0,
                     elements=special_values(xp, dt), bottom_fraction=0.05)
    r = call(fn)
    check_signed_zeros(call, r)
    check_daz(call, r, xp, fn)


def broadcasting(data: Any, xp: Any, name: str, fn: Callable[..., SCMArray]) -> None:
    """Operands and masks broadcast: ``op(x, y)`` equals ``op`` on the explicitly
    broadcast operands, and a missing mask equals an all-False mask (bit for bit)."""
    call = draw_call(data, xp, name, broadcast=True)
    r1 = call(fn)
    shape = base_bottom(call).shape

    def full(a: Any) -> Any:
        if a is None:
            return to_xp(xp, np.zeros(shape, dtype=bool))
        if isinstance(a, float):
            a = np.asarray(a, dtype=np.asarray(call.np_args[0]).dtype)
        return to_xp(xp, np.array(np.broadcast_to(a, shape)))  # a copy, 0-d stays 0-d

    args = tuple(full(a) for a in call.np_args)
    mask_names = ("mask",) if name in UNARY or name == "pow" else ("mask_x", "mask_y")
    kwargs = {k: full(call.np_kwargs.get(k)) for k in mask_names}
    r2 = Call(name, args, kwargs)(fn)
    assert_scm_equal(r1, r2, ulps=0, atol=0.0,
                     msg=f"{name}: broadcast call != call on broadcast operands")


PER_OP_LAWS = (contract, zero_rules)
BROADCAST_OPS = (*BINARY, "pow")


# ---------------------------------------------------------------------------------------
# meadow laws on the finite part


def _ops(ops: Mapping[str, Callable[..., SCMArray]] | None) -> Mapping[str, Callable[..., SCMArray]]:
    return SCM_OPS if ops is None else {**SCM_OPS, **ops}


def commutative(data: Any, xp: Any, name: str, ops: Mapping[str, Any] | None = None) -> None:
    """``add`` and ``mul`` commute exactly: masks and values bit for bit."""
    fn = _ops(ops)[name]
    call = draw_call(data, xp, name)
    r1 = call(fn)
    (x, y), kw = call.args, call.kwargs
    swapped = {}
    if "mask_x" in kw:
        swapped["mask_y"] = kw["mask_x"]
    if "mask_y" in kw:
        swapped["mask_x"] = kw["mask_y"]
    r2 = Call(name, (y, x), swapped)(fn)
    assert_scm_equal(r1, r2, ulps=0, atol=0.0, msg=f"{name}(x, y) != {name}(y, x)")


def _normal_reciprocal(y: np.ndarray) -> np.ndarray:
    """Where ``1/y`` (exact IEEE, computed in numpy) is a normal number or ``y`` is not
    finite. Elsewhere the reciprocal of a finite ``y`` is subnormal: ``mul`` counts it as a
    signed zero (decision #1) and JAX flushes it already in ``inv`` (underflow is not ⊥,
    semantics §1.1), so a product with it is 0 by design."""
    tiny = consts(y.dtype)[0]
    with np.errstate(all="ignore"):
        return ~np.isfinite(y) | (np.abs(np.ones((), y.dtype) / y) >= tiny)


def mul_inv_is_one(data: Any, xp: Any, ops: Mapping[str, Any] | None = None) -> None:
    """``mul(x, inv(x))`` is 1 within 1 ulp wherever ``inv(x)`` is not bottom.

    Domain (decision #1, semantics §10): ``inv(x)`` for ``|x| > 1/tiny`` is a *subnormal*
    number (or 0 where the library flushes), which ``mul`` treats as a signed zero, so
    there the product is 0 by design; those elements are excluded (``inv`` of a
    subnormal ``x`` is already ⊥)."""
    o = _ops(ops)
    call = draw_call(data, xp, "inv")
    x = call.args[0]
    i = call(o["inv"])
    p = Call("mul", (x, i.value), {"mask_y": i.bottom})(o["mul"])
    iv, ib = to_numpy(i.value), to_numpy(i.bottom)
    pv, pb = to_numpy(p.value), to_numpy(p.bottom)
    if (ib & ~pb).any():
        _fail("mul(x, inv(x)) not bottom where inv(x) is", ib & ~pb, ("p", pv))
    dom = ~ib & _normal_reciprocal(to_numpy(x))
    eps = float(np.finfo(iv.dtype).eps)
    bad = dom & (pb | ~(np.abs(pv - 1) <= eps))
    if bad.any():
        _fail("x * inv(x) is not 1 within 1 ulp", bad, ("x", to_numpy(x)), ("inv", iv),
              ("product", pv), ("product bottom", pb))


def inv_involution(data: Any, xp: Any, ops: Mapping[str, Any] | None = None) -> None:
    """``inv(inv(x)) == x`` within 1 ulp where neither is bottom; the second inversion is
    bottom only where ``inv(x)`` is bottom or subnormal (DAZ)."""
    o = _ops(ops)
    call = draw_call(data, xp, "inv")
    x = to_numpy(call.args[0])
    i1 = call(o["inv"])
    i2 = Call("inv", (i1.value,), {"mask": i1.bottom})(o["inv"])
    v1, b1 = to_numpy(i1.value), to_numpy(i1.bottom)
    v2, b2 = to_numpy(i2.value), to_numpy(i2.bottom)
    tiny = consts(x.dtype)[0]
    unexpected = ~b1 & (np.abs(v1) >= tiny) & b2
    if unexpected.any():
        _fail("inv(inv(x)) is bottom although inv(x) is a normal number", unexpected,
              ("x", x), ("inv(x)", v1))
    both = ~b1 & ~b2
    assert_scm_equal((np.where(both, v2, 0), b1 | b2), (np.where(both, x, 0), b1 | b2),
                     ulps=1, msg="inv(inv(x)) != x")


def neg_involution(data: Any, xp: Any, ops: Mapping[str, Any] | None = None) -> None:
    """``neg(neg(x)) == x`` exactly (signed zeros included) where not bottom; the mask is
    exactly ``mask | ¬finite(x)``."""
    o = _ops(ops)
    call = draw_call(data, xp, "neg")
    n1 = call(o["neg"])
    n2 = Call("neg", (n1.value,), {"mask": n1.bottom})(o["neg"])
    x = to_numpy(call.args[0])
    b0 = base_bottom(call)
    expected = (np.where(b0, np.zeros((), x.dtype), x), b0)
    assert_scm_equal(n2, expected, ulps=0, msg="neg(neg(x)) != x")


def _through_unary(call: Call, o: Mapping[str, Any], unary: str,
                   binary: str) -> tuple[SCMArray, SCMArray]:
    """``u = unary(y)`` and ``binary(x, u)`` for a drawn binary call, masks carried."""
    (x, y), kw = call.args, call.kwargs
    u = Call(unary, (y,), {"mask": kw["mask_y"]} if "mask_y" in kw else {})(o[unary])
    mask_x = {"mask_x": kw["mask_x"]} if "mask_x" in kw else {}
    r = Call(binary, (x, u.value), {**mask_x, "mask_y": u.bottom})(o[binary])
    return u, r


def sub_is_add_neg(data: Any, xp: Any, ops: Mapping[str, Any] | None = None) -> None:
    """``sub(x, y) == add(x, neg(y))`` exactly (IEEE: ``x - y`` is ``x + (-y)``)."""
    o = _ops(ops)
    call = draw_call(data, xp, "sub")
    s = call(o["sub"])
    _, a = _through_unary(call, o, "neg", "add")
    assert_scm_equal(s, a, ulps=0, atol=0.0, msg="sub(x, y) != add(x, neg(y))")


def div_is_mul_inv(data: Any, xp: Any, ops: Mapping[str, Any] | None = None) -> None:
    """``div(x, y)`` equals ``mul(x, inv(y))`` within 2 ulps where both are defined, and
    the tiny-y rule holds (semantics §1.2 note, decision #1): for finite unmasked operands
    ``div`` is bottom iff ``|y| < 2**(emin/2)`` (``y·y`` below the smallest normal) or
    ``|x|/(y·y)`` overflows, while ``inv(y)`` is defined down to the smallest normal.

    Domain: where ``inv(y)`` is subnormal (``|y| > 1/tiny``) ``mul`` flushes it to zero
    (DAZ), so those elements are excluded from the value comparison."""
    o = _ops(ops)
    call = draw_call(data, xp, "div")
    d = call(o["div"])
    i, m = _through_unary(call, o, "inv", "mul")
    dv, db = to_numpy(d.value), to_numpy(d.bottom)
    ib = to_numpy(i.bottom)
    mv, mb = to_numpy(m.value), to_numpy(m.bottom)
    xn, yn = (np.asarray(a) for a in call.np_args)
    tiny, _, sqrt_tiny = consts(dv.dtype)
    b0 = base_bottom(call)
    with np.errstate(all="ignore"):
        probe_over = ~np.isfinite(np.abs(xn) / (yn * yn))
    ay = np.broadcast_to(np.abs(yn), b0.shape)
    expected_db = b0 | (ay < sqrt_tiny) | np.broadcast_to(probe_over, b0.shape)
    differ = (db != expected_db) & ~div_overflow_band(call)
    if differ.any():
        _fail("div: mask violates the tiny-y rule", differ,
              ("x", np.broadcast_to(xn, b0.shape)), ("y", ay), ("div bottom", db))
    # inv(y) ≠ div(1, y) in the band tiny ≤ |y| < sqrt(tiny): inv defined there
    yb = np.broadcast_to(ib, b0.shape)
    band = ~b0 & (ay >= tiny) & (ay < sqrt_tiny)
    if (band & yb).any():
        _fail("inv(y) is bottom for tiny <= |y| < sqrt(tiny)", band & yb, ("y", ay))
    dom = ~db & ~mb & np.broadcast_to(_normal_reciprocal(yn), b0.shape)
    assert_scm_equal((np.where(dom, mv, 0), ~dom), (np.where(dom, dv, 0), ~dom), ulps=2,
                     signed_zeros=True, msg="div(x, y) != mul(x, inv(y))")


MEADOW_LAWS = (mul_inv_is_one, inv_involution, neg_involution, sub_is_add_neg,
               div_is_mul_inv)
