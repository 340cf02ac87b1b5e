"""The public ops on the torch training path: the gate inside the Function.

Rule under test: with an operand requiring grad, ``scm.add/sub/mul/div`` and the real
unary ops on plain CPU float32/float64 tensors run the op's fused autograd Function with
the policy gate inside it (``TorchBackend.fast``), and give — bit for bit (NaN payloads
aside) — the value, mask and gradients of the array-API kernel followed by the gate node,
under every policy arrangement: a context around the forward, the ``"scm_ops"`` registry
entry, a context around ``.backward()`` overriding either, retained graphs (several
backwards), double backward (first derivatives bit for bit, second as the kernel's),
saved-tensor hooks, batched cotangents (``is_grads_batched``), numba loops and torch
ops, a loop that numba cannot run. In-place changes of an operand are caught; grad mode
off gives the kernel's values without a graph.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from _torch_autograd_ref import (  # noqa: E402
    DTYPES,
    PATHS,
    A,
    N,
    bits_equal,
    cotangents,
    describe,
    gated,
    kernel,
    operands,
    path,
    smooth,
    xy,
)

from zpml_core import scm  # noqa: E402
from zpml_core.autodiff.policies import GradientPolicy, gradient_policy  # noqa: E402

pytestmark = pytest.mark.autodiff


POLICIES = tuple(GradientPolicy)


def _ctx(policy: GradientPolicy | None) -> Any:
    return contextlib.nullcontext() if policy is None else gradient_policy(policy)


def _public(op: str, x: Any, y: Any) -> Any:
    fn = getattr(scm, op)
    r = fn(x, y) if op in A.BINARY_OPS else fn(x)
    # the fast path was taken: the value is the output of the op's own Function
    assert type(r.value.grad_fn).__name__ == f"SCM{op.capitalize()}Backward", op
    return r


def _both(op: str, x0: Any, y0: Any, rx: bool = True, ry: bool = True,
          ) -> Iterator[tuple[str, Any, Any, list[Any]]]:
    """(impl, value, bottom, wrt) for the kernel + gate node and for the public op, each
    on fresh leaves (the forward runs inside the caller's context)."""
    binary = op in A.BINARY_OPS
    for impl in ("kernel", "public"):
        x = x0.clone().requires_grad_(rx)
        y = y0.clone().requires_grad_(ry) if binary else None
        wrt = [t for t in (x, y) if t is not None and t.requires_grad]
        if impl == "kernel":
            v, b = kernel(op, x, y)
            yield impl, gated(v, b), b, wrt
        else:
            r = _public(op, x, y)
            yield impl, r.value, r.bottom, wrt


def _assert_same(results: dict[str, list[Any]], where: str) -> None:
    for i, (a, b) in enumerate(zip(results["kernel"], results["public"], strict=True)):
        assert bits_equal(a, b), f"{where} [{i}]: {describe(a, b) if a is not None else ''}"


@pytest.mark.parametrize("dt", DTYPES, ids=str)
@pytest.mark.parametrize("op", A.OPS)
@pytest.mark.parametrize("route", PATHS)
def test_public_gate_every_policy(route: str, op: str, dt: Any) -> None:
    # the policy of a context around the forward, every requires_grad combination
    x0, y0 = operands(dt, n_random=400)
    binary = op in A.BINARY_OPS
    needs = [(True, True), (True, False), (False, True)] if binary else [(True, False)]
    # arbitrary bit patterns, and ordinary values with |g| > 1 often (CLAMP clips)
    arbitrary, plain = cotangents(dt, x0.numel(), 4)
    cot = torch.where(torch.arange(x0.numel()) % 2 == 0, arbitrary, plain * 3.0)
    with path(route):
        for policy in POLICIES:
            for rx, ry in needs:
                res: dict[str, list[Any]] = {}
                with gradient_policy(policy):
                    for impl, v, b, wrt in _both(op, x0, y0, rx, ry):
                        res[impl] = [v, b, *torch.autograd.grad(v, wrt, cot)]
                _assert_same(res, f"{op} {dt} {policy} {(rx, ry)}")


@pytest.mark.parametrize("op", ["div", "mul", "log", "sqrt", "sin"])
def test_public_gate_registry_policy(op: str) -> None:
    # no context: the "scm_ops" registry entry applies (else CLAMP)
    from zpml_core.autodiff.policies import (
        policy_registry_snapshot,
        register_policy,
        restore_policy_registry,
    )

    x0, y0 = operands(torch.float64, n_random=300)
    cot = cotangents(torch.float64, x0.numel(), 6)[1] * 3.0
    saved = policy_registry_snapshot()
    try:
        for policy in (None, *POLICIES):
            if policy is not None:
                register_policy("scm_ops", policy)
            res: dict[str, list[Any]] = {}
            for impl, v, _, wrt in _both(op, x0, y0):
                res[impl] = list(torch.autograd.grad(v, wrt, cot))
            _assert_same(res, f"{op} registry {policy}")
            if policy is GradientPolicy.REJECT:  # independent: every gradient is ±0
                assert all(bool((g == 0).all()) for g in res["public"])
    finally:
        restore_policy_registry(saved)


@pytest.mark.parametrize("route", PATHS)
@pytest.mark.parametrize("op", ["div", "mul", "sub", "inv", "exp", "sqrt", "cos"])
def test_public_gate_backward_context_overrides(route: str, op: str) -> None:
    # eager torch: a context active around the backward overrides the forward's policy
    x0, y0 = operands(torch.float32, n_random=300)
    arbitrary, plain = cotangents(torch.float32, x0.numel(), 7)
    cot = torch.where(torch.arange(x0.numel()) % 2 == 0, arbitrary, plain * 3.0)
    with path(route):
        for fwd in (None, *POLICIES):
            for bwd in POLICIES:
                res: dict[str, list[Any]] = {}
                for impl, v, _, wrt in _generate_under(fwd, op, x0, y0):
                    with gradient_policy(bwd):
                        res[impl] = list(torch.autograd.grad(v, wrt, cot))
                _assert_same(res, f"{op} forward {fwd} backward {bwd}")
                if bwd is GradientPolicy.REJECT:  # independent: 0 (0·inf where the
                    # derivative overflows: inv's and tan's v², as the kernel's graph)
                    assert all(bool(((g == 0) | torch.isnan(g)).all()) for g in res["public"])
                    if op not in ("inv", "tan"):
                        assert all(bool((g == 0).all()) for g in res["public"])


def _generate_under(policy: GradientPolicy | None, op: str, x0: Any, y0: Any
                    ) -> list[tuple[str, Any, Any, list[Any]]]:
    with _ctx(policy):
        return list(_both(op, x0, y0))


@pytest.mark.parametrize("route", PATHS)
def test_public_gate_retained_graph(route: str) -> None:
    # a retained graph: the second backward (another policy) gives the kernel's too
    x0, y0 = operands(torch.float64, n_random=300)
    cot = cotangents(torch.float64, x0.numel(), 8)[1] * 3.0
    with path(route):
        for op in ("div", "mul", "exp", "tan"):
            outs = _generate_under(None, op, x0, y0)
            res: dict[str, list[Any]] = {}
            for impl, v, _, wrt in outs:
                first = torch.autograd.grad(v, wrt, cot, retain_graph=True)
                with gradient_policy(GradientPolicy.PASSTHROUGH):
                    second = torch.autograd.grad(v, wrt, cot, retain_graph=True)
                third = torch.autograd.grad(v, wrt, cot)
                res[impl] = [*first, *second, *third]
            _assert_same(res, op)
            k = len(res["public"]) // 3  # one gradient per operand and backward
            assert all(bits_equal(a, b) for a, b in zip(res["public"][:k], res["public"][-k:],
                                                        strict=True))


@pytest.mark.parametrize("route", PATHS)
@pytest.mark.parametrize("policy", POLICIES)
def test_public_gate_double_backward(route: str, policy: GradientPolicy) -> None:
    # create_graph: first derivatives bit for bit, second derivatives as the kernel's
    cot = torch.linspace(-2.5, 2.5, 16, dtype=torch.float64)  # clipped where |g| > 1
    with path(route), gradient_policy(policy):
        for op in A.OPS:
            x0, y0 = smooth(op, 16)
            x0[3] = 0.0
            x0[5] = math.inf
            y0[4] = 0.0
            res: dict[str, list[Any]] = {}
            for impl, v, _, wrt in _both(op, x0, y0):
                first = torch.autograd.grad(v, wrt, cot, create_graph=True)
                s = sum((g * g).sum() for g in first)
                second = (torch.autograd.grad(s, wrt, allow_unused=True) if s.requires_grad
                          else [None] * len(wrt))
                res[impl] = [g.detach() for g in first] + list(second)
            n = len(res["kernel"]) // 2
            _assert_same({k: r[:n] for k, r in res.items()}, f"{op} {policy} first")
            for a, b in zip(res["kernel"][n:], res["public"][n:], strict=True):
                if a is None or b is None:
                    z = a if a is not None else b
                    assert z is None or bool((z == 0).all())
                    continue
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-300, equal_nan=True)


