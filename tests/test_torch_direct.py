"""The torch fast path without numba, and the fuser's direct plans (``_torch_direct``).

Without ``zpml-core[fast]`` the torch adapter hands plain CPU tensors to the op's own
array-API kernel through the inductor fuser, and once a kernel copy has compiled, calls
its compiled graph directly behind Dynamo's guard. Both are held here to the
specification — the array-API kernel called directly and eagerly — bit for bit: masks
equal, values bitwise (NaN payloads and signed zeros included), on every pair of edge
values and on seeded random bit patterns over the whole exponent range, below and above
the fusion threshold. Then: the direct plan is really taken; every call its guard
rejects (another dtype, rank, size 1, strides, aliasing, grad mode, inference mode,
thread count, new thresholds) still returns the specification's bits; graphs that do
not qualify get no plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from conftest import requested_backends

if "torch" not in requested_backends()[0]:
    pytest.skip("torch not requested", allow_module_level=True)
torch = pytest.importorskip("torch")

import array_api_compat.torch as compat  # noqa: E402
from zpml_backends import _fused, _torch_direct  # noqa: E402

from zpml_core import _scm_real, inference, scm  # noqa: E402
from zpml_core._registry import get_backend_by_name  # noqa: E402
from zpml_core._xp import consts  # noqa: E402

SEED = 20261207
N = 20_000  # above the fuser's threshold (8192), so kernels compile
_INT = {torch.float32: torch.int32, torch.float64: torch.int64}


@pytest.fixture
def be(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The torch adapter as it is without numba (``zpml-core[fast]`` not installed)."""
    b = get_backend_by_name("torch")
    monkeypatch.setitem(_fused._STATE, "numba", None)
    monkeypatch.setitem(_fused._STATE, "error", "numba switched off by the test")
    monkeypatch.setattr(b, "_fused", None)
    # (numpy's adapter would cache numba's absence too: restored afterwards)
    monkeypatch.setattr(get_backend_by_name("numpy"), "_fused", None)
    # the adapter's fuser starts empty (what other tests compiled, and in which grad
    # mode, stays out) and gets its state back afterwards; the object itself stays, as
    # the adapter's forward-only twin shares it
    monkeypatch.setattr(b._fuser, "_states", {})
    monkeypatch.setattr(b._fuser, "_wrapped", {})
    monkeypatch.setattr(b, "_compiled_ops", {})
    yield b


