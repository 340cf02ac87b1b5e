"""The fused kernels (``zpml-core[fast]``, ``zpml_backends._fused``) equal the array-API
kernels bit for bit.

Exactness guard: for every fused op, both fused dtypes (float32, float64) and both
adapters that run them (numpy on ndarrays, torch on zero-copy views of CPU tensors), the
adapter's fast path is compared with the array-API kernel — the specification, called
directly and eagerly — on

* 1e6 operands over the whole exponent range: uniformly random bit patterns (every
  exponent equally likely, ±inf and NaN payloads included) and random pairs of nearby
  magnitudes (sums that cancel, quotients near 1);
* every edge value and every pair of edge values: ±0, the smallest and largest
  subnormals, tiny ± ulp, sqrt(tiny) ± ulp, 1 ± ulp, max, max − ulp, exp's overflow
  border ± ulp, ±inf, NaN;
* the division guard's border ``|x| = fl(y·y)·ovf`` ± 1 ulp (``div``) and strict
  inference's ``|P| = fl(|Q|·ovf)`` ± 1 ulp, for edge and random divisors;

masks equal, values bitwise equal (signed zeros and NaN payloads included). Then: the
public ops really take the fused path for qualifying operands and decline everything
else (the result is the array-API path's), and ``import zpml_core`` loads no numba.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import requested_backends

pytest.importorskip("numba")

import zpml_core  # noqa: F401
from zpml_core import _registry, _scm_real, inference, scm
from zpml_core._registry import get_backend_by_name
from zpml_core._xp import consts

BACKENDS = [b for b in ("numpy", "torch") if b in requested_backends()[0]]
DTYPES = ("float32", "float64")
BINARY = ("add", "sub", "mul", "div")
UNARY = ("neg", "inv", "sqrt", "log", "exp", "sin", "cos", "tan")
N_RANDOM = 1_000_000
SEED = 20261206

_UINT = {"float32": np.uint32, "float64": np.uint64}


def _edges(dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    f = dt.type
    tiny, mx = f(fi.smallest_normal), f(fi.max)
    inf = f(np.inf)
    st = f(np.ldexp(1.0, int(np.log2(float(tiny))) // 2))  # sqrt(tiny), exact
    exp_max = f(consts(_np_ns(), _np_ns().float32 if dtype == "float32" else
                       _np_ns().float64).exp_max)
    pos = [f(0.0), f(fi.smallest_subnormal), np.nextafter(tiny, f(0.0)), tiny,
           np.nextafter(tiny, inf), np.nextafter(st, f(0.0)), st, np.nextafter(st, inf),
           np.nextafter(f(1.0), f(0.0)), f(1.0), np.nextafter(f(1.0), inf), f(0.5), f(2.0),
           f(3.0), np.nextafter(exp_max, f(0.0)), exp_max, np.nextafter(exp_max, inf),
           np.nextafter(mx, f(0.0)), mx, inf]
    vals = pos + [-v for v in pos] + [f(np.nan)]
    return np.array(vals, dtype=dt)


def _np_ns() -> Any:
    import array_api_compat.numpy as xnp

    return xnp


def _random(dtype: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` operand pairs: half random bit patterns, half nearby magnitudes."""
    dt = np.dtype(dtype)
    with np.errstate(all="ignore"):  # casts overflow to ±inf on purpose
        return _random_pairs(dt, dtype, n, rng)


