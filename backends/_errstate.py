"""numpy floating-point error state for numpy-backed adapters.

SCM kernels compute IEEE results that may overflow (the overflow *is* the bottom
signal), so numpy's RuntimeWarnings are silenced inside kernels, as torch and jax are
silent by design.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


class QuietKernels:
    """Mixin: ``fuse`` runs each kernel under ``numpy.errstate(all="ignore")``."""

    def __init__(self) -> None:
        self._quiet: dict[Callable[..., Any], Callable[..., Any]] = {}

    def fuse(self, kernel: Callable[..., Any]) -> Callable[..., Any]:
        cached = self._quiet.get(kernel)
        if cached is not None:
            return cached
        import numpy as np

        @functools.wraps(kernel)
        def quiet(*args: Any, **kwargs: Any) -> Any:
            with np.errstate(all="ignore"):
                return kernel(*args, **kwargs)

        self._quiet[kernel] = quiet
        return quiet