@pytest.fixture
def plan_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per direct-plan call: whether its guard accepted the call."""
    seen: list[bool] = []
    call = _torch_direct.DirectPlan.__call__

    def spy(self: Any, arrays: Any, static: Any) -> Any:
        out = call(self, arrays, static)
        seen.append(out is not None)
        return out

    monkeypatch.setattr(_torch_direct.DirectPlan, "__call__", spy)
    return seen


def _edges(dtype: Any) -> np.ndarray:
    dt = np.dtype("float32" if dtype == torch.float32 else "float64")
    fi = np.finfo(dt)
    f = dt.type
    tiny, mx, inf = f(fi.smallest_normal), f(fi.max), f(np.inf)
    st = f(np.ldexp(1.0, int(np.log2(float(tiny))) // 2))  # sqrt(tiny)
    pos = [f(0.0), f(fi.smallest_subnormal), np.nextafter(tiny, f(0.0)), tiny,
           np.nextafter(st, f(0.0)), st, np.nextafter(st, inf), f(1.0),
           np.nextafter(f(1.0), inf), f(88.72284), f(709.782712893384), f(3.0),
           np.nextafter(mx, f(0.0)), mx, inf]
    return np.array(pos + [-v for v in pos] + [f(np.nan)], dtype=dt)


def operands(dtype: Any, n: int = N) -> tuple[Any, Any]:
    """Every pair of edge values, then seeded random bit patterns, ``n`` in all."""
    e = _edges(dtype)
    ex, ey = np.meshgrid(e, e, indexing="ij")
    rng = np.random.default_rng(SEED)
    u = np.uint32 if dtype == torch.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(u).max, size=(2, n), dtype=u, endpoint=True)
    x = np.concatenate([ex.ravel(), bits[0].view(e.dtype)])[:n]
    y = np.concatenate([ey.ravel(), bits[1].view(e.dtype)])[:n]
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def same(got: Any, want: Any) -> bool:
    if got.dtype != want.dtype or got.shape != want.shape:
        return False
    if got.is_floating_point():
        return bool(torch.equal(got.view(_INT[got.dtype]), want.view(_INT[want.dtype])))
    return bool(torch.equal(got, want))


def assert_same(got: tuple[Any, ...], want: tuple[Any, ...], what: str) -> None:
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert same(g, w), f"{what}: output {i} differs"


def spec_binary(op: str, x: Any, y: Any, be: Any) -> tuple[Any, Any]:
    extra = {"subtract": op == "sub"} if op in ("add", "sub") else {}
    kernels: dict[str, Callable[..., Any]] = {
        "add": _scm_real._k_add, "sub": _scm_real._k_add, "mul": _scm_real._k_mul,
        "div": _scm_real._k_div}
    kernel = kernels[op]
    out: tuple[Any, Any] = kernel(x, y, None, None, xp=compat, be=be, **extra)
    return out


def spec_unary(op: str, x: Any, be: Any) -> tuple[Any, Any]:
    out: tuple[Any, Any]
    if op in ("sin", "cos", "tan"):
        out = _scm_real._k_trig(x, None, xp=compat, be=be, fn=op)
    else:
        out = getattr(_scm_real, f"_k_{op}")(x, None, xp=compat, be=be)
    return out


def public(op: str) -> Callable[..., Any]:
    fn: Callable[..., Any] = getattr(scm, op)
    return fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops_bit_identical(be: Any, plan_calls: list[bool], op: str, dtype: Any) -> None:
    x, y = operands(dtype)
    want = spec_binary(op, x, y, be)
    for _ in range(3):  # compiles, builds the plan, takes the plan
        assert_same(tuple(public(op)(x, y)), want, op)
    assert any(plan_calls), "the direct plan was never taken"
    small_x, small_y = x[:1000], y[:1000]  # below the threshold, the same plan serves
    assert_same(tuple(public(op)(small_x, small_y)), spec_binary(op, small_x, small_y, be),
                f"{op} small")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("op", ["neg", "inv", "sqrt", "log", "exp", "sin"])
def test_unary_ops_bit_identical(be: Any, op: str, dtype: Any) -> None:
    x, y = operands(dtype, 33_000)  # the library functions fuse from 4x the threshold
    for a in (x, y):
        want = spec_unary(op, a, be)
        for _ in range(3):
            assert_same(tuple(public(op)(a)), want, op)


CONFIGS = [
    inference.InferenceConfig(),
    inference.InferenceConfig(tau_infer=1e-6, tau_train=1e-4),
    inference.InferenceConfig(tau_infer=1e-40, tau_train=1e-30),  # subnormal in float32
    inference.InferenceConfig(tau_infer=0.75, tau_train=1e30),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_strict_bit_identical_across_thresholds(be: Any, plan_calls: list[bool],
                                                dtype: Any) -> None:
    """Each configuration after the others: the plan's guard compares the thresholds the
    trace specialised on, and a new configuration takes Dynamo's path."""
    P, Q = operands(dtype)
    c = consts(compat, dtype)
    for cfg in CONFIGS * 2:
        thr, tau, tau_train = inference._thresholds(c, cfg)
        want = inference._k_strict(P, Q, (), xp=compat, be=be, thr=thr, tau=tau,
                                   tau_train=tau_train, factor_taus=())
        for _ in range(2):
            res = inference.strict_inference(P, Q, config=cfg)
            assert_same((*res, res.fault_mask, res.semantic_bottom_mask), tuple(want),
                        f"strict {cfg}")
    assert any(plan_calls)


def test_guard_rejections_keep_the_specification(be: Any, plan_calls: list[bool]) -> None:
    x, y = operands(torch.float64)
    for _ in range(3):
        scm.div(x, y)
    assert plan_calls and plan_calls[-1], "the direct plan was not taken"
    threads = torch.get_num_threads()
    x2 = x.reshape(100, -1)
    cases: list[tuple[str, Callable[[], Any], Any, Any]] = [
        ("float32", lambda: None, x.float(), y.float()),
        ("2-d", lambda: None, x2, y.reshape(100, -1)),
        ("one element", lambda: None, x[:1], y[:1]),
        ("two elements", lambda: None, x[:2], y[:2]),
        ("strided", lambda: None, x[::2], y[::2]),
        ("transposed", lambda: None, x2.t(), y.reshape(100, -1).t()),
        ("aliased", lambda: None, x, x),
        ("other size", lambda: None, x[:12345], y[:12345]),
    ]
    for name, _, a, b in cases:
        assert_same(tuple(scm.div(a, b)), spec_binary("div", a, b, be), name)
    with torch.no_grad():
        assert_same(tuple(scm.div(x, y)), spec_binary("div", x, y, be), "no_grad")
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        assert_same(tuple(scm.div(xi, yi)), spec_binary("div", xi, yi, be), "inference")
    try:
        torch.set_num_threads(max(1, threads % 2 + 1))
        assert_same(tuple(scm.div(x, y)), spec_binary("div", x, y, be), "threads")
    finally:
        torch.set_num_threads(threads)
    assert not all(plan_calls), "no call was rejected by the plan's guard"


