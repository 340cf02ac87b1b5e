"""The torch fast path without numba: the op's own array-API kernel, compiled by the fuser.

Without ``zpml-core[fast]``, :meth:`TorchBackend.fast` hands qualifying tensors (plain
strided CPU float32/float64 tensors of one dtype and shape — any strides — with no neg
bit and no grad, nothing tracing or transforming the call: the numba kernels'
qualification less contiguity, which only their numpy views need) to the kernel the
public op would run, with the arguments the public op would pass it — the argument
preparation is the identity on such tensors — so values and masks are the public op's
by construction. The call skips that preparation and, once the fuser has compiled the
kernel for the call's signature, Dynamo too: the fuser's direct plans for it
(``_torch_direct``: Dynamo's own guard, then the compiled graph) are remembered per dtype
and rank and tried first. A call the plan's guard rejects, or one before any plan
exists, takes the fuser's dispatch (eager aten kernels below its size threshold, the
compiled kernel above it).

The policy gate of the public ops is not applied: no operand requires grad, so the
gate's identity forward is all it would do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zpml_backends._torch_fuse import TorchFuser, _with_fused_namespace


class CompiledOp:
    """One public op's kernel with its static arguments, dispatched through ``fuser``."""

    __slots__ = ("_fused_static", "_fuser", "_kernel", "_plans", "_run", "_static")

    def __init__(self, fuser: TorchFuser, kernel: Callable[..., Any],
                 static: dict[str, Any]) -> None:
        self._fuser = fuser
        self._kernel = kernel
        self._run = fuser(kernel)
        self._static = static
        self._fused_static = _with_fused_namespace(static)  # what the compiled copy gets
        # (dtype, ndim) -> the fuser's direct plans for the signature it last served
        self._plans: dict[tuple[Any, int], list[Any]] = {}

    def __call__(self, *arrays: Any, **numbers: Any) -> Any:
        """``kernel(*arrays, **static, **numbers)``; ``numbers`` are per-call Python
        scalars (strict inference's thresholds)."""
        first = arrays[0]
        key = (first.dtype, first.ndim)
        plans = self._plans.get(key)
        if plans:
            fused_static = ({**self._fused_static, **numbers} if numbers
                            else self._fused_static)
            for plan in plans:
                out = plan(arrays, fused_static)
                if out is not None:
                    return out
        static = {**self._static, **numbers} if numbers else self._static
        out = self._run(*arrays, **static)
        if plans is None:
            found = self._fuser.plans(self._kernel, arrays, static)
            if found is not None:  # the fuser's live list for this signature
                self._plans[key] = found
        return out


def compiled_op(fuser: TorchFuser, name: str, be: Any) -> CompiledOp | None:
    """The :class:`CompiledOp` of public op ``name`` (``add sub mul div``, the real unary
    ops — ``scm.real_kernel``'s table — or ``strict`` = strict inference without validity
    factors) for the adapter ``be``; ``None`` for any other name."""
    import array_api_compat.torch as compat

    if name == "strict":
        from zpml_core.inference.mode import _k_strict

        return CompiledOp(fuser, _k_strict, {"xp": compat, "be": be, "factor_taus": ()})
    from zpml_core.scm import real_kernel

    try:
        kernel, static = real_kernel(name)
    except KeyError:
        return None
    return CompiledOp(fuser, kernel, {"xp": compat, "be": be, **static})


__all__ = ["CompiledOp", "compiled_op"]
