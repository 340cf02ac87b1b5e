"""Conformance rows of the SCM ops: binary (add, sub, mul, div), unary (inv, neg,
log, exp, sqrt, sin, cos, tan) and pow with its exponent edges.

Re-exported by :mod:`zpml_conformance.cases`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from zpml_conformance._cases_base import (
    _SHORT,
    Case,
    Inputs,
    _mask,
    _rand,
    _sprinkle,
    edge_grid,
    edge_values,
    exponent_edges,
    random_pair,
)

from zpml_core import scm

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

        edge_bcast, rand_1d = edge_grid("x", "y"), random_pair("x", "y")

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
