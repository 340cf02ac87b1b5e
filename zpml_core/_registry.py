"""Backend adapters: the protocol and their discovery through entry points.

An adapter supplies only what the array API standard lacks (stop-gradient, kernel
fusion, custom gradients, conversion to and from numpy for conformance). Adapters are
found through the entry-point group ``zpml_core.backends``; the built-in adapters for
numpy, torch, jax and array-api-strict register exactly the way a third-party one does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from zpml_core._xp import Array, Namespace

ENTRY_POINT_GROUP = "zpml_core.backends"


class Backend:
    """Base class and protocol of a backend adapter.

    Subclasses set ``name`` and ``namespace_names`` (the ``__name__`` of the array-API
    namespaces they handle, as returned by ``array_api_compat.array_namespace``) and
    override what their framework offers. The defaults describe a forward-only library.

    Optional hooks, looked up with ``getattr`` by the losses (define them only if your
    framework does better than the array-API expression):

    * ``clip_scalar(x, lo, hi)`` — clip to Python-scalar bounds (``None`` = unbounded),
      NaN propagating, gradient passing at a bound (torch: ``clamp``);
    * ``abs_symmetric(x)`` — ``|x|`` whose derivative is ``sign(x)`` with 0 at 0 (JAX's
      ``abs`` differentiates to +1 at 0).
    """

    #: registry key, also the ``--backend`` name of the conformance suite
    name: str = "generic"
    #: ``xp.__name__`` values handled by this adapter
    namespace_names: tuple[str, ...] = ()
    #: whether gradients can be taken (conformance runs gradient cases only then)
    supports_autodiff: bool = False

    # -- used by the core -------------------------------------------------------------
    def stop_gradient(self, x: Array) -> Array:
        """Identity in value; blocks gradients where the framework has them."""
        return x

    def signed_zero(self, x: Array) -> Array:
        """``copysign(0, x)`` for finite ``x``; autodiff adapters keep ``∂/∂x = 1``.

        Forward-only default: ``x * 0``. Autodiff adapters return
        ``sg(x)·0 − (sg(x) − x)`` (same value, gradient of ``x``) when a gradient can flow.
        """
        return x * 0.0

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``kernel`` compiled into one fused computation, if the framework can.

        Kernels take arrays (or None) positionally and only hashable static values as
        keyword arguments. The default runs the kernel op by op.
        """
        return kernel

    def is_tracing(self, x: Array) -> bool:
        """True while ``x`` is a symbolic value (jit tracer, compile-time fake tensor)."""
        import array_api_compat

        return bool(array_api_compat.is_lazy_array(x))

    def require(self, bad: Array, message: str, outputs: tuple[Array, ...], *,
                xp: Namespace) -> tuple[Array, ...]:
        """Enforce a data-dependent precondition: no element of ``bad`` (bool) is True.

        The one mechanism by which the core raises on array *values* (e.g. a ``finite``
        status label over a non-finite target). Returns ``outputs`` — arrays computed
        from the offending input, broadcastable with ``bad`` — so the check can travel
        with them:

        * concrete arrays (``is_tracing`` False): ``ValueError(message)`` now if any
          element is bad, else ``outputs`` unchanged;
        * values that cannot be inspected now (``is_tracing`` True: jit tracers,
          compile-time fake tensors, ``vmap`` batches, a lazy array without an adapter)
          cannot raise, so the floating outputs are **poisoned**: NaN where ``bad``
          (``where(bad, NaN, out)``). A loss over them is NaN, and the trainer's
          non-finite-loss guard stops with an error — never a silent wrong value;
        * lazy adapters override this to raise the same ``ValueError`` when the outputs
          are computed (dask: a check task woven into the outputs' graph).
        """
        if not self.is_tracing(bad):
            if bool(xp.any(bad)):
                raise ValueError(message)
            return outputs
        return tuple(
            xp.where(bad, float("nan"), o)
            if xp.isdtype(o.dtype, ("real floating", "complex floating")) else o
            for o in outputs
        )

    def result_type(self, xp: Namespace, *arrays_or_dtypes: Any) -> Any:
        """Type promotion of arrays and/or dtypes (the namespace's ``result_type``)."""
        return xp.result_type(*arrays_or_dtypes)

    def array_namespace(self, x: Array) -> Namespace | None:
        """The namespace of ``x`` if this adapter serves arrays of its type, else None.

        Asked while a framework traces with guards (Dynamo), where array-api-compat's
        cached type checks would be traced; the default defers to array-api-compat."""
        return None

    #: ``(module, qualname)`` of the array types :meth:`fast` accepts (exact types only)
    fast_types: tuple[tuple[str, str], ...] = ()

    def fast(self, op: str, *args: Any) -> Any:
        """The fused fast path of a public op, or ``None`` to take the array-API path.

        Called by the public ops *before* argument preparation when the first array
        argument's exact type is in :attr:`fast_types` (``zpml_core._fast``), with
        ``op`` one of ``add sub mul div`` (args ``x, y``), ``neg inv sqrt log exp sin
        cos tan`` (``x``) or ``strict`` (``P, Q, thresholds``: a callable mapping
        :class:`zpml_core._xp.FloatConsts` to ``(thr, tau, tau_train)``). An adapter
        returns ``(value, bottom)`` — for ``strict`` ``(decoded, bottom, gap, fault,
        semantic)`` — only if the arguments qualify cheaply (same dtype and shape, a
        real dtype it fuses, contiguous, no gradient, not traced) and the result is
        bit for bit the array-API kernel's; masks are never passed (the public op
        checks). The default declines everything.
        """
        return None

    def integer_arithmetic(self, dtype: Any) -> bool:
        """Whether the framework implements ``+ - * // %`` and negation on integer
        ``dtype`` (the integer SCM ops need them; torch lacks them for uint16/32/64)."""
        return True

    def training(self) -> Any:
        """SCMTrainer support (a ``zpml_core.training.engine.TrainingSupport``): model
        detection and the backend's train step. Forward-only backends have none."""
        raise NotImplementedError(f"backend {self.name!r} has no training support")

    def gate(self, value: Array, bottom: Array, policy: Any, *, xp: Namespace) -> Array:
        """Apply a gradient policy to the gradient flowing into ``value`` (identity forward).

        Forward-only backends return ``value`` unchanged.
        """
        return value

    # -- used by conformance and tests ------------------------------------------------
    def namespace(self) -> Namespace:
        """Import the framework and return its array-API namespace."""
        raise NotImplementedError

    def available(self) -> bool:
        try:
            self.namespace()
        except ImportError:
            return False
        return True

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Array:
        """Build an array of this backend from a numpy array (exact copy)."""
        xp = self.namespace()
        return xp.asarray(a, dtype=dtype, device=device) if device is not None else xp.asarray(
            a, dtype=dtype
        )

    def to_numpy(self, x: Array) -> Any:
        """Exact numpy copy of an array of this backend (forces lazy arrays)."""
        import numpy as np

        return np.asarray(x)

    def default_device(self) -> Any:
        return None

    def __repr__(self) -> str:
        return f"<zpml backend {self.name!r}>"


