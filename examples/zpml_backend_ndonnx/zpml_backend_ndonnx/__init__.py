"""zpml_core adapter for ndonnx (ONNX graphs with eager value propagation), forward only."""

import functools
import types
from typing import Any, ClassVar

import ndonnx as ndx
import numpy as np

from zpml_core import Backend


def _hypot(x: Any, y: Any) -> Any:  # ndonnx has no hypot: sqrt(x² + y²) without overflow
    a, b = ndx.abs(x), ndx.abs(y)
    hi, lo = ndx.maximum(a, b), ndx.minimum(a, b)
    r = ndx.where(hi == 0, 0.0, lo / ndx.where(hi == 0, 1.0, hi))
    return ndx.where(ndx.isinf(a) | ndx.isinf(b), float("inf"), hi * ndx.sqrt(1 + r * r))


xp: Any = types.ModuleType("zpml_backend_ndonnx.xp")  # ndonnx, plus hypot
xp.__getattr__, xp.hypot = (lambda name: getattr(ndx, name)), _hypot


class NdonnxBackend(Backend):
    name = "ndonnx"
    namespace_names = ("zpml_backend_ndonnx.xp",)
    array_types = ("ndonnx._array.Array",)
    _quiet: ClassVar[dict[Any, Any]] = {}

    def array_namespace(self, x: Any) -> Any:  # the namespace hook
        return xp

    def namespace(self) -> Any:
        return xp

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        x = ndx.asarray(np.array(a, copy=True))
        return x if dtype is None else ndx.astype(x, dtype)

    def to_numpy(self, x: Any) -> Any:
        return np.array(x.unwrap_numpy(), copy=True)

    def fuse(self, kernel: Any) -> Any:  # values propagate through numpy: keep it quiet
        if kernel not in self._quiet:
            @functools.wraps(kernel)
            def quiet(*args: Any, **kwargs: Any) -> Any:
                with np.errstate(all="ignore"):
                    return kernel(*args, **kwargs)
            self._quiet[kernel] = quiet
        return self._quiet[kernel]
