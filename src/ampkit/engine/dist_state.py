"""Checkpoint state of a multi-process run, in the single-process format.

Every rank calls these (FSDP2 gathers are collectives); rank 0 alone writes the file. The model
state is always the plain module's ``state_dict`` (no ``module.`` prefix) and the optimizer
state is ``optimizer.state_dict()``'s index-keyed layout, FSDP2's sharded state gathered to full
tensors with ``torch.distributed.checkpoint.state_dict``. So one checkpoint resumes on 1 rank,
under DDP or under FSDP2, at any world size. The GradScaler state is rank-identical (FSDP2's
inf check is all-reduced), so rank 0's copy is the run's. RNG states are kept per rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.distributed as dist
from torch import nn

from ..optim import PrecisionOptimizer
from .checkpoint import capture_rng, restore_rng
from .distributed import unwrap

if TYPE_CHECKING:
    from .distributed import DistContext


def _fqns(model: nn.Module, optimizer: PrecisionOptimizer) -> list[str]:
    """Qualified names of the optimizer's parameters, in its index order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.optimizer.param_groups for p in group["params"]]


def _by_index(full: dict[str, Any], fqns: list[str]) -> dict[str, Any]:
    """FQN-keyed optimizer state (``get_optimizer_state_dict``) -> ``Optimizer.state_dict()`` layout."""
    index = {name: i for i, name in enumerate(fqns)}
    state = {index[name]: value for name, value in full.get("state", {}).items()}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in full.get("param_groups", [])]
    return {"state": state, "param_groups": groups}


def _by_fqn(plain: dict[str, Any], fqns: list[str]) -> dict[str, Any]:
    """Inverse of :func:`_by_index`."""
    state = {fqns[int(i)]: value for i, value in plain["state"].items()}
    groups = [{**g, "params": [fqns[i] for i in g["params"]]} for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def state_dicts(
    ctx: DistContext, model: nn.Module, optimizer: PrecisionOptimizer
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model state, PrecisionOptimizer state)`` in the single-process layout (complete on rank 0)."""
    opt_state = optimizer.state_dict()
    if not (ctx.active and ctx.strategy == "fsdp"):
        return unwrap(model).state_dict(), opt_state
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    full = get_optimizer_state_dict(model, optimizer.optimizer, options=options)
    opt_state["optimizer"] = _by_index(full, _fqns(model, optimizer)) if ctx.is_main else {}
    return model_state, opt_state


def load_state_dicts(
    ctx: DistContext,
    model: nn.Module,
    optimizer: PrecisionOptimizer,
    model_state: dict[str, Any],
    opt_state: dict[str, Any],
) -> None:
    """Inverse of :func:`state_dicts`; every rank passes the full state it read from the checkpoint."""
    if not (ctx.active and ctx.strategy == "fsdp"):
        unwrap(model).load_state_dict(model_state)
        optimizer.load_state_dict(opt_state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    # scaler, scheduler and counters through the wrapper; the sharded AdamW state through DCP
    optimizer.load_state_dict({**opt_state, "optimizer": optimizer.optimizer.state_dict()})
    full = _by_fqn(opt_state["optimizer"], _fqns(model, optimizer))
    set_optimizer_state_dict(model, optimizer.optimizer, full, options=options)


def gather_rng(ctx: DistContext) -> list[dict[str, Any]] | None:
    """Every rank's RNG state, in rank order (``None`` for a single process)."""
    if not ctx.active:
        return None
    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, capture_rng())
    return states


def restore_rank_rng(ctx: DistContext, checkpoint: dict[str, Any]) -> None:
    """Restore this rank's RNG state from ``checkpoint`` (rank 0's when the world size changed)."""
    per_rank = checkpoint.get("rng_ranks")
    if ctx.active and per_rank and len(per_rank) == ctx.world_size:
        restore_rng(per_rank[ctx.rank])
    else:
        restore_rng(checkpoint["rng"])
