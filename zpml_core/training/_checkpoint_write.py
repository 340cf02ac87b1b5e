"""Sealed, atomic checkpoint writes: the seal stream and the two ways to replace a file.

The seal (see :mod:`zpml_core.training.checkpoint` for the file format) is appended by
:class:`_SealingWriter`, a write-only stream that hashes every byte the container
writer (``torch.save`` / ``numpy.savez``) gives it and, at the end, sets the zip comment
length and appends ``b"zpml_core.checkpoint sha256=" ‖ hex(sha256(body))``. The
sealed stream is written, fsynced and put in place by :func:`_write_unnamed` (Linux
``O_TMPFILE``: linked under the target's name if it does not exist yet, else as the
``.<name>.zpml-partial`` name renamed over it) or :func:`_write_named` (elsewhere:
written to that partial name and renamed). Both redo the rename when a concurrent load
of the target removed the partial. ``zpml_core.training.checkpoint.write_checkpoint``
chooses between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
from collections.abc import Callable
from typing import IO, Any

__all__ = ["SEAL_LENGTH", "SEAL_MAGIC", "partial_path"]

SEAL_MAGIC = b"zpml_core.checkpoint sha256="
SEAL_LENGTH = len(SEAL_MAGIC) + 64
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory signature; the record is 22 bytes
_EOCD_SIZE = 22
_CHUNK = 1 << 20
#: attempts when a concurrent load removes the ``.zpml-partial`` before the rename
_ATTEMPTS = 3


def partial_path(path: str) -> str:
    """The deterministic temporary name used next to ``path`` while it is replaced."""
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{base}.zpml-partial")


def _remove_partial(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(partial_path(path))


class _SealingWriter:
    """A write-only stream that hashes everything it passes to ``out`` and, on
    :meth:`seal`, sets the zip comment length and appends the seal.

    The last 22 bytes (the end-of-central-directory record, whose final field is the
    comment length) are held back until :meth:`seal`.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self._tail = b""
        self._n = 0

    def _emit(self, data: bytes | memoryview) -> None:
        if len(data):
            self._hash.update(data)
            self._out.write(data)

    def write(self, data: Any) -> int:
        mv = memoryview(data).cast("B")
        n = mv.nbytes
        self._n += n
        if n >= _EOCD_SIZE:
            self._emit(self._tail)
            self._emit(mv[: n - _EOCD_SIZE])
            self._tail = bytes(mv[n - _EOCD_SIZE :])
        else:
            tail = self._tail + bytes(mv)
            self._emit(tail[: max(0, len(tail) - _EOCD_SIZE)])
            self._tail = tail[-_EOCD_SIZE:]
        return n

    def tell(self) -> int:
        return self._n

    def flush(self) -> None:
        pass

    def seekable(self) -> bool:
        return False

    def read(self, *args: Any) -> bytes:  # numpy.savez checks for it; never called
        raise io.UnsupportedOperation("read")

    def seal(self) -> None:
        tail = self._tail
        if len(tail) != _EOCD_SIZE or tail[:4] != _EOCD or tail[-2:] != b"\x00\x00":
            raise RuntimeError("checkpoint container did not end with a plain zip end record")
        self._emit(tail[:-2] + struct.pack("<H", SEAL_LENGTH))
        self._tail = b""
        self._out.write(SEAL_MAGIC + self._hash.hexdigest().encode("ascii"))


def _fsync_directory(directory: str) -> None:
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:
        return
    fd = os.open(directory, os.O_RDONLY | flag)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_sealed(fd: int, dump: Callable[[Any], None]) -> None:
    with open(fd, "wb", closefd=False, buffering=_CHUNK) as out:
        writer = _SealingWriter(out)
        dump(writer)
        writer.seal()
    os.fsync(fd)


def _link_unnamed(fd: int, dfd: int, name: str) -> None:
    os.link(f"/proc/self/fd/{fd}", name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=True)


def _write_named(target: str, partial: str, dump: Callable[[Any], None]) -> bool:
    """Portable path: write ``partial``, rename it over ``target``. False if the partial
    vanished before the rename (a concurrent load of ``target`` removed it)."""
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        _write_sealed(fd, dump)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    os.close(fd)
    try:
        os.replace(partial, target)
    except FileNotFoundError:
        return False
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    _fsync_directory(os.path.dirname(target))
    return True


def _write_unnamed(directory: str, base: str, partial: str, dump: Callable[[Any], None]) -> bool | None:
    """Linux ``O_TMPFILE`` path: True when done; None if unsupported here (nothing was
    created); False if the partial name kept vanishing before the rename."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.open(directory, flag | os.O_WRONLY, 0o666)
    except OSError:
        return None
    try:
        _write_sealed(fd, dump)
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            try:
                if not os.path.lexists(os.path.join(directory, base)):
                    _link_unnamed(fd, dfd, base)  # first save: the name appears complete
                    os.fsync(dfd)
                    return True
            except FileExistsError:
                pass
            except OSError:
                return None
            name = os.path.basename(partial)
            for _ in range(_ATTEMPTS):
                try:
                    _link_unnamed(fd, dfd, name)
                except FileExistsError:  # a concurrent save's partial: ours wins
                    with contextlib.suppress(OSError):
                        os.remove(name, dir_fd=dfd)
                    continue
                except OSError:
                    return None
                try:
                    os.replace(name, base, src_dir_fd=dfd, dst_dir_fd=dfd)
                except FileNotFoundError:  # removed by a concurrent load: link again
                    continue
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.remove(name, dir_fd=dfd)
                    raise
                os.fsync(dfd)
                return True
            return False
        finally:
            os.close(dfd)
    finally:
        os.close(fd)
