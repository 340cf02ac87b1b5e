"""PyTorch adapter: detach as stop-gradient, policy gates as ``torch.autograd.Function``.

Kernels run eagerly on small inputs and inside the caller's ``torch.compile`` graph; on
large eager inputs without autograd they are fused with inductor (``_torch_fuse``). The
public ops' fast path (:meth:`TorchBackend.fast`) hands plain CPU float32/float64
tensors to fused kernels: numba kernels without autograd (without numba, the op's own
kernel through the fuser, ``_torch_compiled_ops``), and with autograd each real SCM op's
own ``autograd.Function`` with the policy gate inside it (``_torch_autograd_ops``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

from zpml_backends._torch_fuse import TorchFuser, dynamo_tracing

from zpml_core import _xp
from zpml_core._registry import Backend
from zpml_core.autodiff.policies import resolve_policy


class TorchBackend(Backend):
    name = "torch"
    # the second: the namespace the fuser gives the kernels it compiles (_torch_fuse)
    namespace_names = ("array_api_compat.torch", "zpml_backends._torch_fused_ns")
    supports_autodiff = True

    def __init__(self) -> None:
        # Created here, not on first use: the first call may be traced by the caller's
        # torch.compile, and traced code must find everything it reads already built.
        self._fuser = TorchFuser()
        # public op -> its kernel through the fuser (the fast path without numba)
        self._compiled_ops: dict[str, Any] = {}
        self._results_registered = False
        _xp.add_trace_probe(dynamo_tracing)  # library caches stay untouched under Dynamo
        if "torch" in sys.modules:  # build the policy gate class now (no torch import)
            import zpml_backends._torch_gate  # noqa: F401

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        """Eager kernels, fused with inductor for large inputs (see ``_torch_fuse``)."""
        if not self._results_registered and not sys.modules["torch"].compiler.is_dynamo_compiling():
            # torch.export returns pytrees: teach torch InferenceResult's leaves (plain
            # Python: done eagerly or under non-strict export, never traced by Dynamo)
            import zpml_backends.torch_inference  # noqa: F401

            self._results_registered = True
        return self._fuser(kernel)

    fast_types = (("torch", "Tensor"),)

    def fast(self, op: str, *args: Any) -> Any:
        """Fused kernels (``zpml_backends._fused``) on zero-copy numpy views of plain CPU
        tensors: exact type ``torch.Tensor`` (the caller checked the first operand),
        strided, contiguous, real float32/float64, one dtype and shape for all operands,
        and nothing that could observe or transform the call — not compiling, no
        functorch transform or forward-AD level, no torch function or dispatch mode.
        Transcendental values come from torch's own in-place function on the sanitised
        operand. ``None`` otherwise. Without numba the same qualifying tensors go to the
        op's own array-API kernel through the inductor fuser (:meth:`_fast_compiled`).

        An operand requiring grad (grad mode on) takes the training path instead: the
        op's fused autograd Function (``zpml_backends._torch_autograd_ops.grad_op``, with
        or without numba), which also applies the policy gate — resolved here as
        ``gate_output`` resolves it in eager mode (the active context, else the
        ``"scm_ops"`` registry entry, else CLAMP), and overridden by a context active
        around ``.backward()``. With grad mode off such operands are used detached (no
        derivative can be taken; the array-API path would not gate either)."""
        torch = sys.modules["torch"]
        if torch.compiler.is_compiling():  # first: traced code touches no state
            return None
        x = args[0]
        if op != "strict" and (x.requires_grad or (len(args) == 2 and args[1].requires_grad)):
            if torch.is_grad_enabled():  # the training path (see above)
                ag = self._autograd
                if ag is None:
                    ag = self._autograd = _load_autograd()
                if ag is False:
                    return None
                return ag.grad_op(op, x, args[1] if len(args) == 2 else None,
                                  resolve_policy("scm_ops", traced=False))
            args = tuple(a.detach() for a in args)
        fused = self._fused
        if fused is None:
            fused = self._fused = _load_fused()
        x = args[0]
        char = _FAST_DTYPES[x.dtype]
        if char is None:
            return None
        if (torch._C._are_functorch_transforms_active()
                or torch.autograd.forward_ad._current_level >= 0
                or torch._C._len_torch_function_stack() > 0
                or torch._C._len_torch_dispatch_stack() > 0):
            return None
        binary = op == "strict" or len(args) == 2
        if binary:
            y = args[1]
            if y.dtype is not x.dtype or y.shape != x.shape:
                return None
        if fused is False:  # no numba: the op's kernel as the fuser compiled it
            return self._fast_compiled(op, args)
        try:  # zero-copy views; numpy() refuses grad, non-CPU, sparse, neg/conj bits
            xn = x.numpy()
            yn = y.numpy() if binary else None
        except (RuntimeError, TypeError):
            return None
        if not _c_contiguous(xn) or (binary and not _c_contiguous(yn)):
            return None
        if binary:
            if op == "strict":
                thr, tau, tau_train = args[2](self._consts(x.dtype))
                if tau == 0.0:  # tau_infer underflows: the array-API path raises
                    return None
                res = fused.strict(char, xn, yn, thr, tau, tau_train)
            elif op in fused.BINARY_OPS:
                res = fused.binary(op, char, xn, yn)
            else:
                return None
        elif op in _TORCH_LIBRARY:
            res = fused.unary(op, char, xn, _TORCH_LIBRARY[op])
        elif op in fused.EXACT_UNARY_OPS:
            res = fused.unary(op, char, xn, None)
        else:
            return None
        from_numpy = torch.from_numpy
        if len(res) == 2:  # (value, bottom): no generator on the common path
            return from_numpy(res[0]), from_numpy(res[1])
        return tuple(from_numpy(r) for r in res)

    _fused: Any = None
    _autograd: Any = None  # zpml_backends._torch_autograd_ops, or False

    def _fast_compiled(self, op: str, args: tuple[Any, ...]) -> Any:
        """The fast path without numba (``_torch_compiled_ops``): strided CPU tensors
        (qualified by the caller as for the numba kernels, less the numpy view) to the
        op's array-API kernel, through the fuser."""
        strided = sys.modules["torch"].strided
        x = args[0]
        binary = len(args) >= 2
        # requires_grad reaches here for strict inference only (the ops took the training
        # path or were detached): the public function gates its result, this path cannot
        if not x.is_cpu or x.layout is not strided or x.is_neg() or x.requires_grad:
            return None
        if binary:
            y = args[1]
            if not y.is_cpu or y.layout is not strided or y.is_neg() or y.requires_grad:
                return None
        compiled = self._compiled_ops.get(op)
        if compiled is None:
            from zpml_backends._torch_compiled_ops import compiled_op

            compiled = compiled_op(self._fuser, op, self)
            if compiled is None:  # an op without a real kernel
                return None
            self._compiled_ops[op] = compiled
        if op == "strict":
            thr, tau, tau_train = args[2](self._consts(x.dtype))
            if tau == 0.0:  # tau_infer underflows: the array-API path raises
                return None
            return compiled(x, y, (), thr=thr, tau=tau, tau_train=tau_train)
        if binary:
            return compiled(x, y, None, None)
        return compiled(x, None)

    def _consts(self, dtype: Any) -> Any:
        """The dtype's constants for the fast path (never traced there), memoised."""
        c = self._consts_by_dtype.get(dtype)
        if c is None:
            c = self._consts_by_dtype[dtype] = _xp.consts(self.namespace(), dtype)
        return c

    _consts_by_dtype: ClassVar[dict[Any, Any]] = {}  # float32/float64 -> FloatConsts

    def result_type(self, xp: Any, *arrays_or_dtypes: Any) -> Any:
        """``torch.promote_types`` over the dtypes: constant-folded by Dynamo (the
        namespace's ``result_type`` builds tensors for float16/bfloat16, a graph break).
        A function of the dtypes alone, as array-api-compat's promotion table is for the
        standard dtypes (a 0-d tensor does not lose priority)."""
        import functools

        import torch

        dtypes = [getattr(a, "dtype", a) for a in arrays_or_dtypes]
        return functools.reduce(torch.promote_types, dtypes)

    def array_namespace(self, x: Any) -> Any:
        """``array_api_compat.torch`` for tensors (no torch import: a tensor implies it)."""
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(x, torch.Tensor):
            return self.namespace()
        return None

    def integer_arithmetic(self, dtype: Any) -> bool:
        """torch implements no arithmetic for uint16/uint32/uint64 (only storage)."""
        import torch

        return dtype not in (torch.uint16, torch.uint32, torch.uint64)

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def signed_zero(self, x: Any) -> Any:
        """``copysign(0, x)`` with derivative 1 whenever a derivative can be taken
        (reverse mode, ``torch.func`` transforms, forward mode; always under
        ``torch.compile``, where a transform inside the compiled region is invisible)."""
        import torch

        if torch.compiler.is_compiling() or _may_differentiate(x):
            d = x.detach()
            return d * 0.0 - (d - x)
        return x * 0.0

    def is_tracing(self, x: Any) -> bool:
        """True under ``torch.compile`` and inside ``torch.func.vmap`` (batched values
        cannot be inspected with ``bool()``); False in eager mode and under
        ``torch.func.grad`` alone, where values are concrete."""
        import torch

        if torch.compiler.is_compiling():
            return True
        return _in_vmap()

    def clip_scalar(self, x: Any, lo: float | None, hi: float | None) -> Any:
        """``clamp`` with Python-scalar bounds (used by the losses): one native op, NaN
        propagates, the gradient passes at a bound."""
        import torch

        return torch.clamp(x, lo, hi)

    def gate(self, value: Any, bottom: Any, policy: Any, *, xp: Any) -> Any:
        """Policy gate (``zpml_core.autodiff.rules``) as a ``torch.autograd.Function``
        (``_torch_gate.gate``: an old-style Function in plain eager mode, the
        ``setup_context`` classes under functorch transforms and forward mode).

        Skipped when no derivative can flow: ``value`` does not require grad (or grad
        mode is off) and no forward-mode or functorch transform is active
        (``torch.func.jvp``/``jacfwd``/``vmap``, a ``forward_ad`` dual level). Forward
        mode applies the gate's ``jvp`` (``_torch_gate.tangent_map``). In eager mode
        even PASSTHROUGH is gated, so that a policy context around ``.backward()`` can
        override it. Under ``torch.compile`` the forward-time policy is applied with
        plain ops (``_torch_gate.traced_gate``), which also holds under a compiled
        ``torch.func.jvp``.
        """
        import torch

        if torch.compiler.is_compiling():
            # transforms inside the compiled region are invisible to requires_grad: the
            # gate is always applied, with plain ops (see _torch_gate.traced_gate)
            from zpml_backends._torch_gate import traced_gate

            return traced_gate(value, bottom, policy)
        if not _may_differentiate(value):
            return value
        from zpml_backends._torch_gate import gate

        return gate(value, bottom, policy)

    def pair_gate(self, p: Any, q: Any, bottom: Any, policy: Any, *,
                  xp: Any) -> tuple[Any, Any]:
        """The fit losses' pair gate (``zpml_core.autodiff.fit_rules``): in eager mode an
        ``autograd.Function`` honouring a policy context around ``.backward()`` (even
        PASSTHROUGH is gated, as with :meth:`gate`); under ``torch.compile`` the
        array-API default with the forward-time policy; skipped when no derivative can
        flow."""
        import torch

        from zpml_core.autodiff.fit_rules import pair_gate_default

        if torch.compiler.is_compiling():
            return pair_gate_default(self, p, q, bottom, policy, xp=xp)
        if not (_may_differentiate(p) or _may_differentiate(q)):
            return p, q
        from zpml_backends._torch_pair_gate import pair_gate

        return pair_gate(self, p, q, bottom, policy)

    def namespace(self) -> Any:
        import array_api_compat.torch as xp

        return xp

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        import numpy as np
        import torch

        t = torch.from_numpy(np.array(a, copy=True))
        if dtype is not None:
            t = t.to(dtype)
        if device is not None:
            t = t.to(device)
        return t

    def to_numpy(self, x: Any) -> Any:
        return x.detach().cpu().resolve_conj().resolve_neg().numpy().copy()

    def training(self) -> Any:
        """SCMTrainer support: the eager torch step (``zpml_backends.torch_training``)."""
        from zpml_backends.torch_training import TorchTraining

        return TorchTraining()


