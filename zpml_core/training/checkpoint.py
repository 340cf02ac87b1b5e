"""Checkpoint files: one error type, an integrity seal, atomic writes.

A checkpoint is the backend's container — a ``torch.save`` zip (torch) or an ``.npz``
zip (JAX) — *sealed*: its zip archive comment holds the SHA-256 of every byte before
the comment::

    file = body ‖ b"zpml_core.checkpoint sha256=" ‖ hex(sha256(body))

``body`` is the complete zip, whose end-of-central-directory record declares the comment
length, so the hash covers every byte that is read back (all tensors, the optimizer
state, the metadata and the zip structure itself). The comment is part of the zip
format: ``torch.load`` and ``numpy.load`` read a sealed file unchanged. Loading
verifies the seal first, so a single flipped bit, a truncation or a foreign file is
reported as :class:`CheckpointError` — never loaded silently, never an internal error.

Writes are atomic and leave no temporary file behind: on Linux the file is written
unnamed (``O_TMPFILE``) and, once complete and fsynced, linked into place — directly if
the target does not exist yet, otherwise as ``.<name>.zpml-partial`` renamed over the
target (a window of two system calls); elsewhere it is written to that
``.zpml-partial`` name and renamed. A process killed inside that window (or, without
``O_TMPFILE``, during the write) leaves at most that one deterministic name, which the
next save or load of the same target removes; a save whose partial is removed that way
by a concurrent load links/writes it again. Concurrent saves to one path are not
supported (the seal still detects a torn file). The seal stream and the two write paths
are :mod:`zpml_core.training._checkpoint_write`; this module holds the error type, the
metadata rules, verification on read and the zeroproofml checkpoint import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, TypeGuard

# the seal stream and the write paths; write_checkpoint below looks _write_unnamed and
# _write_named up in this module, so patching them here takes effect
from zpml_core.training._checkpoint_write import (
    _ATTEMPTS,
    _CHUNK,
    _EOCD_SIZE,
    SEAL_LENGTH,
    SEAL_MAGIC,
    _remove_partial,
    _write_named,
    _write_unnamed,
    partial_path,
)
from zpml_core.training._checkpoint_write import _SealingWriter as _SealingWriter

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_SCHEMA_VERSION",
    "NO_SEAL",
    "CheckpointError",
    "check_metadata",
    "import_zeroproofml_metadata",
    "load_checkpoint_mapping",
    "open_checkpoint",
    "partial_path",
    "read_checkpoint_metadata",
    "write_checkpoint",
]

CHECKPOINT_FORMAT = "zpml_core.checkpoint"
#: 3: sealed files (SHA-256 in the zip comment) with pytree key paths for JAX
CHECKPOINT_SCHEMA_VERSION = 3

#: start of the ``CheckpointError.reason`` of a file without the seal (foreign files)
NO_SEAL = "has no zpml_core integrity seal"
#: the last checkpoint schema of zeroproofml 0.6.1 (``import_zeroproofml_metadata``)
ZEROPROOFML_SCHEMA_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the file named in the message.

    Raised for every file that is missing or unreadable, empty, truncated, corrupted
    (its SHA-256 seal does not match), not a zpml_core checkpoint, refused by safe
    loading (pickled objects), written by another backend or with a newer
    ``schema_version``, or whose parameters / optimizer state do not match the trainer's
    model and optimizer (keys, shapes, dtypes). When it is raised nothing has been
    modified: model, optimizer and trainer state are exactly as before the call.
    ``path`` is the file, ``reason`` the cause; the underlying exception (if any) is
    chained as ``__cause__``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"checkpoint {path!r}: {reason}")
        self.path = path
        self.reason = reason


def describe_error(exc: BaseException) -> str:
    """``"Type: first line of the message"`` of an exception (for error messages)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------
# writing


def write_checkpoint(path: str, dump: Callable[[Any], None]) -> None:
    """Write ``dump(stream)`` to ``path``, sealed and atomically (see the module docstring).

    ``dump`` writes a zip container (``torch.save`` / ``numpy.savez``) to the write-only
    stream it is given. ``path`` then holds either its previous content or the complete
    new file; an interrupted write leaves no temporary file (or, killed between link and
    rename, the ``.zpml-partial`` name that the next save/load removes).
    """
    target = os.path.abspath(path)
    directory, base = os.path.split(target)
    os.makedirs(directory, exist_ok=True)
    partial = partial_path(target)
    _remove_partial(target)
    done = _write_unnamed(directory, base, partial, dump)
    for _ in range(_ATTEMPTS):
        if done is None:  # no O_TMPFILE here
            done = _write_named(target, partial, dump)
        if done:
            return
        done = None
    raise OSError(
        f"could not replace {target!r}: its temporary {partial!r} was removed by another "
        f"process {_ATTEMPTS} times (concurrent saves or loads of the same path?)"
    )


# ---------------------------------------------------------------------------------------
# reading


def _zip_kind(fh: IO[bytes]) -> str | None:
    """"jax" (``.npz`` with ``__meta__``), "torch" (``torch.save`` zip) or None."""
    fh.seek(0)
    with zipfile.ZipFile(fh) as z:
        names = z.namelist()
    fh.seek(0)
    if "__meta__.npy" in names:
        return "jax"
    if any(n.endswith("/data.pkl") for n in names):
        return "torch"
    return None


