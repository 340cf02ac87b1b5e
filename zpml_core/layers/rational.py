"""Rational layers, written once against the array API: bases, ``(P, Q)`` and the
projective head's affine map.

A rational layer with numerator degree ``n`` and denominator degree ``m`` maps every
element ``x`` of its input to the projective tuple

    P(x) = sum_{k=0..n} a_k * phi_k(x),        Q(x) = sum_{k=0..m} b_k * phi_k(x),

where ``phi_0, phi_1, ...`` is the basis (monomials ``x^k`` or Chebyshev ``T_k(x)``) and
``a``/``b`` are the coefficient vectors. No division happens: ``P/Q`` is decoded later
with the strict masks (``zpml_core.inference``), so a pole ``Q = 0`` is representable.

The projective head maps features ``h`` (shape ``(..., F)``) with one affine map
``z = h @ W^T + c`` (``W`` of shape ``(k + 1, F)``) to ``k`` numerators sharing one
denominator: ``k = 1`` gives ``P = z[..., 0]``, ``Q = z[..., 1]`` (the guide's
``RationalHead``); ``k > 1`` gives ``P = z[..., :k]`` and ``Q = z[..., k]``.

The framework fronts (a torch ``nn.Module`` and an equinox module) live in
``zpml_backends.torch_layers`` and ``zpml_backends.equinox_layers``; they hold the
parameters and call the functions below.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array, Namespace

__all__ = [
    "BasisFunction",
    "ChebyshevBasis",
    "CustomBasis",
    "MonomialBasis",
    "check_degree",
    "check_positive_int",
    "make_basis",
    "projective_head",
    "rational_pq",
]


def check_degree(value: object, name: str) -> int:
    """A polynomial degree: a Python/numpy integer ``>= 0`` (``bool`` → ``TypeError``)."""
    numpy_int = type(value).__module__ == "numpy" and hasattr(value, "__index__")
    if _xp.is_bool_scalar(value) or not (isinstance(value, int) or numpy_int):
        raise TypeError(f"{name} must be an int >= 0, got {value!r} ({type(value).__name__})")
    v = operator.index(value)  # type: ignore[arg-type]
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def check_positive_int(value: object, name: str) -> int:
    """A size: a Python/numpy integer ``>= 1`` (``bool`` → ``TypeError``)."""
    v = check_degree(value, name)
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v


class BasisFunction:
    """A basis ``phi_0 .. phi_d``: ``basis(x, degree)`` returns the feature columns, an
    array of shape ``x.shape + (degree + 1,)`` in ``x``'s namespace."""

    name = "custom"

    def __call__(self, x: Array, degree: int, *, xp: Namespace | None = None) -> Array:
        d = check_degree(degree, "degree")
        if xp is None:
            xp = _xp.namespace(x, names=("x",))
        return self._features(x, d, xp=xp)

    def _features(self, x: Array, degree: int, *, xp: Namespace) -> Array:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MonomialBasis(BasisFunction):
    """``phi_k(x) = x^k``: ``[1, x, x^2, ..., x^d]`` (powers by repeated multiplication)."""

    name = "monomial"

    def _features(self, x: Array, degree: int, *, xp: Namespace) -> Array:
        cols = [xp.ones_like(x), x][: degree + 1]
        for _ in range(2, degree + 1):
            cols.append(cols[-1] * x)
        return xp.stack(cols, axis=-1)


class ChebyshevBasis(BasisFunction):
    """Chebyshev polynomials of the first kind: ``T_0 = 1``, ``T_1 = x``,
    ``T_{k+1} = 2 x T_k - T_{k-1}`` (bounded by 1 on ``[-1, 1]``)."""

    name = "chebyshev"

    def _features(self, x: Array, degree: int, *, xp: Namespace) -> Array:
        cols = [xp.ones_like(x), x]
        for _ in range(2, degree + 1):
            cols.append(2 * x * cols[-1] - cols[-2])
        return xp.stack(cols[: degree + 1], axis=-1)


class CustomBasis(BasisFunction):
    """Wrap a callable ``fn(x, degree) -> features`` as a basis. The result must have
    shape ``x.shape + (degree + 1,)`` (else ``ValueError`` naming ``basis``)."""

    def __init__(self, fn: Callable[[Any, int], Any]) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn

    def _features(self, x: Array, degree: int, *, xp: Namespace) -> Array:
        out = self.fn(x, degree)
        want = (*tuple(x.shape), degree + 1)
        if tuple(getattr(out, "shape", ())) != want:
            raise ValueError(
                f"basis must return features of shape x.shape + (degree + 1,) = {want}, "
                f"got shape {tuple(getattr(out, 'shape', ()))}"
            )
        return out

    def __repr__(self) -> str:
        return f"CustomBasis({self.fn!r})"


_NAMED: dict[str, type[BasisFunction]] = {"monomial": MonomialBasis, "chebyshev": ChebyshevBasis}


