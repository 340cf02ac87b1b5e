"""What the training loop does for data-parallel training (framework-neutral).

The collectives themselves belong to the backend engine (``TrainingEngine.rank``,
``world_size``, ``broadcast_object``, ``sample_count``; torch DDP:
``zpml_backends._torch_ddp``). Here: the per-rank setup of the trainer's randomness and
loaders, and the sampler epoch.
"""

from __future__ import annotations

from typing import Any

from zpml_core.training.config import TrainingConfig
from zpml_core.training.data import ArrayLoader
from zpml_core.training.engine import TrainingEngine

__all__ = ["set_epoch", "setup_data_parallel", "shard_loader"]


def setup_data_parallel(engine: TrainingEngine, tau_rng: Any, train_loader: Any,
                        config: TrainingConfig) -> None:
    """Several ranks train one model: every rank draws the same ``tau_train`` sequence
    (``tau_rng`` takes rank 0's generator state, so also without a seed), an
    ``ArrayLoader`` (train and validation) serves this rank's shard of each global batch,
    and an unseeded shuffling train ``ArrayLoader`` gets one seed shared by all ranks when
    ``config.seed`` is None (with a seed, ``fit`` seeds it as in one process)."""
    tau_rng.bit_generator.state = engine.broadcast_object(tau_rng.bit_generator.state)
    for loader in (train_loader, config.val_loader):
        shard_loader(loader, engine)
    if isinstance(train_loader, ArrayLoader) and not train_loader.seeded and config.seed is None:
        import numpy as np

        seed = int(np.random.default_rng().integers(2**63))
        train_loader.set_seed(engine.broadcast_object(seed))


def set_epoch(loader: Any, epoch: int) -> None:
    """``sampler.set_epoch(epoch)`` of a loader whose sampler has one (torch's
    ``DistributedSampler``: a new shuffle per epoch, the same on every rank)."""
    for holder in (loader, getattr(loader, "batch_sampler", None)):
        fn = getattr(getattr(holder, "sampler", None), "set_epoch", None)
        if callable(fn):
            fn(epoch)
            return


def shard_loader(loader: Any, engine: TrainingEngine) -> None:
    """Data-parallel: an ``ArrayLoader`` the trainer iterates (train, validation,
    calibration) serves this rank's shard of each global batch."""
    if engine.world_size > 1 and isinstance(loader, ArrayLoader):
        loader.set_shard(engine.rank, engine.world_size)
