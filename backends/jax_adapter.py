"""JAX adapter: ``lax.stop_gradient``; every kernel is ``jax.jit``-compiled once per
signature so eager calls run as one fused XLA computation (inside a caller's ``jit`` the
nested jit is inlined). Set ``ZPML_JAX_FUSE=0`` to run kernels op by op.

Enable float64 with ``jax.config.update("jax_enable_x64", True)``; with JAX's default
x32 mode float64 data is silently computed in float32.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from zpml_core._registry import Backend
from zpml_core.autodiff import policies as _policies


class JaxBackend(Backend):
    name = "jax"
    namespace_names = ("jax.numpy",)
    supports_autodiff = True

    def __init__(self) -> None:
        self._fused: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._enabled = os.environ.get("ZPML_JAX_FUSE", "1") != "0"
        self._pytrees_registered = False
        # gradient-policy state as jit cache-key components (created once jax is loaded)
        self._policy_keys: tuple[Any, Any] | None = None
        self._policy_lock = threading.Lock()
        self._policy_local = threading.local()
        self._abs_fn: Callable[..., Any] | None = None
        self._fast_jit: dict[str, Callable[..., Any]] = {}
        _policies.add_state_listener(self._policy_state_changed)
        if "jax" in sys.modules:  # create the cache keys before anything is traced
            self._ensure_policy_keys()

    def _register_pytrees(self) -> None:
        # InferenceResult is a 3-tuple with extra attributes: teach jit/vmap its leaves
        if self._pytrees_registered:
            return
        import jax

        from zpml_core.inference import InferenceResult

        with contextlib.suppress(ValueError):  # already registered (another instance)
            jax.tree_util.register_pytree_node(
                InferenceResult,
                lambda r: ((*r, r.fault_mask, r.semantic_bottom_mask), None),
                lambda _, leaves: InferenceResult(*leaves),
            )
        self._pytrees_registered = True

    def stop_gradient(self, x: Any) -> Any:
        import jax

        return jax.lax.stop_gradient(x)

    def signed_zero(self, x: Any) -> Any:
        d = self.stop_gradient(x)
        return d * 0.0 - (d - x)

    # concrete (eager) jax arrays; the module path moved between jaxlib releases
    fast_types = (("jaxlib._jax", "ArrayImpl"), ("jaxlib.xla_extension", "ArrayImpl"))

    def fast(self, op: str, *args: Any) -> Any:
        """Eager calls on concrete float32/float64 arrays of one dtype and shape: the
        jitted array-API kernel the public op runs, called without the argument
        preparation (~50 µs per call at 1e4 elements). Bit for bit the public op's
        result: the same traced computation (``scm.real_kernel``); the policy gate
        is the identity on concrete arrays (no derivative can flow through them —
        tracers have other types and take the array-API path). With fusion off
        (``ZPML_JAX_FUSE=0``) it declines."""
        if not self._enabled:
            return None
        x = args[0]
        dt = x.dtype  # a numpy dtype (jax arrays use numpy's dtypes)
        if dt.kind != "f" or dt.itemsize not in (4, 8):
            return None
        y = args[1] if len(args) > 1 else None
        if y is not None and (y.dtype != dt or y.shape != x.shape):
            return None
        xp = self.namespace()
        if op == "strict":
            from zpml_core import _xp
            from zpml_core.inference.mode import _k_strict

            c = _xp.consts(xp, xp.float32 if dt.itemsize == 4 else xp.float64)
            thr, tau, tau_train = args[2](c)
            if tau == 0.0:  # tau_infer underflows: the array-API path raises
                return None
            return self.fuse(_k_strict)(x, y, (), xp=xp, be=self, thr=thr, tau=tau,
                                        tau_train=tau_train, factor_taus=())
        f = self._fast_jit.get(op)
        if f is None:
            f = self._fast_jit[op] = self._fast_kernel(op, xp)
        return f(x) if y is None else f(x, y)

    def _fast_kernel(self, op: str, xp: Any) -> Callable[..., Any]:
        """``jax.jit`` of the op's kernel with its static arguments bound: the arrays are
        the only arguments, so a call takes jit's C++ dispatch (no hashing of static
        keywords). The traced computation is the public op's, so the compiled code is."""
        import jax

        from zpml_core.scm import real_kernel

        kernel, static = real_kernel(op)
        if op in ("add", "sub", "mul", "div"):
            return jax.jit(lambda x, y: kernel(x, y, None, None, xp=xp, be=self, **static))
        return jax.jit(lambda x: kernel(x, None, xp=xp, be=self, **static))

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        self._register_pytrees()
        if self._policy_keys is None:
            self._ensure_policy_keys()
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

    def clip_scalar(self, x: Any, lo: float | None, hi: float | None) -> Any:
        """Clip with Python-scalar bounds (used by the losses) as ``where`` (fused by XLA):
        NaN propagates and the gradient passes at a bound, as ``torch.clamp`` does
        (``jnp.clip`` would halve it there)."""
        import jax.numpy as jnp

        if lo is not None:
            x = jnp.where(x < lo, lo, x)
        if hi is not None:
            x = jnp.where(x > hi, hi, x)
        return x

    def abs_symmetric(self, x: Any) -> Any:
        """``|x|`` whose derivative at 0 is 0 (``sign(x)``), as in torch (used by the
        losses). ``jnp.abs`` differentiates to +1 at 0, which would make the gradients of
        ``margin_loss`` & co. differ between the backends at ``Q == 0``."""
        import jax.numpy as jnp

        if jnp.iscomplexobj(x):
            return jnp.abs(x)
        if self._abs_fn is None:
            import jax

            @jax.custom_jvp
            def abs_sym(v: Any) -> Any:
                return jnp.abs(v)

            @abs_sym.defjvp
            def abs_sym_jvp(primals: Any, tangents: Any) -> Any:
                (v,), (t,) = primals, tangents
                return jnp.abs(v), jnp.sign(v) * t

            self._abs_fn = abs_sym
        return self._abs_fn(x)

    # -- gradient policies ------------------------------------------------------------
    #
    # Traced code reads the active policy from the per-thread mirror kept by
    # ``gradient_policy`` (zpml_core.autodiff.policies). Two ``jax.make_user_context``
    # values carry that state into every jit cache key: the override (thread-local,
    # updated whenever a policy context is entered or left) and the registry (global).
    # A changed policy therefore retraces instead of reusing a stale trace. Creating
    # the contexts changes the key layout, so traces made before they existed are
    # never reused either.

    def _ensure_policy_keys(self) -> None:
        with self._policy_lock:
            if self._policy_keys is not None:
                return
            import jax
            import zpml_backends._jax_gate  # noqa: F401  (the gate primitive, registered once)

            self._policy_keys = (jax.make_user_context(None), jax.make_user_context(()))
        self._sync_override()
        self._policy_keys[1].set_global(_policies.registry_items())

    def _sync_override(self) -> None:
        assert self._policy_keys is not None
        local = self._policy_local
        cm = getattr(local, "cm", None)
        if cm is not None:
            local.cm = None
            cm.__exit__(None, None, None)
        override = _policies.traced_override()
        if override is not None:
            cm = self._policy_keys[0](override)
            cm.__enter__()
            local.cm = cm

    def _policy_state_changed(self, kind: str) -> None:
        if self._policy_keys is None:
            if "jax" in sys.modules:  # never import jax just for this
                self._ensure_policy_keys()
            return
        if kind == "override":
            self._sync_override()
        else:
            self._policy_keys[1].set_global(_policies.registry_items())

    def gate(self, value: Any, bottom: Any, policy: Any, *, xp: Any) -> Any:
        """Policy gate (``zpml_backends._jax_gate``): a ``jax.custom_jvp`` whose linear
        tangent map applies the policy in forward mode and, transposed, in reverse mode.

        The policy is the one active when the function is traced, i.e. the context
        around ``jax.grad``/``jax.jvp``/``jax.jit``. Concrete (untraced) arrays carry no
        derivative, so they are returned as they are; PASSTHROUGH needs no gate.
        """
        import jax

        if policy is _policies.GradientPolicy.PASSTHROUGH or not isinstance(
            value, jax.core.Tracer
        ):
            return value
        if self._policy_keys is None:
            self._ensure_policy_keys()
        from zpml_backends._jax_gate import gate

        return gate(value, bottom, policy)

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

    def training(self) -> Any:
        """SCMTrainer support: the jitted JAX step (``zpml_backends.jax_training``)."""
        from zpml_backends.jax_training import JaxTraining

        return JaxTraining()
