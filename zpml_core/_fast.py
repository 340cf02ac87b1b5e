"""The fast path of the public ops: hand plain arrays to an adapter's fused kernel.

Rule: before any argument preparation, a public op (``scm.add/sub/mul/div``, the real
unary ops, ``strict_inference`` without validity factors) asks the adapter registered
for the *exact* type of its first array argument (``Backend.fast_types``, e.g. numpy's
``ndarray``, torch's ``Tensor``) for a fused result. The adapter qualifies the call
cheaply — same type, dtype (real float32/float64) and shape for every operand,
contiguous, CPU, no gradient, not traced — and returns the result of its fused kernel,
bit for bit the array-API kernel's; anything else (a Python scalar, a mask, a subclass,
mixed dtypes, broadcasting, a tracer, another library) gets ``None`` and takes the
array-API path with its full validation. The fast path therefore never changes a result
or an error, only the cost.

``ZPML_FAST=0`` (read at ``import zpml_core``) disables it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zpml_core._registry import fast_backend


def binary(op: str, x: object, y: object) -> Any:
    """``(value, bottom)`` of the fused binary ``op`` on ``x, y``, or ``None``."""
    t = type(x)
    if type(y) is not t:
        return None
    be = fast_backend(t)
    if be is None:
        return None
    return be.fast(op, x, y)


def unary(op: str, x: object) -> Any:
    """``(value, bottom)`` of the fused unary ``op`` on ``x``, or ``None``."""
    be = fast_backend(type(x))
    if be is None:
        return None
    return be.fast(op, x)


def strict(P: object, Q: object, thresholds: Callable[[Any], tuple[float, float, float | None]]
           ) -> Any:
    """``(decoded, bottom, gap, fault, semantic)`` of fused strict inference, or ``None``."""
    t = type(P)
    if type(Q) is not t:
        return None
    be = fast_backend(t)
    if be is None:
        return None
    return be.fast("strict", P, Q, thresholds)
