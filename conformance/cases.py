"""The conformance cases, as data.

A :class:`Case` names one call of one public array function of zpml_core on inputs
built in numpy from a fixed seed (``np.random.default_rng(case.seed)``). The runner
converts the numpy inputs with the backend's ``asarray``, calls ``case.fn(**inputs,
**case.kwargs)``, flattens the result into named outputs and compares every output with
the numpy float64 reference (numpy float32 for ``f32`` cases). Gradient cases (group
``grad``) additionally name the inputs to differentiate and the scalar to differentiate.

Adding coverage is adding rows: every family below is a small generator over
dtypes × input variants. Ids are ``<function>/<dtype>/<variant>``; gradient ids are
``grad.<function>/<dtype>/<variant>[/<policy>]``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

import zpml_core
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


@dataclass(frozen=True)
class GradSpec:
    """What a gradient case differentiates.

    ``scalar(out, inputs, xp)`` maps the function's result (and the converted inputs)
    to a 0-d array; the gradient of that scalar with respect to each input named in
    ``wrt`` is compared between autodiff backends, against central finite differences
    of the numpy float64 reference where ``fd`` is true (smooth inputs only), and is
    required to be exactly 0 at the positions ``zero_at(inputs_np)`` returns (a dict
    wrt-name → bool numpy mask), if given.
    """

    wrt: tuple[str, ...]
    scalar: Callable[[Any, Mapping[str, Any], Any], Any]
    fd: bool = False
    zero_at: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None
    policy: str | None = None  # name of a zpml_core.autodiff GradientPolicy member
    rtol: float | None = None
    atol: float | None = None


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
    """The edge values of SPEC §1.5 in ``dtype``: signed zeros, ±inf, nan, subnormals,
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
        n1 = _rand(rng, (64,), dt, -2, 2)
        d1 = _rand(rng, (64,), dt, -2, 2)
        lam = _rand(rng, (64,), dt, -1, 1)
        other = rng.random(64) < 0.5
        n2 = np.where(other, _rand(rng, (64,), dt, -2, 2), n1 * lam).astype(dt)
        d2 = np.where(other, _rand(rng, (64,), dt, -2, 2), d1 * lam).astype(dt)
        e = edge_values(dt)
        n1[:len(e)] = e
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
    tiny_tau = 1e-330 if dtype == "float64" else 1e-46
    yield Case(f"inference.strict_inference/{d}/tau-underflow-raises", g, si, rand_2d, dtype,
               kwargs={"config": InferenceConfig(tau_infer=tiny_tau)}, raises="ValueError")


# ---- gradients of the SCM ops and projective helpers --------------------------------------


def _sum_value(w: str = "w") -> Callable[[Any, Mapping[str, Any], Any], Any]:
    def scalar(out: Any, inputs: Mapping[str, Any], xp: Any) -> Any:
        return xp.sum(out[0] * inputs[w])

    return scalar


def _sum_both(out: Any, inputs: Mapping[str, Any], xp: Any) -> Any:
    return xp.sum(out[0] * inputs["w"]) + xp.sum(out[1] * inputs["w2"])