@pytest.mark.parametrize("route", PATHS)
@pytest.mark.parametrize("op", ["div", "log", "tan"])
def test_public_gate_gradgradcheck(route: str, op: str) -> None:
    x, y = smooth(op)
    binary = op in A.BINARY_OPS
    inputs = (x.requires_grad_(), y.requires_grad_()) if binary else (x.requires_grad_(),)

    def f(*args: Any) -> Any:
        return _public(op, args[0], args[1] if binary else None).value

    with path(route), gradient_policy(GradientPolicy.PROJECT):
        assert torch.autograd.gradcheck(f, inputs)
        assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("route", PATHS)
def test_public_gate_saved_tensor_hooks(route: str) -> None:
    # saved-tensor hooks (offloading, checkpointing) see what the Function saves
    x0, y0 = operands(torch.float32, n_random=300)
    cot = cotangents(torch.float32, x0.numel(), 9)[0]
    packed: list[int] = []

    def pack(t: Any) -> Any:
        packed.append(1)
        return t.clone()

    with path(route):
        for op in ("div", "sqrt", "sin"):
            res: dict[str, list[Any]] = {}
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                outs = list(_both(op, x0, y0))
            for impl, v, _, wrt in outs:
                res[impl] = list(torch.autograd.grad(v, wrt, cot))
            _assert_same(res, op)
    assert packed


