"""The conformance cases, as data.

A :class:`Case` names one call of one public array function of zpml_core on inputs
built in numpy from a fixed seed (``np.random.default_rng(case.seed)``). The runner
converts the numpy inputs with the backend's ``asarray``, calls ``case.fn(**inputs,
**case.kwargs)``, flattens the result into named outputs and compares every output with
the numpy float64 reference (numpy float32 for ``f32`` cases). Gradient cases (group
``grad``) additionally name the inputs to differentiate and the scalar to differentiate.

Adding coverage is adding rows: every family below is a small generator over
dtypes × input variants. Ids are ``<function>/<dtype>/<variant>`` (e.g.
``scm.div/f64/edge-bcast``); gradient ids are ``grad.<function>/<dtype>/<variant>`` (e.g.
``grad.scm.log/f32/policy-reject``). Inputs come from ``np.random.default_rng(seed)``
with ``seed = crc32(id)``, so every row is reproducible on its own.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from zpml_core import projective, scm
from zpml_core.inference import InferenceConfig, strict_inference

__all__ = [
    "DTYPES",
    "GROUPS",
    "Case",
    "GradSpec",
    "all_cases",
    "edge_values",
    "exponent_edges",
]

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


# ---------------------------------------------------------------------------------------
# the case table


_BINARY = ("add", "sub", "mul", "div")
_UNARY = ("inv", "neg", "log", "exp", "sqrt", "sin", "cos", "tan")
_EXPONENTS = (2.0, 3.0, -1.0, -2.0, 0.5, -0.5, 1.0 / 3.0, 0.0, 2.5)


def _sfx(dtype: str) -> str:
    return _SHORT[dtype]


def _binary_cases(dtype: str) -> Iterable[Case]:
    d = _sfx(dtype)
    for op in _BINARY:
        fn = getattr(scm, op)
        name = f"scm.{op}"

        def edge_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            e = edge_values(dt)
            return {"x": e[:, None], "y": e[None, :]}

        def rand_1d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": _sprinkle(rng, _rand(rng, (64,), dt)),
                    "y": _sprinkle(rng, _rand(rng, (64,), dt))}

        def masked_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": _sprinkle(rng, _rand(rng, (6, 8), dt)),
                    "y": _sprinkle(rng, _rand(rng, (6, 8), dt)),
                    "mask_x": _mask(rng, (6, 8)), "mask_y": _mask(rng, (6, 8))}

        def masked_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            # operands (6,1) and (8,), masks (6,8) as bool and (8,) as 0/1 integers
            return {"x": _sprinkle(rng, _rand(rng, (6, 1), dt)),
                    "y": _sprinkle(rng, _rand(rng, (8,), dt)),
                    "mask_x": _mask(rng, (6, 8)),
                    "mask_y": _mask(rng, (8,)).astype(np.int64)}

        yield Case(f"{name}/{d}/edge-bcast", "scm", fn, edge_bcast, dtype)
        yield Case(f"{name}/{d}/rand-1d", "scm", fn, rand_1d, dtype)
        yield Case(f"{name}/{d}/masked-2d", "scm", fn, masked_2d, dtype)
        yield Case(f"{name}/{d}/masked-bcast", "scm", fn, masked_bcast, dtype)


def _unary_cases(dtype: str) -> Iterable[Case]:
    d = _sfx(dtype)
    for op in _UNARY:
        fn = getattr(scm, op)
        name = f"scm.{op}"

        def edge_1d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": edge_values(dt)}

        def rand_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": _rand(rng, (6, 8), dt)}

        def masked_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": _sprinkle(rng, _rand(rng, (6, 8), dt)), "mask": _mask(rng, (6, 8))}

        def masked_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": _sprinkle(rng, _rand(rng, (8,), dt)), "mask": _mask(rng, (6, 8))}

        yield Case(f"{name}/{d}/edge-1d", "scm", fn, edge_1d, dtype)
        yield Case(f"{name}/{d}/rand-2d", "scm", fn, rand_2d, dtype)
        yield Case(f"{name}/{d}/masked-2d", "scm", fn, masked_2d, dtype)
        yield Case(f"{name}/{d}/masked-bcast", "scm", fn, masked_bcast, dtype)


def _pow(x: Any, exponent: Any, mask: Any = None) -> Any:
    return scm.pow(x, exponent, mask=mask)


def _pow_cases(dtype: str) -> Iterable[Case]:
    d = _sfx(dtype)

    def edge_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"x": edge_values(dt)[:, None], "exponent": exponent_edges(dt)[None, :]}

    def masked_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        x = _sprinkle(rng, _rand(rng, (6, 8), dt, -2, 2))
        e = rng.choice(exponent_edges(dt)[:12], size=(6, 8)).astype(dt)
        return {"x": x, "exponent": e, "mask": _mask(rng, (6, 8))}

    def masked_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        # base (6,1), exponent (8,), mask (6,8)
        x = _sprinkle(rng, _rand(rng, (6, 1), dt, -2, 2))
        e = rng.choice(exponent_edges(dt)[:12], size=(8,)).astype(dt)
        return {"x": x, "exponent": e, "mask": _mask(rng, (6, 8))}

    yield Case(f"scm.pow/{d}/edge-bcast", "scm", _pow, edge_bcast, dtype)
    yield Case(f"scm.pow/{d}/masked-2d", "scm", _pow, masked_2d, dtype)
    yield Case(f"scm.pow/{d}/masked-bcast", "scm", _pow, masked_bcast, dtype)
    for ev in _EXPONENTS:

        def scalar_exp(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": edge_values(dt)}

        yield Case(f"scm.pow/{d}/edge-1d-exp={ev:g}", "scm", _pow, scalar_exp, dtype,
                   kwargs={"exponent": ev})


# ---- projective -------------------------------------------------------------------------

_LABELS = ("finite", "bottom", "censored_below", "censored_above", "domain_invalid", "fault",
           "missing")


def _labels_for(rng: np.random.Generator, y: np.ndarray) -> Any:
    fin = np.isfinite(y)
    lab = rng.choice(np.asarray(_LABELS), size=y.shape)
    nonfin = rng.choice(np.asarray(_LABELS[1:]), size=y.shape)
    return np.where(fin, lab, nonfin).tolist()


def _projective_cases(dtype: str) -> Iterable[Case]:
    d = _sfx(dtype)

    def lift_edge(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"y": edge_values(dt)}

    def lift_rand(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"y": _sprinkle(rng, _rand(rng, (6, 8), dt))}

    yield Case(f"projective.lift_targets/{d}/edge-1d", "projective", projective.lift_targets,
               lift_edge, dtype)
    yield Case(f"projective.lift_targets/{d}/rand-2d", "projective", projective.lift_targets,
               lift_rand, dtype)

    def sem_1d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        y = edge_values(dt)
        return {"y": y, "status_labels": _labels_for(rng, y)}

    def sem_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        y = _sprinkle(rng, _rand(rng, (6, 8), dt))
        return {"y": y, "status_labels": _labels_for(rng, y)}

    fn_sem = projective.lift_semantic_targets
    yield Case(f"projective.lift_semantic_targets/{d}/edge-1d", "projective", fn_sem, sem_1d,
               dtype)
    yield Case(f"projective.lift_semantic_targets/{d}/rand-2d", "projective", fn_sem, sem_2d,
               dtype)

    def enc(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        v = _sprinkle(rng, _rand(rng, (6, 8), dt))
        return {"value": v, "bottom": _mask(rng, (6, 8)) | ~np.isfinite(v)}

    yield Case(f"projective.encode/{d}/rand-2d", "projective", projective.encode, enc, dtype)

    def dec_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        return {"N": e[:, None], "D": e[None, :]}

    def dec_1d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"N": _sprinkle(rng, _rand(rng, (64,), dt)),
                "D": _sprinkle(rng, _rand(rng, (64,), dt))}

    yield Case(f"projective.decode/{d}/edge-bcast", "projective", projective.decode, dec_bcast,
               dtype)
    yield Case(f"projective.decode/{d}/rand-1d", "projective", projective.decode, dec_1d, dtype)

    def renorm_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        return {"N": e[:, None], "D": e[None, :]}

    def renorm_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"N": _sprinkle(rng, _rand(rng, (6, 8), dt)), "D": _rand(rng, (8,), dt)}

    fn_r = projective.renormalize
    yield Case(f"projective.renormalize/{d}/edge-bcast", "projective", fn_r, renorm_bcast, dtype)
    yield Case(f"projective.renormalize/{d}/rand-2d", "projective", fn_r, renorm_2d, dtype)
    yield Case(f"projective.renormalize/{d}/rand-2d-gamma=0", "projective", fn_r, renorm_2d,
               dtype, kwargs={"gamma": 0.0})
    yield Case(f"projective.renormalize/{d}/rand-2d-gamma=0.5-nosg", "projective", fn_r,
               renorm_2d, dtype, kwargs={"gamma": 0.5, "stop_gradient": False})

    def peq(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        # exact copies and power-of-two multiples (projectively equal in any rounding),
        # unrelated tuples, and edge values
        n1 = _rand(rng, (96,), dt, -2, 2)
        d1 = _rand(rng, (96,), dt, -2, 2)
        lam = rng.choice(np.asarray([1.0, -1.0, 2.0, -2.0, 0.5, 4.0, -0.25], dtype=dt), 96)
        other = rng.random(96) < 0.3
        n2 = np.where(other, _rand(rng, (96,), dt, -2, 2), n1 * lam).astype(dt)
        d2 = np.where(other, _rand(rng, (96,), dt, -2, 2), d1 * lam).astype(dt)
        e = edge_values(dt)
        n1[-len(e):] = e
        return {"N1": n1, "D1": d1, "N2": n2, "D2": d2}

    fn_p = projective.projectively_equal
    yield Case(f"projective.projectively_equal/{d}/rand-1d", "projective", fn_p, peq, dtype)
    yield Case(f"projective.projectively_equal/{d}/rand-1d-atol=0.1", "projective", fn_p, peq,
               dtype, kwargs={"atol": 0.1})


# ---- strict inference -------------------------------------------------------------------


def _inference_cases(dtype: str) -> Iterable[Case]:
    d = _sfx(dtype)
    cfg_train = InferenceConfig(tau_infer=1e-6, tau_train=1e-4)
    cfg_wide = InferenceConfig(tau_infer=1e-3, tau_train=0.5)

    def edge_1d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        q = edge_values(dt)
        p = _sprinkle(rng, _rand(rng, q.shape, dt, -1, 1), 0.2)
        return {"P": p, "Q": q}

    def edge_bcast(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        return {"P": e[:, None], "Q": e[None, :]}

    def rand_2d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"P": _sprinkle(rng, _rand(rng, (6, 8), dt), 0.1),
                "Q": _sprinkle(rng, _rand(rng, (6, 8), dt, -7, 0), 0.1)}

    def p_more_dims(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        # P (n, 3) with Q (n,): P-derived masks reduce with any over the trailing axis
        q = edge_values(dt)
        p = _sprinkle(rng, _rand(rng, (q.shape[0], 3), dt, -1, 1), 0.1)
        return {"P": p, "Q": q}

    def p_more_dims_3d(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        q = _sprinkle(rng, _rand(rng, (4, 5), dt, -7, 0), 0.3)
        p = _sprinkle(rng, _rand(rng, (4, 5, 3, 2), dt, -1, 1), 0.05)
        return {"P": p, "Q": q}

    def q_more_dims(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"P": _rand(rng, (8,), dt), "Q": _sprinkle(rng, _rand(rng, (6, 8), dt, -7, 0))}

    def factors(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        q = _sprinkle(rng, _rand(rng, (6, 8), dt, -7, 0), 0.2)
        p = _rand(rng, (6, 8), dt)
        v1 = _sprinkle(rng, _rand(rng, (6, 8), dt, -8, 0), 0.1)
        v2 = _sprinkle(rng, _rand(rng, (6, 8, 2), dt, -8, 0), 0.1)
        return {"P": p, "Q": q, "validity_factors": (v1, v2)}

    si = strict_inference
    g = "inference"
    yield Case(f"inference.strict_inference/{d}/edge-1d", g, si, edge_1d, dtype)
    yield Case(f"inference.strict_inference/{d}/edge-1d-tau_train", g, si, edge_1d, dtype,
               kwargs={"config": cfg_train})
    yield Case(f"inference.strict_inference/{d}/edge-bcast-tau_train", g, si, edge_bcast, dtype,
               kwargs={"config": cfg_train})
    yield Case(f"inference.strict_inference/{d}/rand-2d", g, si, rand_2d, dtype)
    yield Case(f"inference.strict_inference/{d}/rand-2d-tau=1e-3", g, si, rand_2d, dtype,
               kwargs={"config": cfg_wide})
    yield Case(f"inference.strict_inference/{d}/P-more-dims", g, si, p_more_dims, dtype,
               kwargs={"config": cfg_train})
    yield Case(f"inference.strict_inference/{d}/P-more-dims-4d", g, si, p_more_dims_3d, dtype,
               kwargs={"config": cfg_train})
    yield Case(f"inference.strict_inference/{d}/Q-more-dims", g, si, q_more_dims, dtype,
               kwargs={"config": cfg_train})
    yield Case(f"inference.strict_inference/{d}/validity-factors", g, si, factors, dtype,
               kwargs={"config": cfg_train, "validity_taus": (1e-6, 1e-3)})
    if dtype == "float32":  # a positive Python float never rounds to 0 in float64
        yield Case(f"inference.strict_inference/{d}/tau-underflow-raises", g, si, rand_2d,
                   dtype, kwargs={"config": InferenceConfig(tau_infer=1e-46)},
                   raises="ValueError")


# ---- gradients of the SCM ops and projective helpers --------------------------------------
#
# Rows per differentiable function (float64 and float32):
#   smooth-1d   values well inside the domain; vs central finite differences
#   zeros-1d    smooth values with exact zeros where the function is smooth at 0 (mul at
#               x=0, div numerator 0, ...); vs finite differences
#   edge-1d     the edge values with some incoming masks, under the default policy:
#               exactly 0 at ⊥, pairwise equal between autodiff backends where every
#               operand is 0 or of moderate magnitude (outside that band the frameworks'
#               backward formulas over/underflow in intermediates: JAX flushes subnormal
#               intermediates, e.g. x·x in d(1/x)/dx, and squares y in d(x/y)/dy)
# and per gradient policy (CLAMP, PROJECT, REJECT, PASSTHROUGH) for div, log, sqrt, pow
# and decode: inputs mixing clear ⊥ positions with smooth ones; exactly 0 at ⊥ (all
# policies except PASSTHROUGH, where the op itself still zeroes ⊥), and at the other
# positions the finite differences of ``sum(value · T(w))`` with the policy's transform T
# of the cotangent ``w`` (CLAMP: clip to [-1, 1]; REJECT: 0).

_POLICIES = ("CLAMP", "PROJECT", "REJECT", "PASSTHROUGH")
_MODERATE = {"float64": (1e-100, 1e100), "float32": (1e-15, 1e15)}


def _sum_value(out: Any, inputs: Mapping[str, Any], xp: Any) -> Any:
    return xp.sum(out[0] * inputs["w"])


def _sum_both(out: Any, inputs: Mapping[str, Any], xp: Any) -> Any:
    return xp.sum(out[0] * inputs["w"]) + xp.sum(out[1] * inputs["w2"])


def _ref_bottom(fn: Callable[..., Any], inputs: Mapping[str, Any],
                aux: tuple[str, ...]) -> np.ndarray:
    args = {k: v for k, v in inputs.items() if k not in aux}
    with np.errstate(all="ignore"):
        return np.asarray(fn(**args)[1])


def _zero_at_bottom(fn: Callable[..., Any], wrt: tuple[str, ...], aux: tuple[str, ...] = ("w",),
                    ) -> Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]:
    """Positions where the reference result is ⊥ (same-shape operands): the gradient
    there must be exactly 0."""

    def zero_at(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        bottom = _ref_bottom(fn, inputs, aux)
        return {k: bottom for k in wrt}

    return zero_at


def _all_zero(wrt: tuple[str, ...]) -> Callable[[Mapping[str, np.ndarray]],
                                                Mapping[str, np.ndarray]]:
    def zero_at(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        return {k: np.ones(inputs[k].shape, dtype=bool) for k in wrt}

    return zero_at


def _moderate(wrt: tuple[str, ...], dtype: str) -> Callable[[Mapping[str, np.ndarray]],
                                                           Mapping[str, np.ndarray]]:
    lo, hi = _MODERATE[dtype]

    def at(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        ok = np.ones(np.broadcast_shapes(*(inputs[k].shape for k in wrt)), dtype=bool)
        for k in wrt:
            a = np.abs(inputs[k].astype(np.float64))
            ok &= (a == 0) | ((a >= lo) & (a <= hi))
        return {k: ok for k in wrt}

    return at


def _not_bottom(fn: Callable[..., Any], wrt: tuple[str, ...]) -> Callable[
        [Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]:
    def at(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        bottom = _ref_bottom(fn, inputs, ("w",))
        return {k: ~bottom for k in wrt}

    return at


def _policy_weights(fn: Callable[..., Any], policy: str) -> Callable[
        [Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """FD inputs for a policy row: the cotangent ``w`` replaced by the policy's transform
    (the gate is the identity forward and maps the cotangent of the value elementwise)."""

    def fd_inputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        w = inputs["w"]
        bottom = _ref_bottom(fn, inputs, ("w",))
        if policy == "REJECT":
            w = np.zeros_like(w)
        elif policy == "CLAMP":
            w = np.where(bottom, 0.0, np.clip(w, -1.0, 1.0)).astype(w.dtype)
        elif policy == "PROJECT":
            w = np.where(bottom, 0.0, w).astype(w.dtype)
        return {**inputs, "w": w}

    return fd_inputs


def _with_zeros(rng: np.random.Generator, a: np.ndarray, frac: float = 0.3) -> np.ndarray:
    z = rng.random(a.shape) < frac
    return np.where(z, np.where(rng.random(a.shape) < 0.5, 0.0, -0.0), a).astype(a.dtype)


def _grad_cases(dtype: str) -> Iterable[Case]:
    d = _sfx(dtype)
    n = 24
    G = "grad"
    passthrough = "PASSTHROUGH"

    def edge_spec(fn: Callable[..., Any], wrt: tuple[str, ...]) -> GradSpec:
        return GradSpec(wrt, _sum_value, zero_at=_zero_at_bottom(fn, wrt),
                        compare_at=_moderate(wrt, dtype))

    for op in _BINARY:
        fn = getattr(scm, op)
        wrt2 = ("x", "y")

        def smooth_b(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": _smooth(rng, (n,), dt), "y": _smooth(rng, (n,), dt),
                    "w": _smooth(rng, (n,), dt)}

        def zeros_b(rng: np.random.Generator, dt: np.dtype, _op: str = op) -> Inputs:
            x = _with_zeros(rng, _smooth(rng, (n,), dt))
            y = _smooth(rng, (n,), dt)
            if _op != "div":  # x/y is not smooth at y = 0
                y = _with_zeros(rng, y)
            return {"x": x, "y": y, "w": _smooth(rng, (n,), dt)}

        def edge_b(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            e = edge_values(dt)
            return {"x": rng.permutation(e), "y": rng.permutation(e),
                    "mask_x": _mask(rng, e.shape, 0.1), "w": _smooth(rng, e.shape, dt)}

        fd = GradSpec(wrt2, _sum_value, fd=True, policy=passthrough, scaled_atol=True)
        yield Case(f"grad.scm.{op}/{d}/smooth-1d", G, fn, smooth_b, dtype, aux=("w",), grad=fd)
        yield Case(f"grad.scm.{op}/{d}/zeros-1d", G, fn, zeros_b, dtype, aux=("w",), grad=fd)
        yield Case(f"grad.scm.{op}/{d}/edge-1d", G, fn, edge_b, dtype, aux=("w",),
                   grad=edge_spec(fn, wrt2))

    for op in _UNARY:
        fn = getattr(scm, op)

        def smooth_u(rng: np.random.Generator, dt: np.dtype, _op: str = op) -> Inputs:
            x = _smooth(rng, (n,), dt, 0.5, 1.5 if _op == "tan" else 2.0)
            if _op in ("log", "sqrt"):
                x = np.abs(x)
            return {"x": x, "w": _smooth(rng, (n,), dt)}

        def zeros_u(rng: np.random.Generator, dt: np.dtype, _op: str = op) -> Inputs:
            x = _with_zeros(rng, _smooth(rng, (n,), dt, 0.5, 1.5 if _op == "tan" else 2.0))
            return {"x": x, "w": _smooth(rng, (n,), dt)}

        def edge_u(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            e = edge_values(dt)
            return {"x": e, "mask": _mask(rng, e.shape, 0.1), "w": _smooth(rng, e.shape, dt)}

        fd = GradSpec(("x",), _sum_value, fd=True, policy=passthrough, scaled_atol=True)
        yield Case(f"grad.scm.{op}/{d}/smooth-1d", G, fn, smooth_u, dtype, aux=("w",), grad=fd)
        if op not in ("inv", "log", "sqrt"):  # not differentiable at 0
            yield Case(f"grad.scm.{op}/{d}/zeros-1d", G, fn, zeros_u, dtype, aux=("w",),
                       grad=fd)
        yield Case(f"grad.scm.{op}/{d}/edge-1d", G, fn, edge_u, dtype, aux=("w",),
                   grad=edge_spec(fn, ("x",)))

    def smooth_pow(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"x": np.abs(_smooth(rng, (n,), dt)), "exponent": _smooth(rng, (n,), dt, 0.5, 3),
                "w": _smooth(rng, (n,), dt)}

    def zeros_pow(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        # x**e with integral e >= 1 is smooth in x at x = 0
        return {"x": _with_zeros(rng, _smooth(rng, (n,), dt)),
                "exponent": rng.choice(np.asarray([1.0, 2.0, 3.0], dtype=dt), size=n),
                "w": _smooth(rng, (n,), dt)}

    def edge_pow(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        ex = rng.choice(exponent_edges(dt), size=e.shape).astype(dt)
        return {"x": e, "exponent": ex, "mask": _mask(rng, e.shape, 0.1),
                "w": _smooth(rng, e.shape, dt)}

    def zero_base(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        # 0 ** e for e in {0, 0.5, 1, 2, 2.5, 3, -1}: the frameworks' own pow gradients
        # differ here (torch masks d/dx of x**0 at 0 to 0, jax gives NaN)
        e = np.asarray([0.0, 0.5, 1.0, 2.0, 2.5, 3.0, -1.0], dtype=dt)
        x = np.asarray([0.0, -0.0], dtype=dt)
        return {"x": np.repeat(x, e.size), "exponent": np.tile(e, x.size),
                "w": _smooth(rng, (x.size * e.size,), dt)}

    wrt_p = ("x", "exponent")
    yield Case(f"grad.scm.pow/{d}/zero-base-1d", G, _pow, zero_base, dtype, aux=("w",),
               grad=GradSpec(wrt_p, _sum_value, policy=passthrough,
                             zero_at=_zero_at_bottom(_pow, wrt_p)))
    yield Case(f"grad.scm.pow/{d}/smooth-1d", G, _pow, smooth_pow, dtype, aux=("w",),
               grad=GradSpec(wrt_p, _sum_value, fd=True, policy=passthrough, scaled_atol=True))
    yield Case(f"grad.scm.pow/{d}/zeros-1d", G, _pow, zeros_pow, dtype, aux=("w",),
               grad=GradSpec(("x",), _sum_value, fd=True, policy=passthrough,
                             scaled_atol=True))
    yield Case(f"grad.scm.pow/{d}/edge-1d", G, _pow, edge_pow, dtype, aux=("w",),
               grad=edge_spec(_pow, wrt_p))

    dec = projective.decode
    wrt_nd = ("N", "D")

    def smooth_nd(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"N": _smooth(rng, (n,), dt), "D": _smooth(rng, (n,), dt),
                "w": _smooth(rng, (n,), dt), "w2": _smooth(rng, (n,), dt)}

    def zeros_nd(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"N": _with_zeros(rng, _smooth(rng, (n,), dt)), "D": _smooth(rng, (n,), dt),
                "w": _smooth(rng, (n,), dt), "w2": _smooth(rng, (n,), dt)}

    def edge_nd(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        return {"N": rng.permutation(e), "D": rng.permutation(e), "w": _smooth(rng, e.shape, dt)}

    fd_nd = GradSpec(wrt_nd, _sum_value, fd=True, policy=passthrough, scaled_atol=True)
    yield Case(f"grad.projective.decode/{d}/smooth-1d", G, dec, smooth_nd, dtype,
               aux=("w", "w2"), grad=fd_nd)
    yield Case(f"grad.projective.decode/{d}/zeros-1d", G, dec, zeros_nd, dtype,
               aux=("w", "w2"), grad=fd_nd)
    yield Case(f"grad.projective.decode/{d}/edge-1d", G, dec, edge_nd, dtype, aux=("w",),
               grad=edge_spec(dec, wrt_nd))
    # default stop-gradient on the scale: d(N/s)/dN = 1/s (no finite differences: FD
    # sees s move); pairwise only. Without stop-gradient: finite differences.
    ren = projective.renormalize
    yield Case(f"grad.projective.renormalize/{d}/smooth-1d", G, ren, smooth_nd, dtype,
               aux=("w", "w2"), grad=GradSpec(wrt_nd, _sum_both, scaled_atol=True))
    yield Case(f"grad.projective.renormalize/{d}/zeros-1d-nosg", G, ren, zeros_nd, dtype,
               aux=("w", "w2"), kwargs={"stop_gradient": False, "gamma": 0.0},
               grad=GradSpec(wrt_nd, _sum_both, fd=True, scaled_atol=True))

    # ---- every gradient policy --------------------------------------------------------
    def pol_div(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        x = _smooth(rng, (n,), dt, 0.5, 3.0)
        y = _smooth(rng, (n,), dt, 0.2, 3.0)
        y[::5] = 0.0
        x[1::7] = np.inf
        return {"x": x, "y": y, "mask_x": np.arange(n) % 6 == 3, "w": _smooth(rng, (n,), dt)}

    def pol_unary(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        x = np.abs(_smooth(rng, (n,), dt, 0.2, 3.0))
        x[::4] *= -1.0  # log/sqrt domain errors
        x[1::9] = np.nan
        return {"x": x, "mask": np.arange(n) % 7 == 2, "w": _smooth(rng, (n,), dt, 0.2, 3.0)}

    def pol_pow(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        x = _smooth(rng, (n,), dt, 0.5, 2.0)
        e = _smooth(rng, (n,), dt, 0.3, 2.5)
        x[::4] = -np.abs(x[::4])  # negative base, non-integral exponent → ⊥
        x[2::6] = 0.0
        e[2::6] = -1.5  # 0 ** negative → ⊥
        return {"x": x, "exponent": e, "w": _smooth(rng, (n,), dt, 0.2, 3.0)}

    def pol_dec(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        nn, dd = _smooth(rng, (n,), dt), _smooth(rng, (n,), dt, 0.2, 2.0)
        dd[::4] = 0.0
        nn[3::8] = np.inf
        return {"N": nn, "D": dd, "w": _smooth(rng, (n,), dt, 0.2, 3.0)}

    rows: tuple[tuple[str, Callable[..., Any], Builder, tuple[str, ...]], ...] = (
        ("scm.div", scm.div, pol_div, ("x", "y")),
        ("scm.log", scm.log, pol_unary, ("x",)),
        ("scm.sqrt", scm.sqrt, pol_unary, ("x",)),
        ("scm.pow", _pow, pol_pow, ("x", "exponent")),
        ("projective.decode", dec, pol_dec, ("N", "D")),
    )
    for name, fn, build, wrt in rows:
        for pol in _POLICIES:
            spec = GradSpec(
                wrt, _sum_value, fd=True, policy=pol,
                zero_at=_all_zero(wrt) if pol == "REJECT" else _zero_at_bottom(fn, wrt),
                fd_at=_not_bottom(fn, wrt), fd_inputs=_policy_weights(fn, pol),
                scaled_atol=True,
            )
            yield Case(f"grad.{name}/{d}/policy-{pol.lower()}", G, fn, build, dtype, aux=("w",),
                       grad=spec)


# ---------------------------------------------------------------------------------------


_FAMILIES: tuple[Callable[[str], Iterable[Case]], ...] = (
    _binary_cases,
    _unary_cases,
    _pow_cases,
    _projective_cases,
    _inference_cases,
    _grad_cases,
)


def _extra_families() -> tuple[Callable[[str], Iterable[Case]], ...]:
    """The loss families (only if zpml_core.losses and zpml_core.autodiff exist)."""
    try:
        from zpml_conformance import _loss_cases
    except ModuleNotFoundError as exc:  # pragma: no cover - a core without losses
        if exc.name in ("zpml_core.losses", "zpml_core.autodiff"):
            return ()
        raise
    return _loss_cases.FAMILIES


@lru_cache(maxsize=1)
def all_cases() -> tuple[Case, ...]:
    """Every case, in a stable order (ids are unique)."""
    out: list[Case] = []
    for dtype in DTYPES:
        for fam in (*_FAMILIES, *_extra_families()):
            out.extend(fam(dtype))
    dup = {i for i, n in Counter(c.id for c in out).items() if n > 1}
    if dup:
        raise RuntimeError(f"duplicate conformance case ids: {sorted(dup)}")
    return tuple(out)

