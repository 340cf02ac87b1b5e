"""Conformance rows of the gradients of the SCM ops and projective helpers, per
gradient policy (group ``grad``).

Re-exported by :mod:`zpml_conformance.cases`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from zpml_conformance._cases_base import (
    Builder,
    Case,
    GradSpec,
    Inputs,
    _mask,
    _smooth,
    edge_values,
    exponent_edges,
)
from zpml_conformance._cases_scm import _BINARY, _UNARY, _pow, _sfx

from zpml_core import projective, scm

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
