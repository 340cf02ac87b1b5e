"""Half precision: every public array function gives the same masks — and, for the
correctly rounded ops, the same value bits — in float16 and bfloat16, eager, fused
(torch inductor), under the user's ``torch.compile(fullgraph=True)`` and ``jax.jit``,
on every backend that has the dtype, and equal to an independent float64 oracle.

The rule (``zpml_core._precision``): half operands are computed in float32 with the half
dtype's constants; "the half result overflows" is ``|r| >= edge`` (float16: 65520, the
smallest magnitude that rounds to ±inf); subnormal half operands count as zero; values are
rounded once to the half dtype. The oracle below re-derives every mask and value from
that rule in numpy float64 (exact for products and sums of half numbers), with its own
rounding to the half formats — it never calls zpml_core.

Inputs are seeded: uniformly random bit patterns (the whole finite range, subnormals,
±inf, NaN) plus crafted pairs at the overflow edge of each op. array-api-strict has no
16-bit floats and numpy no bfloat16 (ml_dtypes arrays are rejected by design): those
combinations skip. Values of transcendental ops may differ by one half-precision ulp
(float32 libm differences before rounding); masks never.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from zpml_core import scm
from zpml_core.inference import InferenceConfig, strict_inference
from zpml_core.projective import decode, encode, projectively_equal, renormalize

pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------------------
# the two formats, and exact conversions by bit pattern


@dataclass(frozen=True)
class Fmt:
    name: str
    p: int  # significand bits
    emin: int
    emax: int

    @property
    def tiny(self) -> float:
        return 2.0 ** self.emin

    @property
    def max(self) -> float:
        return (2.0 - 2.0 ** (1 - self.p)) * 2.0 ** self.emax

    @property
    def edge(self) -> float:  # max + ulp(max)/2: the smallest magnitude rounding to inf
        return (2.0 - 2.0 ** -self.p) * 2.0 ** self.emax

    def rnd(self, v: np.ndarray) -> np.ndarray:
        """float64 → nearest value of this format (ties to even, subnormals, ±inf)."""
        v = np.asarray(v, dtype=np.float64)
        out = v.copy()
        ok = np.isfinite(v) & (v != 0)
        _, e = np.frexp(np.where(ok, v, 1.0))
        q = np.maximum(e, self.emin + 1) - self.p
        r = np.ldexp(np.rint(np.ldexp(np.where(ok, v, 0.0), -q)), q)
        r = np.where(np.abs(v) >= self.edge, np.copysign(np.inf, v), r)
        out[ok] = r[ok]
        return out

    def from_bits(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.uint16)
        if self.name == "float16":
            return u.view(np.float16).astype(np.float64)
        with np.errstate(invalid="ignore"):  # signalling NaN patterns
            return (u.astype(np.uint32) << 16).view(np.float32).astype(np.float64)

    def to_bits(self, v: np.ndarray) -> np.ndarray:
        """Bits of values already representable in this format."""
        v = np.asarray(v, dtype=np.float64)
        if self.name == "float16":
            with np.errstate(over="ignore"):
                return v.astype(np.float16).view(np.uint16)
        with np.errstate(over="ignore"):
            return (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


F16 = Fmt("float16", 11, -14, 15)
BF16 = Fmt("bfloat16", 8, -126, 127)
FORMATS = {"float16": F16, "bfloat16": BF16}

# ---------------------------------------------------------------------------------------
# seeded inputs


def _neighbours(f: Fmt, v: np.ndarray, k: int = 2) -> np.ndarray:
    """Bit patterns of ``v`` (representable) and its ``k`` neighbours on each side."""
    b = f.to_bits(v).astype(np.int32)
    out = np.concatenate([b + d for d in range(-k, k + 1)])
    return np.clip(out, 0, 0xFFFF).astype(np.uint16)


def make_inputs(f: Fmt, seed: int) -> dict[str, np.ndarray]:
    """Bit patterns for x, y, z, w (equal lengths)."""
    rng = np.random.default_rng(seed)
    n = 1500
    rand = lambda: rng.integers(0, 1 << 16, n).astype(np.uint16)  # noqa: E731
    specials = np.array([0.0, -0.0, 1.0, -1.0, f.tiny, -f.tiny, f.tiny / 2, -f.tiny / 4,
                         f.max, -f.max, np.inf, -np.inf, np.nan, 2.0 ** (f.emin / 2),
                         3.0, 0.5, 177.5, -177.5, 11.0859375, 11.09375, 88.5, 89.0])
    sb = f.to_bits(f.rnd(specials))
    # finite moderate values for the second operand of the edge pairs
    yv = f.rnd(rng.uniform(0.25, 8.0, 200) * rng.choice([-1.0, 1.0], 200))
    yv_small = f.rnd(rng.uniform(1.0, 2.0, 200) * 2.0 ** rng.integers(f.emin // 2 - 1,
                                                                       f.emin // 2 + 6, 200))
    with np.errstate(over="ignore"):
        x_mul = f.rnd(f.edge / yv)  # x·y near the edge
        x_div = f.rnd(f.edge * yv_small * yv_small)  # |x|/y² near the edge
        x_dec = f.rnd(f.edge * yv)  # |N/D| near the edge
    x_add = np.full(200, f.max)
    y_add = f.rnd(np.linspace(0.0, 2.0, 200) * (f.edge - f.max))
    xs = [_neighbours(f, x_mul), _neighbours(f, x_div), _neighbours(f, x_dec),
          _neighbours(f, x_add)]
    ys = [np.tile(f.to_bits(yv), 5), np.tile(f.to_bits(yv_small), 5),
          np.tile(f.to_bits(yv), 5), np.tile(f.to_bits(y_add), 5)]
    x = np.concatenate([rand(), np.repeat(sb, sb.size), *xs])
    y = np.concatenate([rand(), np.tile(sb, sb.size), *ys])
    m = x.size
    # (z, w) projectively equal to (x, y) up to rounding for half of the elements
    kk = f.rnd(rng.uniform(0.5, 2.0, m))
    xv, yv_ = f.from_bits(x), f.from_bits(y)
    with np.errstate(all="ignore"):
        z_eq, w_eq = f.to_bits(f.rnd(xv * kk)), f.to_bits(f.rnd(yv_ * kk))
    pick = rng.random(m) < 0.5
    z = np.where(pick, z_eq, rng.integers(0, 1 << 16, m).astype(np.uint16))
    w = np.where(pick, w_eq, rng.integers(0, 1 << 16, m).astype(np.uint16))
    return {"x": x, "y": y, "z": z.astype(np.uint16), "w": w.astype(np.uint16)}


# ---------------------------------------------------------------------------------------
# the oracle (numpy float64, from the rule)

TAU, TAU_TRAIN, TAU_V, ATOL, GAMMA = 1e-3, 3e-2, 3e-3, 1e-3, 1e-9


def _daz(f: Fmt, v: np.ndarray) -> np.ndarray:
    return np.where(np.abs(v) < f.tiny, v * 0.0, v)


def _val(f: Fmt, ok: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.where(ok, f.rnd(np.where(ok, v, 0.0)), 0.0)


Expect = tuple[tuple[str, np.ndarray], ...]  # (kind, expected): kind "mask", "exact", "ulp"


def oracle(name: str, f: Fmt, x: np.ndarray, y: np.ndarray, z: np.ndarray,
           w: np.ndarray) -> tuple[Expect, np.ndarray]:
    """Expected outputs, and a mask of elements excluded from the oracle comparison
    (``pow`` results within 2**-16 of the edge, where float32 libm pow decides)."""
    fin = np.isfinite
    skip = np.zeros(x.shape, bool)
    xf, yf = _daz(f, x), _daz(f, y)
    if name in ("add", "sub"):
        s = xf + yf if name == "add" else xf - yf
        ok = fin(x) & fin(y) & (np.abs(s) < f.edge)
        return (("exact", _val(f, ok, s)), ("mask", ~ok)), skip
    if name == "mul":
        p = x * y
        ok = fin(x) & fin(y) & (np.abs(p) < f.edge)
        sub = np.minimum(np.abs(x), np.abs(y)) < f.tiny
        v = np.where(sub, p * 0.0, p)
        return (("exact", _val(f, ok, v)), ("mask", ~ok)), skip
    if name == "div":
        g = np.float32(y * y * f.edge).astype(np.float64)  # y², y²·edge exact in float64
        ok = fin(x) & fin(y) & (y * y >= f.tiny) & (np.abs(x) <= g)
        return (("exact", _val(f, ok, xf / np.where(ok, y, 1.0))), ("mask", ~ok)), skip
    if name == "inv":
        ok = fin(x) & (np.abs(x) >= f.tiny)
        return (("exact", _val(f, ok, 1.0 / np.where(ok, x, 1.0))), ("mask", ~ok)), skip
    if name == "neg":
        ok = fin(x)
        return (("exact", np.where(ok, -np.where(ok, x, -0.0), 0.0)), ("mask", ~ok)), skip
    if name == "log":
        ok = fin(x) & (x >= f.tiny)
        return (("ulp", _val(f, ok, np.log(np.where(ok, x, 1.0)))), ("mask", ~ok)), skip
    if name == "exp":
        e = np.exp(np.where(fin(x), x, 0.0))
        ok = fin(x) & (e < f.edge)
        return (("ulp", _val(f, ok, e)), ("mask", ~ok)), skip
    if name == "sqrt":
        pos = fin(x) & (x >= f.tiny)
        zero = np.abs(x) < f.tiny
        v = np.where(pos, f.rnd(np.sqrt(np.where(pos, x, 1.0))), np.where(zero, x * 0.0, 0.0))
        return (("exact", v), ("mask", ~(pos | zero))), skip
    if name in ("sin", "cos", "tan"):
        r = getattr(np, name)(np.where(fin(x), x, 0.0))
        ok = fin(x) & (np.abs(r) < f.edge)
        return (("ulp", _val(f, ok, r)), ("mask", ~ok)), skip
    if name == "pow":
        ef = yf
        xsub = np.abs(x) < f.tiny
        ok = fin(x) & fin(y) & ~(xsub & (y <= -f.tiny))
        ok &= ~((x <= -f.tiny) & (ef != np.floor(ef)))
        base_ok = ok & ~(xsub & (np.abs(y) < f.tiny))
        r = np.power(np.where(base_ok, xf, 1.0), np.where(ok, ef, 0.0))
        skip = ok & (np.abs(np.abs(r) / f.edge - 1.0) < 2.0 ** -16)
        ok &= np.abs(r) < f.edge
        odd = (ef == np.floor(ef)) & (ef * 0.5 != np.floor(ef * 0.5))
        r = np.where(xsub & ~odd, np.abs(r), r)
        return (("ulp", _val(f, ok, r)), ("mask", ~ok)), skip
    if name == "decode":
        ok = fin(x) & fin(y) & (np.abs(y) >= f.tiny) & (np.abs(x) < np.abs(y) * f.edge)
        return (("exact", _val(f, ok, xf / np.where(ok, y, 1.0))), ("mask", ~ok)), skip
    if name == "encode":
        b = y > 1.0
        return (("exact", np.where(b, 1.0, x)), ("exact", np.where(b, 0.0, 1.0))), skip
    if name in ("strict", "strict_factor"):
        aq, ap = np.abs(y), np.abs(x)
        semantic = aq < max(f.rnd(np.array(TAU))[()], f.tiny)
        fault = ~fin(y) | ~fin(x)
        if name == "strict_factor":
            fault |= ~fin(z)
            semantic |= np.abs(z) < f.rnd(np.array(TAU_V))[()]
        fault |= ~(fault | semantic) & (ap >= aq * f.edge)
        bottom = fault | semantic
        dec = np.where(bottom, np.nan, f.rnd(xf / np.where(bottom, 1.0, y)))
        gap = (aq >= f.rnd(np.array(TAU))[()]) & (aq < f.rnd(np.array(TAU_TRAIN))[()]) & ~bottom
        return (("exact", dec), ("mask", bottom), ("mask", gap), ("mask", fault),
                ("mask", semantic)), skip
    if name in ("renormalize", "renormalize_g0"):
        g = GAMMA if name == "renormalize" else 0.0
        finite = fin(x) & fin(y)
        zero = finite & (np.abs(x) < f.tiny) & (np.abs(y) < f.tiny)
        s = np.hypot(xf, yf) + g
        pos = finite & ~zero
        nan_t = np.isnan(x) | np.isnan(y) | (zero & (g == 0.0))
        outs = []
        for comp, compf in ((x, xf), (y, yf)):
            v = np.where(pos, f.rnd(compf / np.where(pos, s, 1.0)), 0.0)
            v = np.where(zero & ~nan_t, compf, v)  # (±0, ±0) for gamma > 0
            v = np.where(~finite & ~nan_t, comp * 0.0, v)  # inf → NaN, finite → ±0
            outs.append(("ulp", np.where(nan_t, np.nan, v)))
        return tuple(outs), skip
    if name in ("proj_eq", "proj_eq_default"):
        atol = ATOL if name == "proj_eq" else 1e-8
        a, b, c, d = _daz(f, x), _daz(f, y), _daz(f, z), _daz(f, w)
        ad, cb = a * d, c * b  # exact in float64
        ad = np.where(np.abs(ad) <= f.tiny, 0.0, ad)
        cb = np.where(np.abs(cb) <= f.tiny, 0.0, cb)
        with np.errstate(all="ignore"):
            diff = np.abs(np.float32(ad - cb)).astype(np.float64)
        diff = np.where(diff < f.tiny, 0.0, diff)
        tol = f.rnd(np.array(atol))[()] if atol >= f.tiny else 0.0
        ok = (np.abs(ad) < f.edge) & (np.abs(cb) < f.edge)
        return (("mask", ok & ((ad == cb) | (diff <= tol))),), skip
    raise AssertionError(name)


# ---------------------------------------------------------------------------------------
# the functions under test (public API only)

CFG = InferenceConfig(tau_infer=TAU, tau_train=TAU_TRAIN)

def _binary(op: str) -> Callable[..., tuple[Any, ...]]:
    fn = getattr(scm, op)
    return lambda x, y, z, w: tuple(fn(x, y))


def _unary(op: str) -> Callable[..., tuple[Any, ...]]:
    fn = getattr(scm, op)
    return lambda x, y, z, w: tuple(fn(x))


CASES: dict[str, Callable[..., tuple[Any, ...]]] = {
    **{op: _binary(op) for op in ("add", "sub", "mul", "div")},
    **{op: _unary(op) for op in ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")},
    "pow": lambda x, y, z, w: tuple(scm.pow(x, y)),
    "decode": lambda x, y, z, w: tuple(decode(x, y)),
    "encode": lambda x, y, z, w: encode(x, y > 1.0),  # normal threshold (JAX DAZ)
    "strict": lambda x, y, z, w: _strict_all(x, y, None),
    "strict_factor": lambda x, y, z, w: _strict_all(x, y, z),
    "renormalize": lambda x, y, z, w: renormalize(x, y, GAMMA),
    "renormalize_g0": lambda x, y, z, w: renormalize(x, y, 0.0),
    "proj_eq": lambda x, y, z, w: (projectively_equal(x, y, z, w, atol=ATOL),),
    "proj_eq_default": lambda x, y, z, w: (projectively_equal(x, y, z, w),),
}


def _strict_all(x: Any, y: Any, z: Any) -> tuple[Any, ...]:
    factors = None if z is None else [z]
    r = strict_inference(x, y, config=CFG, validity_factors=factors, validity_taus=TAU_V)
    return r[0], r[1], r[2], r.fault_mask, r.semantic_bottom_mask


# ---------------------------------------------------------------------------------------
# backend plumbing: arrays from bit patterns and back, execution modes


def _to_backend(backend: Any, f: Fmt, bits: np.ndarray) -> Any:
    name = backend.name
    if name == "numpy":
        return bits.view(np.float16).copy()
    if name == "torch":
        import torch

        t = torch.from_numpy(bits.view(np.int16).copy())
        return t.view(torch.float16 if f.name == "float16" else torch.bfloat16)
    if name == "jax":
        import jax
        import jax.numpy as jnp

        return jax.lax.bitcast_convert_type(jnp.asarray(bits), getattr(jnp, f.name))
    raise AssertionError(name)


def _from_backend(backend: Any, f: Fmt, a: Any) -> np.ndarray:
    """float64 values (exact) of a half result, or a bool mask."""
    name = backend.name
    if name == "torch":
        import torch

        if a.dtype == torch.bool:
            return a.numpy().copy()
        assert a.dtype == (torch.float16 if f.name == "float16" else torch.bfloat16), a.dtype
        return f.from_bits(a.view(torch.int16).numpy().view(np.uint16))
    if name == "jax":
        import jax
        import jax.numpy as jnp

        if a.dtype == jnp.bool_:
            return np.asarray(a).copy()
        assert a.dtype == getattr(jnp, f.name), a.dtype
        return f.from_bits(np.asarray(jax.lax.bitcast_convert_type(a, jnp.uint16)))
    a = np.asarray(a)
    if a.dtype == bool:
        return a.copy()
    assert a.dtype == np.float16, a.dtype
    return f.from_bits(a.view(np.uint16))


MODES = {"numpy": ("eager",), "torch": ("eager", "fused", "compile"), "jax": ("eager", "jit")}


def _skip_unsupported(backend: Any, dtype: str) -> None:
    if backend.name == "strict":
        pytest.skip("array-api-strict has no 16-bit floating dtypes (genuine limitation)")
    if backend.name == "numpy" and dtype == "bfloat16":
        pytest.skip("numpy has no bfloat16 (ml_dtypes arrays are rejected by design)")
    if backend.name not in MODES:
        pytest.skip(f"no half-precision plumbing for backend {backend.name}")


_RESULTS: dict[tuple[str, str, str, str], tuple[np.ndarray, ...]] = {}


def run_case(backend: Any, dtype: str, mode: str, name: str,
             fuse_all: Callable[[], Any]) -> tuple[np.ndarray, ...]:
    """Outputs of ``CASES[name]`` as float64/bool numpy arrays (cached per mode)."""
    key = (backend.name, dtype, mode, name)
    if key in _RESULTS:
        return _RESULTS[key]
    f = FORMATS[dtype]
    bits = make_inputs(f, seed=10 if dtype == "float16" else 11)
    args = [_to_backend(backend, f, bits[k]) for k in "xyzw"]
    fn = CASES[name]
    if mode == "compile":
        import torch

        fn = torch.compile(_own_code(fn, name), fullgraph=True, dynamic=False)
    elif mode == "jit":
        import jax

        fn = jax.jit(fn)
    if mode == "fused":
        with fuse_all():
            out = fn(*args)
    else:
        out = fn(*args)
    res = tuple(_from_backend(backend, f, o) for o in out)
    _RESULTS[key] = res
    return res


def _own_code(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` behind a wrapper with a code object of its own: the cases share lambdas,
    and dynamo keys its cache on the code object (a user's functions are distinct)."""

    def call(x: Any, y: Any, z: Any, w: Any) -> Any:
        return fn(x, y, z, w)

    code = call.__code__.replace(co_name=f"case_{name}")
    return types.FunctionType(code, call.__globals__, code.co_name, None, call.__closure__)


