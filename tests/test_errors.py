"""``ampkit.errors.out_of_memory``: which failures are allocation failures, and the line it gives."""

from __future__ import annotations

import pytest
import torch

from ampkit.errors import UsageError, out_of_memory

CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
    "tried to allocate 800000000000 bytes. Error code 12 (Cannot allocate memory)"
)
CUDA_OOM = "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.10 GiB"


@pytest.mark.parametrize(
    ("err", "line"),
    [
        (RuntimeError(CPU_OOM), "out of memory (tried to allocate 800.0 GB)"),
        (torch.OutOfMemoryError(CUDA_OOM), "out of memory (tried to allocate 20.00 GiB)"),
        (MemoryError(), "out of memory"),
        (MemoryError("Unable to allocate 3.2 GiB for an array"), "out of memory"),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"), None),
        (UsageError("--batch-size 0: must be >= 1"), None),
        (ValueError("memory format not supported"), None),
    ],
)
def test_out_of_memory_names_allocation_failures_only(err: BaseException, line: str | None) -> None:
    assert out_of_memory(err) == line


def test_a_real_cpu_allocation_failure_is_recognised() -> None:
    with pytest.raises(RuntimeError) as caught:
        torch.empty(1 << 62, dtype=torch.uint8)
    assert (out_of_memory(caught.value) or "").startswith("out of memory")
