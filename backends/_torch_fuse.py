"""Kernel fusion for large eager torch inputs (``TorchBackend.fuse``).

An SCM kernel is ~10–20 elementwise ops; run eagerly on large tensors each op allocates
(and page-faults) a fresh temporary. For plain CPU tensors of at least ``min_numel``
elements that need no derivative, the kernel is captured once per signature with
``torch.compile`` and, if the captured graph qualifies (below), compiled by inductor
into one loop writing only the outputs.

Guarantee: a fused call returns the bits the eager call returns — values, masks, NaN
payload positions and signed zeros — in every dtype, at every input size.

* Only *exactly specified* graphs are fused: every operation in the graph Dynamo
  captured is in :data:`EXACT_OPS` — IEEE-correctly rounded arithmetic (``+ - * /``),
  comparisons, ``abs``/``neg``/``copysign``, ``where``, boolean logic, casts and views —
  or an opaque call of aten's own eager function. For these the result is a function of
  the operands alone, so inductor's generated code and aten's eager kernels agree bit
  for bit. Math-library functions never reach inductor's code generator: compiled
  kernels receive the namespace ``_torch_fused_ns``, whose ``sqrt``, ``log``, ``exp``,
  trigonometric functions, ... are custom operators evaluated by aten (inductor's
  vectorised libm differs from aten's in the last ulp; aten's CPU ``sqrt`` is MKL-VML,
  faithful but not correctly rounded, while inductor's is). Graphs with anything else
  run their captured ops eagerly (the same aten kernels as an eager call): the ``**``
  operator (``pow``), reductions (summation order), integer division. Which kernels
  fuse is thus decided by their code, per signature, with no list of kernel names.
* Floating point contraction (FMA) and unsafe math stay off, and inductor rounds each
  float16/bfloat16 intermediate exactly as eager does (``emulate_precision_casts``).
* Inductor's own vector code (its C++ loops are compiled with GCC's loop vectoriser
  off, so a scalar loop stays scalar). Before compiling, the captured graph is rewritten
  into the form that code handles well (``_torch_graph``: Boolean logic as nested
  ``where``, ``isfinite(a)`` as ``(a − a) == 0``, bool outputs written as uint8 and
  viewed as bool) — identities, so the bits are unchanged.
* Complex dtypes are not fused (aten and inductor compute complex products and
  quotients with different formulas); neither are integer ones (in the generated C++,
  signed overflow is undefined behaviour, which the compiler may assume never happens,
  while the integer kernels detect overflow from the wrapped result: measured, int32
  ``mul`` lost overflow masks), nor non-CPU devices (not verified).

Everything else runs eagerly and unchanged: small inputs; inputs that require grad or
carry forward-mode tangents; tensor subclasses (fake, functional, ...); code traced by
the caller's own ``torch.compile``/``torch.export``/``torch.jit.trace``; ``torch.func``
transforms (vmap, grad, jvp); active ``TorchDispatchMode``s.

Cold start: nothing here is created lazily on a path that traced code reaches. The fuser
exists from the adapter's construction, and under tracing :meth:`TorchFuser.__call__`
returns the kernel before touching any cache.

Each signature (dtypes, ranks, size-1 axes, static arguments; Python numbers are not
part of it) gets its own compiled copy of the kernel, so Dynamo's per-code-object
recompile limit is never reached. If compiling fails (e.g. no C++ compiler), the kernel
runs eagerly from then on and one :class:`FusionUnavailableWarning` (a ``UserWarning``)
is issued per process. Warnings raised by torch internals while compiling are
suppressed (they are not the caller's). Each graph a copy compiles gets a direct plan
(``_torch_direct``): later calls run Dynamo's guard for that graph and then inductor's
generated code, without Dynamo's frame evaluation (~5 µs instead of ~25–40 µs a call).

Environment: ``ZPML_TORCH_FUSE=0`` disables fusion; ``ZPML_TORCH_FUSE_MIN_NUMEL``
changes the size threshold (default 8192 elements; kernels that call a library function
such as ``log`` or ``sqrt`` fuse from ``LIBRARY_FACTOR`` = 4 times it, where their fused
form starts to beat the eager one). Both are read when the adapter is
created (at ``import zpml_core``); an invalid threshold raises ``ValueError`` naming the
variable at the first call that could fuse.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from zpml_backends._torch_direct import DirectPlan
from zpml_backends._torch_direct import build as build_plan
from zpml_backends._torch_graph import bool_outputs, is_library_call, vectorisable_masks

DEFAULT_MIN_NUMEL = 1 << 13
#: kernels whose graphs call a library function (``zpml::eager_*``: log, sqrt, ...) fuse
#: from ``LIBRARY_FACTOR · min_numel`` elements: their fused form runs two loops around
#: an extern call, which costs more than a short eager kernel below that size
LIBRARY_FACTOR = 4
#: at most this many compiled signatures per kernel; further ones run eagerly
MAX_SIGNATURES = 64
#: at most this many direct plans per signature (one per graph Dynamo compiled for it:
#: grad mode on and off, another thread count, ...); further graphs run through Dynamo
MAX_PLANS = 4

#: operations whose results are fully specified by IEEE 754 / exact integer arithmetic
#: (names of torch functions, ``operator`` functions and tensor methods in a Dynamo graph)
EXACT_OPS = frozenset({
    # arithmetic (correctly rounded; integer: exact modulo 2**bits)
    "add", "sub", "mul", "truediv", "div", "neg", "abs", "reciprocal", "rtruediv",
    "copysign", "signbit", "sign", "maximum", "minimum", "fmax", "fmin",
    "floor", "ceil", "trunc",
    # comparisons and predicates
    "lt", "le", "gt", "ge", "eq", "ne", "isfinite", "isnan", "isinf", "isneginf",
    "isposinf",
    # boolean logic
    "and_", "or_", "xor", "invert", "not_", "logical_and", "logical_or", "logical_not",
    "logical_xor", "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor",
    # selection, construction, casts, views
    "where", "full", "full_like", "zeros_like", "ones_like", "scalar_tensor", "zeros",
    "ones", "to", "type", "float", "double", "half", "bfloat16", "bool", "clone",
    "detach", "contiguous", "reshape", "view", "expand", "expand_as", "broadcast_to",
    "broadcast_tensors", "unsqueeze", "squeeze", "getitem", "stack", "cat", "concat",
    "permute", "flatten", "movedim", "size", "dim", "sym_size", "getattr", "item",
    "any", "all",
})


_INDUCTOR_OPTIONS: dict[str, Any] = {
    "emulate_precision_casts": True,  # round float16/bfloat16 intermediates as eager does
    "cpp.enable_floating_point_contract_flag": "off",  # no FMA contraction
    "cpp.enable_unsafe_math_opt_flag": False,
}


class FusionUnavailableWarning(UserWarning):
    """torch.compile could not compile an SCM kernel; it runs eagerly (same results)."""


def _min_numel() -> int:
    raw = os.environ.get("ZPML_TORCH_FUSE_MIN_NUMEL", "").strip()
    if not raw:
        return DEFAULT_MIN_NUMEL
    try:
        return max(int(raw), 0)
    except ValueError:
        raise ValueError(
            f"ZPML_TORCH_FUSE_MIN_NUMEL must be an integer, got {raw!r}"
        ) from None


def dynamo_tracing() -> bool:
    """True while Dynamo traces (the caller's ``torch.compile``, ``torch.export``).

    Never imports torch (``False`` if it is not loaded); registered with
    ``zpml_core._xp.add_trace_probe`` by the torch adapter.
    """
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.compiler.is_compiling())


def _op_name(node: Any) -> str:
    target = node.target
    if isinstance(target, str):  # call_method
        return target
    return str(getattr(target, "__name__", repr(target)))


def _exact_graph(gm: Any) -> bool:
    """Whether every operation of a Dynamo graph is in :data:`EXACT_OPS` and every
    tensor value is real floating or bool, on the CPU."""
    import torch

    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op not in ("call_function", "call_method"):
            return False
        # zpml::eager_* (``_torch_fused_ns``): aten's own eager function, opaque to
        # inductor, so its values are the eager ones by construction
        opaque = is_library_call(node)
        if not (opaque or _op_name(node) in EXACT_OPS):
            return False
        val = node.meta.get("example_value")
        vals = val if isinstance(val, (tuple, list)) else (val,)
        for v in vals:
            if not isinstance(v, torch.Tensor):
                continue
            if v.device.type != "cpu" or not (v.is_floating_point() or v.dtype == torch.bool):
                return False  # complex, integer (see the module docstring), other devices
    return True


def _flat(arrays: tuple[Any, ...]) -> Iterator[Any]:
    for a in arrays:  # strict_inference passes its validity factors as a tuple
        if isinstance(a, tuple):
            yield from _flat(a)
        else:
            yield a


class _KernelState:
    """Per-kernel bookkeeping (created eagerly, never under tracing)."""

    __slots__ = ("broken", "captured", "decision", "entries", "exact", "library", "name",
                 "plans")

    def __init__(self, name: str) -> None:
        self.name = name
        self.broken = False
        # signature → compiled copy of the kernel (fused), or the kernel itself (its
        # graph is not exactly specified, or compiling it failed): run eagerly
        self.entries: dict[Any, Callable[..., Any]] = {}
        self.exact: dict[bool, int] = {True: 0, False: 0}  # graphs fused / not fused
        self.decision: bool | None = None  # set by the compile backend
        self.library = False  # a fused graph calls a library function (LIBRARY_FACTOR)
        # signature → Dynamo-free calls of its compiled graphs (``_torch_direct``)
        self.plans: dict[Any, list[DirectPlan]] = {}
        # what the compile backend just built: (graph, compiled function, positions of
        # its uint8 outputs that are bool masks)
        self.captured: tuple[Any, Any, list[int]] | None = None


class TorchFuser:
    """Caches one eager-or-compiled dispatcher per kernel."""

    def __init__(self) -> None:
        self.enabled = os.environ.get("ZPML_TORCH_FUSE", "1") != "0"
        # a bad setting must not break ``import zpml_core`` (adapters are created then):
        # it is raised by the first eager call that could fuse
        self._config_error: ValueError | None = None
        try:
            self.min_numel = _min_numel()
        except ValueError as exc:
            self.min_numel, self._config_error = DEFAULT_MIN_NUMEL, exc
        self._wrapped: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._states: dict[str, _KernelState] = {}
        self._lock = threading.RLock()
        self._warned = False

    # -- diagnostics ------------------------------------------------------------------
    def compiled_kernels(self) -> list[str]:
        """Names of the kernels fused by inductor so far (diagnostics and tests)."""
        return sorted(k for k, st in self._states.items() if st.exact[True])

    def unfused_kernels(self) -> list[str]:
        """Names of kernels captured whose graphs were not exactly specified (run as
        their eager ops)."""
        return sorted(k for k, st in self._states.items() if st.exact[False])

    # -- dispatch ---------------------------------------------------------------------
    def __call__(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        # Read-only on every path that traced code reaches: the compile check comes
        # before any cache lookup, so a cold first call under torch.compile never
        # creates state (Dynamo cannot trace the creation of closures and dicts).
        if not self.enabled or dynamo_tracing():
            return kernel
        if self._config_error is not None:
            raise self._config_error
        wrapped = self._wrapped.get(kernel)
        if wrapped is None:
            with self._lock:
                wrapped = self._wrapped.get(kernel)
                if wrapped is None:
                    wrapped = self._wrap(kernel)
                    self._wrapped[kernel] = wrapped
        return wrapped

    def _eager_only(self, arrays: tuple[Any, ...], min_numel: int) -> bool:
        import torch

        if torch._C._are_functorch_transforms_active():
            return True
        if torch.autograd.forward_ad._current_level >= 0:  # dual tensors may be around
            return True
        if torch._C._get_tracing_state() is not None:  # torch.jit.trace
            return True
        if torch._C._len_torch_dispatch_stack() > 0:  # fake/proxy/functional modes
            return True
        grad = torch.is_grad_enabled()
        big = False
        for t in _flat(arrays):
            if t is None:
                continue
            if type(t) is not torch.Tensor or not t.is_cpu or t.is_complex():
                return True
            if grad and t.requires_grad:
                return True
            if t.numel() >= min_numel:
                big = True
        return not big

    def _wrap(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        state = _KernelState(kernel.__qualname__)
        self._states[state.name] = state

        def backend(gm: Any, example_inputs: list[Any]) -> Any:
            exact = _exact_graph(gm)
            state.decision = exact
            if not exact:
                state.exact[False] += 1
                return gm.forward  # the captured aten ops, as eager runs them
            from torch._inductor.compile_fx import compile_fx

            if any(is_library_call(node) for node in gm.graph.nodes):
                state.library = True
            as_bytes = vectorisable_masks(gm)
            fused: Callable[..., Any] = compile_fx(  # type: ignore[assignment]
                gm, example_inputs, config_patches=dict(_INDUCTOR_OPTIONS))
            state.exact[True] += 1
            state.captured = (gm, fused, as_bytes)
            return bool_outputs(fused, as_bytes) if as_bytes else fused

        def first_call(key: Any, arrays: tuple[Any, ...], static: dict[str, Any]) -> Any:
            """Compile a copy of the kernel for a new signature and run it. Warnings
            raised by torch while compiling (import deprecations, notices) are not the
            caller's and are suppressed."""
            failure: Exception | None = None
            with self._lock, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                entry = state.entries.get(key)
                if entry is not None:
                    return entry(*arrays, **static)
                compiled = _compile_copy(kernel, len(state.entries), backend)
                state.decision = None
                state.captured = None
                try:
                    out = compiled(*arrays, **static)
                except Exception as exc:  # no compiler, unsupported platform, ...
                    state.broken = True
                    failure = exc
                else:
                    state.entries[key] = compiled if state.decision else kernel
                    state.plans[key] = []
                    self._add_plan(state, key, compiled, arrays, static, out)
                    return out
            self._warn_once(kernel, failure)  # outside the suppression
            return kernel(*arrays, **_with_compat_namespace(static))

        @functools.wraps(kernel)
        def run(*arrays: Any, **static: Any) -> Any:
            min_numel = self.min_numel * (LIBRARY_FACTOR if state.library else 1)
            if state.broken or self._eager_only(arrays, min_numel):
                return kernel(*arrays, **static)
            key = _signature(arrays, static)
            entry = state.entries.get(key)
            if entry is not None and entry is kernel:
                return kernel(*arrays, **static)
            fused_static = _with_fused_namespace(static)
            if entry is None:
                if len(state.entries) >= MAX_SIGNATURES:
                    return kernel(*arrays, **static)
                return first_call(key, arrays, fused_static)
            plans = state.plans.get(key)
            if plans:
                for plan in plans:
                    out = plan(arrays, fused_static)
                    if out is not None:
                        return out
            try:
                out = entry(*arrays, **fused_static)
            except Exception:  # an unforeseen recompile failed: this signature goes eager
                state.entries[key] = kernel
                return kernel(*arrays, **static)
            if plans is not None and state.captured is not None:  # Dynamo recompiled
                with self._lock:
                    self._add_plan(state, key, entry, arrays, fused_static, out)
            return out

        return run

    @staticmethod
    def _add_plan(state: _KernelState, key: Any, compiled: Any, arrays: tuple[Any, ...],
                  static: dict[str, Any], out: Any) -> None:
        """Keep a direct plan for the graph ``compiled`` just compiled (the backend left
        it in ``state.captured``), checked against ``out``, Dynamo's result; at most
        :data:`MAX_PLANS` per signature."""
        captured, state.captured = state.captured, None
        plans = state.plans.get(key)
        if (captured is None or not state.decision or plans is None
                or len(plans) >= MAX_PLANS):
            return
        plan = build_plan(compiled, captured, arrays, static, out)
        if plan is not None:
            plans.append(plan)

    def plans(self, kernel: Callable[..., Any], arrays: tuple[Any, ...],
              static: dict[str, Any]) -> list[DirectPlan] | None:
        """The direct plans of ``kernel``'s compiled copy for the signature of
        ``kernel(*arrays, **static)`` — the live list, which grows as Dynamo compiles
        more graphs for it — or ``None`` if no call compiled it (``_torch_direct``)."""
        state = self._states.get(kernel.__qualname__)
        if state is None or not state.plans:
            return None
        return state.plans.get(_signature(arrays, static))

    def fused_graphs(self) -> int:
        """How many graphs inductor compiled so far, over all kernels (diagnostics)."""
        return sum(st.exact[True] for st in self._states.values())

    def _warn_once(self, kernel: Callable[..., Any], exc: BaseException | None) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            f"zpml_core: torch.compile of kernel {kernel.__name__} failed ({exc!r}); "
            "kernels that fail to compile run eagerly (same results, slower). Set "
            "ZPML_TORCH_FUSE=0 to silence.",
            FusionUnavailableWarning,
            stacklevel=4,
        )


