"""torch ``nn.Module`` fronts of :mod:`zpml_core.layers` (the math lives in
``zpml_core.layers.rational``; these modules only hold parameters)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zpml_core.layers.rational import (
    check_degree,
    check_positive_int,
    make_basis,
    projective_head,
    rational_pq,
)

__all__ = ["ProjectiveHead", "SCMRationalLayer"]


class SCMRationalLayer(nn.Module):
    """Elementwise rational layer returning the projective tuple ``(P(x), Q(x))``.

    ``P(x) = sum_{k<=n} numerator[k] phi_k(x)`` and ``Q(x) = sum_{k<=m} denominator[k]
    phi_k(x)`` with ``n = numerator_degree``, ``m = denominator_degree`` and the basis
    ``phi`` (``MonomialBasis`` by default; ``"chebyshev"``/``ChebyshevBasis()``, or any
    ``fn(x, degree)``). ``P`` and ``Q`` have ``x``'s shape; decode ``P/Q`` with the strict
    masks (``zpml_core.inference``) — the layer never divides.

    Initialisation (as zeroproofml 0.6.1): ``numerator ~ N(0, 0.01^2)`` drawn from torch's
    global RNG, ``denominator = (1, 0, ..., 0)`` so the layer starts as ``Q = 1``.
    Parameters are created in torch's default dtype unless ``dtype`` is given.
    """

    def __init__(self, numerator_degree: int, denominator_degree: int, basis: Any = None, *,
                 dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.numerator_degree = check_degree(numerator_degree, "numerator_degree")
        self.denominator_degree = check_degree(denominator_degree, "denominator_degree")
        self.basis = make_basis(basis)
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        self.numerator = nn.Parameter(torch.empty(self.numerator_degree + 1, **kw))
        self.denominator = nn.Parameter(torch.zeros(self.denominator_degree + 1, **kw))
        with torch.no_grad():
            nn.init.normal_(self.numerator, mean=0.0, std=1e-2)
            self.denominator[0] = 1.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        P, Q = rational_pq(x, self.numerator, self.denominator, basis=self.basis)
        return P, Q

    def extra_repr(self) -> str:
        return (f"numerator_degree={self.numerator_degree}, "
                f"denominator_degree={self.denominator_degree}, basis={self.basis!r}")


class ProjectiveHead(nn.Module):
    """Turn any backbone into the guide's ``RationalHead``: ``backbone`` → one
    ``nn.Linear(in_features, output_dim + 1)`` → ``(P, Q)``.

    ``output_dim=1``: ``P``, ``Q`` of shape ``(B,)`` (exactly the guide's head);
    ``output_dim=k > 1``: ``P`` of shape ``(B, k)`` sharing one denominator ``Q`` of
    shape ``(B,)``. ``in_features`` is the backbone's output width (checked on every
    call: ``ValueError`` naming the backbone's output).
    """

    def __init__(self, backbone: nn.Module, in_features: int, output_dim: int = 1) -> None:
        super().__init__()
        if not callable(backbone):
            raise TypeError(f"backbone must be a callable module, got {type(backbone).__name__}")
        self.in_features = check_positive_int(in_features, "in_features")
        self.output_dim = check_positive_int(output_dim, "output_dim")
        self.backbone = backbone
        self.head = nn.Linear(self.in_features, self.output_dim + 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        P, Q = projective_head(self.backbone(x), self.head.weight, self.head.bias,
                               self.output_dim)
        return P, Q
