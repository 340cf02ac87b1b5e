"""The eager torch policy gate (``zpml_backends._torch_gate``).

Rule under test: in plain eager mode the gate is an old-style ``autograd.Function``
(:class:`EagerPolicyGate`, no per-call signature binding) whose backward maps the
cotangent exactly as ``zpml_core.autodiff.rules.gate_backward`` does — bit for bit, for
every policy, dtype (half, float, complex), shape (a mask broadcast with trailing
singleton axes, 0-d, empty), layout (non-contiguous, expanded cotangents) and cotangent
value (±0, subnormals, ±inf, NaN), through the fused numba loop and through torch ops —
and honours a ``gradient_policy`` context active while ``.backward()`` runs. Under
functorch transforms and forward mode the ``setup_context`` classes are used as before.
The reference is ``gate_backward`` itself with the array-API torch namespace.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import array_api_compat.torch as txp  # noqa: E402

from zpml_core import scm  # noqa: E402
from zpml_core.autodiff.policies import GradientPolicy, gradient_policy  # noqa: E402
from zpml_core.autodiff.rules import gate_backward  # noqa: E402

G = pytest.importorskip("zpml_backends._torch_gate")
N = pytest.importorskip("zpml_backends._torch_autograd_numba")

pytestmark = pytest.mark.autodiff

POLICIES = tuple(GradientPolicy)
ROUTES = ["numba", "torch"]
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
          torch.complex128]


@contextmanager
def route(name: str) -> Iterator[None]:
    """The gate's cotangent through the numba loop or through torch ops."""
    if name == "numba" and not N.available():
        pytest.skip("numba (zpml-core[fast]) is not installed")
    saved = G._NUMBA[0]
    G._NUMBA[0] = None if name == "numba" else False
    try:
        yield
    finally:
        G._NUMBA[0] = saved


def bits(a: Any) -> Any:
    """The bit pattern (real view for complex), NaNs canonicalised (payloads aside)."""
    a = a.detach()
    if a.is_complex():
        a = torch.view_as_real(a.resolve_conj())
    a = a.contiguous()
    it = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.where(torch.isnan(a), torch.full_like(a, math.nan), a).view(it)


def same(a: Any, b: Any) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(bits(a), bits(b)))


def random_cotangent(dt: Any, shape: tuple[int, ...], seed: int) -> Any:
    """Random bit patterns (every exponent, ±0, subnormals, ±inf, NaN) mixed with values
    around the clip bounds ±1."""
    g = torch.Generator().manual_seed(seed)
    real = torch.float32 if dt in (torch.complex64,) else (
        torch.float64 if dt == torch.complex128 else dt)
    n = math.prod(shape) * (2 if dt.is_complex else 1)
    it = {2: torch.int16, 4: torch.int32, 8: torch.int64}[torch.empty((), dtype=real)
                                                         .element_size()]
    info = torch.iinfo(it)
    r = torch.randint(info.min, info.max, (n,), generator=g, dtype=it).view(real)
    near = torch.tensor([1.0, -1.0, 0.0, -0.0, 0.5, -2.0, math.inf, -math.inf, math.nan],
                        dtype=real)
    r[: min(n, near.numel())] = near[: min(n, near.numel())]
    r[near.numel()::3] = torch.randn(r[near.numel()::3].shape, generator=g).to(real) * 2
    if dt.is_complex:
        return torch.view_as_complex(r.reshape(*shape, 2))
    return r.reshape(shape)


def random_mask(shape: tuple[int, ...], seed: int) -> Any:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < 0.3


