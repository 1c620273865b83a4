"""Memory for batches, written again once released: no page faults, no zeroing, no copies.

A fresh 28 MB batch costs ~7000 page faults and the zeroing of every page before the first value
is written, more than widening 2-byte samples into it; a fresh shared-memory segment for a
DataLoader worker's batch costs ~3x that (torch also preallocates it). :class:`OutputPool` hands
out batch tensors and writes them again once nothing refers to them any more:

* in the main process, when torch's use count of the memory says that no tensor, view or numpy
  array outside the pool holds it (:meth:`OutputPool.take` returns views, so a caller's reference
  always counts);
* in a DataLoader worker (file-descriptor sharing, the Linux default), batches live in shared
  memory, handed to the main process without a copy, inside a :class:`LeasedBatch`: unpickling it
  in the main process maps the page of the segment's in-use flag (one byte past the data) and
  attaches a finalizer to the batch's storage that clears the flag when the main process has
  dropped every tensor and view of it (torch keeps a storage's Python object alive exactly as long
  as its memory). Until then the worker never touches the segment. A segment that never comes back (a batch the main process
  sends on to a third process and drops, say) stays in use: the worker allocates afresh.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import os
import threading
import weakref
from typing import Any

import torch
import torch.multiprocessing
from torch.utils.data import get_worker_info


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor in shared memory: a DataLoader worker's batch, handed to the main process without a copy."""
    storage = torch.UntypedStorage._new_shared(max(1, math.prod(shape)) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape, torch.empty(shape, device="meta").stride())


_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _users(t: torch.Tensor) -> int:
    """Tensors (views included) referring to ``t``'s memory, plus one for the call's own handle."""
    return int(_use_count(t.untyped_storage()._cdata)) if _use_count is not None else -1


_ALONE = _users(torch.empty(1))
"""What :func:`_users` says of a tensor nothing else refers to."""


_TAIL = 64
"""Bytes past a worker batch's data in its shared segment; the first is its in-use flag."""


class OutputPool:
    """Batch tensors of this process, written again once released (see the module docstring)."""

    def __init__(self, keep: int = 3, keep_shared: int = 6):
        self.keep, self.keep_shared = keep, keep_shared
        self._tensors: list[torch.Tensor] = []
        self._slots: list[torch.Tensor] = []  # worker: flat uint8 shared segments, flag at [nbytes]
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # memory and the lock stay in their process (a spawned DataLoader worker starts empty)
        return {"keep": self.keep, "keep_shared": self.keep_shared}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, shared: bool | None = None) -> torch.Tensor:
        """A view of ``shape``/``dtype`` to fill (contents undefined); shared memory in a DataLoader worker."""
        if shared or (shared is None and get_worker_info() is not None):
            return self._take_shared(shape, dtype)
        with self._lock:  # two threads never get the same memory: the view counts as a user at once
            for t in self._tensors:
                if t.dtype == dtype and t.shape == shape and _users(t) == _ALONE and not _is_shared(t):
                    return t.view(shape)
            t = torch.empty(shape, dtype=dtype)
            if _ALONE > 0 and _users(t) == _ALONE:
                self._tensors.append(t)
                if len(self._tensors) > self.keep:
                    self._tensors.pop(0)
            return t.view(shape)

    def _take_shared(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        n = math.prod(shape) * dtype.itemsize
        if not _leases_on() or n == 0:
            return shared_empty(shape, dtype)
        for slot in self._slots:
            if slot.numel() == n + _TAIL and int(slot[n]) == 0 and _users(slot) == _ALONE:
                break
        else:
            slot = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(n + _TAIL))
            if len(self._slots) < self.keep_shared:
                self._slots.append(slot)
        slot[n] = 1
        return slot[:n].view(dtype).view(shape)

    def hand_over(self, batch: dict[str, Any], key: str, out: torch.Tensor) -> dict[str, Any]:
        """``batch`` ready to leave a worker: leased when ``batch[key]`` lies in ``out``'s pooled segment.

        ``out`` is what :meth:`take` returned for this batch; when the batch does not carry it
        (rows were dropped or resized into new memory), its segment is freed here.
        """
        n = out.numel() * out.element_size()
        slot = next((s for s in self._slots if s.data_ptr() == out.data_ptr()), None)
        if slot is None:
            return batch
        sent = batch.get(key)
        if isinstance(sent, torch.Tensor) and sent.untyped_storage().data_ptr() == slot.data_ptr():
            return LeasedBatch(batch, [(key, n)])
        slot[n] = 0
        return batch

    def give_back(self, out: torch.Tensor) -> None:
        """Free ``out``'s segment (a batch that failed and was never handed out)."""
        for slot in self._slots:
            if slot.data_ptr() == out.data_ptr():
                slot[out.numel() * out.element_size()] = 0


def _leases_on() -> bool:
    """Worker segments are leased only with file-descriptor sharing (the main process marks them
    free through a duplicate of the descriptor it received)."""
    return os.name == "posix" and torch.multiprocessing.get_sharing_strategy() == "file_descriptor"


def _is_shared(t: torch.Tensor) -> bool:
    return bool(t.untyped_storage().is_shared())


class LeasedBatch(dict):  # type: ignore[type-arg]
    """A worker's batch dict whose pooled tensors go back to the worker when the main process drops them."""

    def __init__(self, batch: dict[str, Any], leases: list[tuple[str, int]]):
        super().__init__(batch)
        self.leases = leases
        """``(key, byte offset of the in-use flag)`` of each pooled tensor."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_leased, (dict(self), self.leases))


def _rebuild_leased(batch: dict[str, Any], leases: list[tuple[str, int]]) -> dict[str, Any]:
    """Unpickling in the main process: a plain dict, each leased storage freed in the worker when it dies."""
    for key, flag in leases:
        storage = batch[key].untyped_storage()
        if not _leases_on():
            continue  # the segment stays in use; the worker allocates afresh
        try:
            where = _map_flag(storage._share_fd_cpu_()[0], flag)
        except (OSError, RuntimeError):
            continue
        weakref.finalize(storage, _release, *where)
    return batch


_libc = ctypes.CDLL(None, use_errno=True) if os.name == "posix" else None
if _libc is not None:
    _libc.mmap.restype = ctypes.c_void_p
    _libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    _libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _map_flag(fd: int, flag: int) -> tuple[int, int]:
    """Map the page of a segment that holds its in-use flag: ``(address, flag's offset in it)``.

    A mapping, unlike a duplicate descriptor, costs no file descriptor while the batch is held.
    """
    if _libc is None:
        raise OSError("no libc")
    page = flag - flag % mmap.PAGESIZE
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    addr = _libc.mmap(None, mmap.PAGESIZE, prot, mmap.MAP_SHARED, fd, page)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), "mmap of a batch segment failed")
    return int(addr), flag - page


def _release(addr: int, delta: int) -> None:
    """Mark a worker's segment free (its last user in this process is gone) and unmap the flag page."""
    ctypes.memset(addr + delta, 0, 1)
    if _libc is not None:
        _libc.munmap(addr, mmap.PAGESIZE)
