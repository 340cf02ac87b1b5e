"""Fused loops for :mod:`zpml_backends._torch_autograd_ops` (``zpml-core[fast]``, numba).

* Forward: the fused SCM kernels of :mod:`zpml_backends._fused` (value and mask in one
  loop, bit for bit the array-API kernel's) on zero-copy numpy views of the detached
  operands; transcendental values from torch's own in-place function on the sanitised
  operand the loop wrote, as the kernel evaluates them.
* Backward: one loop per op evaluating the gradient formulas of
  :mod:`zpml_backends._torch_autograd_ops` — only ``+ − × ÷`` and selections, each
  correctly rounded and in the same order as torch's derivative formulas, so the
  gradients are bit for bit those of the kernel's autograd graph. ``sin``/``cos`` (their
  derivative needs a library function) have no loop. The zero is a scalar of the
  operand dtype (a Python ``0.0`` would make numba compute a float32 sum in float64),
  numba's defaults keep contraction into FMAs and fast-math off, and division never
  traps (``error_model="numpy"``). Each loop first clips the cotangent to ``[lo, hi]``
  — ``[−1, 1]`` for the CLAMP policy (as ``torch.clamp``: NaN and ±0 pass unchanged),
  ``[−inf, +inf]`` (the identity, bit for bit) otherwise — so the policy gate folded into
  the op's Function costs no pass of its own.
* Gate: the policy gate's cotangent ``where(bottom, +0, clip(g))`` in one loop
  (:func:`gate`, used by ``zpml_backends._torch_gate``).

Loops are compiled on first use per op and dtype, serially, and cached on disk (numba's
``cache=True``). Every entry point returns ``None`` when numba is not installed or
cannot compile (the caller then uses torch ops, with the same results).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["available", "backward", "forward", "gate"]

Tensor = torch.Tensor

_STATE: dict[str, Any] = {"fused": None}  # zpml_backends._fused, or False
_LOCK = threading.Lock()
_KERNELS: dict[str, Callable[..., Any]] = {}
_FORWARD: dict[tuple[str, str], Callable[..., Any]] = {}  # the fused binary kernels
_BROKEN: set[str] = set()  # loops numba failed to compile
_CHAR = {torch.float32: "f", torch.float64: "d"}
_ZERO = {torch.float32: np.float32(0.0), torch.float64: np.float64(0.0)}
_ONE = {torch.float32: np.float32(1.0), torch.float64: np.float64(1.0)}


def _inplace(name: str) -> Callable[[Any], None]:
    def apply(a: Any) -> None:
        getattr(torch.from_numpy(a), name)()
    return apply


#: unary ops whose value is torch's function (in place) on the sanitised operand
_LIBRARY = {op: _inplace(op + "_") for op in ("log", "exp", "sqrt", "sin", "cos", "tan")}


def _fused() -> Any:
    f: Any = _STATE["fused"]
    if f is None:
        try:
            from zpml_backends import _fused as mod

            f = mod if mod.available() else False
        except Exception:  # a broken optional extra counts as not installed
            f = False
        _STATE["fused"] = f
    return f


def available() -> bool:
    """Whether the fused loops can be used (numba importable)."""
    return _fused() is not False


def forward(op: str, x: Tensor, y: Tensor | None
            ) -> tuple[Tensor, Tensor, tuple[Any, ...]] | None:
    """``(value, bottom, arrays)`` of ``op`` by the fused forward kernel, or ``None``.

    ``arrays``: flat numpy views of ``(x, y, value, bottom)`` (``y`` None for a unary
    op), which :func:`backward` accepts in place of the saved tensors."""
    f = _STATE["fused"]
    if f is None:
        f = _fused()
    if f is False:
        return None
    char = _CHAR[x.dtype]
    xn = _numpy(x)
    try:
        if y is not None:  # as f.binary, with the flat views kept for the backward
            k = _FORWARD.get((op, char))
            if k is None:
                k = _FORWARD[op, char] = f.kernel(op, char)
            yn = _numpy(y)
            v = np.empty(xn.shape, xn.dtype)
            b = np.empty(xn.shape, np.bool_)
            arrays = ((xn, yn, v, b) if xn.ndim == 1
                      else (_flat(xn), _flat(yn), _flat(v), _flat(b)))
            k(*arrays)
        else:
            v, b = f.unary(op, char, xn, _LIBRARY.get(op))
            arrays = (_flat(xn), None, _flat(v), _flat(b))
    except f.Unavailable:
        _STATE["fused"] = False
        return None
    return torch.from_numpy(v), torch.from_numpy(b), arrays


def _numpy(t: Tensor) -> Any:
    """The zero-copy numpy view of a CPU tensor (detached first if it requires grad)."""
    return (t.detach() if t.requires_grad else t).numpy()


# ---------------------------------------------------------------------------------------
# backward loops: (inputs..., outputs..., lo, hi, zero); ``b`` is the bottom mask. Each
# output array is written only when its gradient is needed (``nx``/``ny``). The cotangent
# is first clipped to [lo, hi] (CLAMP's rule, ``torch.clamp``: NaN and ±0 unchanged);
# with lo = −inf, hi = +inf the clip is the identity, bit for bit.


def _div_bw(g: Any, y: Any, v: Any, b: Any, gx: Any, gy: Any, lo: Any, hi: Any, zero: Any,
            nx: bool, ny: bool) -> None:  # pragma: no cover - compiled by numba
    # d/dx = g/y + 0;  d/dy = (−g)·(v/y);  0 at ⊥
    for i in range(g.shape[0]):
        gi = g[i]
        gi = lo if gi < lo else (hi if gi > hi else gi)
        yi = y[i]
        bi = b[i]
        if nx:
            gx[i] = zero if bi else gi / yi + zero
        if ny:
            gy[i] = zero if bi else (-gi) * (v[i] / yi)


def _mul_bw(g: Any, x: Any, y: Any, b: Any, gx: Any, gy: Any, lo: Any, hi: Any, zero: Any,
            nx: bool, ny: bool) -> None:  # pragma: no cover - compiled by numba
    # d/dx = (g + 0)·y;  d/dy = (g + 0)·x;  0 at ⊥
    for i in range(g.shape[0]):
        gi = g[i]
        gr = (lo if gi < lo else (hi if gi > hi else gi)) + zero
        bi = b[i]
        if nx:
            gx[i] = zero if bi else gr * y[i]
        if ny:
            gy[i] = zero if bi else gr * x[i]


def _add_bw(g: Any, b: Any, gx: Any, gy: Any, lo: Any, hi: Any, zero: Any, nx: bool,
            ny: bool) -> None:  # pragma: no cover - compiled by numba
    # add: d/dx = d/dy = g + 0 (gy aliases gx); sub: d/dy = (−g) + 0; 0 at ⊥
    for i in range(g.shape[0]):
        gi = g[i]
        gi = lo if gi < lo else (hi if gi > hi else gi)
        bi = b[i]
        if nx:
            gx[i] = zero if bi else gi + zero
        if ny:
            gy[i] = zero if bi else (-gi) + zero


def _neg_bw(g: Any, b: Any, gx: Any, lo: Any, hi: Any,
            zero: Any) -> None:  # pragma: no cover
    for i in range(g.shape[0]):
        gi = g[i]
        gi = lo if gi < lo else (hi if gi > hi else gi)
        gx[i] = zero if b[i] else -gi


def _inv_bw(g: Any, v: Any, b: Any, gx: Any, lo: Any, hi: Any,
            zero: Any) -> None:  # pragma: no cover
    for i in range(g.shape[0]):
        gi = g[i]
        gi = lo if gi < lo else (hi if gi > hi else gi)
        vi = v[i]
        gx[i] = zero if b[i] else (-gi) * (vi * vi)


def _log_bw(g: Any, x: Any, b: Any, gx: Any, lo: Any, hi: Any,
            zero: Any) -> None:  # pragma: no cover
    for i in range(g.shape[0]):
        gi = g[i]
        gi = lo if gi < lo else (hi if gi > hi else gi)
        gx[i] = zero if b[i] else gi / x[i]


def _exp_bw(g: Any, v: Any, b: Any, gx: Any, lo: Any, hi: Any,
            zero: Any) -> None:  # pragma: no cover
    for i in range(g.shape[0]):
        gi = g[i]
        gi = lo if gi < lo else (hi if gi > hi else gi)
        gx[i] = zero if b[i] else gi * v[i]


def _tan_bw(g: Any, v: Any, b: Any, gx: Any, lo: Any, hi: Any, zero: Any,
            one: Any) -> None:  # pragma: no cover
    for i in range(g.shape[0]):
        gi = g[i]
        gi = lo if gi < lo else (hi if gi > hi else gi)
        vi = v[i]
        gx[i] = zero if b[i] else gi * (vi * vi + one)


def _sqrt_bw(g: Any, v: Any, gx: Any, lo: Any, hi: Any,
             zero: Any) -> None:  # pragma: no cover
    # 0 at ⊥ and at the signed zeros |x| < tiny: exactly where v is not > 0
    for i in range(g.shape[0]):
        gi = g[i]
        gi = lo if gi < lo else (hi if gi > hi else gi)
        vi = v[i]
        gx[i] = gi / (vi + vi) if vi > zero else zero  # 2·v exactly, in the dtype


def _gate_bw(g: Any, b: Any, out: Any, lo: Any, hi: Any,
             zero: Any) -> None:  # pragma: no cover
    # the policy gate's cotangent: +0 at ⊥, clip(g, lo, hi) elsewhere
    for i in range(g.shape[0]):
        gi = g[i]
        out[i] = zero if b[i] else (lo if gi < lo else (hi if gi > hi else gi))


_SOURCES: dict[str, Callable[..., None]] = {
    "div": _div_bw, "mul": _mul_bw, "add": _add_bw, "neg": _neg_bw, "inv": _inv_bw,
    "log": _log_bw, "exp": _exp_bw, "tan": _tan_bw, "sqrt": _sqrt_bw, "gate": _gate_bw,
}


def _kernel(name: str) -> Callable[..., Any] | None:
    f = _fused()
    if f is False:
        return None
    with _LOCK:
        k = _KERNELS.get(name)
        if k is None:
            import numba as nb  # importable: _fused.available() said so

            # the fused kernels' options and disk cache (compiled uncached where no
            # cache location is writable)
            k = f._jit(nb, _SOURCES[name])
            _KERNELS[name] = k
    return k


def _flat(a: Any) -> Any:
    """The flat view of a C-contiguous array (the loops take 1-d arrays)."""
    return a if a.ndim == 1 else a.reshape(-1)


def backward(op: str, g: Tensor, saved: tuple[Any, ...], nx: bool, ny: bool,
             clip: bool = False) -> tuple[Tensor | None, Tensor | None] | None:
    """The gradients ``(d/dx, d/dy)`` of ``op`` by its fused loop, or ``None`` (no
    loop for ``op``, numba unavailable, ``g`` not a plain CPU tensor, a torch function
    or dispatch mode or a functorch transform active). ``saved``: what ``_torch_autograd_ops._SAVE[op]`` lists,
    in that order, as contiguous tensors or as flat numpy arrays (from :func:`forward`);
    ``g`` has the value's shape and dtype (no double backward). ``clip``: the cotangent
    is ``clamp(g, −1, 1)`` first (the CLAMP policy), in the same loop. The gradients
    are new tensors on numpy buffers (``torch.from_numpy``)."""
    if type(g) is not Tensor or g.layout is not torch.strided or not g.is_cpu or _observed(g):
        return None
    name = "add" if op == "sub" else op
    k = _loop(name)
    if k is None:
        return None
    if g.is_neg() or not g.is_contiguous():
        g = g.resolve_neg().contiguous()
    try:
        args, grads = _prepare(op, name, g, saved, nx, ny, clip)
    except Exception:  # an operand numpy cannot view: torch ops, this time
        return None
    try:
        k(*args)
    except Exception:  # numba could not compile the loop: torch ops (same results)
        _broken(name)
        return None
    return grads


def gate(g: Tensor, bottom: Tensor, clip: bool) -> Tensor | None:
    """The policy gate's cotangent ``where(bottom, +0, clamp(g, −1, 1) if clip else g)``
    in one loop, or ``None`` when the loop does not apply (numba unavailable; ``g`` not
    a plain contiguous real float32/float64 CPU tensor; ``bottom`` not a contiguous bool
    tensor of ``g``'s shape; a torch function or dispatch mode or a functorch transform
    active)."""
    dt = g.dtype
    if (dt not in _CHAR or type(g) is not Tensor or bottom.dtype is not torch.bool
            or bottom.shape != g.shape or not _plain(g) or not _plain(bottom) or _observed(g)):
        return None
    k = _loop("gate")
    if k is None:
        return None
    lo, hi = _BOUNDS[dt, clip]
    try:
        gn = _numpy(g)
        bn = _numpy(bottom)
    except Exception:  # not viewable by numpy: torch ops, this time
        return None
    out = np.empty(gn.shape, gn.dtype)
    try:
        k(_flat(gn), _flat(bn), _flat(out), lo, hi, _ZERO[dt])
    except Exception:  # numba could not compile the loop: torch ops from now on
        _broken("gate")
        return None
    return torch.from_numpy(out)


def _observed(g: Tensor) -> bool:
    """Whether a torch function or dispatch mode (it must see every op) or a functorch
    transform is active, or ``g`` is a batched or functorch-wrapped tensor without data
    of its own (``autograd.grad(..., is_grads_batched=True)`` runs the backward under
    legacy vmap)."""
    return bool(torch._C._len_torch_function_stack() or torch._C._len_torch_dispatch_stack()
                or _ft.is_legacy_batchedtensor(g) or _ft.is_functorch_wrapped_tensor(g)
                or torch._C._are_functorch_transforms_active())


_ft = torch._C._functorch


def _plain(t: Tensor) -> bool:
    return bool(t.layout is torch.strided and t.is_cpu and t.is_contiguous()
                and not t.is_neg() and not t.is_conj())


def _loop(name: str) -> Callable[..., Any] | None:
    k = _KERNELS.get(name) if _STATE["fused"] else None
    if k is None:
        if name not in _SOURCES or name in _BROKEN:
            return None
        try:
            k = _kernel(name)
        except Exception:  # numba cannot build the loop here: torch ops
            _broken(name)
            return None
    return k


def _broken(name: str) -> None:
    _BROKEN.add(name)
    _KERNELS.pop(name, None)


#: the clip bounds (lo, hi) of the cotangent by dtype and ``clip``; ±inf: no clip
_BOUNDS = {(dt, clip): ((np_t(-1.0), np_t(1.0)) if clip else (np_t(-np.inf), np_t(np.inf)))
           for dt, np_t in ((torch.float32, np.float32), (torch.float64, np.float64))
           for clip in (False, True)}


def _prepare(op: str, name: str, g: Tensor, saved: tuple[Any, ...], nx: bool, ny: bool,
             clip: bool) -> tuple[tuple[Any, ...], tuple[Tensor | None, Tensor | None]]:
    """The loop's arguments and the gradients it writes: ordinary tensors (they become
    ``.grad``) on fresh numpy buffers, written through flat views."""
    gn = _numpy(g)
    if type(saved[0]) is np.ndarray:  # the forward's flat views
        ins = (_flat(gn), *saved)
    else:
        ins = (_flat(gn), *[_flat(_numpy(a)) for a in saved])
    dt = g.dtype
    zero = _ZERO[dt]
    lo, hi = _BOUNDS[dt, clip]
    if name not in ("div", "mul", "add"):  # unary
        gu = np.empty(gn.shape, gn.dtype)
        extra = (lo, hi, zero, _ONE[dt]) if name == "tan" else (lo, hi, zero)
        return (*ins, _flat(gu), *extra), (torch.from_numpy(gu), None)
    if op == "add":  # d/dx = d/dy: one tensor serves both (as torch's own add)
        o = np.empty(gn.shape, gn.dtype)
        of = _flat(o)
        out = torch.from_numpy(o)
        return (*ins, of, of, lo, hi, zero, True, False), ((out if nx else None),
                                                          (out if ny else None))
    # an output that is not needed is not written: the other one stands in for it
    ax = np.empty(gn.shape, gn.dtype) if nx else None
    ay = np.empty(gn.shape, gn.dtype) if ny else None
    fx = _flat(ax) if ax is not None else None
    fy = _flat(ay) if ay is not None else None
    args = (*ins, fx if fx is not None else fy, fy if fy is not None else fx, lo, hi, zero,
            nx, ny)
    return args, (None if ax is None else torch.from_numpy(ax),
                  None if ay is None else torch.from_numpy(ay))
