"""Data generators of the benchmark tasks (numpy only; float32 inputs, float32 targets).

Three tasks with a singular set, each split into ``train``/``val``/``test``:

* ``pole`` — the guide's ``y = 1/(x − a)`` on ``x ∈ [−1, 1]`` (``a = 0.25``): uniform
  samples, samples at log-uniform distances ``10^U(−4, −1)`` on both sides of the pole,
  and exact-pole samples whose target is ``+inf`` (the model should answer ⊥ there;
  training samples the pole itself often, 256 of 2304 rows).
  Targets are computed from the float32 inputs the model sees, so the pole stays exact.
* ``ik_ref`` — the reference's RR-arm inverse-kinematics benchmark: a 2-link arm
  (``L1 = L2 = 1``); inputs ``(θ1, θ2, dx, dy)`` with ``θ1, θ2 ~ U(−π, π)`` and
  ``dx, dy ~ N(0, 0.1²)``; targets the damped-least-squares joint step
  ``dθ = Jᵀ(JJᵀ + λ²I)⁻¹ e`` with ``e = (dx, dy)`` and ``λ = 0.01`` (finite
  everywhere). 30 % of the samples are near-singular, ``θ2 ~ N(0, 1e-3²)`` or
  ``N(π, 1e-3²)`` with equal probability, among them exact ``θ2 = 0`` and ``θ2 = π``
  rows. Train/test is an 80/20 split stratified by ``|det J| = |sin θ2|`` over the
  buckets :data:`IK_REF_EDGES`; ``val`` is a stratified eighth of ``train`` (monitoring
  only; the model trains on all of ``train``). Strict decoding at ``tau_infer = 1e-6``.
* ``ik_pole`` — differential IK with a true pole (today's demo): the joint velocities
  ``dθ = J(θ)⁻¹ e_x`` that move the hand along x, ``θ1 ~ U(−π/2, π/2)``; ``det J =
  sin θ2`` vanishes at ``θ2 = 0`` where both outputs share the pole (exact rows have
  targets ``±inf``, the sign of the numerator ``adj(J) e_x``).

Every generator takes a ``seed`` (``numpy.random.default_rng``) and is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "IK_REF_EDGES",
    "POLE_A",
    "TASKS",
    "Split",
    "Task",
    "bucket_index",
    "dls_targets",
    "ik_jacobian",
    "ik_numerators",
    "ik_pole_task",
    "ik_ref_task",
    "make_task",
    "pole_task",
    "stratified_split",
]

POLE_A = 0.25
#: |det J| bucket edges of the reference IK benchmark: [0, 1e-5], (1e-5, 1e-4], …, (1e-2, ∞)
IK_REF_EDGES: tuple[float, ...] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, math.inf)
#: distance-to-pole bucket edges of the pole task ([0, 1e-3), [1e-3, 1e-2), …)
POLE_EDGES: tuple[float, ...] = (0.0, 1e-3, 1e-2, 1e-1, math.inf)
#: |det J| bucket edges of the true-pole IK task
IK_POLE_EDGES: tuple[float, ...] = (0.0, 1e-3, 1e-2, 1e-1, math.inf)
DLS_LAMBDA = 0.01


@dataclass
class Split:
    x: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) or (n, k) float32; ±inf at singular targets
    dist: np.ndarray  # (n,) float64 distance to the singular set (|x − a| or |sin θ2|)
    exact: np.ndarray  # (n,) bool: rows exactly on the singular set

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Task:
    name: str
    input_dim: int
    output_dim: int
    train: Split
    val: Split
    test: Split
    distance_label: str
    batch_size: int
    edges: tuple[float, ...]
    #: fixed strict-decoding threshold (None: calibrated on ``val``)
    tau_infer: float | None = None
    #: buckets closed on the right ((lo, hi]) or on the left ([lo, hi))
    right_closed: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def bucket_index(dist: np.ndarray, edges: tuple[float, ...], right_closed: bool) -> np.ndarray:
    """Bucket of each distance: ``(edges[i], edges[i+1]]`` (first bucket ``[0, edges[1]]``)
    if ``right_closed``, else ``[edges[i], edges[i+1])``."""
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    return np.searchsorted(inner, np.asarray(dist, np.float64), side="left" if right_closed else "right")


# ---------------------------------------------------------------------------------------
# pole


def _pole_split(rng: np.random.Generator, n_uniform: int, n_near: int, n_exact: int,
                a: float) -> Split:
    xu = rng.uniform(-1.0, 1.0, n_uniform)
    d = 10.0 ** rng.uniform(-4.0, -1.0, n_near) * rng.choice([-1.0, 1.0], n_near)
    x32 = np.concatenate([xu, a + d, np.full(n_exact, a)]).astype(np.float32)
    diff = x32.astype(np.float64) - np.float64(np.float32(a))
    with np.errstate(divide="ignore"):
        y = (1.0 / diff).astype(np.float32)
    return Split(x32[:, None], y, np.abs(diff), diff == 0)


def pole_task(seed: int, n_samples: int | None = None, *, a: float = POLE_A,
              exact_train: int | None = None) -> Task:
    """The guide's pole task; ``n_samples`` scales the training split (default 2304 rows:
    1536 uniform, 512 near the pole, 256 exactly at the pole — the singular set itself is
    sampled; ``exact_train`` overrides that count); val/test keep 4 and 16 exact rows."""
    rng = np.random.default_rng(seed)
    s = 1.0 if n_samples is None else n_samples / 2304.0

    def n(k: int) -> int:
        return max(1, round(k * s))

    return Task(
        "pole", 1, 1,
        train=_pole_split(rng, n(1536), n(512),
                          max(2, n(256)) if exact_train is None else exact_train, a),
        val=_pole_split(rng, n(512), n(256), max(2, n(4)), a),
        test=_pole_split(rng, n(2048), n(1024), max(2, n(16)), a),
        distance_label="|x−a|",
        batch_size=64,
        edges=POLE_EDGES,
        meta={"a": float(np.float32(a))},
    )


# ---------------------------------------------------------------------------------------
# 2-link arm


def ik_jacobian(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """``J(θ)`` of the 2-link arm with ``L1 = L2 = 1``, shape ``(n, 2, 2)``:
    ``[[−s1 − s12, −s12], [c1 + c12, c12]]``."""
    s1, c1 = np.sin(t1), np.cos(t1)
    s12, c12 = np.sin(t1 + t2), np.cos(t1 + t2)
    return np.stack([np.stack([-s1 - s12, -s12], -1), np.stack([c1 + c12, c12], -1)], -2)


def ik_numerators(t1: Any, t2: Any) -> np.ndarray:
    """``adj(J) e_x`` for the 2-link arm: ``(cos(θ1+θ2), −cos θ1 − cos(θ1+θ2))``."""
    c12 = np.cos(np.add(t1, t2))
    return np.stack(np.broadcast_arrays(c12, -np.cos(t1) - c12), axis=-1)


def dls_targets(t1: np.ndarray, t2: np.ndarray, e: np.ndarray, lam: float = DLS_LAMBDA) -> np.ndarray:
    """Damped least squares ``Jᵀ(JJᵀ + λ²I)⁻¹ e`` in float64, closed-form 2×2 inverse
    (``det(JJᵀ + λ²I) ≥ λ⁴ > 0``, finite everywhere)."""
    J = ik_jacobian(np.asarray(t1, np.float64), np.asarray(t2, np.float64))
    M = J @ np.swapaxes(J, -1, -2) + lam**2 * np.eye(2)
    a, b, c, d = M[:, 0, 0], M[:, 0, 1], M[:, 1, 0], M[:, 1, 1]
    det = a * d - b * c
    e = np.asarray(e, np.float64)
    w = np.stack([(d * e[:, 0] - b * e[:, 1]) / det, (a * e[:, 1] - c * e[:, 0]) / det], -1)
    return np.einsum("nji,nj->ni", J, w)


def stratified_split(buckets: np.ndarray, frac: float, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(first, rest)``: in every bucket a random ``round(frac · size)`` share
    goes to ``first`` (both sorted)."""
    first, rest = [], []
    for b in np.unique(buckets):
        idx = np.flatnonzero(buckets == b)
        rng.shuffle(idx)
        k = round(frac * idx.size)
        first.append(idx[:k])
        rest.append(idx[k:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(rest))


def ik_ref_task(seed: int, n_samples: int | None = None, *, singular_ratio: float = 0.3,
                sigma: float = 1e-3, lam: float = DLS_LAMBDA, n_exact: int | None = None) -> Task:
    """The reference's RR-arm IK benchmark (module docstring); ``n_samples`` default
    200 000; ``n_exact`` exact-singular rows (default ``max(2, n_samples // 1000)``,
    half at ``θ2 = 0``, half at ``θ2 = π``)."""
    n = 200_000 if n_samples is None else int(n_samples)
    if n < 20:
        raise ValueError(f"n_samples must be >= 20 for ik_ref, got {n}")
    rng = np.random.default_rng(seed)
    n_sing = int(n * singular_ratio)
    n_ex = max(2, n // 1000) if n_exact is None else int(n_exact)
    n_ex = min(n_ex, n_sing)
    n_near = n_sing - n_ex
    n_reg = n - n_sing
    t1 = rng.uniform(-math.pi, math.pi, n)
    centre = np.where(rng.random(n_near) < 0.5, 0.0, math.pi)
    t2 = np.concatenate([
        rng.uniform(-math.pi, math.pi, n_reg),
        rng.normal(centre, sigma),
        np.where(np.arange(n_ex) % 2 == 0, 0.0, math.pi),
    ])
    exact = np.zeros(n, bool)
    exact[n - n_ex:] = True
    e = rng.normal(0.0, 0.1, (n, 2))
    x = np.stack([t1, t2, e[:, 0], e[:, 1]], axis=1).astype(np.float32)
    xd = x.astype(np.float64)  # targets from the inputs the model sees
    y = dls_targets(xd[:, 0], xd[:, 1], xd[:, 2:], lam).astype(np.float32)
    dist = np.abs(np.sin(xd[:, 1]))
    b = bucket_index(dist, IK_REF_EDGES, right_closed=True)
    tr, te = stratified_split(b, 0.8, rng)
    va, _ = stratified_split(b[tr], 0.125, rng)
    va = tr[va]

    def sub(i: np.ndarray) -> Split:
        return Split(x[i], y[i], dist[i], exact[i])

    return Task(
        "ik_ref", 4, 2, train=sub(tr), val=sub(va), test=sub(te),
        distance_label="|det J|", batch_size=256, edges=IK_REF_EDGES, tau_infer=1e-6,
        right_closed=True,
        meta={"lambda": lam, "singular_ratio": singular_ratio, "sigma": sigma, "n_exact": n_ex},
    )


def _ik_pole_split(rng: np.random.Generator, n_uniform: int, n_near: int, n_exact: int) -> Split:
    n = n_uniform + n_near + n_exact
    t1 = rng.uniform(-math.pi / 2, math.pi / 2, n)
    t2 = np.concatenate([
        rng.uniform(-math.pi / 2, math.pi / 2, n_uniform),
        10.0 ** rng.uniform(-4.0, -1.0, n_near) * rng.choice([-1.0, 1.0], n_near),
        np.zeros(n_exact),
    ])
    x = np.stack([t1, t2], axis=1).astype(np.float32)
    t1d, t2d = x[:, 0].astype(np.float64), x[:, 1].astype(np.float64)
    num = ik_numerators(t1d, t2d)
    det = np.sin(t2d)
    sing = det == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        y = num / np.where(sing, 1.0, det)[:, None]
    y[sing] = np.where(num[sing] < 0, -np.inf, np.inf)
    return Split(x, y.astype(np.float32), np.abs(det), sing)


def ik_pole_task(seed: int, n_samples: int | None = None, *, exact_train: int | None = None
                 ) -> Task:
    """True-pole IK (module docstring); ``n_samples`` scales the training split
    (default 5120 rows: 3072 uniform, 1024 near, 1024 exactly singular — the singular
    line itself is sampled, ``θ2 = 0`` with ``θ1`` uniform; ``exact_train`` overrides
    that count). Validation and test keep 8 and 32 exact rows."""
    rng = np.random.default_rng(seed)
    s = 1.0 if n_samples is None else n_samples / 5120.0

    def n(k: int) -> int:
        return max(1, round(k * s))

    return Task(
        "ik_pole", 2, 2,
        train=_ik_pole_split(rng, n(3072), n(1024),
                             max(2, n(1024)) if exact_train is None else exact_train),
        val=_ik_pole_split(rng, n(768), n(256), max(2, n(8))),
        test=_ik_pole_split(rng, n(3072), n(1024), max(2, n(32))),
        distance_label="|det J|", batch_size=128, edges=IK_POLE_EDGES,
    )


TASKS: dict[str, Callable[..., Task]] = {"pole": pole_task, "ik_ref": ik_ref_task, "ik_pole": ik_pole_task}


def make_task(name: str, seed: int, n_samples: int | None = None) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name](seed, n_samples)
