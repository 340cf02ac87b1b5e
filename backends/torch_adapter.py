"""PyTorch adapter: detach as stop-gradient; kernels run eagerly (they compile as part of
the caller's ``torch.compile`` graph)."""

from __future__ import annotations

from typing import Any

from zpml_core._registry import Backend


class TorchBackend(Backend):
    name = "torch"
    namespace_names = ("array_api_compat.torch",)
    supports_autodiff = True

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def is_tracing(self, x: Any) -> bool:
        import torch

        return bool(torch.compiler.is_compiling())

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
