"""JAX adapter: ``lax.stop_gradient``; every kernel is ``jax.jit``-compiled once per
signature so eager calls run as one fused XLA computation (inside a caller's ``jit`` the
nested jit is inlined). Set ``ZPML_JAX_FUSE=0`` to run kernels op by op.

Enable float64 with ``jax.config.update("jax_enable_x64", True)``; with JAX's default
x32 mode float64 data is silently computed in float32 (SPEC §9 #2).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from zpml_core._registry import Backend


class JaxBackend(Backend):
    name = "jax"
    namespace_names = ("jax.numpy",)
    supports_autodiff = True

    def __init__(self) -> None:
        self._fused: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._enabled = os.environ.get("ZPML_JAX_FUSE", "1") != "0"
        self._pytrees_registered = False

    def _register_pytrees(self) -> None:
        # InferenceResult is a 3-tuple with extra attributes: teach jit/vmap its leaves
        if self._pytrees_registered:
            return
        import jax

        from zpml_core.inference import InferenceResult

        try:
            jax.tree_util.register_pytree_node(
                InferenceResult,
                lambda r: ((*r, r.fault_mask, r.semantic_bottom_mask), None),
                lambda _, leaves: InferenceResult(*leaves),
            )
        except ValueError:  # already registered (a second adapter instance)
            pass
        self._pytrees_registered = True

    def stop_gradient(self, x: Any) -> Any:
        import jax

        return jax.lax.stop_gradient(x)

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        self._register_pytrees()
        if not self._enabled:
            return kernel
        f = self._fused.get(kernel)
        if f is None:
            import jax

            static = tuple(
                n
                for n, p in inspect.signature(kernel).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY
            )
            f = jax.jit(kernel, static_argnames=static)
            self._fused[kernel] = f
        return f

    def is_tracing(self, x: Any) -> bool:
        import jax

        return isinstance(x, jax.core.Tracer)

    def namespace(self) -> Any:
        import jax.numpy as jnp

        return jnp

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        import jax
        import numpy as np

        arr = np.array(a, copy=True)
        if dtype is not None:
            arr = arr.astype(dtype)
        return jax.device_put(arr, device) if device is not None else jax.numpy.asarray(arr)

    def to_numpy(self, x: Any) -> Any:
        import numpy as np

        return np.array(x, copy=True)
