"""Multi-process training: the process group, this rank's view of it, and model wrapping.

A run holds one :class:`DistContext`. A single-process run gets the inert default (rank 0 of
1), whose methods hand their arguments back untouched, so the loop runs the same lines
either way and single-process runs stay bit-identical. Under a launcher (``ampkit train
--nproc N``, ``torchrun -m ampkit train``) :func:`session` joins the process group named by
the environment (gloo on CPU, nccl on GPU) with a bounded timeout, and each rank trains on
its slice of the same deterministic global micro-batch: N ranks x B/N == 1 rank x B.
FSDP2 sharding (``--strategy fsdp``) and its precision policies are in :mod:`.fsdp`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils._pytree import tree_map

from ..errors import UsageError
from ..optim import PrecisionOptimizer
from ..precision import Precision
from .fsdp import fp32_modules as fp32_modules
from .fsdp import fsdp_policy as fsdp_policy
from .fsdp import shard_fsdp
from .sync_norm import convert_batch_norms

log = logging.getLogger("ampkit")

#: ``--strategy`` choices: DistributedDataParallel, or FSDP2's ``fully_shard``.
STRATEGIES = ("ddp", "fsdp")
#: Process-group backend per device type; every other device type uses gloo.
BACKENDS = {"cuda": "nccl"}
#: Seconds a collective may wait for a peer before the process group gives up.
DEFAULT_TIMEOUT_S = 120.0
#: Environment variable overriding :data:`DEFAULT_TIMEOUT_S`.
TIMEOUT_ENV = "AMPKIT_DIST_TIMEOUT"


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank ``rank`` of ``world_size``, wrapping by ``strategy``."""

    rank: int = 0
    """Global rank (0 logs, writes metrics and checkpoints)."""
    world_size: int = 1
    """Number of processes; 1 means no process group and no wrapping."""
    local_rank: int = 0
    """Rank on this machine (picks the GPU)."""
    strategy: str = "ddp"
    """``"ddp"`` or ``"fsdp"``."""

    @property
    def active(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    def device(self, device: str | torch.device) -> torch.device:
        """``device`` for this rank: an accelerator without an index becomes ``<type>:<local_rank>``."""
        dev = torch.device(device)
        if self.active and dev.type != "cpu" and dev.index is None:
            return torch.device(dev.type, self.local_rank)
        return dev

    # -- data -------------------------------------------------------------------------------------
    def local_batch(self, batch: Any) -> Any:
        """This rank's contiguous slice (along dim 0) of every tensor in the global micro-batch."""
        if not self.active:
            return batch
        return tree_map(self._slice, batch)

    def _slice(self, x: Any) -> Any:
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            return x
        if x.shape[0] % self.world_size:
            raise UsageError(
                f"a micro-batch of {x.shape[0]} samples cannot be split over {self.world_size} processes; "
                f"use a --batch-size divisible by {self.world_size}"
            )
        per = x.shape[0] // self.world_size
        return x[self.rank * per : (self.rank + 1) * per]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average of ``value`` over the ranks (the logged loss covers the whole global batch)."""
        if not self.active:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def sync_context(
        self, model: nn.Module, optimizer: PrecisionOptimizer, last: bool
    ) -> contextlib.AbstractContextManager[Any]:
        """Skip the gradient reduction on every micro-batch but the ``last`` one of a step.

        DDP: the optimizer's ``no_sync`` context. FSDP2: ``set_requires_gradient_sync``.
        """
        if self.active and self.strategy == "fsdp":
            model.set_requires_gradient_sync(last)  # type: ignore[operator]
            return contextlib.nullcontext()
        return optimizer.sync_context()

    # -- model ------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, precision: Precision) -> nn.Module:
        """``precision.prepare(model)``, plus (multi-process) global BatchNorm and the strategy's wrapper."""
        if not self.active:
            return precision.prepare(model)
        model = precision.prepare(convert_batch_norms(model))
        if self.strategy == "fsdp":
            return shard_fsdp(model, precision, self.world_size)
        return nn.parallel.DistributedDataParallel(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 shards in place: the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _env_int(env: Any, name: str, default: int, low: int, valid: str) -> int:
    text = str(env.get(name, "")).strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise UsageError(f"{name}={text!r}: not a whole number >= {low}; valid: {valid}")
    return value


def world_from_env(environ: Any = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's variables; ``(0, 1, 0)`` when absent.

    Garbage (``RANK=abc``, ``WORLD_SIZE=0``, ``LOCAL_RANK=-1``, a rank outside the world) is a
    :class:`UsageError` naming the variable: these are set by a launcher, or by hand by mistake.
    """
    env = os.environ if environ is None else environ
    launcher = "set by torchrun or ampkit's launcher (unset them for a single-process run)"
    world = _env_int(env, "WORLD_SIZE", 1, 1, f"the number of processes, >= 1, {launcher}")
    rank = _env_int(env, "RANK", 0, 0, f"0..WORLD_SIZE-1, {launcher}")
    local_rank = _env_int(env, "LOCAL_RANK", 0, 0, f"a whole number >= 0, {launcher}")
    if rank >= world:
        raise UsageError(f"RANK={rank} with WORLD_SIZE={world}; valid: RANK in 0..{world - 1}, {launcher}")
    return rank, world, local_rank


def timeout_s() -> float:
    """Process-group timeout: ``$AMPKIT_DIST_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= 1e7:
        raise UsageError(
            f"{TIMEOUT_ENV}={text!r}: not a number of seconds in (0, 1e7]; valid: e.g. 600 "
            f"(unset: {DEFAULT_TIMEOUT_S:g})"
        )
    return value


def check_split(nproc: int, strategy: str, batch_size: int) -> None:
    """Raise :class:`UsageError` unless ``nproc`` processes can share ``batch_size`` under ``strategy``."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if nproc < 1 or batch_size % nproc:
        raise UsageError(
            f"--nproc {nproc} with --batch-size {batch_size}: the global micro-batch is split evenly "
            "over the processes; use nproc >= 1 that divides the batch size"
        )


def check_devices(nproc: int, device: str) -> None:
    """Raise :class:`UsageError` when an accelerator run asks for more processes than devices."""
    dev = torch.device(device)
    if dev.type == "cpu" or dev.index is not None or nproc <= 1:
        return
    count = torch.accelerator.device_count()
    if nproc > count:
        raise UsageError(f"--nproc {nproc} on {dev.type}: {count} device(s) visible; one process per device")


@contextlib.contextmanager
def session(nproc: int, strategy: str, device: str) -> Iterator[DistContext]:
    """Join the process group the environment names (and leave it on exit); yields this rank's view.

    Without a launcher's environment the run is single-process (``nproc`` must then be 1). Ranks
    other than 0 log only warnings, so each line appears once.
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    rank, world, local_rank = world_from_env()
    if world <= 1:
        if nproc > 1:
            raise UsageError(
                f"nproc={nproc} needs a launcher: use `ampkit train --nproc {nproc}`, "
                "ampkit.engine.launch.run_distributed(config) or torchrun"
            )
        yield DistContext()
        return
    if nproc not in (1, world):
        raise UsageError(f"--nproc {nproc} but the launcher started {world} processes; give one of them")
    ctx = DistContext(rank, world, local_rank, strategy)
    dev = ctx.device(device)
    if dev.type != "cpu":
        torch.accelerator.set_device_index(dev.index)
    owned = not dist.is_initialized()
    if owned:
        backend = BACKENDS.get(dev.type, "gloo")
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
    level = log.level
    if not ctx.is_main:
        log.setLevel(logging.WARNING)
    finished = False
    try:
        yield ctx
        finished = True
    finally:
        log.setLevel(level)
        if owned:
            # A rank tearing gloo down while a peer still talks to it can abort that peer:
            # wait for every rank first (unless this one failed, then leave at once).
            if finished:
                with contextlib.suppress(Exception):
                    dist.barrier()
            dist.destroy_process_group()
