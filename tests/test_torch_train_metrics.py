"""The torch trainer's native train metrics equal ``batch_metrics`` bit for bit.

``zpml_backends.torch_training._train_metrics`` computes the ``RAW_KEYS`` statistics of
an eager train step with fewer torch ops; every entry (values and dtypes) must be what
the array-API ``batch_metrics`` gives, on edge values and in every floating dtype.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")
xpt = pytest.importorskip("array_api_compat.torch")

from zpml_backends.torch_training import _train_metrics  # noqa: E402

from zpml_core.training.metrics import batch_metrics  # noqa: E402

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _edge_q(dtype: Any, tau: float) -> Any:
    fi = torch.finfo(dtype)
    t = torch.tensor(tau, dtype=dtype)
    vals = [0.0, -0.0, fi.tiny, -fi.tiny, fi.tiny / 4, fi.max, -fi.max, math.inf, -math.inf,
            math.nan, 1.0, -1.0, 1e-3, -2.5]
    base = torch.tensor(vals, dtype=dtype)
    near = torch.stack([t, -t, torch.nextafter(t, torch.tensor(0.0, dtype=t.dtype)),
                        torch.nextafter(t, torch.tensor(math.inf, dtype=t.dtype))]) \
        if dtype in (torch.float32, torch.float64) else torch.stack([t, -t])
    g = torch.Generator().manual_seed(7)
    rnd = (torch.randn(300, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -6, 4, (300,), generator=g)).to(dtype)
    return torch.cat([base, near.to(dtype), rnd])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        return a.dtype == b.dtype and a.shape == b.shape and bool(
            torch.equal(a, b) or (torch.isnan(a) & torch.isnan(b)).all())
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("tau", [1e-4, 1e-2, 0.5])
def test_train_metrics_equal_batch_metrics(dtype: Any, tau: float) -> None:
    q = _edge_q(dtype, tau)
    p = torch.ones_like(q)
    for rows in (q, q[:1], q[9:10], q[7:8], torch.where(q == q, q, 0.0)):  # all, one, nan-only
        loss = torch.tensor(0.25, dtype=dtype)
        got = _train_metrics(loss, (p[: rows.shape[0]], rows), tau, xpt)
        want = batch_metrics(loss, (p[: rows.shape[0]], rows), tau, xp=xpt)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert _same(g, w), (g, w)


@pytest.mark.parametrize("case", ["2d-q", "empty", "tensor-tau", "zero-tau", "single-output", "list"])
def test_train_metrics_other_cases_fall_back(case: str) -> None:
    q = torch.tensor([0.5, 1e-6, math.inf, math.nan, -2.0])
    loss = torch.tensor(1.0)
    tau: Any = 1e-4
    outputs: Any = (torch.ones(5), q)
    if case == "2d-q":
        outputs = (torch.ones(5, 2), torch.stack([q, q.flip(0)], 1))
    elif case == "empty":
        outputs = (torch.ones(0), torch.ones(0))
    elif case == "tensor-tau":
        tau = torch.tensor(1e-4)
    elif case == "zero-tau":
        tau = 0.0
    elif case == "single-output":
        outputs = q
    else:
        outputs = [torch.ones(5), q]
    try:
        want = batch_metrics(loss, outputs, tau, xp=xpt)
    except Exception as exc:  # (the same error, whatever batch_metrics does)
        with pytest.raises(type(exc)):
            _train_metrics(loss, outputs, tau, xpt)
        return
    got = _train_metrics(loss, outputs, tau, xpt)
    for g, w in zip(got, want, strict=True):
        assert _same(g, w), (g, w)
