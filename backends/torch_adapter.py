"""PyTorch adapter: detach as stop-gradient, policy gates as ``torch.autograd.Function``.

Kernels run eagerly on small inputs and inside the caller's ``torch.compile`` graph; on
large eager inputs without autograd they are fused with inductor (``_torch_fuse``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zpml_core._registry import Backend
from zpml_core.autodiff.policies import GradientPolicy


class TorchBackend(Backend):
    name = "torch"
    namespace_names = ("array_api_compat.torch",)
    supports_autodiff = True

    def __init__(self) -> None:
        self._fuser: Any = None

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        """Eager kernels, fused with inductor for large inputs (see ``_torch_fuse``)."""
        if self._fuser is None:
            from zpml_backends._torch_fuse import TorchFuser

            self._fuser = TorchFuser()
        return self._fuser(kernel)

    def integer_arithmetic(self, dtype: Any) -> bool:
        """torch implements no arithmetic for uint16/uint32/uint64 (only storage)."""
        import torch

        return dtype not in (torch.uint16, torch.uint32, torch.uint64)

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def signed_zero(self, x: Any) -> Any:
        if x.requires_grad:  # static under torch.compile (guarded)
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
        """Policy gate (``zpml_core.autodiff.rules``) as a ``torch.autograd.Function``.

        Skipped when no gradient can flow (``value`` does not require grad, or grad mode
        is off). PASSTHROUGH skips the gate only under ``torch.compile``: in eager mode
        the gate stays so that a policy context around ``.backward()`` can override it.
        """
        import torch

        if not (value.requires_grad and torch.is_grad_enabled()):
            return value
        if torch.compiler.is_compiling() and policy is GradientPolicy.PASSTHROUGH:
            return value
        from zpml_backends._torch_gate import gate

        return gate(value, bottom, policy)

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


def _in_vmap() -> bool:
    """Whether a ``torch.func.vmap`` level is active (functorch interpreter stack)."""
    from torch._C import _functorch

    if _functorch.peek_interpreter_stack() is None:  # fast path: no transform at all
        return False
    stack = _functorch.get_interpreter_stack() or ()
    vmap = _functorch.TransformType.Vmap
    return any(i.key() == vmap for i in stack)
