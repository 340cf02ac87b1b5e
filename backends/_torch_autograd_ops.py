"""The training fast path on torch: each real SCM op as one ``torch.autograd.Function``.

On the array-API path an SCM op on tensors that require grad records ~20 aten ops in
the autograd graph (stop-gradient predicates, sanitising ``where``s, the DAZ signed
zero, the op) and its backward replays as many. Here the forward computes value and
mask in one fused kernel (``zpml_backends._fused``, numba; ``zpml-core[fast]``) or in a
few unrecorded torch ops (``zpml_backends._torch_autograd_eager``), saves what the
derivative needs, and the backward evaluates the derivative in one loop
(``zpml_backends._torch_autograd_numba``) or in a few torch ops.

Contract (:func:`grad_op`): value, mask and the gradients with respect to ``x`` and ``y``
are bit for bit those of the array-API kernel's autograd graph (``zpml_core._scm_real``),
for every input (signed zeros, subnormals, ±inf, NaN, the overflow borders; NaN payloads
aside, which IEEE 754 leaves unspecified). With ``policy=None`` the policy gate is not
part of it (the caller applies ``gate_output`` to the value afterwards); with a policy
the Function is the kernel *and* its gate (below), which the torch adapter's fast path
(``TorchBackend.fast``) hands to the public ops.

The gate inside the Function: ``gate_output`` would add a node whose backward maps the
cotangent ``g`` to ``T(g)`` (``zpml_core.autodiff.rules.gate_backward``: CLAMP
``where(⊥, 0, clip(g, −1, 1))``, PROJECT ``where(⊥, 0, g)``, REJECT ``0``, PASSTHROUGH
``g``), using the policy resolved at the forward unless a ``gradient_policy`` context is
active while the backward runs (eager torch). The Function's backward resolves the policy
the same way and evaluates its gradients of ``T(g)``. Without double backward it uses
that every gradient formula is elementwise and gives ``+0`` at ⊥ whatever the cotangent
there: ``T(g)`` matters only where not ⊥, where it is ``clip(g, −1, 1)`` (CLAMP, folded
into the backward loop), ``g`` (PROJECT, PASSTHROUGH) or ``+0`` (REJECT) — so the
gradients are bit for bit those of gate and Function composed. With double backward
(``create_graph=True``) the backward applies ``gate_backward`` itself, with the same
differentiable ops as the gate node.

The gradient formulas are the chain rule through the kernel's graph, evaluated in the
order torch's derivative formulas evaluate it (``g`` is the cotangent of the value,
``ok`` = not bottom, ``v`` the value, every gradient is ``+0`` where not ``ok``)::

    div   d/dx = g/y + 0                 d/dy = (−g)·(v/y)
    mul   d/dx = (g + 0)·y               d/dy = (g + 0)·x
    add   d/dx = g + 0                   d/dy = g + 0        (sub: (−g) + 0)
    neg   d/dx = −g                      inv   d/dx = (−g)·(v·v)
    log   d/dx = g/x                     exp   d/dx = g·v
    sqrt  d/dx = g/(2·v) where v > 0 (0 at ⊥ and at the signed zeros |x| < tiny)
    sin   d/dx = g·cos(x)                cos   d/dx = g·(−sin(x))
    tan   d/dx = g·(v² + 1)

Where the terms come from: ``where(ok, x, safe)`` passes ``where(ok, g, 0)`` back; the
DAZ flush ``where(sub, signed_zero(x), x)`` with ``signed_zero(x) = d·0 − (d − x)``
returns ``where(sub, 0, g) + (−(−where(sub, g, 0)))``, i.e. ``g + 0`` (the sum turns a
``−0`` cotangent into ``+0``, so the ``+ 0`` is kept); division returns ``g/y`` and
``−g·((x/y)/y)`` with ``x/y`` recomputed, which is the value ``v`` where ``ok``; ``1/x`` is
``reciprocal(x)·1``, whose derivative is ``(−g·1)·(r·r)``; ``sqrt`` returns ``g/(2r)``,
``exp`` ``g·r``, ``tan`` ``g·(1 + r²)``, ``sin``/``cos`` ``g·cos(x)`` / ``g·(−sin(x))``.
Transcendental functions (the forward values and ``cos``/``sin`` in the backward) are
torch's own, applied to the kernel's sanitised operand (``where(ok, x, safe)``: same
shape, layout and values): aten's vector loops and their scalar tails can differ in the
last ulp, and a vectorised libm may branch on all lanes of a vector at once, so an
element's result may depend on its position and on its neighbours' values.

Double backward (``create_graph=True``): the backward is then evaluated with torch
ops, differentiably (``v`` is this Function's output, so second derivatives chain
through it; operands are sanitised at ⊥ first, so they are 0 there); only the
first-order gradients are promised bit for bit. Like torch's own ``x / y``, the
Function saves its operands: modifying one in place before the backward raises
autograd's "modified by an inplace operation" error.

Not taken (:func:`grad_op` returns ``None`` and the caller runs the array-API kernel):
anything but exact ``torch.Tensor``/``nn.Parameter`` operands on the CPU, strided and
contiguous, real float32/float64 of one dtype and shape (float16/bfloat16 are computed
in float32 by the kernels; broadcasting, masks and Python scalars take the full path),
no operand requiring grad or grad mode off, inference tensors, negative-bit views,
functorch wrappers, ``torch.compile`` tracing, an active functorch transform or
forward-AD level, an active torch function or dispatch mode.

Cost: the forward's numpy views of the saved tensors are kept for the first backward
(unless saved-tensor hooks are active, which may replace what is saved); gradients are
written into fresh numpy buffers (``torch.from_numpy``); ``Function.apply``'s Python
wrapper is skipped (:func:`_c_apply`). What remains over the plain expression is
mostly the fixed cost of a Python ``autograd.Function`` (~13 µs per forward+backward).
"""

