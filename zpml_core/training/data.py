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

    # -- iteration --------------------------------------------------------------------
    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        b = self.batch_size
        stop = self.n - (self.n % b if self.drop_last else 0)
        if self.weights is not None:
            order = self._generator().choice(self.n, size=self.n, replace=True, p=self.weights)
        elif self.shuffle:
            order = self._generator().permutation(self.n)
        else:
            for i in range(0, stop, b):
                yield tuple(a[i : i + b] for a in self.arrays)
            return
        for i in range(0, stop, b):
            idx = order[i : i + b]
            yield tuple(a[idx] for a in self.arrays)