@pytest.fixture
def fuse_all(backend: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """A context in which the torch adapter fuses (inductor) every kernel call."""
    import contextlib

    @contextlib.contextmanager
    def ctx() -> Any:
        backend.fuse(lambda: None)  # create the fuser
        fuser = backend._fuser
        assert fuser.enabled, "ZPML_TORCH_FUSE=0 is set: fusion cannot be tested"
        with monkeypatch.context() as m:
            m.setattr(fuser, "min_numel", 1)
            yield
        assert fuser.compiled_kernels(), "nothing was fused"

    return ctx


# ---------------------------------------------------------------------------------------
# comparisons


def _ulps(f: Fmt, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in half-precision ulps (both finite, representable)."""
    sp = np.ldexp(1.0, np.maximum(np.frexp(np.maximum(np.abs(a), np.abs(b)))[1],
                                  f.emin + 1) - f.p)
    return np.abs(a - b) / sp


def _same(kind: str, f: Fmt, got: np.ndarray, want: np.ndarray, where: str,
          ftz: bool = False) -> None:
    assert got.shape == want.shape, where
    if kind == "mask":
        bad = got != want
        assert not bad.any(), (f"{where}: masks differ at {np.flatnonzero(bad)[:8]} "
                               f"(got {got[bad][:8]}, want {want[bad][:8]})")
        return
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), f"{where}: NaN positions differ at " \
        f"{np.flatnonzero(nan_g != nan_w)[:8]}"
    ok = ~nan_g
    g, e = got[ok], want[ok]
    if ftz:  # JAX flushes bfloat16 (= float32) subnormal results
        g = np.where((np.abs(e) < f.tiny) & (g == 0), e, g)
    if kind == "exact":
        bad = (g != e) | (np.signbit(g) != np.signbit(e))
    else:
        inf_bad = np.isinf(g) | np.isinf(e)
        bad = inf_bad | (np.where(inf_bad, 0.0, _ulps(f, g, e)) > 1.0)
        bad |= (g == 0) & (e == 0) & (np.signbit(g) != np.signbit(e))
    assert not bad.any(), (f"{where}: values differ at {np.flatnonzero(bad)[:8]}: "
                           f"got {g[bad][:6]}, want {e[bad][:6]}")


# ---------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", list(CASES))
def test_eager_matches_oracle(backend, dtype, name, fuse_all):
    _skip_unsupported(backend, dtype)
    f = FORMATS[dtype]
    bits = make_inputs(f, seed=10 if dtype == "float16" else 11)
    vals = [f.from_bits(bits[k]) for k in "xyzw"]
    with np.errstate(all="ignore"):
        want, skip = oracle(name, f, *vals)
    got = run_case(backend, dtype, "eager", name, fuse_all)
    ftz = backend.name == "jax" and dtype == "bfloat16"
    for i, ((kind, w), g) in enumerate(zip(want, got, strict=True)):
        _same(kind, f, g[~skip], w[~skip], f"{backend.name} {dtype} {name}[{i}] vs oracle", ftz)


@pytest.mark.parametrize("mode", ["fused", "compile", "jit"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", list(CASES))
def test_compiled_matches_eager(backend, dtype, name, mode, fuse_all):
    """Fused (inductor), ``torch.compile(fullgraph=True)`` and ``jax.jit`` give the eager
    masks bit for bit, and the eager values (bit for bit for the correctly rounded ops)."""
    _skip_unsupported(backend, dtype)
    if mode not in MODES[backend.name]:
        pytest.skip(f"{mode} is not a {backend.name} execution mode")
    f = FORMATS[dtype]
    eager = run_case(backend, dtype, "eager", name, fuse_all)
    comp = run_case(backend, dtype, mode, name, fuse_all)
    vals = [f.from_bits(make_inputs(f, seed=10 if dtype == "float16" else 11)[k]) for k in "xyzw"]
    with np.errstate(all="ignore"):
        kinds = [k for k, _ in oracle(name, f, *vals)[0]]
    for i, (kind, e, c) in enumerate(zip(kinds, eager, comp, strict=True)):
        _same(kind, f, c, e, f"{backend.name} {dtype} {name}[{i}] {mode} vs eager")


def test_inputs_cover_both_sides_of_every_edge():
    """The crafted inputs hit both sides of the overflow edges (so the tests can fail)."""
    for f in FORMATS.values():
        bits = make_inputs(f, seed=10 if f.name == "float16" else 11)
        x, y, z, w = (f.from_bits(bits[k]) for k in "xyzw")
        with np.errstate(all="ignore"):
            for name in ("add", "mul", "div", "decode", "strict", "proj_eq"):
                (outs, _) = oracle(name, f, x, y, z, w)
                masks = [o for k, o in outs if k == "mask"]
                m = masks[0]
                fin = np.isfinite(x) & np.isfinite(y)
                assert (m & fin).sum() > 20 and (~m & fin).sum() > 20, (f.name, name)
            # near-edge elements exist for mul and div: |x·y| and |x|/y² within 1% of edge
            assert (np.abs(np.abs(x * y) / f.edge - 1) < 0.01).sum() > 100, f.name
            assert (np.abs(np.abs(x) / (y * y) / f.edge - 1) < 0.01).sum() > 100, f.name


def test_oracle_rounding_matches_numpy_float16():
    """The oracle's own rounding agrees with numpy's float64 → float16 conversion."""
    rng = np.random.default_rng(3)
    v = rng.standard_normal(20000) * 2.0 ** rng.integers(-30, 18, 20000)
    with np.errstate(over="ignore"):
        want = v.astype(np.float16).astype(np.float64)
    np.testing.assert_array_equal(F16.rnd(v), want)
