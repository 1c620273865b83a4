"""``ampkit.keras``: an ampkit precision applied to Keras 3 on the torch backend (no TensorFlow).

::

    import ampkit.keras                      # sets KERAS_BACKEND=torch unless keras is loaded or it is set
    import keras

    with ampkit.keras.precision("bf16-mixed") as kp:   # the global dtype policy, TF32 flags
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64),
                                  keras.layers.LayerNormalization(dtype=kp.norm_dtype),
                                  keras.layers.Dense(10)])
        model.compile(optimizer=kp.wrap_optimizer(keras.optimizers.AdamW()), loss="mse")
        print(kp.describe(model))   # ampkit: precision=bf16-mixed keras_policy=mixed_bfloat16 ...
        model.fit(x, y)
    # the previous global policy and TF32 flags are back

What each mode becomes (:data:`POLICIES`): fp32/tf32 -> ``float32`` with TF32 off/on (the torch
flags of :meth:`ampkit.Precision.scope`), bf16-mixed -> ``mixed_bfloat16``, fp16-mixed ->
``mixed_float16`` plus ``LossScaleOptimizer`` (ampkit's initial scale 2**16, growth every 2000
steps), bf16-true/fp16-true -> ``bfloat16``/``float16``, fp64 -> ``float64``. Normalisation
layers are kept in float32 in every 16-bit mode (ampkit keeps them fp32: autocast's fp32 ops,
true-half's fp32 norms): build them with ``dtype=kp.norm_dtype`` or pass a built Sequential or
functional model through :meth:`KerasPrecision.keep_norms_float32`. fp8-mixed and int8-qat have
no Keras policy: one :class:`~ampkit.precision.PrecisionError` line. See docs/keras.md.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from ..precision import INITIAL_LOSS_SCALE, MODES, PrecisionError, canonical_mode
from ..precision.env_mode import from_env, study_mode

if "keras" not in sys.modules:  # keras reads its backend once, at its first import
    os.environ.setdefault("KERAS_BACKEND", "torch")
try:
    import keras
except ModuleNotFoundError as err:
    if err.name != "keras":
        raise ImportError(
            f"ampkit.keras: importing keras failed: no module {err.name!r} (Keras's backend is "
            f"{os.environ.get('KERAS_BACKEND', 'tensorflow')}; ampkit runs Keras on torch: "
            "KERAS_BACKEND=torch before keras is first imported)"
        ) from None
    raise ImportError(
        "ampkit.keras needs Keras 3: pip install 'ampkit[keras]' (keras>=3.5, run on the torch "
        "backend, no TensorFlow)"
    ) from None

from .keras_model import NORM_LAYERS, keep_norms_float32, model_dtypes, optimizer_scale

log = logging.getLogger("ampkit")

#: ampkit mode -> the Keras dtype policy that runs it.
POLICIES: dict[str, str] = {
    "fp64": "float64",
    "fp32": "float32",
    "tf32": "float32",
    "bf16-mixed": "mixed_bfloat16",
    "fp16-mixed": "mixed_float16",
    "bf16-true": "bfloat16",
    "fp16-true": "float16",
}
#: Loss-scale growth interval: torch's GradScaler default, which ampkit uses (Keras's default too).
GROWTH_STEPS = 2000


def keras_policy(mode: str) -> str:
    """The Keras dtype policy of an ampkit mode (any spelling); :class:`PrecisionError` when none."""
    name = canonical_mode(mode)
    if name not in POLICIES:
        shown = ", ".join(f"{m} ({p})" for m, p in POLICIES.items())
        raise PrecisionError(
            f"{name} has no Keras dtype policy (Keras's quantize() is not ampkit's {name}); "
            f"valid in ampkit.keras: {shown}"
        )
    return POLICIES[name]


def _torch_device() -> str:
    """The device Keras's torch backend puts new variables on."""
    try:
        from keras.src.backend.torch.core import get_device

        return str(get_device())
    except (ImportError, AttributeError):  # pragma: no cover - a Keras without this helper
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