class GenericBackend(Backend):
    """Fallback for array-API libraries without an adapter: forward-only, unfused."""

    name = "generic"


_BACKENDS: dict[str, Backend] | None = None
_BY_NAMESPACE: dict[str, Backend] = {}
#: ``(module, qualname)`` of an array type -> the adapter whose ``fast`` serves it
_FAST: dict[tuple[str, str], Backend] = {}
_GENERIC = GenericBackend()
_LOADING = False


def _load() -> dict[str, Backend]:
    """Discover adapters once.

    Idempotent and run at import time (by ``zpml_core`` or, when an adapter module is
    imported first, by ``zpml_backends``), so traced code never reaches the entry-point
    scan. A re-entrant call while discovery imports an adapter package returns ``{}``.
    """
    global _BACKENDS, _LOADING
    if _BACKENDS is not None:
        return _BACKENDS
    if _LOADING:
        return {}
    _LOADING = True
    try:
        return _discover()
    finally:
        _LOADING = False


def _discover() -> dict[str, Backend]:
    global _BACKENDS
    found: dict[str, Backend] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            backend = obj() if isinstance(obj, type) else obj
        except Exception as exc:  # a broken third-party adapter must not break the core
            warnings.warn(
                f"zpml_core: could not load backend entry point {ep.name!r} ({ep.value}): {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        if not isinstance(backend, Backend):
            warnings.warn(
                f"zpml_core: entry point {ep.name!r} does not provide a zpml_core Backend",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        found.setdefault(backend.name, backend)
    if not found:
        warnings.warn(
            "zpml_core: no backend adapters found in the 'zpml_core.backends' entry-point "
            "group; is the package installed (pip install -e .)? Falling back to a "
            "generic forward-only backend.",
            RuntimeWarning,
            stacklevel=2,
        )
    for b in found.values():
        for ns in b.namespace_names:
            _BY_NAMESPACE.setdefault(ns, b)
        _add_fast_types(b, replace=False)
    _BACKENDS = found
    return found


def registered_backends() -> dict[str, Backend]:
    """All adapters registered through the entry-point group (and :func:`register_backend`)."""
    return dict(_load())


def register_backend(backend: Backend, *, replace: bool = False) -> None:
    """Register an adapter programmatically (tests, notebooks). Entry points are preferred.

    With ``replace=True`` it takes over the name and the namespaces it declares.
    """
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a zpml_core Backend, got {type(backend).__name__}")
    found = _load()
    if backend.name in found and not replace:
        raise ValueError(f"a backend named {backend.name!r} is already registered")
    found[backend.name] = backend
    for ns in backend.namespace_names:
        if replace or ns not in _BY_NAMESPACE:
            _BY_NAMESPACE[ns] = backend
    _add_fast_types(backend, replace=replace)


def unregister_backend(name: str) -> None:
    """Remove an adapter; namespaces it served fall back to another adapter declaring them."""
    found = _load()
    b = found.pop(name, None)
    if b is None:
        return
    for ns in [k for k, v in _BY_NAMESPACE.items() if v is b]:
        del _BY_NAMESPACE[ns]
        for other in found.values():
            if ns in other.namespace_names:
                _BY_NAMESPACE[ns] = other
                break
    for t in [k for k, v in _FAST.items() if v is b]:
        del _FAST[t]
        for other in found.values():
            if t in other.fast_types:
                _FAST[t] = other
                break


def _add_fast_types(b: Backend, *, replace: bool) -> None:
    import os

    if os.environ.get("ZPML_FAST", "1").strip() == "0":
        return
    for t in b.fast_types:
        if replace or t not in _FAST:
            _FAST[t] = b


def fast_backend(array_type: type) -> Backend | None:
    """The adapter serving ``array_type`` on the fast path (exact type), if any."""
    return _FAST.get((array_type.__module__, array_type.__qualname__))


def get_backend(xp: Namespace) -> Backend:
    """The adapter handling namespace ``xp`` (a generic forward-only one if none does)."""
    b = _BY_NAMESPACE.get(xp.__name__)
    if b is not None:
        return b
    _load()
    return _BY_NAMESPACE.get(xp.__name__, _GENERIC)


def get_backend_by_name(name: str) -> Backend:
    found = _load()
    try:
        return found[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; registered: {', '.join(sorted(found)) or 'none'}"
        ) from None
