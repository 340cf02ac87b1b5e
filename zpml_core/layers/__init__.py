"""Rational layers: ``SCMRationalLayer`` (``P(x)``, ``Q(x)`` from trainable coefficients)
and ``ProjectiveHead`` (any backbone → the guide's ``RationalHead`` pattern ``(P, Q)``).

The math (bases, ``P``/``Q``, the head's affine map) is written once against the array
API in :mod:`zpml_core.layers.rational`. The framework fronts are loaded on first
access, so ``import zpml_core.layers`` imports no framework:

* ``SCMRationalLayer``, ``ProjectiveHead`` — torch ``nn.Module`` fronts
  (``zpml_backends.torch_layers``);
* ``EquinoxSCMRationalLayer``, ``EquinoxProjectiveHead`` — equinox fronts
  (``zpml_backends.equinox_layers``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from zpml_core.layers.rational import (
    BasisFunction,
    ChebyshevBasis,
    CustomBasis,
    MonomialBasis,
    make_basis,
    projective_head,
    rational_pq,
)

__all__ = [
    "BasisFunction",
    "ChebyshevBasis",
    "CustomBasis",
    "EquinoxProjectiveHead",
    "EquinoxSCMRationalLayer",
    "MonomialBasis",
    "ProjectiveHead",
    "SCMRationalLayer",
    "make_basis",
    "projective_head",
    "rational_pq",
]

_LAZY = {
    "SCMRationalLayer": "zpml_backends.torch_layers",
    "ProjectiveHead": "zpml_backends.torch_layers",
    "EquinoxSCMRationalLayer": "zpml_backends.equinox_layers",
    "EquinoxProjectiveHead": "zpml_backends.equinox_layers",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