def _zero_at_bottom(fn: Callable[..., Any], wrt: tuple[str, ...]) -> Callable[
        [Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]:
    """Positions where the reference result is ⊥: the gradient there must be exactly 0
    (operands and result of the same shape)."""

    def zero_at(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        args = {k: v for k, v in inputs.items() if k not in ("w", "w2")}
        with np.errstate(all="ignore"):
            bottom = np.asarray(fn(**args)[1])
        return {k: bottom for k in wrt}

    return zero_at


def _grad_cases(dtype: str) -> Iterable[Case]:
    d = _sfx(dtype)
    n = 24

    for op in _BINARY:
        fn = getattr(scm, op)

        def smooth_b(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            return {"x": _smooth(rng, (n,), dt), "y": _smooth(rng, (n,), dt),
                    "w": _smooth(rng, (n,), dt)}

        def edge_b(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            e = edge_values(dt)
            x = rng.permutation(e)
            y = rng.permutation(e)
            return {"x": x, "y": y, "mask_x": _mask(rng, x.shape, 0.1),
                    "w": _smooth(rng, x.shape, dt)}

        spec_s = GradSpec(("x", "y"), _sum_value(), fd=True)
        spec_e = GradSpec(("x", "y"), _sum_value(), zero_at=_zero_at_bottom(fn, ("x", "y")))
        yield Case(f"grad.scm.{op}/{d}/smooth-1d", "grad", fn, smooth_b, dtype, aux=("w",),
                   grad=spec_s)
        yield Case(f"grad.scm.{op}/{d}/edge-1d", "grad", fn, edge_b, dtype, aux=("w",),
                   grad=spec_e)

    for op in _UNARY:
        fn = getattr(scm, op)
        lo, hi = (0.5, 2.0)

        def smooth_u(rng: np.random.Generator, dt: np.dtype, _op: str = op) -> Inputs:
            x = _smooth(rng, (n,), dt, lo, hi)
            if _op in ("log", "sqrt"):
                x = np.abs(x)
            return {"x": x, "w": _smooth(rng, (n,), dt)}

        def edge_u(rng: np.random.Generator, dt: np.dtype) -> Inputs:
            e = edge_values(dt)
            return {"x": e, "mask": _mask(rng, e.shape, 0.1), "w": _smooth(rng, e.shape, dt)}

        yield Case(f"grad.scm.{op}/{d}/smooth-1d", "grad", fn, smooth_u, dtype, aux=("w",),
                   grad=GradSpec(("x",), _sum_value(), fd=True))
        yield Case(f"grad.scm.{op}/{d}/edge-1d", "grad", fn, edge_u, dtype, aux=("w",),
                   grad=GradSpec(("x",), _sum_value(), zero_at=_zero_at_bottom(fn, ("x",))))

    def smooth_pow(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"x": np.abs(_smooth(rng, (n,), dt)), "exponent": _smooth(rng, (n,), dt, 0.5, 3),
                "w": _smooth(rng, (n,), dt)}

    def edge_pow(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        ex = rng.choice(exponent_edges(dt), size=e.shape).astype(dt)
        return {"x": e, "exponent": ex, "w": _smooth(rng, e.shape, dt)}

    yield Case(f"grad.scm.pow/{d}/smooth-1d", "grad", _pow, smooth_pow, dtype, aux=("w",),
               grad=GradSpec(("x", "exponent"), _sum_value(), fd=True))
    yield Case(f"grad.scm.pow/{d}/edge-1d", "grad", _pow, edge_pow, dtype, aux=("w",),
               grad=GradSpec(("x", "exponent"), _sum_value(),
                             zero_at=_zero_at_bottom(_pow, ("x", "exponent"))))

    def smooth_nd(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        return {"N": _smooth(rng, (n,), dt), "D": _smooth(rng, (n,), dt),
                "w": _smooth(rng, (n,), dt), "w2": _smooth(rng, (n,), dt)}

    def edge_nd(rng: np.random.Generator, dt: np.dtype) -> Inputs:
        e = edge_values(dt)
        return {"N": rng.permutation(e), "D": rng.permutation(e), "w": _smooth(rng, e.shape, dt)}

    yield Case(f"grad.projective.decode/{d}/smooth-1d", "grad", projective.decode, smooth_nd,
               dtype, aux=("w", "w2"), grad=GradSpec(("N", "D"), _sum_value(), fd=True))
    yield Case(f"grad.projective.decode/{d}/edge-1d", "grad", projective.decode, edge_nd,
               dtype, aux=("w",), grad=GradSpec(
                   ("N", "D"), _sum_value(), zero_at=_zero_at_bottom(projective.decode,
                                                                    ("N", "D"))))
    # stop-gradient on the scale: d(N/s)/dN = 1/s (no finite-difference check: FD sees s move)
    yield Case(f"grad.projective.renormalize/{d}/smooth-1d", "grad", projective.renormalize,
               smooth_nd, dtype, aux=("w", "w2"), grad=GradSpec(("N", "D"), _sum_both))
    yield Case(f"grad.projective.renormalize/{d}/smooth-1d-nosg", "grad",
               projective.renormalize, smooth_nd, dtype, aux=("w", "w2"),
               kwargs={"stop_gradient": False, "gamma": 0.0},
               grad=GradSpec(("N", "D"), _sum_both, fd=True))


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
    """Case families of modules that may not exist yet (losses, policies)."""
    fams: list[Callable[[str], Iterable[Case]]] = []
    try:
        from zpml_conformance import _loss_cases
    except ImportError:  # pragma: no cover - zpml_core.losses not available
        return ()
    fams.extend(_loss_cases.FAMILIES)
    return tuple(fams)


@lru_cache(maxsize=1)
def all_cases() -> tuple[Case, ...]:
    """Every case, in a stable order (ids are unique)."""
    out: list[Case] = []
    for dtype in DTYPES:
        for fam in (*_FAMILIES, *_extra_families()):
            out.extend(fam(dtype))
    ids = [c.id for c in out]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise RuntimeError(f"duplicate conformance case ids: {sorted(dup)}")
    return tuple(out)


_ = zpml_core  # the cases call the public API only
