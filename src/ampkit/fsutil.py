"""File operations. Durable writes: every file ampkit writes goes through :func:`write_atomic` or
:func:`save_atomic`-style temp-then-rename, so a full disk or a kill never leaves a torn file.
Safe opens: :func:`open_regular` opens a file a user named (or a shard in a folder a user handed
over) without ever blocking on a FIFO or reading a device; :func:`create_regular` opens one to
write (an arm's log) without following a symlink or blocking on a FIFO in its place."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

#: Temporary files are named ``.<target name>.<random>.tmp`` in the target's folder.
TMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[bytes]]:
    """A handle on a temporary file beside ``path``; on a clean exit it is fsynced and renamed over
    ``path`` (then the folder is fsynced). On any error the temporary file is removed and ``path``
    keeps its old content. ``mode`` must be ``"wb"`` (text goes through :func:`write_atomic`)."""
    if mode != "wb":
        raise ValueError(f"atomic_open mode {mode!r}; valid: 'wb'")
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    try:
        os.fchmod(fd, _mode_for(target))  # mkstemp makes 0600; keep the file's mode, or the umask's
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def _mode_for(target: Path) -> int:
    """The permission bits the rewritten file keeps: the old file's, else 0666 less the umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically: the old content survives any failure."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_open(path, "wb") as handle:
        handle.write(payload)


def write_with(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write ``path`` with ``writer(handle)`` (e.g. ``torch.save`` into a binary handle)."""
    with atomic_open(path, "wb") as handle:
        writer(handle)


def remove_stale_temps(directory: str | os.PathLike[str], name: str) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files a killed writer left in ``directory``; returns what was removed."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    removed = []
    for stale in folder.glob(f".{name}.*{TMP_SUFFIX}"):
        try:
            stale.unlink()
            removed.append(stale)
        except OSError:
            pass
    return removed


def open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """``(descriptor, fstat)`` of the regular file ``path``, opened read-only.

    The open is non-blocking, so a FIFO in the file's place neither blocks it nor is read, and the
    check is ``fstat`` on that very descriptor: ``IsADirectoryError`` ("is a folder") for a folder,
    ``OSError`` EINVAL ("not a regular file (a device, FIFO or socket)") for anything else that is
    not a regular file; the descriptor is closed then. Other failures are ``open``'s own OSError.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", os.fspath(path))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a device, FIFO or socket)", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_regular(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``), read through :func:`open_regular`:
    a FIFO in its place neither blocks nor is read; a device or folder raises ``OSError``."""
    fd, _ = open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(-1 if limit is None else limit)


def create_regular(path: str | os.PathLike[str], encoding: str = "utf-8") -> IO[str]:
    """``open(path, "w")`` for a file a run appends its output to (an arm's log), without its traps.

    The open is ``O_NOFOLLOW | O_NONBLOCK`` and creates the file (0666 less the umask) when it is
    missing: a symlink in ``path``'s place is never followed (nothing is written, or created, where
    it points) and a FIFO neither blocks the open nor is written. The file is emptied only after
    ``fstat`` on that very descriptor finds a regular file with no other hard link. A refusal is an
    ``OSError`` naming ``path``, its ``strerror`` saying what is there.
    """
    name = os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
            raise OSError(err.errno, "a symlink (not followed)", name) from None
        if err.errno == errno.ENXIO:  # a FIFO without a reader, or a socket
            raise OSError(err.errno, "a FIFO or socket, not a regular file", name) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a device, FIFO or socket)", name)
        if info.st_nlink > 1:
            raise OSError(errno.EMLINK, f"a hard link ({info.st_nlink} names) to a file it would empty", name)
        os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
        return open(fd, "w", encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


class FileTooLarge(ValueError):
    """A file over the reader's byte limit (:func:`read_limited`)."""

    def __init__(self, path: str | os.PathLike[str], size: int, limit: int):
        super().__init__(f"{os.fspath(path)}: {size:,} bytes, more than {limit:,}")
        self.size, self.limit = size, limit


def open_binary(path: str | os.PathLike[str]) -> IO[bytes]:
    """:func:`open_regular` as a buffered binary file (blocking again: it is a regular file)."""
    fd, _ = open_regular(path)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_limited(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_binary`), at most ``limit`` of them:
    :class:`FileTooLarge` from ``fstat`` before anything is read, or for a file that grew meanwhile."""
    with open_binary(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise FileTooLarge(path, size, limit)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(path, len(data), limit)
    return data
