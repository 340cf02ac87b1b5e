"""zpml_core — Signed Common Meadow semantics written once against the array API.

``import zpml_core`` imports no array framework; the namespace of the arrays you pass
decides which library computes (numpy, torch, jax, array-api-strict, ...).
"""

from zpml_core import projective, scm
from zpml_core._registry import (
    Backend,
    get_backend,
    get_backend_by_name,
    register_backend,
    registered_backends,
)
from zpml_core._xp import namespace
from zpml_core.inference import InferenceConfig, InferenceResult, strict_inference
from zpml_core.projective import (
    decode,
    encode,
    lift_semantic_targets,
    lift_targets,
    projectively_equal,
    renormalize,
)
from zpml_core.scm import SCMArray

__version__ = "0.1.0"

# Discover adapters now, so traced code (jit / torch.compile) never scans entry points.
# If an adapter module is being imported first, zpml_backends runs discovery once its
# own import has finished (adapters import zpml_core, so doing it here would be circular).
import sys as _sys

from zpml_core._registry import _load

if "zpml_backends" not in _sys.modules:
    _load()

__all__ = [
    "Backend",
    "InferenceConfig",
    "InferenceResult",
    "SCMArray",
    "__version__",
    "decode",
    "encode",
    "get_backend",
    "get_backend_by_name",
    "lift_semantic_targets",
    "lift_targets",
    "namespace",
    "projective",
    "projectively_equal",
    "register_backend",
    "registered_backends",
    "renormalize",
    "scm",
    "strict_inference",
]