def _with_fused_namespace(static: dict[str, Any]) -> dict[str, Any]:
    """The static arguments of a fused call: ``xp`` = the fuser's namespace
    (``_torch_fused_ns``) and ``be`` = the adapter's forward-only twin
    (:func:`forward_only`)."""
    compat = sys.modules.get("array_api_compat.torch")
    if compat is None or static.get("xp") is not compat:
        return static
    from zpml_backends import _torch_fused_ns

    out = {**static, "xp": _torch_fused_ns}
    be = static.get("be")
    if be is not None and be.supports_autodiff:
        out["be"] = forward_only(be)
    return out


def _with_compat_namespace(static: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_with_fused_namespace` (for an eager fallback)."""
    fused = sys.modules.get("zpml_backends._torch_fused_ns")
    if fused is None or static.get("xp") is not fused:
        return static
    import array_api_compat.torch as compat

    out = {**static, "xp": compat}
    be = static.get("be")
    if be is not None and getattr(be, "_autodiff_twin", None) is not None:
        out["be"] = be._autodiff_twin
    return out


_FORWARD_ONLY: dict[Any, Any] = {}
_FORWARD_ONLY_LOCK = threading.Lock()


def forward_only(be: Any) -> Any:
    """The adapter ``be`` with ``supports_autodiff = False`` (one per adapter; same
    state, same methods): what fused calls hand to the kernels. A fused call never needs
    a derivative (its inputs require no grad, no transform or forward-mode level is
    active), so kernels take their forward-only branch, which computes the same values
    as the autodiff branch with fewer operations (the sanitising of differentiated
    operands before arithmetic is what the autodiff branch adds); the differential tests
    of fused against eager calls hold the two branches to the same bits."""
    fwd = _FORWARD_ONLY.get(be)
    if fwd is None:
        with _FORWARD_ONLY_LOCK:
            fwd = _FORWARD_ONLY.get(be)
            if fwd is None:
                cls = type(be)
                twin = type(f"{cls.__name__}ForwardOnly", (cls,),
                            {"supports_autodiff": False, "__module__": __name__})
                fwd = copy.copy(be)
                fwd.__class__ = twin
                fwd._autodiff_twin = be
                _FORWARD_ONLY[be] = fwd
    return fwd


def _static_key(v: Any) -> Any:
    """A static argument as part of a signature. Python floats and ints are wildcards:
    Dynamo traces them symbolically (a new threshold value does not recompile), so they
    must not create new signatures either."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return type(v).__name__
    if isinstance(v, tuple):
        return tuple(_static_key(x) for x in v)
    try:
        return (type(v), hash(v))
    except TypeError:
        return (type(v), id(v))


_NO_SMALL_AXES: dict[int, tuple[int, ...]] = {}


def _signature(arrays: tuple[Any, ...], static: dict[str, Any]) -> tuple[Any, ...]:
    """What a compiled copy is specialised on: dtypes, ranks, size-0/1 axes (Dynamo
    specialises those), contiguity and the static arguments."""
    parts: list[Any] = []
    for t in _flat(arrays):
        if t is None:
            parts.append(None)
            continue
        shape = t.shape
        if not shape or min(shape) >= 2:  # the common case, without a generator
            dims = _NO_SMALL_AXES.get(len(shape)) or _NO_SMALL_AXES.setdefault(
                len(shape), (2,) * len(shape))
        else:
            dims = tuple(min(n, 2) for n in shape)
        parts.append((t.dtype, dims, t.is_contiguous()))
    statics = tuple(sorted((k, _static_key(v)) for k, v in static.items()))
    return (tuple(parts), statics)


def _compile_copy(kernel: Callable[..., Any], n: int, backend: Any) -> Callable[..., Any]:
    """``torch.compile`` of a copy of ``kernel`` with a code object of its own.

    Dynamo keeps its compiled graphs on the code object, at most ``recompile_limit``
    (8) of them; under ``fullgraph=True`` one more is a hard error. A kernel is called
    with many dtypes and static arguments (``k_int_binary``: 3 ops × every integer
    dtype), so each signature gets its own code object, hence its own cache.
    """
    import torch

    code = kernel.__code__.replace(co_name=f"{kernel.__code__.co_name}__zpml_fused_{n}")
    copy = types.FunctionType(code, kernel.__globals__, code.co_name, kernel.__defaults__,
                              kernel.__closure__)
    copy.__kwdefaults__ = kernel.__kwdefaults__
    copy.__qualname__ = kernel.__qualname__
    return torch.compile(copy, backend=backend, dynamic=True, fullgraph=True)


__all__ = ["DEFAULT_MIN_NUMEL", "EXACT_OPS", "LIBRARY_FACTOR", "FusionUnavailableWarning",
           "TorchFuser", "dynamo_tracing"]