def test_aliased_first_trace_gets_no_plan(be: Any) -> None:
    """A graph traced with ``x is y`` takes one input for both: no plan; distinct
    operands afterwards fail its guard, recompile and get a plan of their own, and the
    aliased call still gets the specification's bits."""
    from zpml_backends._torch_fuse import TorchFuser

    fuser = TorchFuser()
    run = fuser(_scm_real._k_mul)
    x, y = operands(torch.float64)
    for _ in range(2):
        run(x, x, None, None, xp=compat, be=be)
    assert not fuser.plans(_scm_real._k_mul, (x, x, None, None), {"xp": compat, "be": be})
    for _ in range(2):  # Dynamo's guard (x is y) rejects these: a recompile, with a plan
        got = run(x, y, None, None, xp=compat, be=be)
        assert_same(tuple(got), spec_binary("mul", x, y, be), "distinct after aliased")
    plans = fuser.plans(_scm_real._k_mul, (x, y, None, None), {"xp": compat, "be": be})
    assert plans is not None and len(plans) == 1
    got = run(x, x, None, None, xp=compat, be=be)  # aliased again: through Dynamo
    assert_same(tuple(got), spec_binary("mul", x, x, be), "aliased again")


def _k_pair(pair: tuple[Any, Any], *, xp: Any, be: Any) -> tuple[Any, Any]:
    a, b = pair
    return a * b, a == b


def test_tuple_inputs_get_no_plan() -> None:
    """A kernel taking its tensors inside a tuple compiles but gets no plan; results
    unchanged."""
    from zpml_backends._torch_fuse import TorchFuser

    fuser = TorchFuser()
    b = get_backend_by_name("torch")
    run = fuser(_k_pair)
    x, y = operands(torch.float64)
    want = _k_pair((x, y), xp=compat, be=b)
    with torch.no_grad():
        for _ in range(3):
            assert_same(tuple(run((x, y), xp=compat, be=b)), want, "pair")
    assert fuser.compiled_kernels() == ["_k_pair"]
    assert all(not plans for plans in fuser._states["_k_pair"].plans.values())


def test_build_refuses_a_mismatch() -> None:
    """A plan whose result differs from Dynamo's on the compiling call is not kept."""
    from zpml_backends._torch_fuse import TorchFuser

    fuser = TorchFuser()
    b = get_backend_by_name("torch")
    x, y = operands(torch.float64)
    calls: list[Any] = []
    real = _torch_direct.build

    def wrong(compiled: Any, captured: Any, arrays: Any, static: Any, expected: Any) -> Any:
        flipped = (expected[0], ~expected[1])  # Dynamo's result with the mask flipped
        plan = real(compiled, captured, arrays, static, flipped)
        calls.append(plan)
        return plan

    import zpml_backends._torch_fuse as tf

    orig = tf.build_plan
    tf.build_plan = wrong
    try:
        run = fuser(_scm_real._k_div)
        with torch.no_grad():
            for _ in range(2):
                got = run(x, y, None, None, xp=compat, be=b)
    finally:
        tf.build_plan = orig
    assert calls == [None]
    assert_same(tuple(got), spec_binary("div", x, y, b), "after a refused plan")


def test_inductor_graph_search_is_bounded() -> None:
    assert _torch_direct._inductor_graph(lambda: None) is None
    loop: list[Any] = []
    loop.append(loop)
    assert _torch_direct._inductor_graph(loop) is None


def test_declines_what_the_public_path_must_see(be: Any) -> None:
    """Strict inference on operands that require grad (the public function gates the
    decoded value), non-CPU, sparse and negative-bit operands take the array-API path."""
    base = torch.linspace(-2.0, 2.0, 12, dtype=torch.float64)
    g = base.clone().requires_grad_()
    thresholds = lambda c: (1e-6, 1e-6, None)  # noqa: E731
    assert be.fast("strict", g, base, thresholds) is None
    assert be.fast("strict", base, g, thresholds) is None
    r = inference.strict_inference(g, base + 3.0)
    r.decoded.sum().backward()
    assert g.grad is not None
    for x, y in ((base.to("meta"), base.to("meta")), (base.to_sparse(), base.to_sparse()),
                 (torch._neg_view(base), base), (base.half(), base.half()),
                 (base, base.float()), (base, base[:1])):
        assert be.fast("div", x, y) is None
    assert be.fast("div", base, base) is not None  # and plain ones take it


def test_each_recompiled_graph_gets_its_plan(be: Any, plan_calls: list[bool]) -> None:
    """Grad mode is part of Dynamo's guard: the graph compiled with it on serves no
    ``no_grad`` call; the recompile under ``no_grad`` gets a plan of its own, and from
    then on both modes are served by plans."""
    x, y = operands(torch.float64)
    want = spec_binary("div", x, y, be)
    for _ in range(2):
        assert_same(tuple(scm.div(x, y)), want, "grad mode")
    with torch.no_grad():
        for _ in range(2):
            assert_same(tuple(scm.div(x, y)), want, "no_grad")
    plan_calls.clear()
    assert_same(tuple(scm.div(x, y)), want, "grad mode again")
    with torch.no_grad():
        assert_same(tuple(scm.div(x, y)), want, "no_grad again")
    assert plan_calls.count(True) == 2, plan_calls
    plans = be._fuser.plans(_scm_real._k_div, (x, y, None, None), {"xp": compat, "be": be})
    assert plans is not None and len(plans) == 2
