"""``ampkit.keras``: ampkit precisions applied to Keras 3 on the torch backend, checked by training.

Keras is an optional extra (``.[keras]``, also in ``.[test-integrations]``); these tests skip when
it is missing, except the one that checks the missing-Keras message. Every model is tiny (a Dense,
a LayerNormalization, a Dense) and trains a few real steps on the CPU; the asserts read what Keras
really used: ``layer.compute_dtype``, ``layer.variable_dtype``, the dtype of a Dense layer's output
in a forward pass, the variables' dtypes, the optimizer's loss scale.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from ampkit.precision import PrecisionError

# Keras 3.15 on numpy 2 warns about __array__(copy=...) on every weight read: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")

X = np.random.default_rng(0).standard_normal((32, 4)).astype("float32")
Y = np.random.default_rng(1).standard_normal((32, 2)).astype("float32")


@pytest.fixture
def ak(keras: Any) -> Iterator[Any]:
    """``ampkit.keras`` with the torch TF32 flags and the Keras policy put back after each test."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    import ampkit.keras

    yield ampkit.keras
    keras.config.set_dtype_policy("float32")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


def _model(keras: Any, norm_dtype: str | None = None) -> Any:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, name="dense_in"),
            keras.layers.LayerNormalization(dtype=norm_dtype, name="norm"),
            keras.layers.Dense(2, name="dense_out"),
        ]
    )


def _train(keras: Any, model: Any, optimizer: Any) -> list[float]:
    """Three real optimizer steps; the losses."""
    model.compile(optimizer=optimizer, loss="mse")
    return [float(np.asarray(model.train_on_batch(X, Y)).reshape(-1)[0]) for _ in range(3)]


