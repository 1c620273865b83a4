"""``Precision``: the value object behind the one switch.

Built from any spelling (string, parsed argparse args, environment), bound to a device, it
hands out every context and conversion a training loop needs: ``autocast()``, ``scope()``
(global flags, restored on exit), ``prepare(model)``, ``inference()``, ``make_scaler()`` and
``describe()`` — the one log line that proves what is on. The conversions behind
``prepare`` and the rest (``compile``, ``convert``, ``cast_inputs``, ``custom_fwd`` /
``custom_bwd``) are in :mod:`.conversions`, a base class of ``Precision``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..hardware.capabilities import DeviceCaps, device_capabilities
from ..script_log import record_precision
from ..warn import warn
from .aliases import PrecisionError, canonical_mode
from .conversions import PrecisionConversions
from .device import usable_device
from .env_mode import from_env, study_conflict, study_mode
from .fit import check_fit
from .fp8 import count_fp8
from .keep_fp32 import ModuleFilter
from .keep_report import unmatched_message
from .modes import INITIAL_LOSS_SCALE, MODES, ModeSpec, dtype_name
from .qat import describe_quant
from .resolve import request_from_args, resolve
from .tensors import floating_dtypes

log = logging.getLogger("ampkit")


class PrecisionWarning(UserWarning):
    """A precision that runs, but not the way its name promises (slow, emulated, or a no-op)."""


class Precision(PrecisionConversions):
    """One precision mode bound to one device.

    >>> prec = Precision("bf16-mixed", device="cpu")
    >>> prec.describe()
    'ampkit: precision=bf16-mixed autocast=cpu/bfloat16 grad_scaler=off tf32=off params=float32'
    """

    def __init__(
        self,
        mode: str = "fp32",
        device: torch.device | str = "cpu",
        *,
        keep_fp32: str | Iterable[str] | ModuleFilter | None = None,
        caps: DeviceCaps | None = None,
        fp8_emulate: bool = False,
        compile: bool | Mapping[str, Any] = False,
    ):
        self.spec: ModeSpec = MODES[canonical_mode(mode)]
        self.device = usable_device(device, check=caps is None)  # one line, not torch's traceback
        self.keep_fp32 = keep_fp32 if isinstance(keep_fp32, ModuleFilter) else ModuleFilter.parse(keep_fp32)
        self.caps = caps or device_capabilities(self.device)
        #: fp8 modes: run the fp8 casts and scales with fp32 matmuls (any device) instead of fp8 kernels.
        self.fp8_emulate = fp8_emulate
        #: ``prepare`` ends with :meth:`compile` (True: torch.compile's defaults; a mapping: its kwargs).
        self.compile_kwargs: dict[str, Any] | None = (
            dict(compile) if isinstance(compile, Mapping) else ({} if compile else None)
        )
        #: Fit warnings for this device, also emitted as :class:`PrecisionWarning`.
        self.warnings: list[str] = check_fit(self.spec, self.caps, fp8_emulate=fp8_emulate)
        for message in self.warnings:
            warn(message, PrecisionWarning)  # attributed to the user's line, not ampkit's
        record_precision(self)  # inside a study arm: the proof line in $AMPKIT_LOG_FILE

    # -- construction from the other spellings -------------------------------------------------
    @classmethod
    def from_args(
        cls, args: argparse.Namespace, device: torch.device | str | None = None, **kw: Any
    ) -> Precision:
        """From a parsed namespace: ampkit's flags (:func:`add_precision_args`) and a script's own
        ``--mixed_precision`` / ``--amp_dtype``, read as the script means them (no switch: fp32).

        Without precision flags, a study arm's ``AMPKIT_PRECISION`` decides, then ``USE_AMP``. Flags
        that contradict ``AMPKIT_PRECISION`` win, with a :class:`PrecisionWarning` (the study flags
        the arm from its precision line)."""
        caps = kw.pop("caps", None)
        dev = usable_device(
            device or getattr(args, "device", None) or "cpu",
            source="device" if device else "--device",
            check=caps is None,
        )
        caps = caps or device_capabilities(dev)
        keep = kw.pop("keep_fp32", None) or getattr(args, "keep_fp32", None)
        mode = resolve(
            request_from_args(args), device_type=caps.device_type, bf16_in_hardware=caps.bf16_in_hardware
        )
        conflict = study_conflict(mode)
        if conflict:
            warn(conflict, PrecisionWarning)
        kw.setdefault("fp8_emulate", bool(getattr(args, "fp8_emulate", False)))
        return cls(mode, dev, keep_fp32=keep, caps=caps, **kw)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, device: torch.device | str = "cpu", **kw: Any
    ) -> Precision:
        """From a study arm's ``AMPKIT_PRECISION`` (any spelling), else ``USE_AMP=1`` /
        ``AMP_DTYPE=fp16|bf16``; fp32 when neither is set."""
        caps = kw.pop("caps", None) or device_capabilities(usable_device(device))
        mode = (
            study_mode(environ)
            or from_env(environ, device_type=caps.device_type, bf16_in_hardware=caps.bf16_in_hardware)
            or "fp32"
        )
        return cls(mode, device, caps=caps, **kw)

    # -- identity -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Canonical mode name."""
        return self.spec.name

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, device={str(self.device)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Precision) and (self.name, self.device) == (other.name, other.device)

    def __hash__(self) -> int:
        return hash((self.name, self.device))

    # -- contexts ---------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast for mixed modes; a no-op context for the others."""
        if self.spec.autocast_dtype is None:
            return contextlib.nullcontext()
        if torch.compiler.is_compiling():  # traced by torch.compile: checked when it ran eagerly
            return torch.autocast(self.device.type, dtype=self.spec.autocast_dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx = torch.autocast(self.device.type, dtype=self.spec.autocast_dtype)
        if not getattr(ctx, "_enabled", True):
            # torch disables autocast with only a warning: the run would silently be fp32.
            raise PrecisionError(
                f"{self.name}: autocast to {dtype_name(self.spec.autocast_dtype)} is not supported on "
                f"{self.device.type} in torch {torch.__version__}; it would silently run fp32: use fp32"
            )
        return ctx

    @contextlib.contextmanager
    def scope(self) -> Iterator[Precision]:
        """Set the global flags this mode needs (TF32 for matmul and cuDNN; fp64: float64 as the
        default dtype) and restore them on exit, always.

        True-half modes leave the default dtype alone: tensors the loop creates (counters,
        targets, accumulators) stay float32. Tensors a prepared module's forward creates match its
        bf16/fp16 weights anyway: :meth:`prepare` sets the default dtype for that forward only."""
        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        saved = (
            matmul.allow_tf32,
            cudnn.allow_tf32,
            torch.get_float32_matmul_precision(),
            torch.get_default_dtype(),
        )
        try:
            matmul.allow_tf32 = cudnn.allow_tf32 = self.spec.tf32
            torch.set_float32_matmul_precision("high" if self.spec.tf32 else "highest")
            if self.spec.param_dtype == torch.float64:
                torch.set_default_dtype(torch.float64)
            yield self
        finally:
            matmul.allow_tf32, cudnn.allow_tf32 = saved[0], saved[1]
            torch.set_float32_matmul_precision(saved[2])
            torch.set_default_dtype(saved[3])

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Evaluation/prediction under this precision: :meth:`scope`, :meth:`autocast` and
        ``torch.no_grad()`` (not ``inference_mode``: its outputs can feed a loss, e.g. a
        teacher's in distillation, the same way in every mode); no scaler."""
        with self.scope(), torch.no_grad(), self.autocast():
            yield

    # -- conversions ----------------------------------------------------------------------------
    def prepare(self, model: Any) -> Any:
        """Move ``model`` to the device and dtype of this mode, installing fp32 islands.

        ``model`` is an ``nn.Module``, an iterable of parameters/tensors, or a mapping
        name -> parameter/tensor (``vars(gaussians)``; other values are left alone). True-half
        modes convert parameters to bf16/fp16 but keep normalisation layers and the ``keep_fp32``
        selection in fp32 (for a mapping, ``re:`` items search the keys and plain items equal
        them); mixed modes keep fp32 weights and run the ``keep_fp32`` modules with autocast off.
        Tensors are cast in place (``t.data``, ``t.grad`` too), so optimizers holding them still
        do; complex ones keep their imaginary part (complex128 under fp64, unchanged under
        bf16/fp16). Under fp64 and true-half modes a module's forward runs with the parameter
        dtype as torch's default dtype (only its forward: the caller's tensors stay float32).
        fp8 modes swap ``nn.Linear`` layers outside ``keep_fp32`` for
        :class:`~ampkit.precision.fp8.Float8Linear` (same parameters). Returns the same object,
        modified in place — except int8-qat, which returns a traced, fake-quantised copy of a
        module sharing the parameters (use the returned module). Anything else: :class:`UsageError`.
        Built with ``compile=``, a module is then compiled in place (:meth:`compile`).
        """
        if self.keep_fp32 and (self.spec.is_true_low or self.spec.is_mixed or self.spec.quantization):
            message = unmatched_message(self.name, self.keep_fp32, model)
            if message:  # a typo or a parameter name: the run must not believe it keeps something
                warn(message, PrecisionWarning)
        return self._prepare(model)

    def make_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler for this mode; disabled (a no-op with the same API) when no scaling is needed."""
        return torch.amp.GradScaler(
            self.device.type, init_scale=INITIAL_LOSS_SCALE, enabled=self.spec.grad_scaler
        )

    # -- proof ----------------------------------------------------------------------------------
    def describe(self, model: Any = None) -> str:
        """The one line that states the resolved precision (the engine logs exactly this at start);
        ``model`` (anything :meth:`prepare` takes) adds the dtypes its parameters really have."""
        autocast = (
            f"{self.device.type}/{dtype_name(self.spec.autocast_dtype)}"
            if self.spec.autocast_dtype
            else "off"
        )
        scaler = f"on(init={INITIAL_LOSS_SCALE:g})" if self.spec.grad_scaler else "off"
        params = dtype_name(self.spec.param_dtype)
        module = model if isinstance(model, nn.Module) else None
        if model is not None:
            seen = sorted({dtype_name(dtype) for dtype in floating_dtypes(model)})
            params = "+".join(seen) if seen else params
        line = (
            f"ampkit: precision={self.name} autocast={autocast} grad_scaler={scaler} "
            f"tf32={'on' if self.spec.tf32 else 'off'} params={params}"
        )
        if self.spec.fp8:
            layers = f"{count_fp8(module)} Linear" if module is not None else "Linear"
            line += f" fp8={layers}{' emulated' if self.fp8_emulate else ''}"
        if self.spec.quantization:
            line += f" quant={describe_quant(module)}"
        if self.keep_fp32:
            line += f" keep_fp32={self.keep_fp32.spec()}"
        return line
