"""numpy adapter: forward only (no autodiff); kernels run op by op, large elementwise
calls block by block (``zpml_backends._chunked``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from zpml_backends._chunked import run_blocked
from zpml_backends._errstate import QuietKernels

from zpml_core._registry import Backend


class NumpyBackend(QuietKernels, Backend):
    name = "numpy"
    namespace_names = ("array_api_compat.numpy", "numpy")
    supports_autodiff = False

    def __init__(self) -> None:
        super().__init__()
        self._blocked: dict[Callable[..., Any], Callable[..., Any]] = {}

    def namespace(self) -> Any:
        import array_api_compat.numpy as xp

        return xp

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        cached = self._blocked.get(kernel)
        if cached is not None:
            return cached

        @functools.wraps(kernel)
        def blocked(*args: Any, **kwargs: Any) -> Any:
            import numpy as np

            # the error state QuietKernels gives every kernel, held around all blocks
            with np.errstate(all="ignore"):
                return _zero_d_arrays(run_blocked(kernel, args, kwargs), np)

        self._blocked[kernel] = blocked
        return blocked

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        import numpy as np

        return np.array(a, dtype=dtype, copy=True)

    def to_numpy(self, x: Any) -> Any:
        import numpy as np

        return np.asarray(x)


def _zero_d_arrays(out: Any, np: Any) -> Any:
    """numpy ufuncs return numpy scalars for 0-d operands; the API returns arrays (0-d
    ``ndarray`` outputs, as every other library)."""
    if isinstance(out, tuple):
        return tuple(_zero_d_arrays(o, np) for o in out)
    if isinstance(out, np.generic):
        return np.asarray(out)
    return out