def _dtype(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def test_fp32_trains_in_float32_with_tf32_off_and_restores_the_previous_policy(keras: Any, ak: Any) -> None:
    keras.config.set_dtype_policy("mixed_float16")  # the user's own policy before the block
    torch.backends.cudnn.allow_tf32 = True  # cuDNN's default: fp32 must turn it off
    with ak.precision("fp32") as kp:
        assert keras.config.dtype_policy().name == "float32"
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "highest"
        model = _model(keras, kp.norm_dtype)
        before = [w.copy() for w in model.get_weights()]
        losses = _train(keras, model, kp.wrap_optimizer(keras.optimizers.SGD(0.1)))
        dense, norm = model.get_layer("dense_in"), model.get_layer("norm")
        assert (dense.compute_dtype, dense.variable_dtype) == ("float32", "float32")
        assert (norm.compute_dtype, norm.variable_dtype) == ("float32", "float32")
        assert _dtype(dense(X)) == "float32"
        assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert all(np.isfinite(losses)) and losses[-1] < losses[0]
        assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        assert kp.describe(model) == (
            "ampkit: precision=fp32 keras_policy=float32 compute=float32 variables=float32 "
            "norms=float32 loss_scale=off tf32=off backend=torch device=cpu"
        )
    assert keras.config.dtype_policy().name == "mixed_float16"
    assert torch.backends.cudnn.allow_tf32 is True


def test_tf32_turns_the_flags_on_inside_and_back_off_after(keras: Any, ak: Any) -> None:
    torch.backends.cudnn.allow_tf32 = False
    with ak.precision("tf32") as kp:
        assert kp.policy == "float32"
        assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True
        assert torch.get_float32_matmul_precision() == "high"
        assert "tf32=on" in kp.describe()
    assert torch.backends.cudnn.allow_tf32 is False


def test_bf16_mixed_computes_bfloat16_on_float32_variables(keras: Any, ak: Any) -> None:
    with ak.precision("bf16-mixed") as kp:
        assert kp.norm_dtype == "float32"
        model = _model(keras, kp.norm_dtype)
        losses = _train(keras, model, kp.wrap_optimizer(keras.optimizers.SGD(0.1)))
        dense, norm = model.get_layer("dense_in"), model.get_layer("norm")
        assert (dense.compute_dtype, dense.variable_dtype) == ("bfloat16", "float32")
        assert _dtype(dense.kernel) == "float32"
        assert _dtype(dense(X)) == "bfloat16"  # the forward pass really ran in bf16
        assert (norm.compute_dtype, norm.variable_dtype) == ("float32", "float32")
        assert _dtype(norm(dense(X))) == "float32"
        assert all(np.isfinite(losses))
        assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert kp.describe(model) == (
            "ampkit: precision=bf16-mixed keras_policy=mixed_bfloat16 compute=bfloat16+float32 "
            "variables=float32 norms=float32 loss_scale=off tf32=off backend=torch device=cpu"
        )
    assert keras.config.dtype_policy().name == "float32"


def test_bf16_true_stores_bfloat16_and_keeps_a_built_models_norms_float32(keras: Any, ak: Any) -> None:
    with ak.precision("bf16-true") as kp:
        built = _model(keras)  # built at construction: its norm has bfloat16 gamma and beta
        assert _dtype(built.get_layer("norm").gamma) == "bfloat16"
        model = kp.keep_norms_float32(built)
        assert model is not built  # a clone with the same weights
        for new, old in zip(model.get_weights(), built.get_weights()):
            np.testing.assert_array_equal(np.asarray(new, "float32"), np.asarray(old, "float32"))
        losses = _train(keras, model, kp.wrap_optimizer(keras.optimizers.SGD(0.1)))
        dense, norm = model.get_layer("dense_in"), model.get_layer("norm")
        assert (dense.compute_dtype, dense.variable_dtype) == ("bfloat16", "bfloat16")
        assert _dtype(dense.kernel) == "bfloat16" and _dtype(dense(X)) == "bfloat16"
        assert (norm.compute_dtype, norm.variable_dtype) == ("float32", "float32")
        assert _dtype(norm.gamma) == "float32" and _dtype(norm(dense(X))) == "float32"
        assert all(np.isfinite(losses))
        line = kp.describe(model)
        assert "compute=bfloat16+float32 variables=bfloat16+float32 norms=float32 loss_scale=off" in line
        assert kp.describe(built).count("norms=bfloat16") == 1  # the proof shows the unkept model too


def test_fp16_mixed_wraps_the_optimizer_with_ampkits_loss_scale(keras: Any, ak: Any) -> None:
    with ak.precision("fp16-mixed") as kp:
        optimizer = kp.wrap_optimizer(keras.optimizers.SGD(0.01))
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert (optimizer.initial_scale, optimizer.dynamic_growth_steps) == (2.0**16, 2000)
        assert kp.wrap_optimizer(optimizer) is optimizer
        model = _model(keras, kp.norm_dtype)
        losses = _train(keras, model, optimizer)
        dense = model.get_layer("dense_in")
        assert (dense.compute_dtype, dense.variable_dtype) == ("float16", "float32")
        assert _dtype(dense(X)) == "float16"
        assert model.optimizer is optimizer and all(np.isfinite(losses))
        assert "keras_policy=mixed_float16 compute=float16+float32" in kp.describe(model)
        assert "loss_scale=on(init=65536)" in kp.describe(model)


def test_fp16_true_is_float16_without_loss_scaling_as_ampkit(keras: Any, ak: Any) -> None:
    with ak.precision("16-true") as kp:  # Lightning's spelling
        assert (kp.name, kp.policy, kp.loss_scale) == ("fp16-true", "float16", False)
        plain = keras.optimizers.SGD(0.01)
        assert kp.wrap_optimizer(plain) is plain
        layer = keras.layers.Dense(3)
        assert _dtype(layer(X)) == "float16" and layer.variable_dtype == "float16"


def test_unbuilt_norms_are_set_in_place_and_a_built_subclassed_model_is_refused(keras: Any, ak: Any) -> None:
    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(4)
            self.norm = keras.layers.LayerNormalization()

        def call(self, x: Any) -> Any:
            return self.norm(self.dense(x))

    with ak.precision("bf16-true") as kp:
        net = Net()
        assert kp.keep_norms_float32(net) is net
        net(X)
        assert _dtype(net.norm.gamma) == "float32" and _dtype(net.dense.kernel) == "bfloat16"
        late = Net()
        late(X)
        with pytest.raises(PrecisionError, match="subclassed model cannot be cloned; valid: build them"):
            kp.keep_norms_float32(late)
    with ak.precision("fp32") as kp:
        model = _model(keras)
        assert kp.keep_norms_float32(model) is model  # nothing to keep in a 32-bit mode


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("fp8-mixed", "fp8-mixed has no Keras dtype policy"),
        ("int8-qat", "int8-qat has no Keras dtype policy"),
        ("fp8", "fp8-mixed has no Keras dtype policy"),
        ("fp12", "unknown precision 'fp12'"),
    ],
)
def test_modes_without_a_keras_policy_are_one_line_naming_what_keras_supports(
    mode: str, needle: str, ak: Any
) -> None:
    with pytest.raises(PrecisionError) as info:
        ak.precision(mode)
    message = str(info.value)
    assert needle in message and "\n" not in message
    if "no Keras" in needle:
        assert "valid in ampkit.keras: fp64 (float64), fp32 (float32), tf32 (float32)" in message


def test_the_mode_comes_from_a_study_arms_environment(keras: Any, ak: Any) -> None:
    assert ak.precision(environ={"AMPKIT_PRECISION": "bf16"}).name == "bf16-mixed"
    assert ak.precision(environ={"USE_AMP": "1", "AMP_DTYPE": "fp16"}).policy == "mixed_float16"
    assert ak.precision(environ={}).policy == "float32"
    kp = ak.precision("fp64")
    with kp:
        assert _dtype(keras.layers.Dense(2)(X)) == "float64"
    assert keras.config.dtype_policy().name == "float32"


def test_without_keras_the_import_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)  # what an environment without keras looks like
    monkeypatch.delitem(sys.modules, "ampkit.integrations.keras", raising=False)
    monkeypatch.delitem(sys.modules, "ampkit.keras", raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module("ampkit.keras")
    assert str(info.value) == (
        "ampkit.keras needs Keras 3: pip install 'ampkit[keras]' (keras>=3.5, run on the torch backend, "
        "no TensorFlow)"
    )