from __future__ import annotations

import operator
from typing import Any

import array_api_compat.torch as _txp
import torch
from zpml_backends import _torch_autograd_eager as _eager
from zpml_backends import _torch_autograd_numba as _nb
from zpml_backends._torch_autograd_eager import Grads

from zpml_core.autodiff.policies import GradientPolicy, backward_override
from zpml_core.autodiff.rules import gate_backward

__all__ = ["OPS", "grad_op"]

Tensor = torch.Tensor

#: the ops with a fused autograd Function (binary: x, y; unary: x)
BINARY_OPS = ("add", "sub", "mul", "div")
UNARY_OPS = ("neg", "inv", "log", "exp", "sqrt", "sin", "cos", "tan")
OPS = BINARY_OPS + UNARY_OPS

_TYPES = (torch.Tensor, torch.nn.Parameter)
_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
_DTYPES = (torch.float32, torch.float64)
_STRIDED = torch.strided


def grad_op(op: str, x: Tensor, y: Tensor | None = None,
            policy: GradientPolicy | None = None) -> tuple[Tensor, Tensor] | None:
    """``(value, bottom)`` of the SCM op ``op`` with the fused autograd Function, or
    ``None`` when the call does not qualify (see the module docstring).

    ``op`` is one of :data:`OPS`; binary ops take ``x, y``, unary ops ``x`` (``y`` None).
    ``value`` carries the Function's gradient (bit for bit the kernel's); ``bottom`` is a
    bool tensor that requires no grad. With ``policy=None`` the caller gates ``value``
    with the policy; with a :class:`GradientPolicy` the Function applies the gate itself
    (see "The gate inside the Function" in the module docstring), so ``value`` is what
    ``gate_output`` would return for that forward-time policy.
    """
    apply = _APPLY.get(op)
    if apply is None or not _qualifies(x, y, op in BINARY_OPS):
        return None
    out: tuple[Tensor, Tensor] = apply(x, policy) if y is None else apply(x, y, policy)
    return out


def _plain(t: Any) -> bool:
    """A plain strided contiguous CPU tensor with data of its own (not an inference
    tensor, not a negative-bit view, not a functorch wrapper)."""
    return bool(t.layout is _STRIDED and t.is_cpu and t.is_contiguous()
                and not t.is_inference() and not t.is_neg() and not _wrapped(t))


