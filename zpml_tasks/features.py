"""Input features of the benchmark models: each raw input plus its quantile coordinate.

A 2×64 ReLU MLP resolves its inputs at roughly the scale of their spread: a feature of
width 1e-4 rad in an input spread over ``[−π, π]`` needs first-layer weights thousands
of times their initial size, which a few epochs of Adam do not reach. Where the data are
sampled densely near a singular set (as they should be, see the README's *Sampling near
poles*), the empirical distribution of the inputs already says where resolution is
needed. :class:`QuantileFeatures` hands the network that resolution:

``features(x) = [x, u]``, ``u_j = 2·F̂_j(x_j) − 1 ∈ [−1, 1]``,

with ``F̂_j`` the empirical CDF of input column ``j`` over the training rows, linear
between ``n_knots`` knots at evenly spaced levels and constant (``±1``) outside them.
On the IK benchmark, 15 % of the rows lie within ~3e-3 rad of ``θ2 = 0``, so ``u`` is
stretched there about 120-fold. Fitted on the training inputs only; NaN inputs map to
NaN; the raw columns are kept, so nothing the network could use is taken away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["INPUTS", "MAX_KNOTS", "QuantileFeatures"]

#: largest ``n_knots`` accepted by :meth:`QuantileFeatures.fit`
MAX_KNOTS = 1_000_000

#: input representations of the benchmark models: the raw inputs, or the raw inputs
#: followed by their quantile coordinates (:class:`QuantileFeatures`)
INPUTS = ("raw", "quantile")


@dataclass(frozen=True)
class QuantileFeatures:
    """Per-column piecewise-linear empirical CDFs (module docstring): ``knots[j]`` are
    strictly increasing input values, ``levels[j]`` the CDF there (non-decreasing, in
    ``[0, 1]``)."""

    knots: tuple[np.ndarray, ...]
    levels: tuple[np.ndarray, ...]

    @classmethod
    def fit(cls, x: Any, n_knots: int = 1001) -> QuantileFeatures:
        """Knots at the ``n_knots`` quantile levels ``0, 1/(n−1), …, 1`` of each column
        of the 2-D training inputs ``x``; tied knots are merged into one whose level is
        the mean of theirs (the CDF stays a function)."""
        if isinstance(n_knots, bool) or not isinstance(n_knots, int):
            raise TypeError(f"n_knots must be an int, got {type(n_knots).__name__}")
        if not 2 <= n_knots <= MAX_KNOTS:
            raise ValueError(f"n_knots must be in [2, {MAX_KNOTS}], got {n_knots}")
        a = np.asarray(x)
        if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
            raise ValueError(f"x must be 2-D with at least 2 rows and 1 column, got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"x must hold real numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError("x must be finite to fit quantile features")
        q = np.linspace(0.0, 1.0, n_knots)
        knots, levels = [], []
        for j in range(a.shape[1]):
            with np.errstate(over="ignore", invalid="ignore"):
                k = np.quantile(a[:, j], q)
            if not np.all(np.isfinite(k)):
                # the interpolation between order statistics overflowed (values of both
                # signs near finfo.max): interpolate the halves (exact for normal
                # numbers), which cannot overflow, and double the result
                k = 2.0 * np.quantile(a[:, j] * 0.5, q)
            uk, inv = np.unique(k, return_inverse=True)
            lv = np.bincount(inv, weights=q) / np.bincount(inv)
            knots.append(uk)
            levels.append(lv)
        return cls(tuple(knots), tuple(levels))

    @property
    def n_inputs(self) -> int:
        return len(self.knots)

    def transform(self, x: Any) -> np.ndarray:
        """``[x, 2·F̂(x) − 1]`` along the last axis, in ``x``'s float dtype (float32
        for integer inputs); a single knot maps to 0."""
        a = np.asarray(x)
        if a.ndim != 2 or a.shape[1] != self.n_inputs:
            raise ValueError(f"x must have shape (n, {self.n_inputs}), got {a.shape}")
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float32)
        d = a.astype(np.float64)
        u = np.empty_like(d)
        for j, (k, lv) in enumerate(zip(self.knots, self.levels, strict=True)):
            if k.size == 1:  # a constant column: no spread to resolve
                u[:, j] = np.where(np.isnan(d[:, j]), math.nan, 0.0)
            else:
                u[:, j] = 2.0 * np.interp(d[:, j], k, lv) - 1.0
        return np.concatenate([d, u], axis=1).astype(dtype)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for checkpoint metadata)."""
        return {"kind": "quantile", "knots": [k.tolist() for k in self.knots],
                "levels": [lv.tolist() for lv in self.levels]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileFeatures:
        if d.get("kind") != "quantile":
            raise ValueError(f"not a quantile feature map: kind={d.get('kind')!r}")
        knots = tuple(np.asarray(k, np.float64) for k in d["knots"])
        levels = tuple(np.asarray(v, np.float64) for v in d["levels"])
        if len(knots) != len(levels) or any(k.shape != v.shape or k.ndim != 1 or k.size < 1
                                            for k, v in zip(knots, levels, strict=True)):
            raise ValueError("knots and levels must be matching non-empty 1-D lists per column")
        if any(np.any(np.diff(k) <= 0) for k in knots):
            raise ValueError("knots must be strictly increasing")
        return cls(knots, levels)
