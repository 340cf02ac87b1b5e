"""Torch-op forward and backward of :mod:`zpml_backends._torch_autograd_ops`.

Used when numba (``zpml-core[fast]``) is not installed, and for double backward, whose
first-order gradients must themselves be differentiable. Same results, bit for bit, as
the array-API kernels (``zpml_core._scm_real``) and their autograd graphs; fewer passes.

Speed rules (aten on the CPU): ``where``, ``masked_fill`` and float-by-bool products
run unvectorised (~6x an arithmetic pass at 1e5 elements, ~15x at 1e6), and each
comparison writing a bool mask costs ~4 passes. So every forward makes one comparison,
and selections are bitwise: an integer *keep mask* (all ones where not ⊥, 0 at ⊥)
ANDed with the float's bit pattern gives the float itself or ``+0`` (all bits 0) —
exactly ``where(ok, t, 0)``. The DAZ flush ``|x| < tiny ? x·0 : x`` is
``copysign(threshold(|x|, pred(tiny), 0), x)``: ``|x|`` or ``0``, with the sign of ``x``.

Library functions (``log``, ``exp``, ``sqrt``, ``sin``, ``cos``, ``tan``) are applied to a
tensor equal, element by element, to the kernel's sanitised operand ``where(ok, x,
safe)``, in the same shape and layout: their last ulp can depend on an element's
position in aten's vector loops and on its neighbours' values (a vectorised libm
branches on whole vectors).

Backward: the derivative formulas of :mod:`zpml_backends._torch_autograd_ops`. Without
double backward the selections are bitwise; with it (grad mode on inside backward) they
are ``where``\\ s on operands first replaced by safe values at ⊥, as in the kernels, so
no differentiated intermediate holds inf/NaN and second derivatives are 0 at ⊥ — and so
they are for a batched cotangent (``autograd.grad(..., is_grads_batched=True)`` vmaps
the backward; vmap has no bit views). Where not ⊥ the safe operand is the operand:
first derivatives are the same in both modes.
In-place ops are used only where autograd saves neither the overwritten tensor nor
needs it (results of ``div``/``neg``/``pow``, whose derivatives read their inputs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["BACKWARD", "FORWARD"]

Tensor = torch.Tensor
Grads = tuple[Tensor | None, Tensor | None]
Saved = tuple[Tensor, ...]

_INT = {torch.float32: torch.int32, torch.float64: torch.int64}


class _Consts:
    """The kernels' constants (``zpml_core._xp.consts``) for one dtype, as Python floats
    that the dtype represents exactly where they are compared with data."""

    __slots__ = ("div_thr", "exp_max", "fmax", "neg_tiny", "ovf", "sub_max", "tiny")

    def __init__(self, dtype: torch.dtype) -> None:
        import array_api_compat.torch as xp

        from zpml_core import _xp

        c = _xp.consts(xp, dtype)
        self.tiny, self.fmax, self.ovf, self.exp_max = c.tiny, c.max, c.ovf, c.exp_max
        self.neg_tiny = -c.tiny
        one = torch.ones((), dtype=dtype)
        # the largest subnormal: threshold(a, sub_max, v) keeps a ⟺ a ≥ tiny
        self.sub_max = float(torch.nextafter(one * c.tiny, one * 0.0))
        # div: fl(y·y) ≥ tiny  ⟺  fl(fl(y·y)·ovf) > div_thr, the float below
        # T0 = fl(tiny·ovf) (exact, ≈ 4): rounding is monotone, and the largest
        # subnormal times ovf rounds at least 2 ulps below T0 (checked here)
        t0 = one * c.tiny * c.ovf
        thr = torch.nextafter(t0, one * 0.0)
        if not (bool(one * self.sub_max * c.ovf <= thr) and bool(thr < t0)):
            raise AssertionError("div threshold: fl(pred(tiny)·ovf) must be below T0")
        self.div_thr = float(thr)


_CONSTS: dict[torch.dtype, _Consts] = {}


def _consts(dtype: torch.dtype) -> _Consts:
    c = _CONSTS.get(dtype)
    if c is None:
        c = _CONSTS[dtype] = _Consts(dtype)
    return c


def _keep(ok: Tensor, dtype: torch.dtype) -> Tensor:
    """The integer keep mask of a bool ``ok``: all ones where ``ok``, 0 elsewhere."""
    return ok.to(_INT[dtype]).neg_()


def _zero_(t: Tensor, keep: Tensor) -> Tensor:
    """``where(ok, t, +0)`` in place, bitwise (``t`` is a fresh tensor)."""
    t.view(keep.dtype).bitwise_and_(keep)
    return t


def _selected(t: Tensor, keep: Tensor) -> Tensor:
    """``where(ok, t, +0)`` as a new tensor."""
    return torch.bitwise_and(t.view(keep.dtype), keep).view(t.dtype)


def _flush(x: Tensor, ax: Tensor, c: _Consts) -> Tensor:
    """DAZ: ``x``, or the signed zero ``x·0`` where ``|x| < tiny`` (``ax = |x|``,
    consumed)."""
    return torch.threshold_(ax, c.sub_max, 0.0).copysign_(x)


def _sanitised_one(x: Tensor, c: _Consts) -> Tensor:
    """``where(tiny ≤ x ≤ max, x, 1)``: x ≥ tiny is kept, the rest (negatives, zeros,
    subnormals, NaN, −inf) becomes 1, and +inf becomes 1 too."""
    return torch.nan_to_num_(torch.threshold(x, c.sub_max, 1.0), nan=1.0, posinf=1.0)


# ---------------------------------------------------------------------------------------
# forward: (value, bottom), each with the kernel's formula noted first


def _fw_div(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    # kernel: ok = fl(y·y) ≥ tiny ∧ |x| ≤ fl(fl(y·y)·ovf) ∧ fin(|x| − |y|)
    #         value = ok ? flush(x) / y : +0
    # here:   ok = |x| + (0·x)·y ≤ (t > div_thr ? t : −1),  t = fl(fl(y·y)·ovf)
    # * the left side is NaN iff x or y is not finite (0·±inf is NaN), else |x|;
    # * t > div_thr ⟺ y·y ≥ tiny (see _Consts); a NaN t (y NaN) stays NaN;
    # so for finite operands both read "y·y ≥ tiny ∧ |x| ≤ t", otherwise both are false.
    c = _consts(x.dtype)
    ax = torch.abs(x)
    lhs = torch.addcmul(ax, x, y, value=0.0)
    rhs = torch.threshold_(torch.mul(y, y).mul_(c.ovf), c.div_thr, -1.0)
    ok = torch.le(lhs, rhs)
    value = _zero_(_flush(x, ax, c).div_(y), _keep(ok, x.dtype))
    return value, ok.logical_not_()


def _fw_mul(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    # kernel: r = x·y; ok = fin(r); value = ok ? (min(|x|,|y|) < tiny ? r·0 : r) : +0
    # here: r' = flush(x)·flush(y): r where no factor is subnormal, else a zero with
    # the sign of r (the other factor finite), and fin(r') = fin(r) (a subnormal times
    # ±inf is inf or NaN, a signed zero times ±inf NaN)
    c = _consts(x.dtype)
    r = _flush(x, torch.abs(x), c).mul_(_flush(y, torch.abs(y), c))
    ok = torch.le(torch.abs(r), c.fmax)
    return _zero_(r, _keep(ok, x.dtype)), ok.logical_not_()


def _fw_add(x: Tensor, y: Tensor, subtract: bool) -> tuple[Tensor, Tensor]:
    # kernel: r = flush(x) ± flush(y); ok = fin(r); value = ok ? r : +0 (+0 ± +0)
    c = _consts(x.dtype)
    xf, yf = _flush(x, torch.abs(x), c), _flush(y, torch.abs(y), c)
    r = xf.sub_(yf) if subtract else xf.add_(yf)
    ok = torch.le(torch.abs(r), c.fmax)
    return _zero_(r, _keep(ok, x.dtype)), ok.logical_not_()


def _fw_neg(x: Tensor) -> tuple[Tensor, Tensor]:
    # kernel: ok = fin(x); value = −(ok ? x : −0)
    ok = torch.le(torch.abs(x), _consts(x.dtype).fmax)
    return _zero_(torch.neg(x), _keep(ok, x.dtype)), ok.logical_not_()


def _fw_inv(x: Tensor) -> tuple[Tensor, Tensor]:
    # kernel: ok = tiny ≤ |x| ≤ max; value = ok ? reciprocal(x)·1 : +0 (·1 is exact)
    # here: ok = (|x| ≥ tiny ? |x| : inf) ≤ max
    c = _consts(x.dtype)
    ok = torch.le(torch.threshold_(torch.abs(x), c.sub_max, torch.inf), c.fmax)
    return _zero_(torch.reciprocal(x), _keep(ok, x.dtype)), ok.logical_not_()


def _fw_log(x: Tensor) -> tuple[Tensor, Tensor]:
    # kernel: ok = tiny ≤ x ≤ max; value = ok ? log(where(ok, x, 1)) : +0, log(1) = +0
    # here: xs = where(ok, x, 1) without a mask, and ok ⟺ x = xs (x ≠ xs = 1 off ok)
    xs = _sanitised_one(x, _consts(x.dtype))
    ok = torch.eq(x, xs)
    return torch.log_(xs), ok.logical_not_()


def _fw_exp(x: Tensor) -> tuple[Tensor, Tensor]:
    # kernel: ok = −max ≤ x ≤ exp_max; value = ok ? exp(where(ok, x, 0)) : +0
    # here: ok = (x with NaN, −inf → +inf) ≤ exp_max
    c = _consts(x.dtype)
    ok = torch.le(torch.nan_to_num(x, nan=torch.inf, neginf=torch.inf), c.exp_max)
    keep = _keep(ok, x.dtype)
    return _zero_(torch.exp_(_selected(x, keep)), keep), ok.logical_not_()


def _fw_sqrt(x: Tensor) -> tuple[Tensor, Tensor]:
    # kernel: pos = tiny ≤ x ≤ max → sqrt(where(pos, x, 1)); zero = |x| < tiny → x·0;
    #         ⊥ otherwise → +0, with ¬⊥ ⟺ pos ∨ zero ⟺ −tiny < x ≤ max
    # here: pos ⟺ x = xs (as log); value = copysign(pos ? r : +0, x) (sign +: x > 0 at
    # pos; the sign of x at the signed zeros), then +0 at ⊥
    c = _consts(x.dtype)
    xs = _sanitised_one(x, c)
    pos = torch.eq(x, xs)
    v = _zero_(torch.sqrt_(xs), _keep(pos, x.dtype)).copysign_(x)
    # ⊥ ⟺ ¬(−tiny < x ≤ max) ⟺ ¬((x > −tiny ? x : inf) ≤ max)
    ok = torch.le(torch.threshold(x, c.neg_tiny, torch.inf), c.fmax)
    return _zero_(v, _keep(ok, x.dtype)), ok.logical_not_()


def _fw_trig(fn: Callable[[Tensor], Tensor], x: Tensor, zero_safe: bool
             ) -> tuple[Tensor, Tensor]:
    # kernel: ok = fin(x); value = ok ? f(where(ok, x, 0)) : +0 (sin, tan: f(+0) = +0)
    ok = torch.le(torch.abs(x), _consts(x.dtype).fmax)
    keep = _keep(ok, x.dtype)
    r = fn(_selected(x, keep))
    return (r if zero_safe else _zero_(r, keep)), ok.logical_not_()


FORWARD: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "div": _fw_div,
    "mul": _fw_mul,
    "add": lambda x, y: _fw_add(x, y, False),
    "sub": lambda x, y: _fw_add(x, y, True),
    "neg": _fw_neg,
    "inv": _fw_inv,
    "log": _fw_log,
    "exp": _fw_exp,
    "sqrt": _fw_sqrt,
    "sin": lambda x: _fw_trig(torch.sin_, x, True),
    "cos": lambda x: _fw_trig(torch.cos_, x, False),
    "tan": lambda x: _fw_trig(torch.tan_, x, True),
}


# ---------------------------------------------------------------------------------------
# backward


def batched(t: Tensor) -> bool:
    """Whether ``t`` is a batched or functorch-wrapped tensor, or a functorch transform
    is active: ``autograd.grad(..., is_grads_batched=True)`` runs the backward under
    (legacy) vmap, where bit views and numpy buffers are unavailable."""
    return bool(_ft.is_legacy_batchedtensor(t) or _ft.is_functorch_wrapped_tensor(t)
                or torch._C._are_functorch_transforms_active())


_ft = torch._C._functorch


class _Select:
    """Selections at ⊥ for one backward call: bitwise without double backward,
    differentiable (and batchable) ``where``\\ s with it or under vmap."""

    __slots__ = ("bottom", "graph", "keep")

    def __init__(self, bottom: Tensor, g: Tensor) -> None:
        self.bottom = bottom
        # create_graph: a differentiable backward; a batched cotangent: batchable ops
        self.graph = torch.is_grad_enabled() or batched(g)
        # all ones where not ⊥ (bottom: 1 → 0, 0 → −1)
        self.keep = None if self.graph else bottom.to(_INT[g.dtype]).sub_(1)

    def zero(self, t: Tensor) -> Tensor:
        """``t`` where not ⊥, ``+0`` at ⊥ (``t`` fresh)."""
        if self.keep is None:
            return torch.where(self.bottom, 0.0, t)
        return _zero_(t, self.keep)

    def safe(self, t: Tensor, value: float) -> Tensor:
        """``t`` with ``value`` at ⊥ where a derivative of the result may be taken
        (only ``zero``'d results are computed from it, so else ``t`` itself)."""
        return torch.where(self.bottom, value, t) if self.graph else t


def _bw_div(g: Tensor, saved: Saved, nx: bool, ny: bool) -> Grads:
    y, v, b = saved
    s = _Select(b, g)
    ys = s.safe(y, 1.0)
    gx = s.zero(torch.div(g, ys).add_(0.0)) if nx else None
    gy = s.zero(torch.neg(g).mul(torch.div(v, ys))) if ny else None
    return gx, gy


def _bw_mul(g: Tensor, saved: Saved, nx: bool, ny: bool) -> Grads:
    x, y, b = saved
    s = _Select(b, g)
    gr = torch.add(g, 0.0)
    gx = s.zero(gr * s.safe(y, 0.0)) if nx else None
    gy = s.zero(gr * s.safe(x, 0.0)) if ny else None
    return gx, gy


def _bw_add(g: Tensor, saved: Saved, nx: bool, ny: bool) -> Grads:
    (b,) = saved
    gx = _Select(b, g).zero(torch.add(g, 0.0))
    return (gx if nx else None), (gx if ny else None)


def _bw_sub(g: Tensor, saved: Saved, nx: bool, ny: bool) -> Grads:
    (b,) = saved
    s = _Select(b, g)
    gx = s.zero(torch.add(g, 0.0)) if nx else None
    gy = s.zero(torch.neg(g).add_(0.0)) if ny else None
    return gx, gy


def _bw_neg(g: Tensor, saved: Saved, nx: bool, ny: bool) -> Grads:
    (b,) = saved
    return _Select(b, g).zero(torch.neg(g)), None


def _bw_unary(formula: Callable[[Tensor, Tensor], Tensor], safe: float | None = None,
              exact: bool = False) -> Callable[[Tensor, Saved, bool, bool], Grads]:
    """``zero(formula(g, t))`` with ``t`` (the operand or the value) replaced by ``safe``
    at ⊥ first; ``exact``: always (sin/cos: the library function must see the
    kernel's ``where(ok, x, 0)``)."""
    def bw(g: Tensor, saved: Saved, nx: bool, ny: bool) -> Grads:
        t, b = saved
        s = _Select(b, g)
        if safe is not None:
            t = torch.where(b, safe, t) if exact else s.safe(t, safe)
        return s.zero(formula(g, t)), None
    return bw


def _bw_sqrt(g: Tensor, saved: Saved, nx: bool, ny: bool) -> Grads:
    (v,) = saved
    # 0 at ⊥ and at the signed zeros (|x| < tiny): exactly where v is not > 0
    pos = torch.gt(v, 0.0)
    s = _Select(pos.logical_not_(), g)
    return s.zero(torch.div(g, s.safe(v, 1.0) * 2)), None


BACKWARD: dict[str, Callable[[Tensor, Saved, bool, bool], Grads]] = {
    "div": _bw_div,
    "mul": _bw_mul,
    "add": _bw_add,
    "sub": _bw_sub,
    "neg": _bw_neg,
    "inv": _bw_unary(lambda g, v: torch.neg(g).mul(v * v)),
    "log": _bw_unary(lambda g, xs: torch.div(g, xs), safe=1.0),
    "exp": _bw_unary(lambda g, v: g * v),
    "sqrt": _bw_sqrt,
    "sin": _bw_unary(lambda g, xs: g * torch.cos(xs), safe=0.0, exact=True),
    "cos": _bw_unary(lambda g, xs: g * torch.neg(torch.sin(xs)), safe=0.0, exact=True),
    "tan": _bw_unary(lambda g, v: g * torch.pow(v, 2).add_(1)),
}
