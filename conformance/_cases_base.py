"""The records of the conformance table and its input material: :class:`Case`,
:class:`GradSpec`, the dtypes and groups, and the numpy input builders' helpers
(:func:`edge_values`, :func:`exponent_edges`, random data with edge values and masks).

Re-exported by :mod:`zpml_conformance.cases`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPES = ("float64", "float32")
GROUPS = ("scm", "projective", "inference", "losses", "grad")
_SHORT = {"float64": "f64", "float32": "f32"}

Inputs = dict[str, Any]
Builder = Callable[[np.random.Generator, np.dtype], Inputs]
MaskFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class GradSpec:
    """What a gradient case differentiates.

    ``scalar(out, inputs, xp)`` maps the function's result (and the converted inputs)
    to a 0-d array; the gradient of that scalar with respect to each input named in
    ``wrt`` is compared between autodiff backends (at ``compare_at``), against central
    finite differences of the numpy float64 reference where ``fd`` is true (at
    ``fd_at``), and is required to be exactly 0 at ``zero_at``. The mask functions map
    the numpy inputs to a dict wrt-name → bool mask of that input's shape.
    """

    wrt: tuple[str, ...]
    scalar: Callable[[Any, Mapping[str, Any], Any], Any]
    fd: bool = False
    zero_at: MaskFn | None = None
    #: where the pairwise comparison between autodiff backends applies (default: all)
    compare_at: MaskFn | None = None
    #: where the finite-difference comparison applies (default: all)
    fd_at: MaskFn | None = None
    #: numpy inputs for the finite differences (e.g. the cotangent transformed by a policy)
    fd_inputs: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    #: name of a zpml_core.autodiff.GradientPolicy member: forward and backward run
    #: inside ``gradient_policy(...)``; None: no context (registry defaults apply)
    policy: str | None = None
    rtol: float | None = None
    atol: float | None = None
    #: finite-difference step ``1e-6·max(|x|, fd_floor)``
    fd_floor: float = 1.0
    #: pairwise absolute tolerance relative to the largest finite gradient of the other
    #: backend (``4·eps·max|g|``): for rows of moderate gradients where cancellation in
    #: the backward formula leaves rounding noise around an exact 0
    scaled_atol: bool = False


@dataclass(frozen=True)
class Case:
    """One conformance case (see the module docstring)."""

    id: str
    group: str
    fn: Callable[..., Any]
    build: Builder
    dtype: str = "float64"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: inputs used only by the gradient scalar (not passed to ``fn``)
    aux: tuple[str, ...] = ()
    #: relative / absolute tolerance for floating outputs (None: dtype defaults)
    rtol: float | None = None
    atol: float | None = None
    #: per-output overrides, e.g. {"decoded": (1e-12, 0.0)}
    tol: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    signed_zeros: bool = True
    grad: GradSpec | None = None
    #: if set, every backend must raise this exception class (by name) like the reference
    raises: str | None = None
    #: outputs whose dtype is the backend's default float (e.g. coverage: float32 on
    #: torch by default, float64 on numpy) instead of the reference's dtype
    default_float: tuple[str, ...] = ()
    #: outputs (by last name component) whose dtype is the backend's default integer
    #: (int64 in numpy, int32 in MLX) instead of the reference's dtype
    default_int: tuple[str, ...] = ("bottom_provenance", "orientation_label", "bottom_kind")
    #: a zpml_core.autodiff.GradientPolicy member name: the call (reference and backend)
    #: runs inside ``gradient_policy(...)``
    policy: str | None = None

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode())

    def inputs(self) -> Inputs:
        """The numpy inputs (fresh copies, deterministic)."""
        return self.build(np.random.default_rng(self.seed), np.dtype(self.dtype))

    def call_args(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        args = {k: v for k, v in inputs.items() if k not in self.aux}
        args.update(self.kwargs)
        return args


# ---------------------------------------------------------------------------------------
# input material


def _next(x: float, toward: float, dtype: np.dtype) -> float:
    t = dtype.type
    return float(np.nextafter(t(x), t(toward)))


def edge_values(dtype: np.dtype | str) -> np.ndarray:
    """The edge values of semantics §1.5 in ``dtype``: signed zeros, ±inf, nan, subnormals,
    the smallest normal on both sides, huge values (1e±308 / 1e±38), both sides of
    tau_infer (1e-6), tau_train (1e-4), the ``div`` y² underflow border (sqrt(tiny)),
    the exp overflow border, π/2 for tan, and ordinary numbers."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    tiny, sub, big = float(fi.smallest_normal), float(fi.smallest_subnormal), float(fi.max)
    sqrt_tiny = math.sqrt(tiny)
    if dt == np.float64:
        exp_max = 709.782712893384
        specific = [1e-320, -1e-320, 1e-308, -1e-308, 1e308, -1e308, 1e-160, 1e-154, 7.5e-155,
                    7.4e-155, 1e-200, 1e200, 710.0, -746.0, -745.1, 1e16]
    else:
        exp_max = 88.72283172607422
        specific = [1e-40, -1e-40, 1e-38, -1e-38, 1e38, -1e38, 1e-19, 5.4e-20, 1e-23, 1e19,
                    1e-30, 1e30, 89.0, -104.0, -103.9, 1e8]
    vals = [
        0.0, -0.0, math.inf, -math.inf, math.nan,
        1.0, -1.0, 0.5, -2.0, 3.0, 1.0 / 3.0, -8.0, math.pi / 2, -math.pi,
        sub, -sub, tiny, -tiny, _next(tiny, 0.0, dt), -_next(tiny, 0.0, dt),
        big, -big,
        sqrt_tiny, _next(sqrt_tiny, 0.0, dt), -sqrt_tiny,
        1e-6, _next(1e-6, 0.0, dt), _next(1e-6, 1.0, dt), -1e-6, 1e-7, -_next(1e-6, 0.0, dt),
        1e-4, _next(1e-4, 0.0, dt), -1e-4, 5e-5,
        exp_max, _next(exp_max, math.inf, dt), -exp_max,
        *specific,
    ]
    return np.asarray(vals, dtype=dt)


