"""Checkpoint serialisation of the PyTorch training engine (see ``torch_training``).

A checkpoint is a ``torch.save`` dict — ``model`` / ``optimizer`` / ``scheduler`` /
``scaler`` state dicts, the CPU ``rng_state`` and ``metadata_json`` — written into the
sealed, atomic stream of :mod:`zpml_core.training.checkpoint` and read back with
``torch.load(weights_only=True)`` after the seal is verified. Before anything is loaded
it is checked against the live objects: model state keys, shapes and dtypes; optimizer
parameter groups (sizes and option names — the optimizer type), per-parameter state
(the live state's keys/shapes/dtypes, or shapes broadcastable to the parameter where
the optimizer has no state yet); scheduler/scaler state keys; the RNG state's shape.
Any mismatch is a ``CheckpointError`` naming the file; nothing is modified.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import IO, Any

import torch

from zpml_core.training.checkpoint import (
    NO_SEAL,
    CheckpointError,
    describe_error,
    import_zeroproofml_metadata,
    open_checkpoint,
    parse_metadata,
)
from zpml_core.training.engine import LoadedCheckpoint

__all__ = ["TorchCheckpointMixin", "load_mapping", "read_metadata"]


class TorchCheckpointMixin:
    """``save`` / ``read_checkpoint`` / ``check_checkpoint`` / ``apply_checkpoint`` of
    ``TorchEngine`` (which defines the attributes below)."""

    _model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    device: Any
    name: str
    _pending: Any

    def save(self, stream: IO[bytes], metadata: Mapping[str, Any], *, include_optimizer: bool = True) -> None:
        payload = {
            "format": metadata.get("format"),
            "schema_version": metadata.get("schema_version"),
            "model": self._model.state_dict(),
            "optimizer": self.optimizer.state_dict() if include_optimizer else None,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng_state": torch.get_rng_state(),
            "metadata_json": json.dumps(metadata, sort_keys=True, allow_nan=False),
        }
        torch.save(payload, stream)

    def read_checkpoint(self, stream: IO[bytes], path: str, *, weights_only: bool = False) -> LoadedCheckpoint:
        payload = _load_payload(stream, path, self.device)
        meta = parse_metadata(path, payload["metadata_json"])
        return LoadedCheckpoint(path, meta, payload, weights_only)

    def import_checkpoint(self, path: str, *, weights_only: bool, trusted: bool,
                          no_seal: CheckpointError) -> LoadedCheckpoint | None:
        """A zeroproofml 0.6.1 checkpoint (an unsealed ``torch.save`` mapping) as a
        :class:`LoadedCheckpoint` of this package's layout; None if ``path`` is not one.

        Read with ``torch.load(weights_only=True)`` unless ``trusted``. A file that only
        unrestricted pickle can read → ``CheckpointError`` pointing to
        ``load_trusted_checkpoint``. Anything but a ``torch.save`` zip archive → None."""
        if not _is_torch_zip(path):
            return None
        try:
            payload = torch.load(path, map_location=self.device, weights_only=not trusted)
        except pickle.UnpicklingError as exc:
            if trusted or "weights only" not in str(exc).lower():
                return None  # not a pickle the safe unpickler refused: the seal error stands
            raise CheckpointError(
                path,
                f"{no_seal.reason.split(':')[0]}; read as a zeroproofml checkpoint it needs "
                f"unrestricted pickle ({describe_error(exc)}). If you trust its producer, "
                "load it with SCMTrainer.load_trusted_checkpoint",
            ) from exc
        except Exception:  # not a torch file at all: the seal error stands
            return None
        meta = import_zeroproofml_metadata(path, payload, self.name, weights_only=weights_only)
        if meta is None:
            return None
        return LoadedCheckpoint(path, meta, dict(payload), weights_only)

    def check_checkpoint(self, ckpt: LoadedCheckpoint) -> None:
        path, payload = ckpt.path, ckpt.state
        _check_state_dict(path, "model state", payload.get("model"), self._model.state_dict())
        if ckpt.weights_only:
            return
        if payload.get("optimizer") is None:
            raise CheckpointError(path, "has no optimizer state")
        _check_optimizer(path, payload["optimizer"], self.optimizer)
        for name, live in (("scheduler", self.scheduler), ("scaler", self.scaler)):
            saved = payload.get(name)
            if live is None or saved is None:
                continue
            keys = set(live.state_dict())
            if not isinstance(saved, dict) or set(saved) != keys:
                raise CheckpointError(
                    path, f"{name} state does not match this trainer's {type(live).__name__}"
                )
        rng = payload.get("rng_state")
        if rng is not None:
            ref = torch.get_rng_state()
            if not isinstance(rng, torch.Tensor) or rng.dtype != ref.dtype or rng.shape != ref.shape:
                raise CheckpointError(path, "rng_state is not a torch CPU generator state")

    def apply_checkpoint(self, ckpt: LoadedCheckpoint) -> None:
        payload = ckpt.state
        self._model.load_state_dict(payload["model"])
        if ckpt.weights_only:
            return
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler is not None and payload.get("scaler") is not None:
            self.scaler.load_state_dict(payload["scaler"])
        if payload.get("rng_state") is not None:
            torch.set_rng_state(payload["rng_state"].cpu())
        self._pending = None


def _load_payload(stream: IO[bytes], path: str, device: Any) -> dict[str, Any]:
    try:
        payload = torch.load(stream, map_location=device, weights_only=True)
    except Exception as exc:  # zip/pickle/unsafe-object errors of every kind
        raise CheckpointError(
            path, f"cannot be loaded as a torch checkpoint with weights_only=True ({describe_error(exc)})"
        ) from exc
    if not isinstance(payload, dict) or "metadata_json" not in payload:
        raise CheckpointError(path, "is not a zpml_core torch checkpoint (no metadata_json)")
    return payload


def load_mapping(path: str, *, map_location: Any, trusted: bool) -> dict[str, Any]:
    """The mapping a torch checkpoint holds (``zpml_core.training.load_checkpoint_mapping``).

    A sealed zpml_core checkpoint: seal verified, ``torch.load(weights_only=True)``. A
    file without the seal (zeroproofml's): ``torch.load(weights_only=not trusted)``.
    Failures → ``CheckpointError`` naming the file."""
    try:
        with open_checkpoint(path) as (fh, kind):
            if kind != "torch":
                raise CheckpointError(path, f"is a {kind or 'foreign'} checkpoint, not a torch one")
            return _load_payload(fh, path, map_location)
    except CheckpointError as exc:
        if not exc.reason.startswith(NO_SEAL):
            raise
    try:
        payload = torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as exc:
        hint = "" if trusted or not _is_torch_zip(path) else (
            "; if it needs pickle and you trust its producer, pass trusted=True"
        )
        raise CheckpointError(
            path, f"{NO_SEAL} and cannot be loaded with torch.load ({describe_error(exc)}){hint}"
        ) from exc
    if not isinstance(payload, Mapping):
        raise CheckpointError(path, f"holds a {type(payload).__name__}, not a mapping")
    return dict(payload)


def _is_torch_zip(path: str) -> bool:
    """A zip archive as ``torch.save`` writes it (a ``*/data.pkl`` member)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/data.pkl") for n in z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def read_metadata(source: Any, path: str | None = None) -> dict[str, Any]:
    """Metadata of a torch checkpoint: ``source`` is a path (seal verified, see
    :func:`zpml_core.training.read_checkpoint_metadata`) or an already verified stream."""
    if isinstance(source, (str, os.PathLike)):
        from zpml_core.training.checkpoint import read_checkpoint_metadata

        return read_checkpoint_metadata(source)
    name = "<stream>" if path is None else path
    return parse_metadata(name, _load_payload(source, name, "cpu")["metadata_json"])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _broadcastable(shape: Any, to: Any) -> bool:
    pairs = zip(reversed(shape), reversed(to), strict=False)
    return len(shape) <= len(to) and all(a in (1, b) for a, b in pairs)


def _same_value_kind(path: str, what: str, saved: Any, ref: Any) -> None:
    if isinstance(ref, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            raise CheckpointError(path, f"{what} is {type(saved).__name__}, expected a tensor")
        if saved.shape != ref.shape or saved.dtype != ref.dtype:
            raise CheckpointError(
                path,
                f"{what} has shape {tuple(saved.shape)} dtype {saved.dtype}, this trainer's has "
                f"{tuple(ref.shape)} {ref.dtype} (different model or optimizer?)",
            )
    elif (
        ref is not None
        and saved is not None
        and type(saved) is not type(ref)
        and not (isinstance(ref, (int, float)) and isinstance(saved, (int, float)))
    ):
        raise CheckpointError(path, f"{what} is {type(saved).__name__}, expected {type(ref).__name__}")


def _check_state_dict(path: str, what: str, saved: Any, live: Mapping[str, Any]) -> None:
    """Same keys, and per key a tensor of the same shape and dtype as the live one."""
    if not isinstance(saved, Mapping):
        raise CheckpointError(path, f"has no {what}")
    missing = sorted(set(live) - set(saved))
    extra = sorted(set(saved) - set(live))
    if missing or extra:
        raise CheckpointError(
            path,
            f"{what} does not match this model: missing keys {missing[:5]}, unexpected keys "
            f"{extra[:5]} (different model?)",
        )
    for key, ref in live.items():
        _same_value_kind(path, f"{what} {key!r}", saved[key], ref)


def _check_optimizer(path: str, saved: Any, optimizer: torch.optim.Optimizer) -> None:
    """The saved optimizer state fits ``optimizer``: same parameter groups (sizes and
    option names, i.e. the same optimizer type), state only for its parameters, and per
    parameter the live state's keys/shapes/dtypes (or, where the optimizer has no state
    yet, tensors broadcastable to the parameter)."""
    live = optimizer.state_dict()
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("state"), dict)
        or not isinstance(saved.get("param_groups"), list)
    ):
        raise CheckpointError(path, "optimizer state is not a torch optimizer state_dict")
    sg, lg = saved["param_groups"], live["param_groups"]
    if len(sg) != len(lg):
        raise CheckpointError(
            path, f"optimizer has {len(sg)} parameter groups, this trainer's has {len(lg)}"
        )
    saved_ids: list[Any] = []
    for i, (a, b) in enumerate(zip(sg, lg, strict=True)):
        if not isinstance(a, dict) or not isinstance(a.get("params"), list):
            raise CheckpointError(path, f"optimizer parameter group {i} is malformed")
        if len(a["params"]) != len(b["params"]):
            raise CheckpointError(
                path,
                f"optimizer parameter group {i} has {len(a['params'])} parameters, this "
                f"trainer's has {len(b['params'])}",
            )
        # ``initial_lr`` is an LR scheduler's bookkeeping, not an optimizer option
        ka, kb = set(a) - {"params", "initial_lr"}, set(b) - {"params", "initial_lr"}
        if ka != kb:
            raise CheckpointError(
                path,
                f"optimizer parameter group {i} options differ ({sorted(ka ^ kb)}): written by "
                f"another optimizer type than {type(optimizer).__name__}?",
            )
        saved_ids += a["params"]
    if not all(_is_int(i) for i in saved_ids) or len(set(saved_ids)) != len(saved_ids):
        raise CheckpointError(path, "optimizer parameter ids are malformed")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    live_ids = [pid for g in lg for pid in g["params"]]
    index = {sid: k for k, sid in enumerate(saved_ids)}
    for sid, state in saved["state"].items():
        if sid not in index or not isinstance(state, dict):
            raise CheckpointError(path, f"optimizer state for unknown parameter id {sid!r}")
        k = index[sid]
        ref = live["state"].get(live_ids[k])
        what = f"optimizer state of parameter {k}"
        if ref is not None:
            if set(state) != set(ref):
                raise CheckpointError(
                    path, f"{what} has keys {sorted(state)}, this trainer's has {sorted(ref)}"
                )
            for key, v in ref.items():
                _same_value_kind(path, f"{what} {key!r}", state[key], v)
            continue
        shape = tuple(params[k].shape)
        for key, v in state.items():
            if isinstance(v, torch.Tensor) and v.ndim and not _broadcastable(tuple(v.shape), shape):
                raise CheckpointError(
                    path, f"{what} {key!r} has shape {tuple(v.shape)}, the parameter has {shape}"
                )
