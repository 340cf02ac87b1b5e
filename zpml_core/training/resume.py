"""``SCMTrainer``'s checkpoints: save, verify, load and resume its full state.

:class:`CheckpointMixin` holds the trainer methods (``save_checkpoint``,
``load_checkpoint``, ``load_model_state``, ``checkpoint_metadata``); the file format —
SHA-256 seal, atomic writes, :class:`~zpml_core.training.CheckpointError` — is
:mod:`zpml_core.training.checkpoint`, the parameter/optimizer serialisation is the
backend engine's (``save`` / ``read_checkpoint`` / ``check_checkpoint`` /
``apply_checkpoint``).

Loading validates everything before it modifies anything: seal, container kind,
metadata (format, schema, backend, resume fields, tau generator state), parameters and
optimizer state against the live model and optimizer; then the loader state (put back
if the loader refuses it), then the engine state, then the counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from zpml_core.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_SCHEMA_VERSION,
    NO_SEAL,
    CheckpointError,
    check_metadata,
    open_checkpoint,
    write_checkpoint,
)
from zpml_core.training.config import TrainingConfig, config_hash, config_identity
from zpml_core.training.engine import LoadedCheckpoint, TrainingEngine

__all__ = ["CheckpointMixin"]


def _versions(engine: TrainingEngine) -> dict[str, str]:
    import numpy as np

    import zpml_core

    return {
        "zpml_core": zpml_core.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        engine.name: engine.framework_version(),
    }


class CheckpointMixin:
    """Checkpoint methods of ``SCMTrainer`` (which defines the attributes below)."""

    config: TrainingConfig
    engine: TrainingEngine
    train_loader: Iterable[Any]
    current_epoch: int
    global_step: int
    tau_infer: float
    tau_infer_calibrated: bool
    _best_metric: float | None
    _bad_epochs: int
    _seeded: bool
    _tau_rng: Any

    def _identity(self) -> dict[str, Any]:
        return config_identity(self.config, optimizer_lrs=self.engine.optimizer_lrs())

    def checkpoint_metadata(self, *, tau_infer: float | None = None) -> dict[str, Any]:
        """JSON-safe metadata written into every checkpoint."""
        identity = self._identity()
        policy = self.config.gradient_policy
        loader_state = None
        if hasattr(self.train_loader, "state_dict") and hasattr(self.train_loader, "load_state_dict"):
            try:
                loader_state = json.loads(json.dumps(self.train_loader.state_dict()))
            except (TypeError, ValueError):
                loader_state = None
        return {
            "format": CHECKPOINT_FORMAT,
            "schema_version": CHECKPOINT_SCHEMA_VERSION,
            "backend": self.engine.name,
            "versions": _versions(self.engine),
            "tau_train_min": self.config.tau_train_min,
            "tau_train_max": self.config.tau_train_max,
            "tau_infer": float(self.tau_infer if tau_infer is None else tau_infer),
            "tau_infer_calibrated": self.tau_infer_calibrated or tau_infer is not None,
            "gradient_policy": None if policy is None else str(policy.value),
            "mixed_precision": self.config.amp_enabled,
            "config_identity": identity,
            "config_hash": config_hash(identity),
            "epoch": self.current_epoch,
            "global_step": self.global_step,
            "best_metric": self._best_metric,
            "coverage_bad_epochs": self._bad_epochs,
            "seeded": self._seeded,
            "tau_rng_state": self._tau_rng.bit_generator.state,
            "loader_state": loader_state,
        }

    def save_checkpoint(self, path: str | os.PathLike[str], *, tau_infer: float | None = None,
                        metadata: Mapping[str, Any] | None = None) -> None:
        """Write model + optimizer state and metadata: sealed, atomically, no temp file left.

        torch: ``torch.save`` of state dicts/tensors, read back with
        ``torch.load(weights_only=True)``. JAX: ``.npz`` of the parameter and optimizer
        leaves plus JSON metadata, read back with ``allow_pickle=False``. The file ends
        with a SHA-256 seal of all its bytes (in the zip comment, so ``torch.load`` /
        ``numpy.load`` still read it). It is written unnamed and linked into place
        (Linux ``O_TMPFILE``; elsewhere via ``.<name>.zpml-partial`` and a rename), so
        ``path`` always holds either the previous or the complete new checkpoint, even if
        the process is killed mid-save (see :mod:`zpml_core.training.checkpoint`).
        ``epoch`` is the next epoch to run: checkpoints resume at epoch boundaries.

        Data-parallel (torch DDP): only rank 0 writes (the state is the same on every
        rank); on the other ranks this returns at once without any collective, so it may
        be called on every rank or on rank 0 only. Synchronise (``dist.barrier()``)
        before other ranks read the file. Resume with the same world size: every rank
        loads the same file.
        """
        if self.engine.rank != 0:  # data-parallel: rank 0 writes, every rank may call
            return
        meta = self.checkpoint_metadata(tau_infer=tau_infer)
        if metadata:
            meta["user"] = json.loads(json.dumps(dict(metadata)))
        engine = self.engine
        write_checkpoint(os.fspath(path), lambda stream: engine.save(stream, meta))

    def load_checkpoint(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Restore a checkpoint written by :meth:`save_checkpoint` on the same backend.

        Restores parameters, optimizer state, epoch/step counters, early-stopping state,
        the tau generator, the framework RNG and a zpml loader's order state; returns the
        metadata. Everything is verified before anything is modified: the SHA-256 seal,
        the format, ``schema_version`` (not newer than this version), the backend, the
        metadata fields, and the keys/shapes/dtypes of the parameters and optimizer
        state against this trainer's model and optimizer. Any failure — missing,
        unreadable, empty, truncated, corrupted or foreign file, unsafe (pickled)
        content, another backend, a newer schema, a different model or optimizer —
        raises :class:`~zpml_core.training.CheckpointError` (a ``ValueError``) naming
        the file, with model, optimizer, loader and trainer unchanged. A different
        config hash → ``RuntimeWarning`` (emitted before anything is modified).

        A checkpoint written by zeroproofml 0.6.1's ``SCMTrainer.save_checkpoint`` (torch)
        is imported the same way, without unsafe pickle (``torch.load(weights_only=True)``):
        model, optimizer, scheduler, scaler, torch RNG, epoch, step, ``best_metric`` and
        the early-stopping count; its config hash (another scheme) is not compared.
        """
        return self._load(path, trusted=False)

    def load_trusted_checkpoint(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """:meth:`load_checkpoint`, and additionally a zeroproofml checkpoint that only
        unrestricted pickle can read (``torch.load(weights_only=False)``: e.g. numpy
        scalars in its resume fields). Unpickling runs code from the file: never pass a
        downloaded or otherwise untrusted file. zpml_core's own checkpoints never need
        it (they load the same way as with :meth:`load_checkpoint`); on JAX it is
        :meth:`load_checkpoint`.
        """
        return self._load(path, trusted=True)

    def _load(self, path: str | os.PathLike[str], *, trusted: bool) -> dict[str, Any]:
        ckpt = self._read_checkpoint(path, weights_only=False, trusted=trusted)
        meta, p = ckpt.metadata, ckpt.path
        rng = meta.get("tau_rng_state")
        if rng is not None:
            probe = type(self._tau_rng.bit_generator)()
            try:
                probe.state = rng
            except Exception as exc:
                raise CheckpointError(
                    p, f"metadata tau_rng_state does not fit a {type(probe).__name__} generator ({exc})"
                ) from exc
        loader_state = meta.get("loader_state")
        self._load_loader_state(p, loader_state, trial=True)
        expected = config_hash(self._identity())
        imported = meta.get("imported_from") is not None  # (its hash is another scheme)
        if not imported and meta.get("config_hash") != expected:  # (an error filter stops here, unmodified)
            warnings.warn(
                "checkpoint config_hash differs from this trainer's configuration "
                f"({meta.get('config_hash')} vs {expected}); resuming anyway",
                RuntimeWarning,
                stacklevel=2,
            )
        self._load_loader_state(p, loader_state, trial=False)
        self.engine.apply_checkpoint(ckpt)
        self._restore(meta)
        return meta

    def _read_checkpoint(self, path: str | os.PathLike[str], *, weights_only: bool,
                         trusted: bool = False) -> LoadedCheckpoint:
        """Verify, parse and check a checkpoint against this trainer; modifies nothing.

        A file without the zpml_core seal is offered to the engine's
        ``import_checkpoint`` (torch: zeroproofml 0.6.1's layout); if the engine does not
        recognise it, the seal error stands."""
        p = os.fspath(path)
        name = self.engine.name
        try:
            ckpt = self._read_sealed(p, weights_only=weights_only)
        except CheckpointError as exc:
            importer = getattr(self.engine, "import_checkpoint", None)
            if not exc.reason.startswith(NO_SEAL) or importer is None:
                raise
            imported = importer(p, weights_only=weights_only, trusted=trusted, no_seal=exc)
            if imported is None:
                raise
            ckpt = imported
        check_metadata(p, ckpt.metadata, name, weights_only=weights_only)
        self.engine.check_checkpoint(ckpt)
        return ckpt

    def _read_sealed(self, p: str, *, weights_only: bool) -> LoadedCheckpoint:
        name = self.engine.name
        with open_checkpoint(p) as (stream, kind):
            if kind is not None and kind != name:
                raise CheckpointError(
                    p, f"is a {kind} checkpoint; this trainer runs on the {name!r} backend"
                )
            return self.engine.read_checkpoint(stream, p, weights_only=weights_only)

    def _load_loader_state(self, path: str, state: Any, *, trial: bool) -> None:
        """Apply a saved loader state (``trial``: and put the old one back at once). If
        the loader refuses it, the old state is put back and ``CheckpointError`` raised."""
        loader = self.train_loader
        if state is None or not hasattr(loader, "load_state_dict"):
            return
        if trial and not hasattr(loader, "state_dict"):
            return  # cannot be undone: only the real load checks it
        old = loader.state_dict() if hasattr(loader, "state_dict") else None
        try:
            loader.load_state_dict(state)
        except Exception as exc:
            if old is not None:
                with contextlib.suppress(Exception):  # report the original error
                    loader.load_state_dict(old)
            raise CheckpointError(
                path, f"loader_state does not fit this trainer's train_loader ({exc!r})"
            ) from exc
        if trial and old is not None:
            loader.load_state_dict(old)

    def _restore(self, meta: Mapping[str, Any]) -> None:
        """Apply the (already checked) trainer state of a checkpoint's metadata."""
        self.current_epoch = int(meta["epoch"])
        self.global_step = int(meta["global_step"])
        self._best_metric = meta.get("best_metric")
        self._bad_epochs = int(meta.get("coverage_bad_epochs", 0))
        self._seeded = bool(meta.get("seeded", False)) or self.global_step > 0
        if meta.get("tau_rng_state") is not None:
            self._tau_rng.bit_generator.state = meta["tau_rng_state"]
        if meta.get("tau_infer") is not None:
            self.tau_infer = float(meta["tau_infer"])
        self.tau_infer_calibrated = bool(meta.get("tau_infer_calibrated", False))

    def load_model_state(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Load only the model parameters of a checkpoint; returns its metadata.

        Verified like :meth:`load_checkpoint` (seal, format, schema, backend, parameter
        keys/shapes/dtypes); ``CheckpointError`` naming the file, model unchanged, on
        any failure. Optimizer, counters and RNGs are not touched.
        """
        ckpt = self._read_checkpoint(path, weights_only=True)
        self.engine.apply_checkpoint(ckpt)
        return ckpt.metadata