@contextlib.contextmanager
def open_checkpoint(path: str | os.PathLike[str]) -> Iterator[tuple[IO[bytes], str | None]]:
    """Open ``path``, verify its seal and yield ``(file, kind)``.

    ``file`` is positioned at 0 (the same open file the hash was computed on, so a
    concurrent replacement cannot swap the content); ``kind`` is ``"torch"``, ``"jax"``
    or None (another container). Removes a stale ``.zpml-partial`` of ``path``. Every
    failure is a :class:`CheckpointError` naming the file.
    """
    p = os.fspath(path)
    with contextlib.suppress(OSError):
        _remove_partial(p)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CheckpointError(p, f"cannot be opened ({describe_error(exc)})") from exc
    with fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise CheckpointError(p, "is empty (0 bytes)")
            if size < SEAL_LENGTH + _EOCD_SIZE:
                raise CheckpointError(
                    p, f"is {size} bytes, too short for a zpml_core checkpoint (truncated?)"
                )
            fh.seek(size - SEAL_LENGTH)
            seal = fh.read(SEAL_LENGTH)
            expected = seal[len(SEAL_MAGIC) :]
            if not seal.startswith(SEAL_MAGIC) or not _is_hex(expected):
                raise CheckpointError(
                    p,
                    f"{NO_SEAL} at its end: it is truncated, "
                    "corrupted, or not a checkpoint written by SCMTrainer.save_checkpoint "
                    f"(schema_version {CHECKPOINT_SCHEMA_VERSION})",
                )
            fh.seek(0)
            h = hashlib.sha256()
            remaining = size - SEAL_LENGTH
            while remaining > 0:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:
                    raise CheckpointError(p, "changed size while it was read")
                h.update(chunk)
                remaining -= len(chunk)
            actual = h.hexdigest().encode("ascii")
            if actual != expected:
                raise CheckpointError(
                    p,
                    "content hash mismatch: the file is corrupted (sha256 "
                    f"{actual.decode()} != sealed {expected.decode()})",
                )
            try:
                kind = _zip_kind(fh)
            except Exception as exc:
                raise CheckpointError(p, f"is not a readable zip container ({describe_error(exc)})") from exc
        except OSError as exc:
            raise CheckpointError(p, f"cannot be read ({describe_error(exc)})") from exc
        yield fh, kind


def _is_hex(b: bytes) -> bool:
    return len(b) == 64 and all(c in b"0123456789abcdef" for c in b)