def _qualifies(x: Any, y: Any, binary: bool) -> bool:
    """The cheap qualification rule (not compiling first: traced code touches nothing
    else; then type, dtype, shape, layout; global state last)."""
    if _compiling() or type(x) not in _TYPES or x.dtype not in _DTYPES:
        return False
    if binary:
        if (type(y) not in _TYPES or y.dtype is not x.dtype or y.shape != x.shape
                or not (x.requires_grad or y.requires_grad) or not _plain(y)):
            return False
    elif y is not None or not x.requires_grad:
        return False
    return (_plain(x) and _grad_enabled()
            and not _functorch_active() and _fwad._current_level < 0
            and not _function_modes() and not _dispatch_modes())


_grad_enabled = torch.is_grad_enabled
_compiling = torch.compiler.is_compiling
_functorch_active = torch._C._are_functorch_transforms_active
_fwad = torch.autograd.forward_ad
_function_modes = torch._C._len_torch_function_stack
_dispatch_modes = torch._C._len_torch_dispatch_stack


#: what each backward needs, as indices into (x, y, value, bottom)
_SAVE: dict[str, tuple[int, ...]] = {
    "div": (1, 2, 3), "mul": (0, 1, 3), "add": (3,), "sub": (3,), "neg": (3,),
    "inv": (2, 3), "log": (0, 3), "exp": (2, 3), "sqrt": (2,), "sin": (0, 3),
    "cos": (0, 3), "tan": (2, 3),
}


# ---------------------------------------------------------------------------------------
# the Functions


def _forward(op: str, x: Tensor, y: Tensor | None
             ) -> tuple[Tensor, Tensor, tuple[Any, ...] | None]:
    fused = _nb.forward(op, x, y)
    if fused is not None:
        return fused
    if y is None:
        return (*_eager.FORWARD[op](x), None)
    return (*_eager.FORWARD[op](x, y), None)


def _save(ctx: Any, op: str, x: Tensor, y: Tensor | None, v: Tensor, b: Tensor,
          policy: GradientPolicy | None, arrays: tuple[Any, ...] | None) -> None:
    ctx.save_for_backward(*(_PICK if policy is None else _PICK_GATED)[op]((x, y, v, b)))
    # the forward's numpy views of the same tensors, for the backward loop (saves
    # converting the saved tensors again) — not when saved-tensor hooks may replace
    # what is saved (offloading, checkpointing)
    ctx.arrays = (_PICK[op](arrays) if arrays is not None
                  and _saved_tensor_hooks(False) is None else None)
    ctx.policy = policy
    ctx.mark_non_differentiable(b)
    ctx.set_materialize_grads(False)


_saved_tensor_hooks = torch._C._autograd._top_saved_tensors_default_hooks


def _backward(ctx: Any, op: str, g: Tensor | None, nx: bool, ny: bool) -> Grads:
    if g is None:  # only the mask was used
        return None, None
    saved = ctx.saved_tensors  # first: autograd's checks (in-place changes, freed graph)
    policy = ctx.policy
    if policy is not None:  # the gate (eager: a context around .backward() wins)
        override = backward_override()
        if override is not None:
            policy = override
    n = len(_SAVE[op])
    if not torch.is_grad_enabled():  # no double backward: the gate's rule at non-⊥
        clip = policy is _CLAMP
        if policy is _REJECT:
            g = torch.zeros_like(g)
        # the forward's views serve one backward; a retained graph converts ``saved``
        arrays = ctx.arrays
        if arrays is not None:
            ctx.arrays = None
        fused = _nb.backward(op, g, saved[:n] if arrays is None else arrays, nx, ny, clip)
        if fused is not None:
            return fused
        if clip:
            g = torch.clamp(g, -1.0, 1.0)
        return _eager.BACKWARD[op](g, saved[:n], nx, ny)
    if policy is None:
        return _eager.BACKWARD[op](g, saved[:n], nx, ny)
    # create_graph with the gate inside: the gate's own (differentiable) ops, and the
    # derivative formulas read the value *ungated* — the saved output is gated (a
    # second-order cotangent reaching it would be gated again), so the ungated Function
    # recomputes it from the saved operands (same values, the ungated derivative)
    pos = _GATED_POS[op]
    g = gate_backward(policy, (saved[pos[3]],), g, xp=_txp)
    if 2 in _SAVE[op]:
        ops = (saved[pos[0]], saved[pos[1]]) if op in BINARY_OPS else (saved[pos[0]],)
        v = _APPLY[op](*ops, None)[0]
        saved = tuple(v if i == 2 else saved[pos[i]] for i in _SAVE[op])
    return _eager.BACKWARD[op](g, saved[:n], nx, ny)


