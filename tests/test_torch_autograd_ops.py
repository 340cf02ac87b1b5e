"""The torch training fast path (``zpml_backends._torch_autograd_ops.grad_op``).

Rule under test: for every real SCM op, ``grad_op`` returns the array-API kernel's value
and mask, and its autograd Function gives the gradients of the kernel's autograd graph,
bit for bit (NaN payloads aside), for every input — signed zeros, subnormals, the
smallest normal ± ulp, sqrt(tiny) ± ulp, div's overflow border ``|x| = fl(y·y)·ovf`` ± ulp,
max, ±inf, NaN, all pairs of them and random bit patterns over the whole exponent range
— with cotangents that are themselves arbitrary (−0, NaN, inf), under every gradient
policy (gated afterwards, as the public ops' array-API path does), through the fused
numba loops and through the torch-op fallback. The reference is the kernel itself, run
eagerly with autograd (``_torch_autograd_ref``). Calls that must not qualify return
``None``. The public ops (gate inside the Function): ``test_torch_autograd_public.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import array_api_compat.torch as txp  # noqa: E402
from _torch_autograd_ref import (  # noqa: E402
    DTYPES,
    PATHS,
    A,
    bits_equal,
    cotangents,
    describe,
    gated,
    kernel,
    operands,
    path,
    random_bits,
    smooth,
    xy,
)

from zpml_core import _xp, scm  # noqa: E402
from zpml_core.autodiff.policies import GradientPolicy, gradient_policy  # noqa: E402

pytestmark = pytest.mark.autodiff


def compare(op: str, x0: Any, y0: Any, policies: Any = tuple(GradientPolicy),
            seed: int = 0) -> None:
    """grad_op vs the kernel: value, mask and gradients, for each policy, each
    requires_grad combination and two cotangents."""
    binary = op in A.BINARY_OPS
    needs = [(True, True), (True, False), (False, True)] if binary else [(True, False)]
    cots = cotangents(x0.dtype, x0.numel(), seed)
    for policy in policies:
        for rx, ry in needs:
            for cot in cots:
                cot = cot.reshape(x0.shape)
                x = x0.clone().requires_grad_(rx)
                y = y0.clone().requires_grad_(ry) if binary else None
                wrt = [t for t in (x, y) if t is not None and t.requires_grad]
                with gradient_policy(policy):
                    v1, b1 = kernel(op, x, y)
                    g1 = torch.autograd.grad(gated(v1, b1), wrt, cot)
                    out = A.grad_op(op, x, y)
                    assert out is not None, f"{op} did not qualify"
                    v2, b2 = out
                    g2 = torch.autograd.grad(gated(v2, b2), wrt, cot)
                where = f"{op} {x0.dtype} {policy} requires_grad={(rx, ry)}"
                assert bits_equal(b1, b2), f"mask: {where}"
                assert bits_equal(v1, v2), f"value: {where}: {describe(v1, v2, x, y)}"
                assert not b2.requires_grad and v2.requires_grad
                for i, (a, b) in enumerate(zip(g1, g2, strict=True)):
                    assert bits_equal(a, b), (
                        f"grad {i}: {where}: {describe(a, b, x, y)}")


# ---------------------------------------------------------------------------------------
# the comparator can fail


def test_bits_equal_detects_one_ulp_and_signed_zero() -> None:
    a = torch.tensor([1.0, 0.0, math.nan])
    assert bits_equal(a, a.clone())
    assert bits_equal(a, torch.tensor([1.0, 0.0, -math.nan]))  # NaN payloads aside
    assert not bits_equal(a, torch.tensor([1.0, -0.0, math.nan]))
    up = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    assert not bits_equal(a, torch.tensor([float(up), 0.0, math.nan]))
    assert not bits_equal(a, torch.tensor([1.0, 0.0, 1.0]))


def test_operands_cover_the_div_border() -> None:
    # some pairs sit exactly on |x| = fl(y·y)·ovf and one ulp outside: both sides occur
    x, y = operands(torch.float64)
    _, b = kernel("div", x, y)
    c = _xp.consts(txp, torch.float64)
    fin = torch.isfinite(x) & torch.isfinite(y) & (y * y >= c.tiny)
    on = fin & (x.abs() == (y * y) * c.ovf)
    above = fin & (x.abs() > (y * y) * c.ovf)
    assert bool((on & ~b).any()) and bool((above & b).any())


# ---------------------------------------------------------------------------------------
# bit identity


@pytest.mark.parametrize("dt", DTYPES, ids=str)
@pytest.mark.parametrize("op", A.OPS)
@pytest.mark.parametrize("route", PATHS)
def test_matches_kernel_bit_for_bit(route: str, op: str, dt: Any) -> None:
    x, y = operands(dt)
    with path(route):
        compare(op, x, y)


@pytest.mark.parametrize("shape", [(), (0,), (1,), (7, 33), (2, 3, 5)], ids=str)
@pytest.mark.parametrize("route", PATHS)
def test_shapes(route: str, shape: tuple[int, ...]) -> None:
    n = math.prod(shape)
    with path(route):
        for op in A.OPS:
            x = random_bits(torch.float32, n, 7).reshape(shape)
            y = random_bits(torch.float32, n, 8).reshape(shape)
            compare(op, x, y, policies=[GradientPolicy.PASSTHROUGH])


@pytest.mark.parametrize("dt", DTYPES, ids=str)
@pytest.mark.parametrize("op", A.OPS)
@pytest.mark.parametrize("route", PATHS)
def test_large_multithreaded(route: str, op: str, dt: Any) -> None:
    # above aten's parallel grain (and inductor's fusion threshold, which grad inputs
    # never take), with 2 threads: transcendental values depend on the element's
    # position in aten's vector loops and thread chunks, and must still agree
    n = 150_001
    x = random_bits(dt, n, 11)
    y = torch.randn(n, dtype=dt, generator=torch.Generator().manual_seed(12))
    x[::3] = y[::3] * 20.0  # plenty of ordinary finite values too
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with path(route):
            compare(op, x, y, policies=[GradientPolicy.CLAMP, GradientPolicy.PASSTHROUGH])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("route", PATHS)
def test_same_tensor_twice(route: str) -> None:
    # div(x, x), mul(x, x): both partial derivatives accumulate into x
    x0, _ = operands(torch.float64, n_random=200)
    with path(route):
        for op in A.BINARY_OPS:
            cot = cotangents(torch.float64, x0.numel(), 3)[1]
            x = x0.clone().requires_grad_(True)
            (g1,) = torch.autograd.grad(gated(*kernel(op, x, x)), x, cot)
            (g2,) = torch.autograd.grad(gated(*A.grad_op(op, x, x)), x, cot)
            assert bits_equal(g1, g2), op


@pytest.mark.parametrize("op", A.OPS)
def test_public_op_matches_kernel(op: str) -> None:
    # the public op with grad (wired to the fast path or not) equals the kernel
    x0, y0 = operands(torch.float64, n_random=300)
    binary = op in A.BINARY_OPS
    cot = cotangents(torch.float64, x0.numel(), 5)[0]
    x, y = x0.clone().requires_grad_(True), y0.clone().requires_grad_(True)
    wrt = (x, y) if binary else (x,)
    fn = getattr(scm, op)
    r = fn(x, y) if binary else fn(x)
    g2 = torch.autograd.grad(r.value, wrt, cot)
    v1, b1 = kernel(op, x, y if binary else None)
    g1 = torch.autograd.grad(gated(v1, b1), wrt, cot)
    assert bits_equal(b1, r.bottom) and bits_equal(v1, r.value)
    assert all(bits_equal(a, b) for a, b in zip(g1, g2, strict=True))


# ---------------------------------------------------------------------------------------
# double backward


@pytest.mark.parametrize("route", PATHS)
@pytest.mark.parametrize("op", A.OPS)
def test_gradgradcheck(route: str, op: str) -> None:
    x, y = smooth(op)
    binary = op in A.BINARY_OPS
    inputs = (x.requires_grad_(), y.requires_grad_()) if binary else (x.requires_grad_(),)

    def f(*args: Any) -> Any:
        out = A.grad_op(op, *args) if binary else A.grad_op(op, args[0])
        assert out is not None
        return gated(*out)

    with path(route), gradient_policy(GradientPolicy.PROJECT):
        assert torch.autograd.gradcheck(f, inputs)
        assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("route", PATHS)
@pytest.mark.parametrize("op", A.OPS)
def test_second_derivatives_match_kernel(route: str, op: str) -> None:
    # create_graph through the gate, at ordinary points and at ⊥ (second derivative 0)
    x0, y0 = smooth(op, 16)
    x0[3] = 0.0
    x0[5] = math.inf
    y0[4] = 0.0
    binary = op in A.BINARY_OPS
    cot = torch.linspace(-1.5, 1.5, 16, dtype=torch.float64)
    results = []
    with path(route), gradient_policy(GradientPolicy.CLAMP):
        for impl in ("kernel", "fused"):
            x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
            wrt = (x, y) if binary else (x,)
            out = kernel(op, x, y if binary else None) if impl == "kernel" else \
                A.grad_op(op, x, y if binary else None)
            first = torch.autograd.grad(gated(*out), wrt, cot, create_graph=True)
            s = sum((g * g).sum() for g in first)
            second = (torch.autograd.grad(s, wrt, allow_unused=True) if s.requires_grad
                      else [None] * len(wrt))  # add/sub/neg: constant first derivative
            results.append([g.detach() for g in first] + list(second))
    for a, b in zip(*results, strict=True):
        if a is None or b is None:  # a zero second derivative may be left unconnected
            z = a if a is not None else b
            assert z is None or bool((z == 0).all())
            continue
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-300, equal_nan=True)


# ---------------------------------------------------------------------------------------
# qualification: everything else takes the kernel path


def test_qualifies_plain_and_parameter() -> None:
    x, y = xy()
    assert A.grad_op("div", x, y) is not None
    assert A.grad_op("log", torch.nn.Parameter(y.clone())) is not None
    assert A.grad_op("mul", y, torch.nn.Parameter(y.clone())) is not None


class _Sub(torch.Tensor):
    pass


def _declined() -> dict[str, Callable[[], Any]]:
    x, y = xy()
    x64, _ = xy(torch.float64)
    return {
        "float16": lambda: A.grad_op("div", *xy(torch.float16)),
        "bfloat16": lambda: A.grad_op("exp", xy(torch.bfloat16)[0]),
        "complex": lambda: A.grad_op("inv", torch.ones(3, dtype=torch.complex64,
                                                       requires_grad=True)),
        "mixed dtypes": lambda: A.grad_op("div", x, y.double()),
        "broadcast": lambda: A.grad_op("div", x, y[:1]),
        "no grad needed": lambda: A.grad_op("div", x.detach(), y),
        "grad mode off": lambda: _no_grad(lambda: A.grad_op("div", x, y)),
        "non-contiguous": lambda: A.grad_op("mul", x64.reshape(2, 4).t(),
                                            torch.ones(4, 2, dtype=torch.float64)),
        "subclass": lambda: A.grad_op("div", x.as_subclass(_Sub), y.as_subclass(_Sub)),
        "meta": lambda: A.grad_op("log", torch.ones(3, device="meta", requires_grad=True)),
        "neg view": lambda: A.grad_op("log", torch._neg_view(y).requires_grad_()),
        "inference": lambda: A.grad_op("mul", x, _inference(y)),
        "scalar": lambda: A.grad_op("div", x, 2.0),
        "unknown op": lambda: A.grad_op("pow", x, y),
        "unary with y": lambda: A.grad_op("log", x, y),
        "binary without y": lambda: A.grad_op("div", x),
        "vmap": lambda: _inside(torch.func.vmap, x),
        "grad transform": lambda: _inside(torch.func.grad, x.detach()),
        "forward AD": lambda: _forward_ad(x),
        "dispatch mode": lambda: _in_mode(lambda: A.grad_op("div", x, y)),
        "function mode": lambda: _in_function_mode(lambda: A.grad_op("div", x, y)),
        "compile": lambda: _compiled(x, y),
    }


def _inside(transform: Any, x: Any) -> Any:
    seen = []

    def f(a: Any) -> Any:
        seen.append(A.grad_op("exp", a))
        return a.sum()

    transform(f)(x)
    assert len(seen) == 1
    return seen[0]


def _no_grad(f: Callable[[], Any]) -> Any:
    with torch.no_grad():
        return f()


def _inference(t: Any) -> Any:
    with torch.inference_mode():
        return t.clone()


def _forward_ad(x: Any) -> Any:
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        return A.grad_op("exp", x)


def _in_mode(f: Callable[[], Any]) -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Passing(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    with Passing():
        return f()


def _in_function_mode(f: Callable[[], Any]) -> Any:
    from torch.overrides import TorchFunctionMode

    class Passing(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    with Passing():
        return f()


def _compiled(x: Any, y: Any) -> Any:
    seen = []

    def f(a: Any, b: Any) -> Any:
        seen.append(A._qualifies(a, b, True))
        return a * b

    torch.compile(f, backend="eager", fullgraph=False)(x, y)
    assert seen and not any(seen)
    return None


@pytest.mark.parametrize("case", sorted(_declined()))
def test_declines(case: str) -> None:
    assert _declined()[case]() is None


def test_mask_only_use_needs_no_backward() -> None:
    x, y = xy()
    v, b = A.grad_op("div", x, y)
    assert b.dtype == torch.bool and not b.requires_grad
    assert v.dtype == x.dtype and v.shape == x.shape and v.requires_grad
    (g,) = torch.autograd.grad((v * 0.0).sum() + b.sum(), x)  # b carries no gradient
    assert bits_equal(g, torch.zeros_like(x))