def parse_metadata(path: str, text: Any) -> dict[str, Any]:
    """The JSON metadata of a checkpoint as a dict (``CheckpointError`` otherwise)."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(f"metadata is {type(text).__name__}, not JSON text")
        meta = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"has unreadable metadata ({describe_error(exc)})") from exc
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"is not a {CHECKPOINT_FORMAT} file (metadata format differs)")
    return meta


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_metadata(path: str, meta: Mapping[str, Any], backend: str, *, weights_only: bool = False) -> None:
    """Validate what loading applies from the metadata, before anything is modified.

    Format, ``schema_version`` (an int in ``1..CHECKPOINT_SCHEMA_VERSION``) and backend
    always; the resume fields (epoch, step, early-stopping state, tau generator state
    type, ``tau_infer``) unless ``weights_only``. Raises :class:`CheckpointError`.
    """
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"is not a {CHECKPOINT_FORMAT} file")
    schema = meta.get("schema_version")
    if not _is_int(schema) or not 1 <= schema <= CHECKPOINT_SCHEMA_VERSION:
        raise CheckpointError(
            path,
            f"has unsupported schema_version {schema!r} (this zpml_core reads "
            f"1..{CHECKPOINT_SCHEMA_VERSION})",
        )
    if meta.get("backend") != backend:
        raise CheckpointError(
            path,
            f"was written by the {meta.get('backend')!r} backend; this trainer runs on {backend!r}",
        )
    if weights_only:
        return
    for key in ("epoch", "global_step"):
        if not _is_int(meta.get(key)) or meta[key] < 0:
            raise CheckpointError(path, f"metadata {key}={meta.get(key)!r} is not an int >= 0")
    bad = meta.get("coverage_bad_epochs", 0)
    if not _is_int(bad) or bad < 0:
        raise CheckpointError(path, f"metadata coverage_bad_epochs={bad!r} is not an int >= 0")
    best = meta.get("best_metric")
    if best is not None and not _is_real(best):
        raise CheckpointError(path, f"metadata best_metric={best!r} is not a number")
    tau = meta.get("tau_infer")
    if tau is not None and (not _is_real(tau) or not math.isfinite(tau) or tau < 0):
        raise CheckpointError(path, f"metadata tau_infer={tau!r} is not a finite number >= 0")
    if not isinstance(meta.get("tau_infer_calibrated", False), bool):
        raise CheckpointError(
            path, f"metadata tau_infer_calibrated={meta.get('tau_infer_calibrated')!r} is not a bool"
        )
    if not isinstance(meta.get("seeded", False), bool):
        raise CheckpointError(path, f"metadata seeded={meta.get('seeded')!r} is not a bool")
    rng = meta.get("tau_rng_state")
    if rng is not None and not isinstance(rng, dict):
        raise CheckpointError(path, "metadata tau_rng_state is not a generator state")


def import_zeroproofml_metadata(path: str, payload: Any, backend: str, *,
                                weights_only: bool) -> dict[str, Any] | None:
    """Metadata in this package's layout for a zeroproofml 0.6.1 checkpoint ``payload``
    (the mapping its ``SCMTrainer.save_checkpoint`` wrote), or None if it is not one.

    zeroproofml's layout: ``model`` (a state dict), ``optimizer``, ``scaler`` and —
    from its schema 1 on — ``schema_version``, ``scheduler``, ``epoch`` (the next epoch),
    ``global_step``, ``best_metric``, ``coverage_bad_epochs``, ``rng_state``,
    ``config_hash``. Missing resume fields (its pre-schema files) start at their
    defaults, as zeroproofml itself does. A newer schema than 2, or no optimizer state
    for a full load → :class:`CheckpointError`. Its ``config_identity.tau_infer`` is the
    configured value, not a calibration: it is not imported.
    """
    if not isinstance(payload, Mapping) or "metadata_json" in payload:
        return None
    if not isinstance(payload.get("model"), Mapping):
        return None
    schema = payload.get("schema_version", 0)
    if not _is_int(schema) or schema < 0:
        raise CheckpointError(path, f"zeroproofml schema_version {schema!r} is not an int >= 0")
    if schema > ZEROPROOFML_SCHEMA_VERSION:
        raise CheckpointError(
            path,
            f"is a zeroproofml checkpoint of schema {schema}; this zpml_core imports "
            f"zeroproofml schemas 0..{ZEROPROOFML_SCHEMA_VERSION} (zeroproofml 0.6.1)",
        )
    if not weights_only and not isinstance(payload.get("optimizer"), Mapping):
        raise CheckpointError(path, "is a zeroproofml checkpoint without optimizer state")
    resume = schema >= 1
    best: Any = payload.get("best_metric") if resume else None
    if isinstance(best, numbers.Real) and not isinstance(best, bool):
        best = float(best)  # (a numpy scalar in a trusted, pickled file)
    return {
        "format": CHECKPOINT_FORMAT,
        "schema_version": CHECKPOINT_SCHEMA_VERSION,
        "backend": backend,
        "imported_from": "zeroproofml",
        "zeroproofml_schema_version": schema,
        "epoch": _as_index(payload.get("epoch", 0) if resume else 0),
        "global_step": _as_index(payload.get("global_step", 0) if resume else 0),
        "best_metric": best,
        "coverage_bad_epochs": _as_index(payload.get("coverage_bad_epochs", 0) if resume else 0),
        "seeded": True,
        "tau_rng_state": None,
        "loader_state": None,
        "config_hash": payload.get("config_hash"),
    }


def _as_index(v: Any) -> Any:
    """An integral number as an int (numpy integers of a pickled file); else unchanged,
    for :func:`check_metadata` to name."""
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v


def load_checkpoint_mapping(path: str | os.PathLike[str], *, map_location: Any = "cpu",
                            trusted: bool = False) -> dict[str, Any]:
    """The mapping a torch checkpoint holds (zeroproofml's name), without a trainer.

    A zpml_core checkpoint is verified (seal) and read with
    ``torch.load(weights_only=True)``: ``model`` / ``optimizer`` / ... state dicts and
    ``metadata_json``. A file without the seal — zeroproofml's ``save_checkpoint`` output
    — is read with ``torch.load(weights_only=True)``, or with unrestricted pickle only if
    ``trusted=True`` (never for a downloaded or otherwise untrusted file). Failures →
    :class:`CheckpointError` naming the file. Needs torch.
    """
    from zpml_backends._torch_checkpoint import load_mapping

    if not isinstance(trusted, bool):
        raise TypeError(f"trusted must be a bool, got {type(trusted).__name__}")
    return load_mapping(os.fspath(path), map_location=map_location, trusted=trusted)


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of a checkpoint without building a trainer, after verifying its seal.

    A JAX ``.npz`` needs only numpy (``allow_pickle=False``); a torch checkpoint is read
    with ``torch.load(weights_only=True)``. Raises :class:`CheckpointError` naming the
    file for anything that is not an intact zpml_core checkpoint.
    """
    p = os.fspath(path)
    with open_checkpoint(p) as (fh, kind):
        if kind == "jax":
            import numpy as np

            try:
                with np.load(fh, allow_pickle=False) as data:
                    raw = bytes(data["__meta__"])
            except Exception as exc:
                raise CheckpointError(p, f"cannot be read as a JAX checkpoint ({describe_error(exc)})") from exc
            return parse_metadata(p, raw)
        if kind == "torch":
            from zpml_backends.torch_training import read_metadata

            return read_metadata(fh, p)
    raise CheckpointError(p, "is a zip file but neither a torch nor a JAX zpml_core checkpoint")
