"""``ArrayLoader``: a framework-neutral mini-batch iterator over arrays.

It indexes whatever arrays it is given (numpy, torch, jax, ...) with contiguous slices
(no shuffle) or numpy index arrays (shuffle / weighted sampling), drawing orders from a
seedable ``numpy.random.Generator`` whose state is checkpointed by ``SCMTrainer``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

from zpml_core import _xp

__all__ = ["ArrayLoader"]


class ArrayLoader:
    """Iterate ``(a[idx], b[idx], ...)`` mini-batches over arrays sharing the first axis.

    ``shuffle``: a new permutation every epoch; ``weights``: draw ``len`` indices with
    replacement, proportionally to the weights (like torch's ``WeightedRandomSampler``);
    ``seed``: seeds the generator (``SCMTrainer`` seeds an unseeded loader from
    ``TrainingConfig.seed``). ``drop_last`` drops a final short batch.

    Sharding (data-parallel training, :meth:`set_shard`; ``SCMTrainer`` calls it under
    torch DDP): with ``world`` ranks each *global* batch holds ``batch_size × world``
    consecutive rows of the epoch's order (which every rank draws identically from the
    shared seed), and rank ``r`` yields its ``r``-th block of ``batch_size`` rows. A
    final short global batch of ``m`` rows is split into ``world`` consecutive blocks
    of ``⌈m/world⌉`` or ``⌊m/world⌋`` rows (possibly empty; dropped with ``drop_last``).
    So every rank yields the same number of batches, the shards of one step are
    disjoint, and their concatenation in rank order is exactly the batch one process
    with ``batch_size × world`` would see.
    """

    def __init__(
        self,
        *arrays: Any,
        batch_size: int = 32,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        weights: Any = None,
    ) -> None:
        if not arrays:
            raise ValueError("ArrayLoader needs at least one array")
        if _xp.is_bool_scalar(batch_size) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"batch_size must be an int >= 1, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if seed is not None and (
            _xp.is_bool_scalar(seed) or not isinstance(seed, numbers.Integral) or seed < 0
        ):
            raise TypeError(f"seed must be an int >= 0 or None, got {seed!r}")
        n = int(arrays[0].shape[0])
        for i, a in enumerate(arrays):
            if int(a.shape[0]) != n:
                raise ValueError(f"arrays[{i}] has {a.shape[0]} rows, arrays[0] has {n}")
        self.arrays: tuple[Any, ...] = arrays
        self.n: int = n
        self.batch_size: int = int(batch_size)
        self.shuffle: bool = shuffle
        self.drop_last: bool = drop_last
        self.weights: Any = None
        self.rank: int = 0
        self.world: int = 1
        self._seed: int | None = None if seed is None else int(seed)
        self._rng: Any = None
        if weights is not None:
            self.set_weights(weights)

    # -- randomness -------------------------------------------------------------------
    @property
    def seeded(self) -> bool:
        return self._seed is not None

    def set_seed(self, seed: int) -> None:
        import numpy as np

        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)

    def _generator(self) -> Any:
        if self._rng is None:
            import numpy as np

            self._rng = np.random.default_rng(self._seed)
        return self._rng

    def set_weights(self, weights: Any) -> None:
        import numpy as np

        from zpml_core.utils.logging import _array_to_python

        w = np.asarray(_array_to_python(weights) if not isinstance(weights, np.ndarray) else weights,
                       dtype=np.float64).reshape(-1)
        if w.shape[0] != self.n or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be finite, >= 0, not all 0, one per row")
        self.weights = w / w.sum()

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self._seed, "rng": None if self._rng is None else self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._seed = state.get("seed")
        if state.get("rng") is None:
            self._rng = None
        else:
            g = self._generator()
            g.bit_generator.state = state["rng"]

    def set_shard(self, rank: int, world: int) -> None:
        """Serve shard ``rank`` of ``world`` (see the class docstring); ``(0, 1)``: all."""
        for name, v in (("rank", rank), ("world", world)):
            if _xp.is_bool_scalar(v) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"need 0 <= rank < world and world >= 1, got rank={rank!r}, world={world!r}")
        self.rank, self.world = int(rank), int(world)

    def _block(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's ``[lo, hi)`` of the global batch ``[start, stop)``."""
        b, w, r = self.batch_size, self.world, self.rank
        m = stop - start
        if m == b * w:
            return start + r * b, start + (r + 1) * b
        q, rest = divmod(m, w)  # a short last batch: blocks of q + 1 rows first
        lo = start + r * q + min(r, rest)
        return lo, lo + q + (1 if r < rest else 0)

    # -- iteration --------------------------------------------------------------------
    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size * self.world)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        g = self.batch_size * self.world
        stop = self.n - (self.n % g if self.drop_last else 0)
        if self.weights is not None:
            order = self._generator().choice(self.n, size=self.n, replace=True, p=self.weights)
        elif self.shuffle:
            order = self._generator().permutation(self.n)
        else:
            for i in range(0, stop, g):
                lo, hi = self._block(i, min(i + g, stop))
                yield tuple(a[lo:hi] for a in self.arrays)
            return
        arrays = self.arrays
        if self.world == 1:  # (one process: the global batch is this rank's block)
            for i in range(0, stop, g):
                idx = order[i:i + g]
                yield tuple([a[idx] for a in arrays])
            return
        for i in range(0, stop, g):
            lo, hi = self._block(i, min(i + g, stop))
            idx = order[lo:hi]
            yield tuple([a[idx] for a in arrays])