def make_basis(basis: object) -> BasisFunction:
    """``None`` → :class:`MonomialBasis`; ``"monomial"``/``"chebyshev"`` → that basis; a
    :class:`BasisFunction` as is; another callable ``fn(x, degree)`` → :class:`CustomBasis`."""
    if basis is None:
        return MonomialBasis()
    if isinstance(basis, BasisFunction):
        return basis
    if isinstance(basis, str):
        try:
            return _NAMED[basis]()
        except KeyError:
            raise ValueError(
                f"basis must be one of {sorted(_NAMED)}, a BasisFunction or a callable, "
                f"got {basis!r}"
            ) from None
    if callable(basis):
        return CustomBasis(basis)
    raise TypeError(
        f"basis must be a BasisFunction, a callable fn(x, degree) or one of {sorted(_NAMED)}, "
        f"got {type(basis).__name__}"
    )


def _check_real_float(xp: Namespace, a: Array, name: str) -> None:
    if not _xp.is_floating(xp, a.dtype):
        raise TypeError(f"{name} must be a real floating array, got dtype {a.dtype}")


def _check_coefficients(a: Array, name: str) -> None:
    if len(a.shape) != 1 or a.shape[0] < 1:
        raise ValueError(f"{name} must be a 1-D array of degree + 1 >= 1 coefficients, "
                         f"got shape {tuple(a.shape)}")


def _k_rational_pq(x: Array, numerator: Array, denominator: Array, basis: BasisFunction, *,
                   xp: Namespace) -> tuple[Array, Array]:
    n, m = numerator.shape[0], denominator.shape[0]
    feats = basis(x, max(n, m) - 1, xp=xp)
    P = xp.sum(feats[..., :n] * numerator, axis=-1)
    Q = xp.sum(feats[..., :m] * denominator, axis=-1)
    return P, Q


def rational_pq(x: Array, numerator: Array, denominator: Array, *,
                basis: object = None) -> tuple[Array, Array]:
    """Evaluate ``P(x) = sum_k numerator[k] phi_k(x)`` and ``Q(x) = sum_k denominator[k]
    phi_k(x)`` elementwise; ``P`` and ``Q`` have ``x``'s shape (dtype promoted with the
    coefficients'). The basis is evaluated once, to ``max(n, m)``.

    ``x`` and the coefficients must be real floating arrays of one library
    (``TypeError`` naming the argument); coefficients must be 1-D and non-empty
    (``ValueError`` naming the argument). ``basis`` as in :func:`make_basis`.
    """
    xp = _xp.namespace(x, numerator, denominator, names=("x", "numerator", "denominator"))
    for a, name in ((x, "x"), (numerator, "numerator"), (denominator, "denominator")):
        if not _xp.is_array(a):
            raise TypeError(f"{name} must be an array, got {type(a).__name__}")
        _check_real_float(xp, a, name)
    _check_coefficients(numerator, "numerator")
    _check_coefficients(denominator, "denominator")
    return _k_rational_pq(x, numerator, denominator, make_basis(basis), xp=xp)


def _k_projective_head(h: Array, weight: Array, bias: Array, output_dim: int, *,
                       xp: Namespace) -> tuple[Array, Array]:
    dt = xp.result_type(h.dtype, weight.dtype, bias.dtype)
    z = xp.matmul(xp.astype(h, dt), xp.matrix_transpose(xp.astype(weight, dt))) + bias
    if output_dim == 1:
        return z[..., 0], z[..., 1]
    return z[..., :output_dim], z[..., output_dim]


def projective_head(h: Array, weight: Array, bias: Array, output_dim: int) -> tuple[Array, Array]:
    """The projective head's affine map: ``z = h @ weight^T + bias`` then ``(P, Q)`` as in
    the module docstring. ``weight`` has shape ``(output_dim + 1, F)``, ``bias``
    ``(output_dim + 1,)`` and ``h`` ``(..., F)`` with ``h.ndim >= 1``; a mismatch raises
    ``ValueError`` naming the argument (``h`` is the backbone's output).
    """
    k = check_positive_int(output_dim, "output_dim")
    xp = _xp.namespace(h, weight, bias, names=("h", "weight", "bias"))
    for a, name in ((h, "h"), (weight, "weight"), (bias, "bias")):
        _check_real_float(xp, a, name)
    if len(weight.shape) != 2 or weight.shape[0] != k + 1:
        raise ValueError(f"weight must have shape (output_dim + 1, features) = ({k + 1}, F), "
                         f"got {tuple(weight.shape)}")
    if tuple(bias.shape) != (k + 1,):
        raise ValueError(f"bias must have shape ({k + 1},), got {tuple(bias.shape)}")
    if len(h.shape) < 1 or h.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"h (the backbone's output) must have last dimension in_features="
            f"{weight.shape[1]}, got shape {tuple(h.shape)}"
        )
    return _k_projective_head(h, weight, bias, k, xp=xp)