def exponent_edges(dtype: np.dtype | str) -> np.ndarray:
    """Exponents for ``pow``: integral, negative, fractional, huge, non-finite, subnormal."""
    dt = np.dtype(dtype)
    big = 1e308 if dt == np.float64 else 1e38
    sub = float(np.finfo(dt).smallest_subnormal)
    vals = [0.0, -0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, -0.5, 1.0 / 3.0, 2.5, -3.0, 1025.0,
            -1025.0, 130.0, big, -big, math.inf, -math.inf, math.nan, sub, -sub]
    return np.asarray(vals, dtype=dt)


def _rand(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype,
          lo: float = -3.0, hi: float = 3.0) -> np.ndarray:
    """Signed values spread over decades ``10**[lo, hi]``."""
    mag = 10.0 ** rng.uniform(lo, hi, size=shape)
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return np.asarray(sign * mag, dtype=dt)


def _sprinkle(rng: np.random.Generator, a: np.ndarray, frac: float = 0.25) -> np.ndarray:
    """Replace a fraction of ``a``'s elements by edge values."""
    e = edge_values(a.dtype)
    pick = rng.random(a.shape) < frac
    return np.where(pick, rng.choice(e, size=a.shape), a).astype(a.dtype)


def _mask(rng: np.random.Generator, shape: tuple[int, ...], p: float = 0.3) -> np.ndarray:
    return rng.random(shape) < p


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype,
            lo: float = 0.5, hi: float = 2.0) -> np.ndarray:
    """Values well inside every domain (for finite-difference gradient checks)."""
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return np.asarray(sign * rng.uniform(lo, hi, size=shape), dtype=dt)


def edge_grid(a: str, b: str) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    """Inputs ``{a: e[:, None], b: e[None, :]}``: every pair of edge values ``e``."""
    def make(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        return {a: e[:, None], b: e[None, :]}
    return make


def random_pair(a: str, b: str) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    """Inputs ``{a, b}``: 64 random values each, a quarter replaced by edge values."""
    def make(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {a: _sprinkle(rng, _rand(rng, (64,), dt)), b: _sprinkle(rng, _rand(rng, (64,), dt))}
    return make
