"""Kernel layouts: what a backend may assume when it splits a kernel call into blocks.

A kernel marked with :func:`layout` promises that its outputs can be computed block by
block along axis 0 of its array arguments, so an adapter may run it on slices (the numpy
adapter does, to keep temporaries in cache) and get the same result as one call:

* ``ELEMENTWISE`` — every output element depends only on the elements of the
  (standard-broadcast) inputs at the same index; outputs have the broadcast shape.
* ``LEADING`` — whenever every array argument has an axis 0 of the same length ``n``
  and none has more dimensions than the first, every output has that axis 0 and row
  ``i`` of each output depends only on row ``i`` of the inputs (``strict_inference``:
  ``Q`` aligns with the *leading* axes of ``P``).

Unmarked kernels (losses: reductions) are always run whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

ELEMENTWISE = "elementwise"
LEADING = "leading"
ATTRIBUTE = "zpml_layout"

K = TypeVar("K", bound=Callable[..., Any])


def layout(kind: str) -> Callable[[K], K]:
    """Mark a kernel with its layout (``ELEMENTWISE`` or ``LEADING``)."""
    if kind not in (ELEMENTWISE, LEADING):
        raise ValueError(f"unknown kernel layout {kind!r}")

    def mark(kernel: K) -> K:
        setattr(kernel, ATTRIBUTE, kind)
        return kernel

    return mark


def layout_of(kernel: Callable[..., Any]) -> str | None:
    """The layout a kernel was marked with, or ``None``."""
    return getattr(kernel, ATTRIBUTE, None)
