"""Threshold perturbation and singularity-aware sampling (semantics §8).

``perturbed_threshold`` draws the per-step training threshold from an explicit, seedable
``numpy.random.Generator`` (semantics §10 #17; the reference used torch's global RNG). The
sampler formulas are array-API kernels; the sampler keeps its state as numpy arrays on
the host, because drawing indices happens there.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import Any

from zpml_core import _xp
from zpml_core._xp import Array

__all__ = [
    "AdaptiveSampler",
    "AdaptiveSamplerConfig",
    "ema_update",
    "perturbed_threshold",
    "sampling_weights",
    "singularity_prob",
]

_DEFAULT_RNG: Any = None


def _default_rng() -> Any:
    global _DEFAULT_RNG
    if _DEFAULT_RNG is None:
        import numpy as np

        _DEFAULT_RNG = np.random.default_rng()
    return _DEFAULT_RNG


def perturbed_threshold(lo: float, hi: float, *, rng: Any = None) -> float:
    """A threshold drawn uniformly from ``[lo, hi)``.

    ``lo > hi`` → ``ValueError``; ``lo == hi`` → ``lo`` without touching the generator.
    ``rng`` is a ``numpy.random.Generator`` (default: a module-level unseeded one); the
    draw is made in float64 and returned as a Python float.
    """
    lo_f = _xp.check_real("lo", lo)
    hi_f = _xp.check_real("hi", hi)
    assert lo_f is not None and hi_f is not None
    if lo_f > hi_f:
        raise ValueError(f"lo ({lo_f!r}) must be <= hi ({hi_f!r})")
    if lo_f == hi_f:
        return lo_f
    g = _default_rng() if rng is None else rng
    return float(g.uniform(lo_f, hi_f))


def singularity_prob(q: Array, tau: float, beta: float = 0.1) -> Array:
    """``sigmoid((tau − |q|) / beta)``: how close each denominator is to the threshold."""
    xp = _xp.namespace(q)
    t = _xp.check_real("tau", tau)
    b = _xp.check_real("beta", beta, gt=0.0)
    qf = _xp.to_float(xp, q)
    z = (t - xp.abs(qf)) / b
    return 1.0 / (1.0 + xp.exp(-z))


def ema_update(prev: Array, cur: Array, gamma: float = 0.1) -> Array:
    """``gamma·cur + (1 − gamma)·prev``."""
    g = _xp.check_real("gamma", gamma, ge=0.0, le=1.0)
    assert g is not None
    return g * cur + (1.0 - g) * prev


def sampling_weights(p: Array, bottom: Array | None = None, *, alpha: float = 1.0, s_min: float = 0.1) -> Array:
    """``max(s_min, 1 + alpha·|p − bottom|)`` (``bottom`` None → 0; a bool mask is cast to
    ``p``'s dtype, semantics §10 #26)."""
    xp = _xp.namespace(p, bottom)
    a = _xp.check_real("alpha", alpha)
    s = _xp.check_real("s_min", s_min)
    assert a is not None and s is not None
    if bottom is None:
        diff = xp.abs(p)
    else:
        bt = bottom if _xp.is_floating(xp, bottom.dtype) else xp.astype(bottom, p.dtype)
        diff = xp.abs(p - bt)
    return xp.maximum(1.0 + a * diff, xp.asarray(s, dtype=p.dtype, device=_xp.device(p)))


@dataclass(frozen=True)
class AdaptiveSamplerConfig:
    tau_train: float = 1e-4
    beta: float = 0.1
    gamma: float = 0.1
    alpha: float = 1.0
    s_min: float = 0.1
    batch_size: int = 32
    num_workers: int = 0
    drop_last: bool = False
    pin_memory: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        _xp.check_real("tau_train", self.tau_train, ge=0.0)
        _xp.check_real("beta", self.beta, gt=0.0)
        _xp.check_real("gamma", self.gamma, ge=0.0, le=1.0)
        _xp.check_real("alpha", self.alpha)
        _xp.check_real("s_min", self.s_min, ge=0.0)
        for name in ("batch_size", "num_workers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


class AdaptiveSampler:
    """Oversample examples whose denominators sit near the singular region.

    ``dataset`` is a tuple of arrays sharing the first axis (→ :class:`ArrayLoader`) or a
    torch ``Dataset`` (→ ``DataLoader`` with ``WeightedRandomSampler``). The smoothed
    probability starts at 0 (float32) and the weights at 1. ``update(q, bottom)`` takes
    the current denominators of the whole dataset: probability → EMA → weights.
    """

    def __init__(self, dataset: Any, config: AdaptiveSamplerConfig | None = None) -> None:
        import numpy as np

        self.dataset = dataset
        self.config = config or AdaptiveSamplerConfig()
        n = len(dataset[0]) if isinstance(dataset, tuple) else len(dataset)
        self.prob = np.zeros(n, dtype=np.float32)
        self.weights = np.ones(n, dtype=np.float32)

    def update(self, q: Array, bottom: Array | None = None) -> Any:
        import numpy as np

        from zpml_core.utils.logging import _array_to_python

        c = self.config
        qn = np.asarray(_array_to_python(q), dtype=np.float32).reshape(-1)
        if qn.shape[0] != self.prob.shape[0]:
            raise ValueError(f"q has {qn.shape[0]} entries, the dataset {self.prob.shape[0]}")
        bn = None
        if bottom is not None:
            bn = np.asarray(_array_to_python(bottom)).reshape(-1).astype(np.float32)
        cur = singularity_prob(qn, c.tau_train, c.beta)
        self.prob = np.asarray(ema_update(self.prob, cur, c.gamma), dtype=np.float32)
        self.weights = np.asarray(
            sampling_weights(self.prob, bn, alpha=c.alpha, s_min=c.s_min), dtype=np.float32
        )
        return self.weights

    def dataloader(self, **overrides: Any) -> Any:
        c = replace(self.config, **overrides) if overrides else self.config
        if isinstance(self.dataset, tuple):
            from zpml_core.training.data import ArrayLoader

            return ArrayLoader(
                *self.dataset,
                batch_size=c.batch_size,
                drop_last=c.drop_last,
                seed=c.seed,
                weights=self.weights,
            )
        if type(self.dataset).__module__.partition(".")[0] == "torch" or hasattr(self.dataset, "__getitem__"):
            from zpml_backends.torch_training import weighted_dataloader

            return weighted_dataloader(self.dataset, self.weights, c)
        raise TypeError(f"unsupported dataset type {type(self.dataset).__name__}")
