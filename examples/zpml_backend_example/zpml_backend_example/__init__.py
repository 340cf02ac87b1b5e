"""An out-of-tree zpml_core backend adapter, complete.

It adapts array-api-strict (the reference implementation of the array API standard)
running on its non-default device ``device1``: every array zpml_core creates must then
follow its inputs' device, or array-api-strict refuses to mix them. The adapter is
forward-only (array-api-strict has no autodiff).

An adapter supplies only what the standard lacks; here:

* ``namespace()`` / ``available()`` — import the library lazily;
* ``asarray(numpy_array, dtype=, device=)`` / ``to_numpy(x)`` — exact conversion, used
  by the conformance suite (and handy in tests);
* ``fuse(kernel)`` — how a core kernel runs; numpy-backed libraries must silence
  numpy's floating-point warnings, because SCM kernels overflow on purpose (the
  overflow *is* the bottom signal);
* ``conformance_device`` — where the suite places its inputs.

Registered in this package's pyproject.toml:

    [project.entry-points."zpml_core.backends"]
    example = "zpml_backend_example:ExampleBackend"
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from zpml_core import Backend

__all__ = ["ExampleBackend"]


class ExampleBackend(Backend):
    name = "example"
    # ``xp.__name__`` of the namespaces this adapter serves (array_api_compat's
    # array_namespace(x).__name__ for the library's arrays)
    namespace_names = ("array_api_strict",)
    supports_autodiff = False

    def __init__(self) -> None:
        self._quiet: dict[Callable[..., Any], Callable[..., Any]] = {}

    def namespace(self) -> Any:
        import array_api_strict

        return array_api_strict

    @property
    def conformance_device(self) -> Any:
        return self.namespace().Device("device1")

    def asarray(self, a: Any, *, dtype: Any = None, device: Any = None) -> Any:
        import numpy as np

        xp = self.namespace()
        x = xp.asarray(np.array(a, copy=True))
        if dtype is not None:
            x = xp.astype(x, dtype)
        return x.to_device(device) if device is not None else x

    def to_numpy(self, x: Any) -> Any:
        import numpy as np

        cpu = self.namespace().Device("CPU_DEVICE")
        if x.device != cpu:
            x = x.to_device(cpu)
        return np.from_dlpack(x).copy()

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        quiet = self._quiet.get(kernel)
        if quiet is None:
            import numpy as np

            @functools.wraps(kernel)
            def quiet(*args: Any, **kwargs: Any) -> Any:
                with np.errstate(all="ignore"):
                    return kernel(*args, **kwargs)

            self._quiet[kernel] = quiet
        return quiet
