"""Per-memory-size advice for GPUs, in the spirit of the seeds' per-GPU tables (T4 16 GB, 3080 10 GB...).

The seeds gave one flag line per named GPU. Here the advice follows from the device's memory
and the recommended mode, with the arithmetic shown: AdamW training keeps weights, gradients
and two moments per parameter, 16 bytes/parameter with fp32 master weights (fp32, tf32 and
the mixed modes) and 8 bytes/parameter in bf16-true. Activations come on top; autocast
stores most of them in 16 bits, so they take roughly half the fp32 size.
"""

from __future__ import annotations

from dataclasses import dataclass

from .recommend import BYTES_PER_PARAM_MIXED, BYTES_PER_PARAM_TRUE

GIB = 1024**3

#: (upper bound in GiB, tier name, what to do in that tier); the first tier that fits applies.
TIERS: tuple[tuple[float, str, str], ...] = (
    (
        12,
        "small (<= 12 GiB, e.g. RTX 3080 10 GB)",
        "use {mode}; keep the per-step batch small and reach the batch you want with --accumulate",
    ),
    (
        24,
        "medium (<= 24 GiB, e.g. T4 16 GB, RTX 4090 24 GB)",
        "use {mode}; 16-bit activations take about half their fp32 memory, so try a larger batch than fp32 allowed",
    ),
    (
        48,
        "large (<= 48 GiB, e.g. A6000, L40S)",
        "use {mode}; memory limits the batch more often than the model",
    ),
    (
        float("inf"),
        "very large (> 48 GiB, e.g. A100/H100 80 GB, H200)",
        "use {mode}; for models near the parameter limit consider bf16-true or sharding (FSDP)",
    ),
)


@dataclass(frozen=True)
class MemoryAdvice:
    """What fits on a GPU of a given memory size and how to use it."""

    memory_gib: float
    """Device memory in GiB."""
    tier: str
    """The size class it falls in."""
    advice: str
    """One sentence, with the recommended mode filled in."""
    max_params_mixed: float
    """Parameters whose weights + grads + AdamW state fill the memory at 16 bytes/parameter."""
    max_params_true: float
    """The same at 8 bytes/parameter (bf16-true), before activations."""

    def line(self) -> str:
        """The advice as one printable line."""
        return (
            f"{self.memory_gib:.0f} GiB, {self.tier}: {self.advice}. Weights+grads+AdamW alone cap the model "
            f"at ~{self.max_params_mixed / 1e9:.1f}B parameters with fp32 master weights "
            f"({BYTES_PER_PARAM_MIXED} B/param), ~{self.max_params_true / 1e9:.1f}B in bf16-true "
            f"({BYTES_PER_PARAM_TRUE} B/param), before activations"
        )


def memory_advice(total_memory_bytes: int | None, mode: str) -> MemoryAdvice | None:
    """Advice for a GPU with ``total_memory_bytes`` training in ``mode``; ``None`` when unknown."""
    if not total_memory_bytes:
        return None
    gib = total_memory_bytes / GIB
    _, tier, text = next(t for t in TIERS if gib <= t[0])
    return MemoryAdvice(
        gib,
        tier,
        text.format(mode=mode),
        total_memory_bytes / BYTES_PER_PARAM_MIXED,
        total_memory_bytes / BYTES_PER_PARAM_TRUE,
    )
