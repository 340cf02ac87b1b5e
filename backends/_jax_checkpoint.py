"""Checkpoint serialisation of the JAX training engine (see ``jax_training``).

A checkpoint is an ``.npz``: every parameter and optimizer-state leaf as
``params/NNNNN`` / ``opt_state/NNNNN`` plus the JSON metadata as bytes (``__meta__``,
with each leaf's pytree key path under ``pytree_paths``), written into the sealed,
atomic stream of :mod:`zpml_core.training.checkpoint` and read with
``numpy.load(allow_pickle=False)`` after the seal is verified. The pytree structure
comes from the live trainer: leaf count, key paths, shapes and dtypes must match
(``CheckpointError`` naming the file otherwise) before anything is replaced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import IO, Any

import jax
import numpy as np

from zpml_core.training.checkpoint import CheckpointError, describe_error, parse_metadata
from zpml_core.training.engine import LoadedCheckpoint

__all__ = ["JaxCheckpointMixin", "read_metadata"]


class JaxCheckpointMixin:
    """``save`` / ``read_checkpoint`` / ``check_checkpoint`` / ``apply_checkpoint`` of
    ``JaxEngine`` (which defines the attributes below)."""

    params: Any
    opt_state: Any
    acc: Any
    to_framework: Callable[[Any], Any]
    place_state: Callable[[Any], Any]
    reset_pipeline: Callable[[], None]

    def _trees(self) -> dict[str, Any]:
        return {"params": self.params, "opt_state": self.opt_state}

    def save(self, stream: IO[bytes], metadata: Mapping[str, Any], *, include_optimizer: bool = True) -> None:
        arrays: dict[str, Any] = {}
        structure = {}
        paths = {}
        for name, tree in self._trees().items():
            if name == "opt_state" and not include_optimizer:
                continue
            leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
            structure[name] = str(treedef)
            paths[name] = [jax.tree_util.keystr(kp) for kp, _ in leaves]
            for i, (_, leaf) in enumerate(leaves):
                arrays[f"{name}/{i:05d}"] = np.asarray(leaf)
        meta = dict(metadata)
        meta["pytree_structure"] = structure
        meta["pytree_paths"] = paths
        blob = json.dumps(meta, sort_keys=True, allow_nan=False).encode("utf-8")
        arrays["__meta__"] = np.frombuffer(blob, dtype=np.uint8)
        np.savez(stream, **arrays)

    def read_checkpoint(self, stream: IO[bytes], path: str, *, weights_only: bool = False) -> LoadedCheckpoint:
        names = ("params",) if weights_only else ("params", "opt_state")
        try:
            with np.load(stream, allow_pickle=False) as data:
                if "__meta__" not in data.files:
                    raise CheckpointError(path, "is not a zpml_core JAX checkpoint (no __meta__)")
                raw = bytes(data["__meta__"])
                arrays = {k: data[k] for k in data.files if k.partition("/")[0] in names}
        except CheckpointError:
            raise
        except Exception as exc:  # zip/npy/pickle refusal errors of every kind
            raise CheckpointError(
                path, f"cannot be loaded as a JAX checkpoint with allow_pickle=False ({describe_error(exc)})"
            ) from exc
        meta = parse_metadata(path, raw)
        return LoadedCheckpoint(path, meta, arrays, weights_only)

    def check_checkpoint(self, ckpt: LoadedCheckpoint) -> None:
        path, arrays = ckpt.path, ckpt.state
        saved_paths = ckpt.metadata.get("pytree_paths")
        for name, tree in self._trees().items():
            if name == "opt_state" and ckpt.weights_only:
                continue
            leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
            keys = sorted(k for k in arrays if k.startswith(name + "/"))
            if not keys and name == "opt_state":
                raise CheckpointError(path, "has no optimizer state")
            expected = [f"{name}/{i:05d}" for i in range(len(leaves))]
            if keys != expected:
                raise CheckpointError(
                    path,
                    f"{name} has {len(keys)} leaves, the trainer's {name} has {len(leaves)} "
                    "(different model or optimizer?)",
                )
            live_paths = [jax.tree_util.keystr(kp) for kp, _ in leaves]
            if not isinstance(saved_paths, dict) or saved_paths.get(name) != live_paths:
                got = saved_paths.get(name) if isinstance(saved_paths, dict) else None
                diff = next(
                    (f"{a!r} vs {b!r}" for a, b in zip(got or [], live_paths, strict=False) if a != b),
                    "key paths missing" if got is None else "",
                )
                raise CheckpointError(
                    path, f"{name} pytree key paths differ from the trainer's ({diff}; different model?)"
                )
            for k, (kp, leaf) in zip(keys, leaves, strict=True):
                a = arrays[k]
                ref = np.asarray(leaf)
                if a.shape != ref.shape or a.dtype != ref.dtype:
                    raise CheckpointError(
                        path,
                        f"{name}{jax.tree_util.keystr(kp)} has shape {a.shape} dtype {a.dtype}, "
                        f"the trainer's has {ref.shape} {ref.dtype}",
                    )

    def apply_checkpoint(self, ckpt: LoadedCheckpoint) -> None:
        arrays = ckpt.state
        for name, tree in self._trees().items():
            if name == "opt_state" and ckpt.weights_only:
                continue
            leaves, treedef = jax.tree_util.tree_flatten(tree)
            new = [self.place_state(arrays[f"{name}/{i:05d}"]) for i in range(len(leaves))]
            setattr(self, name, jax.tree_util.tree_unflatten(treedef, new))
        self.reset_pipeline()


def read_metadata(path: str) -> dict[str, Any]:
    """Metadata of a checkpoint (seal verified; see
    :func:`zpml_core.training.read_checkpoint_metadata`)."""
    from zpml_core.training.checkpoint import read_checkpoint_metadata

    return read_checkpoint_metadata(path)
