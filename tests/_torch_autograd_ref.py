"""Shared reference and inputs for the torch training fast path's tests
(``test_torch_autograd_ops.py``: ``grad_op``; ``test_torch_autograd_public.py``: the
public ops with the gate inside the Function).

The reference is the array-API kernel itself, run eagerly with autograd, gated by the
``setup_context`` gate, whose backward is ``rules.gate_backward`` itself — independent of
the fused loops under test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import array_api_compat.torch as txp  # noqa: E402

from zpml_core import _scm_real as K  # noqa: E402
from zpml_core import _xp  # noqa: E402
from zpml_core._registry import get_backend  # noqa: E402
from zpml_core.autodiff.policies import resolve_policy  # noqa: E402

A = pytest.importorskip("zpml_backends._torch_autograd_ops")
N = pytest.importorskip("zpml_backends._torch_autograd_numba")
PolicyGate = pytest.importorskip("zpml_backends._torch_gate").PolicyGate

BE = get_backend(txp)
DTYPES = [torch.float32, torch.float64]
PATHS = ["numba", "torch"]


@contextmanager
def path(name: str) -> Iterator[None]:
    """Run grad_op through the fused numba loops or the torch-op fallback."""
    if name == "numba" and not N.available():
        pytest.skip("numba (zpml-core[fast]) is not installed")
    saved = N._STATE["fused"]
    if name == "torch":
        N._STATE["fused"] = False
    try:
        yield
    finally:
        N._STATE["fused"] = saved


def kernel(op: str, x: Any, y: Any) -> tuple[Any, Any]:
    """Today's path: the array-API kernel, eager, recorded by autograd."""
    if op in ("add", "sub"):
        return K._k_add(x, y, None, None, xp=txp, be=BE, subtract=op == "sub")
    if op == "div":
        return K._k_div(x, y, None, None, xp=txp, be=BE)
    if op == "mul":
        return K._k_mul(x, y, None, None, xp=txp, be=BE)
    if op in ("sin", "cos", "tan"):
        return K._k_trig(x, None, xp=txp, be=BE, fn=op)
    kern: Callable[..., tuple[Any, Any]] = getattr(K, "_k_" + op)
    return kern(x, None, xp=txp, be=BE)


def gated(v: Any, b: Any) -> Any:
    """The public ops' exit (``scm._finish`` → ``gate_output``): the value gated with the
    active policy — through the ``setup_context`` gate, whose backward is
    ``rules.gate_backward`` itself (independent of the fused loops under test)."""
    if not (v.requires_grad and torch.is_grad_enabled()):
        return v
    return PolicyGate.apply(v, b, resolve_policy("scm_ops", traced=False))


def bits_equal(a: Any, b: Any) -> bool:
    """Bit patterns equal, every NaN equal to every NaN (payloads are unspecified)."""
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.bool:
        return bool(torch.equal(a, b))
    it = torch.int64 if a.dtype == torch.float64 else torch.int32
    a, b = a.detach().contiguous(), b.detach().contiguous()
    same = (a.view(it) == b.view(it)) | (torch.isnan(a) & torch.isnan(b))
    return bool(same.all())


def describe(a: Any, b: Any, *operands: Any) -> str:
    it = torch.int64 if a.dtype == torch.float64 else torch.int32
    a, b = a.detach().reshape(-1), b.detach().reshape(-1)
    bad = ~((a.view(it) == b.view(it)) | (torch.isnan(a) & torch.isnan(b)))
    idx = bad.nonzero().reshape(-1)[:4]
    ops = [o.detach().reshape(-1)[idx].tolist() for o in operands if o is not None]
    return (f"{int(bad.sum())} of {a.numel()} differ, e.g. kernel {a[idx].tolist()} "
            f"fused {b[idx].tolist()} at operands {ops}")


def random_bits(dt: Any, n: int, seed: int) -> Any:
    """Uniform random bit patterns: every exponent, subnormals, ±inf and NaNs."""
    g = torch.Generator().manual_seed(seed)
    if dt == torch.float64:
        return torch.randint(-2**63, 2**63 - 1, (n,), generator=g,
                             dtype=torch.int64).view(torch.float64)
    return torch.randint(-2**31, 2**31 - 1, (n,), generator=g,
                         dtype=torch.int32).view(torch.float32)


def edge_values(dt: Any) -> Any:
    fi = torch.finfo(dt)
    c = _xp.consts(txp, dt)
    one = torch.ones((), dtype=dt)

    def step(a: float, toward: float) -> float:
        return float(torch.nextafter(one * a, one * toward))

    st = math.sqrt(fi.tiny)
    mags = [0.0, fi.tiny * fi.eps, step(fi.tiny, 0.0), fi.tiny, step(fi.tiny, 1.0),
            step(st, 0.0), st, step(st, 1.0), 0.5, 1.0, 2.0, math.pi / 2, 7.5, 1e10,
            step(fi.max, 0.0), fi.max, math.inf, c.exp_max, step(c.exp_max, math.inf),
            step(c.exp_max, 0.0), step(math.sqrt(fi.max), 0.0), math.sqrt(fi.max)]
    vals = mags + [-m for m in mags] + [math.nan]
    return torch.tensor(vals, dtype=dt)


def operands(dt: Any, n_random: int = 1500, seed: int = 0) -> tuple[Any, Any]:
    """All pairs of edge values, div's overflow borders ± ulp, random bit patterns."""
    e = edge_values(dt)
    ex, ey = torch.cartesian_prod(e, e).unbind(1)
    c = _xp.consts(txp, dt)
    one = torch.ones((), dtype=dt)
    yb = torch.cat([random_bits(dt, 300, seed + 1).abs(), e.abs()])
    yb = yb[torch.isfinite(yb)]
    border = (yb * yb) * c.ovf  # |x| = fl(y·y)·ovf, as the kernel computes it
    bx = torch.cat([border, torch.nextafter(border, one * math.inf),
                    torch.nextafter(border, one * 0.0)])
    by = yb.repeat(3)
    sx = torch.where(torch.arange(bx.numel()) % 2 == 0, bx, -bx)
    x = torch.cat([ex, sx, random_bits(dt, n_random, seed + 2)])
    y = torch.cat([ey, by, random_bits(dt, n_random, seed + 3)])
    return x.contiguous(), y.contiguous()


def cotangents(dt: Any, n: int, seed: int) -> list[Any]:
    arbitrary = random_bits(dt, n, seed + 10)  # NaN, ±inf, subnormals, ±0
    plain = torch.randn(n, dtype=dt, generator=torch.Generator().manual_seed(seed))
    plain[::5] = -0.0
    plain[1::5] = 0.0
    return [arbitrary, plain]



def smooth(op: str, n: int = 12) -> tuple[Any, Any]:
    """Inputs away from every border (finite differences stay on one side of them)."""
    g = torch.Generator().manual_seed(21)
    x = torch.rand(n, dtype=torch.float64, generator=g) + 0.5
    y = torch.rand(n, dtype=torch.float64, generator=g) + 0.5
    if op in ("add", "sub", "mul", "neg", "sin", "cos", "tan"):
        x[::2] *= -1.0
    if op in ("add", "sub", "mul", "div"):
        y[1::2] *= -1.0
    return x, y


def xy(dt: Any = torch.float32, n: int = 8, grad: bool = True) -> tuple[Any, Any]:
    x = torch.linspace(-2.0, 2.0, n, dtype=dt).requires_grad_(grad)
    return x, torch.linspace(0.5, 3.0, n, dtype=dt)