def _load_fused() -> Any:
    """``zpml_backends._fused`` if numba is importable, else False (checked once)."""
    from zpml_backends import _fused

    return _fused if _fused.available() else False


def _load_autograd() -> Any:
    """``zpml_backends._torch_autograd_ops``, or False if it cannot be imported."""
    try:
        from zpml_backends import _torch_autograd_ops
    except Exception:  # a broken numpy/array-api-compat install: the array-API path
        return False
    return _torch_autograd_ops


class _DtypeChars(dict[Any, "str | None"]):
    """torch float32/float64 -> the fused kernels' dtype char (filled when torch is
    first seen: a tensor implies torch is imported)."""

    def __missing__(self, dtype: Any) -> str | None:
        torch = sys.modules["torch"]
        char = {torch.float32: "f", torch.float64: "d"}.get(dtype)
        self[dtype] = char
        return char


_FAST_DTYPES = _DtypeChars()


def _c_contiguous(a: Any) -> bool:
    """A C-contiguous, aligned numpy view (a strided or overlapping tensor is not)."""
    flags = a.flags
    return bool(flags.c_contiguous and flags.aligned)


def _torch_inplace(name: str) -> Any:
    def apply(a: Any) -> None:
        getattr(sys.modules["torch"].from_numpy(a), name + "_")()
    apply.__name__ = f"torch_{name}_"
    return apply


