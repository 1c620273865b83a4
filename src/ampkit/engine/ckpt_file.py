"""Opening a checkpoint before torch reads it: a regular file, and an archive as ``torch.save`` writes it.

``torch.load`` on a path would block forever on a FIFO in ``last.pt``'s place, read ``/dev/zero``
without end, and inflate whatever a hand-made zip archive deflated (a 10 MB file costing
gigabytes before it is refused). So a checkpoint is opened through
:func:`ampkit.fsutil.open_regular` (non-blocking; a FIFO, device, socket or folder is refused in
one line naming the file), and when it is a zip archive its directory is read first:
``torch.save`` stores every entry uncompressed, so a compressed entry, or entries that claim more
bytes than the file holds, is refused before torch inflates anything. torch then reads the very
file that was checked, through its descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import UsageError
from ..fsutil import open_regular

VALID = "valid: a last.pt written by ampkit train (or its run folder)"
#: Zip compression methods by number, for messages.
_METHODS = {zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


@dataclass
class Opened:
    """A checked checkpoint file: its handle, and a name that opens that same file again (for
    ``torch.load(mmap=True)``; None where there is no ``/proc/self/fd`` or the file is no zip archive)."""

    handle: IO[bytes]
    mmap_name: str | None


def _open(path: Path) -> tuple[int, os.stat_result]:
    """:func:`open_regular`, its refusals as one :class:`UsageError` line (a read fault stays OSError)."""
    try:
        return open_regular(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; {VALID}") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a checkpoint file; {VALID}") from None
    except PermissionError:
        raise UsageError(f"{path}: cannot read: permission denied") from None
    except OSError as err:
        if err.errno in (errno.EINVAL, errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):  # ENXIO: a socket
            raise UsageError(f"{path}: not a regular file (a FIFO, device or socket); {VALID}") from None
        if err.errno == errno.ELOOP:
            raise UsageError(f"{path}: a symbolic link that loops; {VALID}") from None
        raise


def check_archive(handle: IO[bytes], path: Path, size: int) -> bool:
    """Whether ``handle`` is a zip archive; refused (:class:`UsageError`) when its directory does not
    read, an entry is compressed, or its entries claim more than the file's ``size`` bytes."""
    if not zipfile.is_zipfile(handle):
        return False  # an older torch file (a pickle): torch's own reader decides
    handle.seek(0)
    try:
        with zipfile.ZipFile(handle) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as err:
        raise UsageError(
            f"{path}: damaged checkpoint (its zip directory does not read: {err}); {VALID}"
        ) from None
    packed = [e for e in entries if e.compress_type != zipfile.ZIP_STORED]
    if packed:
        method = _METHODS.get(packed[0].compress_type, f"method {packed[0].compress_type}")
        raise UsageError(
            f"{path}: zip entry {packed[0].filename!r} is compressed ({method}), and torch.save stores "
            f"every entry uncompressed: not inflated; {VALID}"
        )
    claimed = sum(e.file_size for e in entries)
    if claimed > size:
        raise UsageError(
            f"{path}: its zip entries claim {claimed:_} bytes, more than the file's {size:_}; {VALID}"
        )
    return True


def _same_file(fd: int) -> str | None:
    """A path that opens the file behind ``fd`` again (Linux ``/proc/self/fd``), or None."""
    name = f"/proc/self/fd/{fd}"
    return name if os.path.exists(name) else None


@contextlib.contextmanager
def opened_checkpoint(path: str | os.PathLike[str]) -> Iterator[Opened]:
    """The checkpoint at ``path`` opened and checked (see the module docstring), closed after the body.

    Raises :class:`UsageError` for a missing, empty or non-regular file and a refused archive.
    """
    path = Path(path)
    fd, info = _open(path)
    with os.fdopen(fd, "rb") as handle:
        if info.st_size == 0:
            raise UsageError(f"{path}: empty file (0 bytes), not a checkpoint; {VALID}")
        is_zip = check_archive(handle, path, info.st_size)
        handle.seek(0)
        yield Opened(handle, _same_file(fd) if is_zip else None)