CASES = {  # cotangent shape, mask shape (broadcast to the cotangent)
    "same": ((257,), (257,)),
    "matrix": ((9, 33), (9, 33)),
    "trailing": ((6, 5, 4), (6, 1, 1)),
    "0-d": ((), ()),
    "empty": ((0, 3), (0, 3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dt", DTYPES, ids=str)
@pytest.mark.parametrize("r", ROUTES)
def test_cotangent_is_gate_backward(r: str, dt: Any, case: str) -> None:
    gshape, bshape = CASES[case]
    g = random_cotangent(dt, gshape, 1)
    b = random_mask(bshape, 2)
    with route(r):
        for policy in POLICIES:
            want = gate_backward(policy, (b,), g, xp=txp)
            with torch.no_grad():  # a backward without create_graph
                got = G.cotangent(policy, b, g)
            assert same(want, got), f"{policy} {dt} {case}"
            assert same(want, G.cotangent(policy, b, g)), "recording a graph"


@pytest.mark.parametrize("dt", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("r", ROUTES)
def test_cotangent_layouts(r: str, dt: Any) -> None:
    g0 = random_cotangent(dt, (12, 10), 3)
    b0 = random_mask((10, 12), 4)
    layouts = {
        "transposed": (g0.t(), b0),
        "strided": (g0[:, ::2], b0.t()[:, ::2]),
        "expanded": (g0[:1].expand(12, 10), b0.t()),
        "mask transposed": (g0.t().contiguous(), b0),
        "neg view": (torch._neg_view(g0.t().contiguous()), b0),
        "requires grad": (g0.t().contiguous().requires_grad_(), b0),
    }
    with route(r):
        for name, (g, b) in layouts.items():
            for policy in POLICIES:
                want = gate_backward(policy, (b,), g, xp=txp)
                with torch.no_grad():
                    got = G.cotangent(policy, b, g)
                assert same(want, got), f"{name} {policy}"


def test_cotangent_clamp_independent() -> None:
    # CLAMP by hand: +0 at ⊥, else min(max(g, −1), 1) with NaN and ±0 kept
    g = torch.tensor([2.0, -3.0, 0.5, -0.0, math.nan, math.inf, 1.0, -0.25, 7.0])
    b = torch.tensor([False, False, False, False, False, False, False, False, True])
    want = torch.tensor([1.0, -1.0, 0.5, -0.0, math.nan, 1.0, 1.0, -0.25, 0.0])
    for r in ROUTES:
        with route(r), torch.no_grad():
            got = G.cotangent(GradientPolicy.CLAMP, b, g)
        assert same(want, got), r
        assert math.copysign(1.0, float(got[3])) < 0 and math.copysign(1.0, float(got[8])) > 0


def _gated(x: Any, policy: GradientPolicy | None = None) -> Any:
    """A value gated in plain eager mode (pow: no fused autograd Function)."""
    if policy is None:
        return scm.pow(x, 2.0)
    with gradient_policy(policy):
        return scm.pow(x, 2.0)


def test_eager_mode_uses_the_old_style_gate() -> None:
    x = torch.tensor([0.5, -3.0, 2.0], requires_grad=True)
    r = _gated(x)
    assert type(r.value.grad_fn).__name__ == "EagerPolicyGateBackward"
    assert r.value._base is not None  # a view of the kernel's value, as before


def test_transforms_use_setup_context_gates() -> None:
    x = torch.tensor([0.5, -3.0, 2.0])
    seen: list[str] = []

    def f(a: Any) -> Any:
        v = scm.pow(a, 2.0).value
        seen.append(type(v.grad_fn).__name__ if v.grad_fn is not None else "")
        return v.sum()

    torch.func.grad(f)(x)
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        d = fwad.make_dual(x, torch.ones_like(x))
        v = scm.pow(d, 2.0).value
        t = fwad.unpack_dual(v).tangent
    assert t is not None
    assert all("EagerPolicyGate" not in s for s in seen)


@pytest.mark.parametrize("r", ROUTES)
def test_eager_gate_gradients_every_policy_and_override(r: str) -> None:
    # forward-time policy, and a context around .backward() overriding it
    x0 = torch.tensor([0.5, -3.0, 2.0, 0.0, -0.7, 1e200, 4.0], dtype=torch.float64)
    cot = torch.tensor([2.0, -0.5, -3.0, 1.0, 0.25, 5.0, -0.0], dtype=torch.float64)
    with route(r):
        for fwd in (None, *POLICIES):
            for bwd in (None, *POLICIES):
                x = x0.clone().requires_grad_()
                res = _gated(x, fwd)
                if bwd is None:
                    (gx,) = torch.autograd.grad(res.value, x, cot)
                else:
                    with gradient_policy(bwd):
                        (gx,) = torch.autograd.grad(res.value, x, cot)
                policy = bwd or fwd or GradientPolicy.CLAMP
                # independent: d/dx x² = 2x applied to the policy's cotangent
                t = {GradientPolicy.CLAMP: cot.clamp(-1.0, 1.0),
                     GradientPolicy.PROJECT: cot, GradientPolicy.PASSTHROUGH: cot,
                     GradientPolicy.REJECT: torch.zeros_like(cot)}[policy]
                want = torch.where(res.bottom, 0.0, t * (2.0 * x0))
                assert torch.equal(gx, want), f"forward {fwd} backward {bwd}"


def test_eager_gate_double_backward() -> None:
    x = torch.tensor([0.5, -3.0, 2.0, 1.5], dtype=torch.float64, requires_grad=True)
    for policy in (GradientPolicy.PROJECT, GradientPolicy.PASSTHROUGH):
        with gradient_policy(policy):
            assert torch.autograd.gradgradcheck(lambda a: scm.pow(a, 3.0).value, (x,))
    cot = torch.tensor([2.0, -0.5, -3.0, 1.0], dtype=torch.float64, requires_grad=True)
    with gradient_policy(GradientPolicy.CLAMP):
        (gx,) = torch.autograd.grad(scm.pow(x, 2.0).value, x, cot, create_graph=True)
        (d,) = torch.autograd.grad(gx.sum(), cot)
    # d/dcot of 2x·clip(cot): 2x where |cot| ≤ 1 (clamp passes at a bound), else 0
    want = torch.where(cot.detach().abs() <= 1.0, 2.0 * x.detach(), 0.0)
    assert torch.equal(d, want)


@pytest.mark.parametrize("r", ROUTES)
def test_eager_gate_batched_cotangents(r: str) -> None:
    # is_grads_batched vmaps the backward: the gate's rule with batchable ops, same bits
    x0 = torch.tensor([0.5, -3.0, 2.0, 0.0, -0.7, 1e200, 4.0], dtype=torch.float64)
    cots = torch.stack([random_cotangent(torch.float64, (7,), s) for s in range(4)])
    with route(r):
        for policy in POLICIES:
            got, want = [], []
            for i in range(-1, cots.shape[0]):
                x = x0.clone().requires_grad_()
                with gradient_policy(policy):
                    v = scm.pow(x, 2.0).value
                if i < 0:
                    got = torch.autograd.grad(v, x, cots, is_grads_batched=True)[0]
                else:
                    want.append(torch.autograd.grad(v, x, cots[i])[0])
            assert same(torch.stack(want), got), policy
