"""Direct calls of a fused kernel's compiled graph, behind Dynamo's own guard.

A call of a ``torch.compile``d kernel copy pays Dynamo's frame evaluation and guard
check and AOTAutograd's wrappers: ~25 µs, five times the whole plain ``x / y`` at 10^4
float64 elements. For each graph a kernel copy compiles (the first, and each one a
rejected call recompiles: under ``no_grad`` after grad mode, say), a :class:`DirectPlan`
calls that graph's compiled function itself:

* **The guard is Dynamo's.** ``GuardManagerWrapper.check`` of that graph's cache entry
  runs on the call's arguments laid out as the frame's locals: dtypes, devices, sizes
  and strides (the symbolic-shape guards included), aliasing between arguments,
  ``requires_grad``, the global state (grad mode, autocast, default dtype, thread count,
  torch function modes) and every Python object the trace read. A call it rejects
  returns ``None`` here and takes the compiled entry (Dynamo), which recompiles or runs
  as before.
* **The graph's inputs are the call's tensors**, by parameter name (Dynamo names the
  placeholder of parameter ``x`` ``l_x_``), the symbolic sizes read from them, and the
  Python numbers Dynamo passes as 0-d tensors (keyword arguments, converted as Dynamo
  converts them: ``torch._as_tensor_fullprec``). A graph with any other input — a
  tensor inside a tuple, a symbolic float — or a tensor argument it does not take gets
  no plan.
* **Checked once, on the call that compiled the graph:** the plan runs on the same
  arguments and must return exactly Dynamo's result — a tuple of tensors with the same
  dtypes, shapes, strides, ``requires_grad`` and bits, none of them an input or sharing
  an input's storage — without writing to an input, or no plan is kept.

Everything here reads torch internals (the cache-entry and guard-manager API of torch
≥ 2.6); anything missing or unexpected means no plan, and calls take Dynamo's path,
unchanged.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


class DirectPlan:
    """Call one compiled graph of a kernel copy without Dynamo (see the module)."""

    __slots__ = ("_as_bool", "_defaults", "_fused", "_guard", "_inner", "_names", "_slots")

    def __init__(self, fused: Callable[..., Any], inner: Any, as_bool: list[int],
                 guard: Any, names: tuple[str, ...], defaults: dict[str, Any],
                 slots: list[tuple[str, int]]) -> None:
        # inductor's compiled function (AOTAutograd's wrappers), the generated
        # ``call(args)`` under them (None: call ``fused``), and the positions of their
        # uint8 outputs that are bool masks
        self._fused = fused
        self._inner = inner
        self._as_bool = as_bool
        self._guard = guard
        self._names = names  # positional parameters, in order
        self._defaults = defaults  # keyword-only defaults
        # per graph input: (parameter, _ARG) the argument itself, (parameter, dim) a size
        # of it, (parameter, _SCALAR) a Python number as Dynamo passes it
        self._slots = slots

    def __call__(self, arrays: tuple[Any, ...], static: dict[str, Any]) -> tuple[Any, ...] | None:
        """The kernel's result for ``kernel(*arrays, **static)``, or ``None`` when
        Dynamo's guard rejects the call."""
        if len(arrays) != len(self._names):
            return None
        frame = {**self._defaults, **static}
        frame.update(zip(self._names, arrays, strict=True))
        try:
            if not self._guard.check(frame):
                return None
        except Exception:  # a guard that cannot evaluate these arguments rejects them
            return None
        args = [frame[k] if d == _ARG else (frame[k].shape[d] if d >= 0
                                              else _as_tensor(frame[k]))
                for k, d in self._slots]
        out = list(self._fused(*args) if self._inner is None else self._inner(args))
        if self._as_bool:
            as_bool = sys.modules["torch"].bool
            for i in self._as_bool:
                out[i] = out[i].view(as_bool)
        return tuple(out)

    def with_inner(self, inner: Any) -> DirectPlan:
        """The same plan calling inductor's generated ``call(args)`` directly."""
        return DirectPlan(self._fused, inner, self._as_bool, self._guard, self._names,
                          self._defaults, self._slots)


_ARG = -1  # slot kinds (a non-negative kind is a dimension)
_SCALAR = -2


_SCALARS: dict[tuple[type, float, str], Any] = {}  # recent numbers as 0-d tensors
_SCALARS_MAX = 64


def _as_tensor(value: Any) -> Any:
    """A Python number as Dynamo passes it to a graph (``torch._as_tensor_fullprec``:
    float64/int64, CPU, 0-d), memoised by type and exact value (a graph only reads its
    inputs; strict inference passes the same thresholds on every call)."""
    key = (type(value), value, value.hex() if type(value) is float else "")
    t = _SCALARS.get(key)
    if t is None:
        if len(_SCALARS) >= _SCALARS_MAX:
            _SCALARS.clear()
        t = _SCALARS[key] = sys.modules["torch"]._as_tensor_fullprec(value)
    return t