class KerasPrecision:
    """One ampkit mode as Keras state: the global dtype policy, torch's TF32 flags, loss scaling.

    Building one changes nothing; :meth:`apply` (or entering it as a context manager) sets the
    policy and flags, :meth:`restore` (or leaving the context) puts the previous ones back.
    """

    def __init__(self, mode: str | None = None, *, environ: Mapping[str, str] | None = None):
        if keras.config.backend() != "torch":
            raise PrecisionError(
                f"ampkit.keras runs Keras on the torch backend; this keras runs on "
                f"{keras.config.backend()}: set KERAS_BACKEND=torch before keras is first imported"
            )
        self.device = _torch_device()
        if mode is None:  # a study arm's AMPKIT_PRECISION, else USE_AMP/AMP_DTYPE, else fp32
            from ..hardware.capabilities import device_capabilities

            caps = device_capabilities(self.device)
            mode = (
                study_mode(environ)
                or from_env(environ, device_type=caps.device_type, bf16_in_hardware=caps.bf16_in_hardware)
                or "fp32"
            )
        self.policy = keras_policy(mode)
        self.spec = MODES[canonical_mode(mode)]
        self.warnings = self._fit_warnings()
        self._saved: list[tuple[Any, bool, bool, str]] = []

    def _fit_warnings(self) -> list[str]:
        from ..hardware.capabilities import device_capabilities
        from ..precision.fit import check_fit
        from ..precision.policy import PrecisionWarning
        from ..warn import warn

        messages = check_fit(self.spec, device_capabilities(self.device))
        for message in messages:
            warn(message, PrecisionWarning)
        return messages

    # -- what the mode is ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The canonical ampkit mode."""
        return self.spec.name

    @property
    def loss_scale(self) -> bool:
        """Whether this mode scales the loss (fp16-mixed, as ampkit's GradScaler)."""
        return self.spec.grad_scaler

    @property
    def norm_dtype(self) -> str | None:
        """``"float32"`` in every 16-bit mode, else None (the global policy): the ``dtype=`` to build
        normalisation layers (and, if you like, the output layer) with."""
        return "float32" if self.spec.uses_bf16 or self.spec.uses_fp16 else None

    def __repr__(self) -> str:
        return f"KerasPrecision({self.name!r}, policy={self.policy!r})"

    # -- global state --------------------------------------------------------------------------
    def apply(self) -> KerasPrecision:
        """Set the global dtype policy and torch's TF32 flags; :meth:`restore` undoes it."""
        import torch

        from ..script_log import record_precision

        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        self._saved.append(
            (
                keras.config.dtype_policy(),
                matmul.allow_tf32,
                cudnn.allow_tf32,
                torch.get_float32_matmul_precision(),
            )
        )
        keras.config.set_dtype_policy(self.policy)
        matmul.allow_tf32 = cudnn.allow_tf32 = self.spec.tf32
        torch.set_float32_matmul_precision("high" if self.spec.tf32 else "highest")
        log.info(self.describe())
        record_precision(self)  # inside a study arm: the proof line in $AMPKIT_LOG_FILE
        return self

    def restore(self) -> None:
        """Put back the policy and flags that were set before the last :meth:`apply`."""
        import torch

        if not self._saved:
            return
        policy, matmul_tf32, cudnn_tf32, matmul_precision = self._saved.pop()
        keras.config.set_dtype_policy(policy)
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.set_float32_matmul_precision(matmul_precision)

    def __enter__(self) -> KerasPrecision:
        return self.apply()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.restore()

    # -- optimizer and model -------------------------------------------------------------------
    def wrap_optimizer(self, optimizer: Any) -> Any:
        """fp16-mixed: ``optimizer`` in a ``LossScaleOptimizer`` with ampkit's scaling (initial
        2**16, doubling every 2000 finite steps, halving on overflow); other modes, or an optimizer
        already wrapped: ``optimizer`` itself. (Left to ``compile``, Keras wraps a mixed_float16
        model's optimizer with initial scale 2**15.)"""
        lso = keras.optimizers.LossScaleOptimizer
        if not self.loss_scale or isinstance(optimizer, lso):
            return optimizer
        return lso(optimizer, initial_scale=INITIAL_LOSS_SCALE, dynamic_growth_steps=GROWTH_STEPS)

    def keep_norms_float32(self, model: Any) -> Any:
        """``model`` with its normalisation layers in float32 (16-bit modes; otherwise unchanged).

        Layers not yet built get the float32 policy in place. A built Sequential or functional
        model whose norms hold 16-bit variables comes back as a clone with float32 norms and the
        same weights: use the returned model. A built subclassed model cannot be cloned: build
        its norm layers with ``dtype=kp.norm_dtype`` (:class:`PrecisionError` otherwise).
        """
        if self.norm_dtype is None:
            return model
        return keep_norms_float32(model)

    # -- proof ---------------------------------------------------------------------------------
    def describe(self, model: Any = None) -> str:
        """The proof line, as :meth:`ampkit.Precision.describe`; with ``model``, the dtypes its
        layers really compute in and its variables really have, and its compiled optimizer's
        loss scaling."""
        policy = keras.dtype_policies.get(self.policy)
        compute, variables = policy.compute_dtype, policy.variable_dtype
        norms = self.norm_dtype or compute
        scale = f"on(init={INITIAL_LOSS_SCALE:g})" if self.loss_scale else "off"
        if model is not None:
            compute, variables, norms = model_dtypes(model, compute)
            scale = optimizer_scale(getattr(model, "optimizer", None), scale)
        return (
            f"ampkit: precision={self.name} keras_policy={self.policy} compute={compute} "
            f"variables={variables} norms={norms} loss_scale={scale} "
            f"tf32={'on' if self.spec.tf32 else 'off'} backend=torch device={self.device}"
        )


def precision(mode: str | None = None, *, environ: Mapping[str, str] | None = None) -> KerasPrecision:
    """A :class:`KerasPrecision` for ``mode`` (any ampkit spelling; None: the study arm's
    ``AMPKIT_PRECISION``, else ``USE_AMP``/``AMP_DTYPE``, else fp32). Use it as a context manager."""
    return KerasPrecision(mode, environ=environ)


__all__ = ["GROWTH_STEPS", "NORM_LAYERS", "POLICIES", "KerasPrecision", "keras_policy", "precision"]
