"""equinox fronts of :mod:`zpml_core.layers` (the math lives in
``zpml_core.layers.rational``; these modules only hold parameters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from zpml_core.layers.rational import (
    BasisFunction,
    check_degree,
    check_positive_int,
    make_basis,
    projective_head,
    rational_pq,
)

__all__ = ["EquinoxProjectiveHead", "EquinoxSCMRationalLayer"]


class EquinoxSCMRationalLayer(eqx.Module):
    """The equinox twin of ``SCMRationalLayer``: elementwise ``(P(x), Q(x))`` with
    ``P = sum_{k<=n} numerator[k] phi_k(x)``, ``Q = sum_{k<=m} denominator[k] phi_k(x)``.

    Initialisation: ``numerator = 0.01 * normal(key)``, ``denominator = (1, 0, ..., 0)``
    (JAX's default float dtype unless ``dtype`` is given). Works on any input shape
    (no ``vmap`` needed).
    """

    numerator: jax.Array
    denominator: jax.Array
    numerator_degree: int = eqx.field(static=True)
    denominator_degree: int = eqx.field(static=True)
    basis: BasisFunction = eqx.field(static=True)

    def __init__(self, numerator_degree: int, denominator_degree: int, basis: Any = None, *,
                 key: jax.Array, dtype: Any = None) -> None:
        self.numerator_degree = check_degree(numerator_degree, "numerator_degree")
        self.denominator_degree = check_degree(denominator_degree, "denominator_degree")
        self.basis = make_basis(basis)
        num = 1e-2 * jax.random.normal(key, (self.numerator_degree + 1,), dtype=dtype)
        self.numerator = num
        self.denominator = jnp.zeros(self.denominator_degree + 1, dtype=num.dtype).at[0].set(1)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return rational_pq(x, self.numerator, self.denominator, basis=self.basis)


class EquinoxProjectiveHead(eqx.Module):
    """The equinox twin of ``ProjectiveHead``: ``backbone`` → ``eqx.nn.Linear(in_features,
    output_dim + 1)`` → ``(P, Q)`` (shapes as in ``ProjectiveHead``).

    equinox modules act on one sample, so by default the backbone is ``jax.vmap``-ed over
    the leading (batch) axis; pass ``vmap_backbone=False`` for a backbone that takes the
    whole batch.
    """

    backbone: Callable[..., Any]
    head: eqx.nn.Linear
    in_features: int = eqx.field(static=True)
    output_dim: int = eqx.field(static=True)
    vmap_backbone: bool = eqx.field(static=True)

    def __init__(self, backbone: Callable[..., Any], in_features: int, output_dim: int = 1, *,
                 key: jax.Array, vmap_backbone: bool = True) -> None:
        if not callable(backbone):
            raise TypeError(f"backbone must be callable, got {type(backbone).__name__}")
        if not isinstance(vmap_backbone, bool):
            raise TypeError(f"vmap_backbone must be a bool, got {type(vmap_backbone).__name__}")
        self.in_features = check_positive_int(in_features, "in_features")
        self.output_dim = check_positive_int(output_dim, "output_dim")
        self.backbone = backbone
        self.vmap_backbone = vmap_backbone
        self.head = eqx.nn.Linear(self.in_features, self.output_dim + 1, key=key)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jax.vmap(self.backbone)(x) if self.vmap_backbone else self.backbone(x)
        bias = self.head.bias
        assert bias is not None
        return projective_head(h, self.head.weight, bias, self.output_dim)
