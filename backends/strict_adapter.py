"""array-api-strict adapter: the canary proving the core uses nothing outside the standard.

Forward only. array-api-strict's multi-device mode is honoured: arrays keep their device.
"""

from __future__ import annotations

from typing import Any

from zpml_backends._errstate import QuietKernels

from zpml_core._registry import Backend


class StrictBackend(QuietKernels, Backend):
    name = "strict"
    namespace_names = ("array_api_strict",)
    supports_autodiff = False

    def namespace(self) -> Any:
        import array_api_strict as xp

        return xp

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        import numpy as np

        xp = self.namespace()
        arr = xp.asarray(np.array(a, copy=True))
        if dtype is not None:
            arr = xp.astype(arr, dtype)
        if device is not None:
            arr = arr.to_device(device)
        return arr

    def to_numpy(self, x: Any) -> Any:
        import numpy as np

        xp = self.namespace()
        cpu = xp.Device("CPU_DEVICE")
        if x.device != cpu:
            x = x.to_device(cpu)
        return np.from_dlpack(x).copy()
