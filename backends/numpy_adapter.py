"""numpy adapter: forward only (no autodiff); kernels run op by op, large elementwise
calls block by block (``zpml_backends._chunked``); with numba installed
(``zpml-core[fast]``) the public ops' fast path runs fused kernels (``zpml_backends._fused``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

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

    fast_types = (("numpy", "ndarray"),)

    def fast(self, op: str, *args: Any) -> Any:
        """Fused kernels for plain ndarrays (``type(a) is ndarray``, checked by the caller
        for the first operand): real float32/float64 in native byte order, one dtype and
        shape for all operands, C-contiguous and aligned. ``None`` otherwise, and when
        numba is not installed."""
        fused = self._fused
        if fused is None:
            fused = self._fused = _load_fused()
        if fused is False:
            return None
        x = args[0]
        char = fused.dtype_char(x)
        if char is None:
            return None
        flags = x.flags
        if not (flags.c_contiguous and flags.aligned):
            return None
        if len(args) == 1:
            if op in fused.EXACT_UNARY_OPS:
                return fused.unary(op, char, x, None)
            if op in fused.LIBRARY_UNARY_OPS:
                return fused.unary(op, char, x, getattr(self, "_library_" + op))
            return None
        y = args[1]
        if y.dtype is not x.dtype or y.shape != x.shape:
            return None
        flags = y.flags
        if not (flags.c_contiguous and flags.aligned):
            return None
        if op in fused.BINARY_OPS:
            return fused.binary(op, char, x, y)
        if op != "strict":
            return None
        thr, tau, tau_train = args[2](self._consts(char))
        if tau == 0.0:  # tau_infer underflows: the array-API path raises
            return None
        return fused.strict(char, x, y, thr, tau, tau_train)

    _fused: Any = None

    def _consts(self, char: str) -> Any:
        c = self._consts_by_char.get(char)
        if c is None:
            from zpml_core import _xp

            xp = self.namespace()
            dtype = xp.float32 if char == "f" else xp.float64
            c = self._consts_by_char[char] = _xp.consts(xp, dtype)
        return c

    _consts_by_char: ClassVar[dict[str, Any]] = {}  # 'f'/'d' -> FloatConsts (dtype facts, never traced)

    # the library's own functions, in place on the sanitised operand (errors silenced
    # as in every kernel: exp may underflow)
    @staticmethod
    def _library_log(a: Any) -> None:
        import numpy as np

        with np.errstate(all="ignore"):
            np.log(a, out=a)

    @staticmethod
    def _library_exp(a: Any) -> None:
        import numpy as np

        with np.errstate(all="ignore"):
            np.exp(a, out=a)

    @staticmethod
    def _library_sin(a: Any) -> None:
        import numpy as np

        with np.errstate(all="ignore"):
            np.sin(a, out=a)

    @staticmethod
    def _library_cos(a: Any) -> None:
        import numpy as np

        with np.errstate(all="ignore"):
            np.cos(a, out=a)

    @staticmethod
    def _library_tan(a: Any) -> None:
        import numpy as np

        with np.errstate(all="ignore"):
            np.tan(a, out=a)

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


def _load_fused() -> Any:
    """``zpml_backends._fused`` if numba is importable, else False (checked once)."""
    from zpml_backends import _fused

    return _fused if _fused.available() else False


def _zero_d_arrays(out: Any, np: Any) -> Any:
    """numpy ufuncs return numpy scalars for 0-d operands; the API returns arrays (0-d
    ``ndarray`` outputs, as every other library)."""
    if isinstance(out, tuple):
        return tuple(_zero_d_arrays(o, np) for o in out)
    if isinstance(out, np.generic):
        return np.asarray(out)
    return out