def test_public_gate_inplace_operand_change_raises() -> None:
    x, y = xy(torch.float64)
    y.requires_grad_()
    r = _public("div", x, y)
    with torch.no_grad():
        y.mul_(2.0)
    with pytest.raises(RuntimeError, match="inplace"):
        r.value.sum().backward()


def test_public_no_grad_mode_uses_detached_operands() -> None:
    # grad mode off: no derivative can be taken; values are the kernel's, no graph
    x0, y0 = operands(torch.float64, n_random=300)
    x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    for op in A.OPS:
        binary = op in A.BINARY_OPS
        with torch.no_grad():
            v1, b1 = kernel(op, x, y if binary else None)
            r = getattr(scm, op)(x, y) if binary else getattr(scm, op)(x)
        assert r.value.grad_fn is None and not r.value.requires_grad
        assert bits_equal(v1, r.value) and bits_equal(b1, r.bottom), op


def test_public_declines_to_the_kernel_path() -> None:
    # what grad_op declines takes the array-API kernel and the gate node
    x, y = xy(torch.float64)
    r = scm.div(x, y[:1])  # broadcasting
    assert "SCM" not in type(r.value.grad_fn).__name__
    r = scm.div(x.float(), y)  # mixed dtypes (promotion)
    assert "SCM" not in type(r.value.grad_fn).__name__


@pytest.mark.parametrize("route", PATHS)
@pytest.mark.parametrize("policy", POLICIES)
def test_public_gate_batched_cotangents(route: str, policy: GradientPolicy) -> None:
    # autograd.grad(..., is_grads_batched=True) runs the backward under (legacy) vmap:
    # batched cotangents have no numpy buffer and no bit views — torch ops, same bits
    x0, y0 = operands(torch.float64, n_random=60)
    cots = torch.stack(cotangents(torch.float64, x0.numel(), 12)) * 3.0
    with path(route), gradient_policy(policy):
        for op in A.OPS:
            res: dict[str, list[Any]] = {}
            for impl, v, _, wrt in _both(op, x0, y0):
                res[impl] = list(torch.autograd.grad(v, wrt, cots, is_grads_batched=True))
            _assert_same(res, f"{op} {policy}")


def test_a_failing_loop_falls_back_to_torch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    # a loop numba cannot run is disabled and torch ops give the same gradients
    if not N.available():
        pytest.skip("numba (zpml-core[fast]) is not installed")
    x0, y0 = operands(torch.float64, n_random=200)
    cot = cotangents(torch.float64, x0.numel(), 13)[1] * 3.0

    def grads() -> list[Any]:
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        return list(torch.autograd.grad(_public("div", x, y).value, (x, y), cot))

    want = grads()
    N._loop("div")  # compiled and registered

    def broken(*args: Any) -> None:
        raise RuntimeError("numba says no")

    monkeypatch.setitem(N._KERNELS, "div", broken)
    monkeypatch.setattr(N, "_BROKEN", set())
    got = grads()
    assert "div" in N._BROKEN
    assert all(bits_equal(a, b) for a, b in zip(want, got, strict=True))
