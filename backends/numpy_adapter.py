"""numpy adapter: forward only (no autodiff), kernels run op by op."""

from __future__ import annotations

from typing import Any

from zpml_backends._errstate import QuietKernels

from zpml_core._registry import Backend


class NumpyBackend(QuietKernels, Backend):
    name = "numpy"
    namespace_names = ("array_api_compat.numpy", "numpy")
    supports_autodiff = False

    def namespace(self) -> Any:
        import array_api_compat.numpy as xp

        return xp

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        import numpy as np

        return np.array(a, dtype=dtype, copy=True)

    def to_numpy(self, x: Any) -> Any:
        import numpy as np

        return np.asarray(x)