#: transcendental values from torch's own function (aten's sqrt is not correctly rounded)
_TORCH_LIBRARY = {op: _torch_inplace(op) for op in ("log", "exp", "sin", "cos", "tan", "sqrt")}


def _may_differentiate(x: Any) -> bool:
    """Whether a derivative of ``x`` may be taken: ``x`` requires grad (and grad mode is
    on), or — outside ``torch.compile``, where ``requires_grad`` is the whole story — a
    ``torch.func`` transform or a ``forward_ad`` dual level is active (their tangents
    and batched gradients do not set ``requires_grad``)."""
    import torch

    if x.requires_grad and torch.is_grad_enabled():  # static under compile (guarded)
        return True
    if torch.compiler.is_compiling():
        return False
    return bool(torch._C._are_functorch_transforms_active()
                or torch.autograd.forward_ad._current_level >= 0)


def _in_vmap() -> bool:
    """Whether a ``torch.func.vmap`` level is active (functorch interpreter stack)."""
    if _FUNCTORCH is None:
        _load_functorch()
    ft = _FUNCTORCH
    if ft.peek_interpreter_stack() is None:  # fast path: no transform at all
        return False
    vmap = ft.TransformType.Vmap
    return any(i.key() == vmap for i in ft.get_interpreter_stack() or ())


_FUNCTORCH: Any = None


def _load_functorch() -> None:
    global _FUNCTORCH
    from torch._C import _functorch

    _FUNCTORCH = _functorch
