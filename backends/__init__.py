"""zpml_backends — one small adapter per array framework.

Each adapter supplies only what the array API standard lacks (stop-gradient, kernel
fusion, custom-gradient hooks, conversion for conformance). They are registered through
the ``zpml_core.backends`` entry-point group, like any third-party adapter.
"""

from zpml_backends.jax_adapter import JaxBackend
from zpml_backends.numpy_adapter import NumpyBackend
from zpml_backends.strict_adapter import StrictBackend
from zpml_backends.torch_adapter import TorchBackend

__all__ = ["JaxBackend", "NumpyBackend", "StrictBackend", "TorchBackend"]

# the adapters are complete now: discover the registered ones (no-op if already done)
from zpml_core._registry import _load

_load()
