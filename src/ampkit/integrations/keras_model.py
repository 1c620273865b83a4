"""What a Keras model holds, for :mod:`ampkit.integrations.keras`: its normalisation layers (kept
in float32 as ampkit keeps them), the dtypes its layers and variables really have, and the loss
scaling of the optimizer it was compiled with. Imported by that module, after it chose the backend.
"""

from __future__ import annotations

from typing import Any

import keras

from ..precision import PrecisionError

#: Keras normalisation layers ampkit keeps in float32 (those this Keras has).
NORM_LAYER_NAMES = (
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "RMSNormalization",
)
NORM_LAYERS: tuple[type, ...] = tuple(
    getattr(keras.layers, n) for n in NORM_LAYER_NAMES if hasattr(keras.layers, n)
)


def is_norm(layer: Any) -> bool:
    """A normalisation layer ampkit keeps in float32."""
    return isinstance(layer, NORM_LAYERS)


def layers_of(model: Any) -> list[Any]:
    """Every layer inside ``model`` (nested models included), ``model`` itself excluded."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=True))
    return list(getattr(model, "layers", []))


def clonable(model: Any) -> bool:
    """A Sequential or functional model (``keras.Model(inputs, outputs)``): ``clone_model`` rebuilds it."""
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - a Keras that moved it
        return isinstance(model, keras.Sequential)
    return isinstance(model, keras.Sequential | Functional)


def keep_norms_float32(model: Any) -> Any:
    """``model`` with its normalisation layers in float32: unbuilt layers get the float32 policy in
    place; a built Sequential or functional model whose norms hold 16-bit variables comes back as a
    clone with float32 norms and the same weights; a built subclassed one is a :class:`PrecisionError`."""
    norms = [layer for layer in [model, *layers_of(model)] if is_norm(layer)]
    built = [n for n in norms if n.built and any(w.dtype != "float32" for w in n.weights)]
    for layer in norms:
        if layer not in built:
            layer.dtype_policy = "float32"
    if not built:
        return model
    if not clonable(model):
        names = ", ".join(layer.name for layer in built)
        raise PrecisionError(
            f"{type(model).__name__}: built normalisation layers ({names}) hold "
            f"{built[0].weights[0].dtype} variables and a subclassed model cannot be cloned; "
            "valid: build them with dtype=kp.norm_dtype, or call keep_norms_float32 before the "
            "model is built"
        )

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if is_norm(layer):
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())  # float32 norm variables take their values cast
    return copy


def _joined(names: set[str]) -> str:
    return "+".join(sorted(names)) if names else "-"


def model_dtypes(model: Any, policy_compute: str) -> tuple[str, str, str]:
    """``(compute, variables, norms)`` as the model really has them: the compute dtypes of its
    layers with weights, its variables' dtypes, its norm layers' compute dtypes (``a+b`` when mixed)."""
    layers = [layer for layer in layers_of(model) if not isinstance(layer, keras.layers.InputLayer)]
    compute = _joined({layer.compute_dtype for layer in layers if layer.weights} or {policy_compute})
    variables = _joined({str(w.dtype) for w in model.weights})
    norms = _joined({layer.compute_dtype for layer in layers if is_norm(layer)})
    return compute, variables, norms


def optimizer_scale(optimizer: Any, planned: str) -> str:
    """The loss scaling the compiled optimizer really does; ``planned`` before ``compile``."""
    if optimizer is None:
        return planned
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return f"on(init={float(optimizer.initial_scale):g})"
    return "off"
