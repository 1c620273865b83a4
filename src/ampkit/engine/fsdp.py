"""FSDP2 sharding under a precision: which policy each mode gets, and which modules stay fp32.

:func:`shard_fsdp` is what :meth:`~.distributed.DistContext.prepare` calls for ``--strategy
fsdp``: the ``keep_fp32`` selection and the normalisation layers (:func:`fp32_modules`) are
``fully_shard``-ed on their own with an fp32 policy, then the root with the mode's policy
(:func:`fsdp_policy`: mixed modes gather parameters in the autocast dtype and reduce in fp32).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..precision import NORM_TYPES, ModeSpec, Precision


def fsdp_policy(spec: ModeSpec) -> Any:
    """FSDP2 policy for a mode: mixed modes gather parameters in the autocast dtype and reduce in fp32;
    the others keep parameters (and gradient reduction) in the mode's parameter dtype."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if spec.is_mixed:
        return MixedPrecisionPolicy(param_dtype=spec.autocast_dtype, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def fp32_modules(model: nn.Module, precision: Precision) -> list[nn.Module]:
    """Modules FSDP2 shards on their own with an fp32 policy: the ``keep_fp32`` selection, and
    normalisation layers (kept fp32 by true-half modes; under mixed modes autocast leaves them fp32)."""
    if not (precision.spec.is_mixed or precision.spec.is_true_low):
        return []
    chosen = [name for name, _ in precision.keep_fp32.select(model)]
    for name, module in model.named_modules():
        inside = any(name == c or name.startswith(c + ".") for c in chosen)
        if isinstance(module, NORM_TYPES) and not inside:
            chosen.append(name)
    modules = dict(model.named_modules())
    return [modules[n] for n in chosen if n and any(True for _ in modules[n].parameters())]


def shard_fsdp(model: nn.Module, precision: Precision, world_size: int) -> nn.Module:
    """``fully_shard`` the fp32 modules with an fp32 policy, then the root with the mode's policy."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(precision.device.type, (world_size,))
    # Inputs are left as they come: fp32 islands cast them, and BatchNorm takes the half input
    # and hands back the same dtype, exactly as in a single-process run under autocast.
    fp32 = MixedPrecisionPolicy(
        param_dtype=torch.float32, reduce_dtype=torch.float32, cast_forward_inputs=False
    )
    for module in fp32_modules(model, precision):
        fully_shard(module, mesh=mesh, mp_policy=fp32)
    fully_shard(model, mesh=mesh, mp_policy=fsdp_policy(precision.spec))
    return model
