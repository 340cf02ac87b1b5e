"""Kernel fusion for large eager torch inputs (``TorchBackend.fuse``).

An SCM kernel is ~10–20 elementwise ops; run eagerly on large tensors each op allocates
(and page-faults) a fresh temporary. For inputs of at least ``min_numel`` elements that
need no gradient, the kernel is compiled once per signature with ``torch.compile``
(inductor; one loop writing only the outputs). Everything else runs eagerly and
unchanged: small inputs, inputs that require grad (eager autograd semantics), code being
traced by the caller's own ``torch.compile``, and functorch transforms (vmap, grad).
If compiling fails (e.g. no C++ compiler), the kernel falls back to eager for good, with
one warning.

Environment: ``ZPML_TORCH_FUSE=0`` disables fusion; ``ZPML_TORCH_FUSE_MIN_NUMEL``
changes the size threshold (default 131072 elements).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Any

DEFAULT_MIN_NUMEL = 1 << 17


def _min_numel() -> int:
    raw = os.environ.get("ZPML_TORCH_FUSE_MIN_NUMEL", "")
    return int(raw) if raw.strip() else DEFAULT_MIN_NUMEL


class TorchFuser:
    """Caches one eager-or-compiled dispatcher per kernel."""

    def __init__(self) -> None:
        self.enabled = os.environ.get("ZPML_TORCH_FUSE", "1") != "0"
        self.min_numel = _min_numel()
        self._wrapped: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._states: dict[str, dict[str, Any]] = {}

    def compiled_kernels(self) -> list[str]:
        """Names of the kernels compiled so far (diagnostics and tests)."""
        return sorted(k for k, st in self._states.items() if st["compiled"] is not None)

    def __call__(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        if not self.enabled:
            return kernel
        wrapped = self._wrapped.get(kernel)
        if wrapped is None:
            wrapped = self._wrap(kernel)
            self._wrapped[kernel] = wrapped
        return wrapped

    def _wrap(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        import torch

        state: dict[str, Any] = {"compiled": None, "broken": False}
        self._states[kernel.__qualname__] = state

        def tensors(arrays: tuple[Any, ...]) -> list[Any]:
            out = []
            for a in arrays:  # strict_inference passes its validity factors as a tuple
                out.extend(tensors(a) if isinstance(a, tuple) else [a])
            return [a for a in out if isinstance(a, torch.Tensor)]

        def eager_only(arrays: tuple[Any, ...]) -> bool:
            if state["broken"] or torch.compiler.is_compiling():
                return True
            if torch._C._are_functorch_transforms_active():
                return True
            ts = tensors(arrays)
            if torch.is_grad_enabled() and any(t.requires_grad for t in ts):
                return True
            return not any(t.numel() >= self.min_numel for t in ts)

        @functools.wraps(kernel)
        def run(*arrays: Any, **static: Any) -> Any:
            if eager_only(arrays):
                return kernel(*arrays, **static)
            compiled = state["compiled"]
            if compiled is None:
                compiled = torch.compile(kernel, dynamic=True, fullgraph=True)
                state["compiled"] = compiled
            try:
                return compiled(*arrays, **static)
            except Exception as exc:  # no compiler, unsupported platform, ...
                state["broken"] = True
                warnings.warn(
                    f"zpml_core: torch.compile of kernel {kernel.__name__} failed ({exc!r}); "
                    "running it eagerly from now on (set ZPML_TORCH_FUSE=0 to silence)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return kernel(*arrays, **static)

        return run
