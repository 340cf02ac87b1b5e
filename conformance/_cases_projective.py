"""Conformance rows of the projective helpers (lift/decode/renormalize, semantic
targets, projective equality) and of strict inference.

Re-exported by :mod:`zpml_conformance.cases`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from zpml_conformance._cases_base import (
    Case,
    Inputs,
    _mask,
    _rand,
    _sprinkle,
    edge_grid,
    edge_values,
    random_pair,
)
from zpml_conformance._cases_scm import _sfx

from zpml_core import projective
from zpml_core.inference import InferenceConfig, strict_inference

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

    dec_bcast, dec_1d = edge_grid("N", "D"), random_pair("N", "D")

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
