"""Backend adapters: the protocol and their discovery through entry points.

An adapter supplies only what the array API standard lacks (stop-gradient, kernel
fusion, custom gradients, conversion to and from numpy for conformance). Adapters are
found through the entry-point group ``zpml_core.backends``; the built-in adapters for
numpy, torch, jax and array-api-strict register exactly the way a third-party one does.
"""

from __future__ import annotations

import sys
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
        """True while ``x`` is **symbolic**: it has no values in this call (a jit tracer,
        a compile-time fake tensor, a ``vmap`` batch, a graph input without data).

        Not the same as *lazy* (:meth:`is_lazy`): a lazy array (dask, MLX) has values,
        computed on demand. The core skips value checks only for traced arrays
        (:meth:`require` poisons instead of raising) and reads the gradient-policy
        mirror that compiled code is keyed on. Default: False — an adapter whose library
        traces says when (the generic fallback for libraries without an adapter cannot
        tell and treats every lazy array as traced)."""
        return False

    def is_lazy(self, x: Array) -> bool:
        """True for arrays whose values exist but are computed on demand (dask, MLX,
        a lazy ONNX graph with values): reading one forces a computation.

        The default :meth:`require` still checks such arrays eagerly (one computation,
        never a skipped check); an adapter may defer the check into the array's graph
        instead (dask). Default: ``array_api_compat.is_lazy_array(x)``."""
        import array_api_compat

        return bool(array_api_compat.is_lazy_array(x))

    def require(self, bad: Array, message: str, outputs: tuple[Array, ...], *,
                xp: Namespace) -> tuple[Array, ...]:
        """Enforce a data-dependent precondition: no element of ``bad`` (bool) is True.

        The one mechanism by which the core raises on array *values* (e.g. a ``finite``
        status label over a non-finite target). Returns ``outputs`` — arrays computed
        from the offending input, broadcastable with ``bad`` — so the check can travel
        with them:

        * concrete arrays, lazy ones included (``is_tracing`` False):
          ``ValueError(message)`` now if any element is bad (for a lazy array this
          computes ``bad``), else ``outputs`` unchanged;
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

    #: ``"module.QualName"`` of the array types whose namespace this adapter supplies
    #: through :meth:`array_namespace` (subclasses included), e.g. ``("mlx.core.array",)``
    array_types: tuple[str, ...] = ()

    def array_namespace(self, x: Array) -> Namespace | None:
        """**The namespace hook**: the array-API namespace for ``x``, or None to let
        array-api-compat decide (``x.__array_namespace__()`` for unknown libraries).

        The core asks it for the first array of each type listed in :attr:`array_types`
        (the answer is cached per type), so a library with small gaps — a missing
        ``hypot``, ``sin(-0.0) = +0``, no ``.device`` — can be served through a
        conformant wrapper namespace without patching the library. The namespace's
        ``__name__`` must be in :attr:`namespace_names` (kernels are dispatched to the
        adapter by it). An adapter declaring no ``array_types`` is asked (for any
        array: it returns None for arrays it does not serve) only while a tracer with
        guards records (Dynamo), built-in adapters first, so array-api-compat's cached
        type checks are not traced. Types of the built-in libraries (numpy, torch, jax, array_api_strict,
        dask) are served by the built-in adapters: a third-party entry point cannot
        take them over (only ``register_backend(..., replace=True)`` can)."""
        return None

    def array_device(self, x: Array) -> Any:
        """The device of an array served through :meth:`array_namespace` that has no
        ``.device`` attribute (what the core passes back as ``device=`` to the
        namespace's creation functions: any value the wrapper namespace accepts, e.g.
        the library's default device). Arrays with a ``.device`` never ask."""
        return x.device

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
        """The library's default device (informational: read by tools, not by the core
        or the suite, which use the inputs' device)."""
        return None

    def __repr__(self) -> str:
        return f"<zpml backend {self.name!r}>"


class GenericBackend(Backend):
    """Fallback for array-API libraries without an adapter: forward-only, unfused.

    It cannot tell a lazy array from a traced one, so it treats every lazy array
    (``array_api_compat.is_lazy_array``) as traced: value checks poison instead of
    raising. An adapter makes the distinction explicit (:meth:`Backend.is_tracing`)."""

    name = "generic"

    def is_tracing(self, x: Array) -> bool:
        return self.is_lazy(x)


_BACKENDS: dict[str, Backend] | None = None
_BY_NAMESPACE: dict[str, Backend] = {}
#: ``(module, qualname)`` of an array type -> the adapter whose ``fast`` serves it
_FAST: dict[tuple[str, str], Backend] = {}
#: array type -> its :data:`_FAST` key ``(module, qualname)``, built once per type (a
#: function of the type alone, so it never goes stale when :data:`_FAST` changes);
#: never written while a symbolic trace is being recorded
_FAST_KEY: dict[type, tuple[str, str]] = {}
_FAST_KEY_MAX = 256
#: ``"module.QualName"`` of an array type -> the adapter whose namespace hook serves it
_BY_TYPE: dict[str, Backend] = {}
_GENERIC = GenericBackend()
_LOADING = False
#: entry points whose module was still being imported during discovery (an adapter
#: package imported before zpml_core): loaded by the next :func:`_load`
_PENDING: list[Any] = []
#: top-level modules of the libraries the built-in adapters serve: their array types
#: cannot be claimed by a third-party entry point
_BUILTIN_LIBS = frozenset({"numpy", "torch", "jax", "jaxlib", "array_api_strict", "dask"})
_BUILTIN_PACKAGE = "zpml_backends"


def is_builtin(backend: Backend) -> bool:
    """Whether ``backend`` is one of zpml_core's own adapters (package ``zpml_backends``)."""
    return type(backend).__module__.split(".")[0] == _BUILTIN_PACKAGE


def _load() -> dict[str, Backend]:
    """Discover adapters once.

    Idempotent and run at import time (by ``zpml_core`` or, when an adapter module is
    imported first, by ``zpml_backends``), so traced code never reaches the entry-point
    scan. A re-entrant call while discovery imports an adapter package returns ``{}``.
    Entry points of a package that was itself being imported (``import my_adapter,
    zpml_core``: the adapter imports zpml_core, which discovers it half-initialised)
    are kept pending and loaded by the next call, once their import has finished.
    """
    global _BACKENDS, _LOADING
    if _BACKENDS is not None and not _PENDING:
        return _BACKENDS
    if _LOADING:
        return _BACKENDS if _BACKENDS is not None else {}
    _LOADING = True
    try:
        if _BACKENDS is None:
            return _discover()
        _register_found(_load_entry_points(_take_pending()), _BACKENDS)
        return _BACKENDS
    finally:
        _LOADING = False


def _take_pending() -> list[Any]:
    eps = list(_PENDING)
    _PENDING.clear()
    return eps


def _initializing(module: str) -> bool:
    """Whether ``module`` or a parent package is in the middle of its import."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        m = sys.modules.get(".".join(parts[:i]))
        if m is not None and getattr(getattr(m, "__spec__", None), "_initializing", False):
            return True
    return False


def _load_entry_points(eps: list[Any]) -> list[Backend]:
    # the built-in adapters first: they serve their namespaces whatever else is installed
    eps = sorted(eps, key=lambda ep: not ep.value.startswith(_BUILTIN_PACKAGE + "."))
    loaded: list[Backend] = []
    for ep in eps:
        try:
            obj = ep.load()
            backend = obj() if isinstance(obj, type) else obj
        except Exception as exc:  # a broken third-party adapter must not break the core
            if _initializing(ep.module):
                _PENDING.append(ep)  # imported before zpml_core: retried by _load()
                continue
            warnings.warn(
                f"zpml_core: could not load backend entry point {ep.name!r} ({ep.value}): {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        if not isinstance(backend, Backend):
            warnings.warn(
                f"zpml_core: entry point {ep.name!r} does not provide a zpml_core Backend",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        loaded.append(backend)
    return loaded


def _register_found(loaded: list[Backend], found: dict[str, Backend]) -> None:
    for b in loaded:
        try:  # a third-party adapter whose declarations raise is skipped, not fatal
            name, names = str(b.name), tuple(b.namespace_names)
            tuple(b.fast_types), tuple(b.array_types)
        except Exception as exc:
            warnings.warn(f"zpml_core: backend {type(b).__qualname__} is broken and was "
                          f"skipped: {exc!r}", RuntimeWarning, stacklevel=3)
            continue
        if name in found:
            continue
        found[name] = b
        for ns in names:
            _BY_NAMESPACE.setdefault(ns, b)
        _add_fast_types(b, replace=False)
        _add_array_types(b, replace=False)


def _discover() -> dict[str, Backend]:
    global _BACKENDS
    found: dict[str, Backend] = {}
    _register_found(_load_entry_points(list(entry_points(group=ENTRY_POINT_GROUP))), found)
    if not found and not _PENDING:
        warnings.warn(
            "zpml_core: no backend adapters found in the 'zpml_core.backends' entry-point "
            "group; is the package installed (pip install -e .)? Falling back to a "
            "generic forward-only backend.",
            RuntimeWarning,
            stacklevel=2,
        )
    _BACKENDS = found
    return found


def _add_array_types(b: Backend, *, replace: bool) -> None:
    for t in b.array_types:
        if not replace and not is_builtin(b) and t.split(".")[0] in _BUILTIN_LIBS:
            warnings.warn(
                f"zpml_core: backend {b.name!r} declares array type {t!r}, which a built-in "
                "adapter serves; ignored (register_backend(..., replace=True) takes it over)",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        if replace or t not in _BY_TYPE:
            _BY_TYPE[t] = b


def type_backend(array_type: type) -> Backend | None:
    """The adapter whose namespace hook serves ``array_type`` (or a base class of it)."""
    if _PENDING:
        _load()
    if not _BY_TYPE:
        return None
    for c in array_type.__mro__:
        b = _BY_TYPE.get(f"{c.__module__}.{c.__qualname__}")
        if b is not None:
            return b
    return None


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
    _add_array_types(backend, replace=replace)
    _forget_types()


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
    for name in [k for k, v in _BY_TYPE.items() if v is b]:
        del _BY_TYPE[name]
        for other in found.values():
            if name in other.array_types:
                _BY_TYPE[name] = other
                break
    _forget_types()


def _forget_types() -> None:
    """Drop the core's per-type namespace cache (the serving adapter may have changed)."""
    from zpml_core import _xp

    _xp.forget_types()


def _add_fast_types(b: Backend, *, replace: bool) -> None:
    import os

    if os.environ.get("ZPML_FAST", "1").strip() == "0":
        return
    for t in b.fast_types:
        if not replace and not is_builtin(b) and t[0].split(".")[0] in _BUILTIN_LIBS:
            continue  # a built-in library's arrays take only a built-in fast path
        if replace or t not in _FAST:
            _FAST[t] = b


def fast_backend(array_type: type) -> Backend | None:
    """The adapter serving ``array_type`` on the fast path (exact type), if any."""
    key = _FAST_KEY.get(array_type)
    if key is None:
        key = (array_type.__module__, array_type.__qualname__)
        from zpml_core import _xp

        if not _xp.tracing():  # a trace records no writes to module state
            if len(_FAST_KEY) >= _FAST_KEY_MAX:  # many throwaway types: stay bounded
                _FAST_KEY.clear()
            _FAST_KEY[array_type] = key
    return _FAST.get(key)


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