def _random_pairs(dt: np.dtype, dtype: str, n: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    half = n // 2
    u = _UINT[dtype]
    bits = rng.integers(0, np.iinfo(u).max, size=(2, half), dtype=u, endpoint=True)
    x1, y1 = bits.view(dt)
    fi = np.finfo(dt)
    lo, hi = np.log2(float(fi.smallest_subnormal)), np.log2(float(fi.max))
    mag = np.exp2(rng.uniform(lo, hi, half))
    x2 = (mag * rng.choice([-1.0, 1.0], half)).astype(dt)
    y2 = (mag * rng.uniform(0.5, 2.0, half) * rng.choice([-1.0, 1.0], half)).astype(dt)
    return np.concatenate([x1, x2]), np.concatenate([y1, y2])


def _guard_borders(dtype: str, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x ∈ {b − ulp, b, b + ulp}`` (both signs) with ``b = fl(fl(y·y)·ovf)``."""
    dt = np.dtype(dtype)
    ovf = dt.type(consts(_np_ns(), getattr(_np_ns(), dtype)).ovf)
    with np.errstate(all="ignore"):
        b = (ys * ys) * ovf
    inf = dt.type(np.inf)
    xs = np.concatenate([np.nextafter(b, -inf), b, np.nextafter(b, inf)])
    xs = np.concatenate([xs, -xs])
    return xs, np.tile(ys, 6)


def _strict_borders(dtype: str, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``|P| ∈ {b − ulp, b, b + ulp}`` with ``b = fl(|Q|·ovf)``."""
    dt = np.dtype(dtype)
    ovf = dt.type(consts(_np_ns(), getattr(_np_ns(), dtype)).ovf)
    with np.errstate(all="ignore"):
        b = np.abs(qs) * ovf
    inf = dt.type(np.inf)
    ps = np.concatenate([np.nextafter(b, -inf), b, np.nextafter(b, inf)])
    ps = np.concatenate([ps, -ps])
    return ps, np.tile(qs, 6)


def _operands(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):  # the borders include overflow on purpose
        return _build_operands(dtype)


def _build_operands(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED + (0 if dtype == "float64" else 1))
    e = _edges(dtype)
    ex, ey = np.meshgrid(e, e, indexing="ij")
    rx, ry = _random(dtype, N_RANDOM, rng)
    ys = np.concatenate([e, ry[:2000]])
    bx, by = _guard_borders(dtype, ys)
    px, py = _strict_borders(dtype, ys)
    return (np.ascontiguousarray(np.concatenate([ex.ravel(), rx, bx, px])),
            np.ascontiguousarray(np.concatenate([ey.ravel(), ry, by, py])))


_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def operands(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    if dtype not in _CACHE:
        _CACHE[dtype] = _operands(dtype)
    return _CACHE[dtype]


class Lib:
    """One adapter's view of the test: conversion, the namespace, bit comparison."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.be = get_backend_by_name(name)
        self.xp = self.be.namespace()

    def arr(self, a: np.ndarray) -> Any:
        if self.name == "torch":
            import torch

            return torch.from_numpy(a.copy())
        return a.copy()

    def np(self, a: Any) -> np.ndarray:
        return np.asarray(self.be.to_numpy(a))

    def run_kernel(self, fn: Callable[[], Any]) -> Any:
        with np.errstate(all="ignore"):
            return fn()


def assert_same(name: str, got: Any, want: Any, lib: Lib) -> None:
    g, w = lib.np(got), lib.np(want)
    assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, w.dtype, g.shape, w.shape)
    if g.dtype == np.bool_:
        bad = np.flatnonzero(g != w)
    else:
        u = _UINT[str(g.dtype)]
        bad = np.flatnonzero(g.view(u) != w.view(u))
    assert bad.size == 0, f"{name}: {bad.size} mismatches, first at {bad[:5]}: got {g[bad[:5]]}, want {w[bad[:5]]}"


@pytest.fixture(params=BACKENDS)
def lib(request: pytest.FixtureRequest) -> Lib:
    return Lib(request.param)


_KERNEL = {"add": _scm_real._k_add, "sub": _scm_real._k_add, "mul": _scm_real._k_mul,
           "div": _scm_real._k_div}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", BINARY)
def test_binary_bit_identical(lib: Lib, op: str, dtype: str) -> None:
    xs, ys = operands(dtype)
    x, y = lib.arr(xs), lib.arr(ys)
    fused = lib.be.fast(op, x, y)
    assert fused is not None, "the fast path declined plain contiguous operands"
    extra = {"subtract": op == "sub"} if op in ("add", "sub") else {}
    want = lib.run_kernel(lambda: _KERNEL[op](x, y, None, None, xp=lib.xp, be=lib.be, **extra))
    assert_same(f"{op} value", fused[0], want[0], lib)
    assert_same(f"{op} bottom", fused[1], want[1], lib)
    # and with the roles swapped (the pair grid is symmetric, the random half is not)
    fused = lib.be.fast(op, y, x)
    want = lib.run_kernel(lambda: _KERNEL[op](y, x, None, None, xp=lib.xp, be=lib.be, **extra))
    assert_same(f"{op} value (swapped)", fused[0], want[0], lib)
    assert_same(f"{op} bottom (swapped)", fused[1], want[1], lib)


def _unary_kernel(op: str) -> Callable[..., Any]:
    if op in ("sin", "cos", "tan"):
        return lambda x, m, **kw: _scm_real._k_trig(x, m, fn=op, **kw)
    return getattr(_scm_real, f"_k_{op}")  # type: ignore[no-any-return]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", UNARY)
def test_unary_bit_identical(lib: Lib, op: str, dtype: str) -> None:
    xs, ys = operands(dtype)
    for a in (xs, ys):
        x = lib.arr(a)
        fused = lib.be.fast(op, x)
        assert fused is not None, "the fast path declined a plain contiguous operand"
        want = lib.run_kernel(lambda x=x: _unary_kernel(op)(x, None, xp=lib.xp, be=lib.be))
        assert_same(f"{op} value", fused[0], want[0], lib)
        assert_same(f"{op} bottom", fused[1], want[1], lib)


CONFIGS = [
    inference.InferenceConfig(),
    inference.InferenceConfig(tau_infer=1e-6, tau_train=1e-4),
    inference.InferenceConfig(tau_infer=1e-40, tau_train=1e-30),  # subnormal in float32
    inference.InferenceConfig(tau_infer=1.0, tau_train=1.0),  # no gap band
    inference.InferenceConfig(tau_infer=0.75, tau_train=1e30),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ci", range(len(CONFIGS)))
def test_strict_bit_identical(lib: Lib, dtype: str, ci: int) -> None:
    cfg = CONFIGS[ci]
    xs, ys = operands(dtype)
    P, Q = lib.arr(xs), lib.arr(ys)
    c = consts(lib.xp, getattr(lib.xp, dtype))
    thr, tau, tau_train = inference._thresholds(c, cfg)
    fused = lib.be.fast("strict", P, Q, lambda cc: inference._thresholds(cc, cfg))
    assert fused is not None
    want = lib.run_kernel(lambda: inference._k_strict(
        P, Q, (), xp=lib.xp, be=lib.be, thr=thr, tau=tau, tau_train=tau_train,
        factor_taus=()))
    for name, g, w in zip(("decoded", "bottom", "gap", "fault", "semantic"), fused, want,
                          strict=True):
        assert_same(f"strict {name}", g, w, lib)
    # the public function returns the fused result
    res = inference.strict_inference(P, Q, config=cfg)
    for g, w in zip((*res, res.fault_mask, res.semantic_bottom_mask), fused, strict=True):
        assert_same("strict_inference", g, w, lib)


# ---------------------------------------------------------------------------------------
# routing: qualifying operands take the fused path, everything else declines


def test_public_ops_take_the_fused_path(lib: Lib, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = type(lib.be).fast

    def spy(self: Any, op: str, *args: Any) -> Any:
        out = real(self, op, *args)
        calls.append(op if out is not None else f"declined {op}")
        return out

    monkeypatch.setattr(type(lib.be), "fast", spy)
    x = lib.arr(np.linspace(-3.0, 3.0, 50))
    y = lib.arr(np.linspace(1.0, 2.0, 50))
    for op in BINARY:
        getattr(scm, op)(x, y)
    for op in UNARY:
        getattr(scm, op)(x)
    inference.strict_inference(x, y)
    assert calls == [*BINARY, *UNARY, "strict"]


def _decline_cases_numpy() -> list[tuple[str, Callable[[], tuple[Any, ...]]]]:
    base = np.linspace(-2.0, 2.0, 12)
    big_endian = base.astype(">f8")
    raw = np.zeros(12 * 8 + 1, np.uint8)
    unaligned = raw[1:].view(np.float64)
    unaligned[:] = base
    return [
        ("float16", lambda: (base.astype(np.float16), base.astype(np.float16))),
        ("int64", lambda: (np.arange(12), np.arange(12))),
        ("complex", lambda: (base.astype(complex), base.astype(complex))),
        ("mixed dtypes", lambda: (base, base.astype(np.float32))),
        ("broadcast", lambda: (base, base[:1])),
        ("strided", lambda: (np.linspace(-2, 2, 24)[::2], base)),
        ("fortran", lambda: (np.asfortranarray(base.reshape(3, 4)),
                             np.asfortranarray(base.reshape(3, 4)))),
        ("big-endian", lambda: (big_endian, big_endian)),
        ("unaligned", lambda: (unaligned, unaligned)),
    ]


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (TypeError, ValueError) as exc:
        return exc


def test_numpy_declines_and_results_unchanged() -> None:
    if "numpy" not in BACKENDS:
        pytest.skip("numpy not requested")
    be = get_backend_by_name("numpy")
    for name, make in _decline_cases_numpy():
        x, y = make()
        for op in ("div", "mul"):
            if not (type(x) is np.ndarray and type(y) is np.ndarray):
                continue
            assert be.fast(op, x, y) is None, name
            # the public op's outcome (result or error) is the array-API path's
            fn = getattr(scm, op)
            got = _outcome(lambda fn=fn, x=x, y=y: fn(x, y))
            want = _outcome(lambda fn=fn, x=x, y=y: fn(x, y, mask_x=np.zeros(np.shape(x), bool)))
            assert type(got) is type(want), name
            if isinstance(got, BaseException):
                assert str(got) == str(want), name
            else:
                np.testing.assert_array_equal(got.value, want.value, err_msg=name)
                np.testing.assert_array_equal(got.bottom, want.bottom, err_msg=name)


def test_strict_masks_own_their_memory(lib: Lib) -> None:
    """Each mask of the fused strict result is an array of its own: keeping one keeps
    (and ``torch.save`` writes) only its bytes."""
    x = lib.arr(np.linspace(-2.0, 2.0, 64).reshape(8, 8))
    res = lib.be.fast("strict", x, x, lambda c: (1e-6, 1e-6, 1e-4))
    assert res is not None
    if lib.name == "torch":
        for r in res:
            assert r.untyped_storage().nbytes() == r.numel() * r.element_size()
    else:
        for i, a in enumerate(res):
            assert a.base is None or a.base.nbytes == a.nbytes
            for b in res[i + 1:]:
                assert not np.shares_memory(a, b)


def test_numpy_qualifying_shapes() -> None:
    """0-d, empty, n-d and read-only operands qualify and keep their shape."""
    if "numpy" not in BACKENDS:
        pytest.skip("numpy not requested")
    be = get_backend_by_name("numpy")
    ro = np.linspace(0.5, 2.0, 6).reshape(2, 3)
    ro.flags.writeable = False
    for x in (np.array(2.0), np.zeros((0, 3)), np.ones((2, 3, 4), np.float32), ro):
        fused = be.fast("div", x, x)
        assert fused is not None
        assert fused[0].shape == x.shape and fused[0].dtype == x.dtype
        assert type(fused[0]) is np.ndarray and fused[1].dtype == np.bool_
        want = scm.div(x, x, mask_x=np.zeros(x.shape, bool))
        np.testing.assert_array_equal(fused[0], want.value)
        np.testing.assert_array_equal(fused[1], want.bottom)
    with pytest.raises(ValueError, match="tau_infer"):
        inference.strict_inference(np.ones(3, np.float32), np.ones(3, np.float32),
                                   config=inference.InferenceConfig(tau_infer=1e-50))


def test_torch_declines_and_results_unchanged() -> None:
    if "torch" not in BACKENDS:
        pytest.skip("torch not requested")
    import torch

    be = get_backend_by_name("torch")
    base = torch.linspace(-2.0, 2.0, 12, dtype=torch.float64)
    cases: list[tuple[str, Any, Any]] = [
        ("float16", base.half(), base.half()),
        ("requires_grad, broadcast", base.clone().requires_grad_(), base[:1]),
        ("strided", torch.linspace(-2, 2, 24, dtype=torch.float64)[::2], base),
        ("mixed", base, base.float()),
        ("broadcast", base, base[:1]),
        ("neg view", torch._neg_view(base), base),
        ("neg view second", base, torch._neg_view(base)),
        ("expanded", base[:1].expand(12), base),
        ("transposed", base.reshape(3, 4).t(), base.reshape(4, 3)),
        ("meta", base.to("meta"), base.to("meta")),
        ("sparse", base.to_sparse(), base.to_sparse()),
    ]
    for name, x, y in cases:
        assert be.fast("div", x, y) is None, name
    for name, x, y in (("strict requires_grad", base.clone().requires_grad_(), base),
                       ("strict neg view", base, torch._neg_view(base))):
        assert be.fast("strict", x, y, lambda c: (1e-6, 1e-6, None)) is None, name
        # the array-API path's answer, equal to numpy's on the same values
        r = inference.strict_inference(x, y)
        w = inference.strict_inference(x.detach().resolve_neg().numpy().copy(),
                                       y.resolve_neg().numpy().copy())
        for got, want in zip((*r, r.fault_mask, r.semantic_bottom_mask),
                             (*w, w.fault_mask, w.semantic_bottom_mask), strict=True):
            np.testing.assert_array_equal(got.detach().numpy(), want, err_msg=name)
    # transforms and modes decline too
    from torch.utils._python_dispatch import TorchDispatchMode

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            return func(*args, **(kwargs or {}))

    with Mode():
        assert be.fast("div", base, base) is None
    seen: list[Any] = []
    torch.func.vmap(lambda t: seen.append(be.fast("div", t, t)) or t)(base.reshape(3, 4))
    assert seen == [None]
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        assert be.fast("div", base, base) is None
    # under torch.compile the public op is traced, never handed to numba
    f = torch.compile(lambda a, b: scm.div(a, b).value, fullgraph=True, backend="eager")
    np.testing.assert_array_equal(f(base, base).numpy(), scm.div(base, base).value.numpy())
    # a requires_grad operand keeps its graph: the training path (the op's fused autograd
    # Function with the policy gate inside, zpml_backends._torch_autograd_ops) takes it
    g = base.clone().requires_grad_()
    r = be.fast("div", g, base)
    assert r is not None and r[0].grad_fn is not None and not r[1].requires_grad
    scm.div(g, base).value.sum().backward()
    assert g.grad is not None


def test_import_loads_no_numba() -> None:
    code = (
        "import sys, zpml_core, zpml_core.scm, zpml_core.inference\n"
        "bad = [m for m in ('numba', 'zpml_backends._fused') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fast_path_switch() -> None:
    """``ZPML_FAST=0`` registers no fast types (read at import)."""
    code = (
        "import zpml_core._registry as r, zpml_core\n"
        "print(len(r._FAST))\n"
    )
    import os

    off = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env={**os.environ, "ZPML_FAST": "0"})
    on = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                        text=True, env={k: v for k, v in os.environ.items() if k != "ZPML_FAST"})
    assert off.stdout.strip() == "0"
    assert int(on.stdout.strip()) >= 2
    assert _registry.fast_backend(np.ndarray) is not None


def test_kernels_compile_without_a_writable_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """No writable cache location (numba raises "no locator available" at decoration):
    the kernel is compiled per process instead, with the same results."""
    import numba
    from numba.core import caching
    from zpml_backends import _fused

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(cache=True)(lambda a: a)
    k = _fused._build(numba, "div", "d")
    x, y = operands("float64")
    x, y = x[:4096].copy(), y[:4096].copy()
    out, bottom = np.empty_like(x), np.empty(x.shape, bool)
    k(x, y, out, bottom)
    be = get_backend_by_name("numpy")
    with np.errstate(all="ignore"):
        want = _scm_real._k_div(x, y, None, None, xp=_np_ns(), be=be)
    np.testing.assert_array_equal(out.view(np.uint64), want[0].view(np.uint64))
    np.testing.assert_array_equal(bottom, want[1])