def _save_gated(op: str) -> tuple[int, ...]:
    """What a Function with the gate inside saves: ``_SAVE[op]``, then the mask (the gate
    reads it when the backward records a graph) and, where the derivative reads the
    value, the operands (to recompute the ungated value then)."""
    idx = _SAVE[op]
    extra = [] if 3 in idx else [3]
    if 2 in idx:
        extra += [i for i in ((0, 1) if op in BINARY_OPS else (0,)) if i not in idx]
    return (*idx, *extra)


_CLAMP = GradientPolicy.CLAMP
_REJECT = GradientPolicy.REJECT
_SAVE_GATED = {op: _save_gated(op) for op in _SAVE}
#: position in ``ctx.saved_tensors`` (gated Function) of x, y, value, mask (0..3)
_GATED_POS = {op: {i: k for k, i in enumerate(idx)} for op, idx in _SAVE_GATED.items()}


def _picker(idx: tuple[int, ...]) -> Any:
    """``t -> tuple(t[i] for i in idx)``, fast."""
    if len(idx) == 1:
        i = idx[0]
        return lambda t: (t[i],)
    return operator.itemgetter(*idx)


_PICK = {op: _picker(idx) for op, idx in _SAVE.items()}
_PICK_GATED = {op: _picker(idx) for op, idx in _SAVE_GATED.items()}


def _make(op: str) -> type[torch.autograd.Function]:
    name = "SCM" + op.capitalize()
    if op in BINARY_OPS:
        def forward(ctx: Any, x: Tensor, y: Tensor,
                    policy: GradientPolicy | None) -> tuple[Tensor, Tensor]:
            v, b, arrays = _forward(op, x, y)
            _save(ctx, op, x, y, v, b, policy, arrays)
            return v, b

        def backward(ctx: Any, g: Tensor | None, _gb: Any) -> tuple[Any, ...]:
            needs = ctx.needs_input_grad
            gx, gy = _backward(ctx, op, g, needs[0], needs[1])
            return gx, gy, None
    else:
        def forward(ctx: Any, x: Tensor,  # type: ignore[misc]
                    policy: GradientPolicy | None) -> tuple[Tensor, Tensor]:
            v, b, arrays = _forward(op, x, None)
            _save(ctx, op, x, None, v, b, policy, arrays)
            return v, b

        def backward(ctx: Any, g: Tensor | None, _gb: Any) -> tuple[Any, ...]:
            return _backward(ctx, op, g, ctx.needs_input_grad[0], False)[0], None
    doc = f"SCM ``{op}`` with a fused forward and backward (see the module docstring)."
    cls = type(name, (torch.autograd.Function,), {
        "__doc__": doc, "__module__": __name__,
        "forward": staticmethod(forward), "backward": staticmethod(backward)})
    return cls


def _c_apply(cls: type[torch.autograd.Function]) -> Any:
    """``cls.apply`` without its Python wrapper, which (for a Function with
    ``forward(ctx, ...)``, no functorch transform active — :func:`_qualifies` — and no
    functorch wrapper among the operands) only hands over to the C implementation."""
    base = getattr(torch._C, "_FunctionBase", None)
    c_apply = getattr(base, "__dict__", {}).get("apply")
    if c_apply is None or not hasattr(c_apply, "__get__"):
        return cls.apply
    return c_apply.__get__(None, cls)


_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {op: _make(op) for op in OPS}
_APPLY: dict[str, Any] = {op: _c_apply(cls) for op, cls in _FUNCTIONS.items()}
