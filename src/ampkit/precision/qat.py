"""int8-qat: quantisation-aware training with torch.ao's FX graph mode, and conversion to int8 kernels.

:func:`prepare_qat` traces the model with ``torch.fx`` and inserts fake-quantise modules
(x86 backend: per-channel symmetric int8 weights, per-tensor affine uint8 activations), so
training sees the rounding and clamping int8 inference will do while gradients flow through
the straight-through estimator into fp32 weights. Conv-BatchNorm(-ReLU) and Linear-ReLU are
fused first, so BatchNorm is folded into the conv weights during training and at conversion.
:func:`convert_int8` turns the trained model into real int8 kernels (fbgemm/oneDNN, CPU only).

Not quantised: ``nn.Embedding`` (it needs float qparams), ops with no quantised kernel
(they run in float between dequantise/quantise pairs), and the ``keep_fp32`` selection (whose
modules are also left untraced, a way around ``torch.fx`` tracing errors).

torch.ao.quantization is deprecated in favour of torchao but is what ships with torch; its
deprecation warnings are silenced here, once per call.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from .aliases import PrecisionError
from .keep_fp32 import ModuleFilter

#: The torch.ao backend whose qconfig and int8 kernels are used (the x86 CPU one).
BACKEND = "x86"

_NOISE = (
    ".*torch.ao.quantization is deprecated.*",
    ".*reduce_range will be deprecated.*",
    ".*quantized tensor creation functions.*",
    ".*must run observer before calling calculate_qparams.*",
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for pattern in _NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def is_qat(model: nn.Module) -> bool:
    """True when ``model`` holds fake-quantise modules (prepared by :func:`prepare_qat`)."""
    from torch.ao.quantization import FakeQuantizeBase

    return any(isinstance(m, FakeQuantizeBase) for m in model.modules())


def is_int8(model: nn.Module) -> bool:
    """True when ``model`` runs real quantised kernels (converted by :func:`convert_int8`)."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def prepare_qat(model: nn.Module, keep: ModuleFilter) -> nn.Module:
    """A traced copy of ``model`` with fused modules and fake quantisation; shares its parameters.

    Raises :class:`PrecisionError` when ``torch.fx`` cannot trace the model.
    """
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    kept = [name for name, _ in keep.select(model)]
    mapping = get_default_qat_qconfig_mapping(BACKEND)
    for embedding in (nn.Embedding, nn.EmbeddingBag):
        mapping.set_object_type(embedding, None)
    for name in kept:
        mapping.set_module_name(name, None)
    custom = PrepareCustomConfig().set_non_traceable_module_names(kept)
    modes = {name: module.training for name, module in model.named_modules()}
    try:
        with _quiet():
            # QAT fusion wants train mode; example_inputs only feed standalone modules (unused here).
            prepared = prepare_qat_fx(model.train(), mapping, example_inputs=(), prepare_custom_config=custom)
    except Exception as err:  # torch.fx raises many types (TraceError, TypeError, ...) for untraceable code
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrecisionError(
            f"int8-qat: torch.fx cannot trace {type(model).__name__} ({first}); keep the untraceable "
            "submodule out of quantisation with --keep-fp32 're:^its\\.name$', or use another mode"
        ) from err
    finally:
        _restore_modes(model, modes)  # the caller's model as it was: a frozen eval() backbone stays eval
    with torch.no_grad(), _quiet():
        # Per-channel weight observers start as empty tensors and take their shape at the first
        # forward; observing the initial weights now gives every buffer its final shape up front
        # (state_dict copies and restores then work before the first step, as for other modes).
        for module in prepared.modules():
            observe, weight = getattr(module, "weight_fake_quant", None), getattr(module, "weight", None)
            if isinstance(observe, nn.Module) and isinstance(weight, torch.Tensor):
                observe(weight.detach())
    _restore_modes(prepared, modes)
    return prepared


def _restore_modes(model: nn.Module, modes: dict[str, bool]) -> None:
    """Each submodule's ``training`` flag from ``modes`` (name -> flag, recorded before tracing), one
    module at a time (``train()`` would recurse). A module the tracing added or fused (fake-quant,
    observers, the BatchNorm inside a fused ConvBn) takes the flag of its nearest recorded ancestor."""
    for name, module in model.named_modules():
        path = name
        while path not in modes and path:
            path = path.rpartition(".")[0]
        module.training = modes.get(path, modes.get("", True))


def convert_int8(model: nn.Module) -> nn.Module:
    """A converted copy of a QAT model with int8 weights and activations and CPU int8 kernels.

    The original keeps training. Raises :class:`PrecisionError` off the CPU or for a model
    that :func:`prepare_qat` did not prepare.
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    if not is_qat(model):
        raise PrecisionError("int8 conversion needs a model prepared for int8-qat (precision.prepare)")
    devices = {t.device.type for t in (*model.parameters(), *model.buffers())}
    if devices - {"cpu"}:
        raise PrecisionError(
            f"int8-qat: torch's int8 kernels run on the CPU only, the model is on {sorted(devices)}; "
            "evaluate with --device cpu"
        )
    with _quiet():
        return convert_fx(copy.deepcopy(model).eval())  # type: ignore[arg-type]


def describe_quant(model: nn.Module | None) -> str:
    """``"int8/fake-quant"`` while training, ``"int8/kernels"`` after conversion (for ``describe``)."""
    if model is not None and is_int8(model):
        return f"int8/kernels({BACKEND})"
    return f"int8/fake-quant({BACKEND})"