def build(compiled: Any, captured: tuple[Any, Any, list[int]], arrays: tuple[Any, ...],
          static: dict[str, Any], expected: Any) -> DirectPlan | None:
    """A plan for the graph ``compiled`` (a ``torch.compile``d kernel copy) just compiled —
    ``captured`` = (the graph as its backend received it, the function inductor's
    ``compile_fx`` returned for it, the positions of that function's uint8 outputs that
    are bool masks) — checked against ``expected``, Dynamo's result of
    ``compiled(*arrays, **static)``; ``None`` if the graph does not qualify (see the
    module). The plan calls inductor's generated code directly when that, too, returns
    ``expected``; else the compiled function."""
    gm, fused, as_bool = captured
    try:
        plan = _plan(compiled, gm, fused, as_bool, arrays, static)
        if plan is None:
            return None
        candidates = [plan]
        inner = getattr(_inductor_graph(fused), "current_callable", None)
        if inner is not None:
            candidates.insert(0, plan.with_inner(inner))
        tensors = [a for a in arrays if type(a) is sys.modules["torch"].Tensor]
        for candidate in candidates:
            versions = [t._version for t in tensors]
            got = candidate(arrays, static)
            if any(t._version != v for t, v in zip(tensors, versions, strict=True)):
                return None  # the graph writes to an input
            if got is not None and _same_result(expected, got, arrays):
                return candidate
    except Exception:  # torch internals differ from what this module reads
        return None
    return None


def _inductor_graph(fused: Any) -> Any:
    """The one ``CompiledFxGraph`` (inductor's compiled graph, whose ``current_callable``
    is the generated ``call(args)``) under AOTAutograd's wrappers of ``fused``, found
    through their closures and attributes; ``None`` unless there is exactly one."""
    from torch._inductor.output_code import CompiledFxGraph

    found: list[Any] = []
    seen: set[int] = set()
    todo: list[tuple[Any, int]] = [(fused, 0)]
    while todo:
        obj, depth = todo.pop()
        if id(obj) in seen or depth > 12:
            continue
        seen.add(id(obj))
        if isinstance(obj, CompiledFxGraph):
            found.append(obj)
            continue
        if isinstance(obj, types.FunctionType):
            for cell in obj.__closure__ or ():
                try:
                    todo.append((cell.cell_contents, depth + 1))
                except ValueError:  # an empty cell
                    continue
        elif isinstance(obj, (list, tuple)):
            todo.extend((v, depth + 1) for v in obj)
        elif type(obj).__module__.startswith("torch.") and hasattr(obj, "__dict__"):
            todo.extend((v, depth + 1) for v in vars(obj).values())
    return found[0] if len(found) == 1 else None


def _plan(compiled: Any, gm: Any, fused: Callable[..., Any], as_bool: list[int],
          arrays: tuple[Any, ...], static: dict[str, Any]) -> DirectPlan | None:
    import torch
    from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list

    orig = getattr(compiled, "_torchdynamo_orig_callable", None)
    if orig is None or orig.__closure__:  # cells would be frame locals too
        return None
    code = orig.__code__
    entries = _debug_get_cache_entry_list(code)
    if not entries:
        return None
    guard = entries[0].guard_manager  # the newest: the graph just compiled
    names = tuple(code.co_varnames[:code.co_argcount])
    if len(arrays) != len(names) or orig.__defaults__:
        return None
    defaults = dict(orig.__kwdefaults__ or {})
    frame = {**defaults, **static, **dict(zip(names, arrays, strict=True))}
    params = names + tuple(code.co_varnames[code.co_argcount:code.co_argcount
                                            + code.co_kwonlyargcount])
    index = {f"l_{n.lower()}_": n for n in params}
    if len(index) != len(params):
        return None
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    sym_at: dict[str, tuple[str, int]] = {}  # symbolic size -> (parameter, dim)
    slots: list[tuple[str, int]] = []
    for node in placeholders:
        ev = node.meta.get("example_value")
        name = index.get(node.name)
        if not isinstance(ev, torch.Tensor) or name is None:
            continue
        value = frame.get(name)
        if type(value) is torch.Tensor and name in names:
            for d, s in enumerate(ev.shape):
                if isinstance(s, torch.SymInt):
                    sym_at.setdefault(str(s), (name, d))
    for node in placeholders:
        ev = node.meta.get("example_value")
        name = index.get(node.name)
        value = frame.get(name) if name is not None else None
        if isinstance(ev, torch.Tensor) and name is not None:
            if type(value) is torch.Tensor and name in names:
                slots.append((name, _ARG))
            elif type(value) in (float, int) and ev.ndim == 0 and name not in names:
                slots.append((name, _SCALAR))
            else:
                return None
        elif isinstance(ev, torch.SymInt) and str(ev) in sym_at:
            slots.append(sym_at[str(ev)])
        else:
            return None
    taken = {k for k, d in slots if d == _ARG}
    if any(isinstance(a, torch.Tensor) and n not in taken for n, a in zip(names, arrays,
                                                                          strict=True)):
        return None
    return DirectPlan(fused, None, as_bool, guard, names, defaults, slots)


def _same_result(expected: Any, got: tuple[Any, ...], arrays: tuple[Any, ...]) -> bool:
    """``got`` is ``expected`` bit for bit: a tuple of fresh tensors (see the module)."""
    import torch

    if type(expected) is not tuple or len(expected) != len(got):
        return False
    inputs = [a for a in arrays if isinstance(a, torch.Tensor)]
    storages = {a.untyped_storage().data_ptr() for a in inputs}
    for e, g in zip(expected, got, strict=True):
        if type(e) is not torch.Tensor or type(g) is not torch.Tensor:
            return False
        if any(e is a for a in inputs) or g.untyped_storage().data_ptr() in storages:
            return False
        if (e.dtype != g.dtype or e.shape != g.shape or e.stride() != g.stride()
                or e.device != g.device or e.requires_grad != g.requires_grad):
            return False
        if not torch.equal(_bits(e), _bits(g)):
            return False
    return True


def _bits(t: Any) -> Any:
    """``t`` viewed as integers of its width (NaN payloads and signed zeros compared)."""
    import torch

    if not t.is_floating_point():
        return t
    width = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.view(width)


__all__ = ["DirectPlan", "build"]
