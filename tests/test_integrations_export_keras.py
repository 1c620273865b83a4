"""``ampkit export --to keras``: the printed Keras 3 code runs on the torch backend and sets what it says.

Keras is a test-only dependency (``.[test-integrations]``; it needs no TensorFlow with
``KERAS_BACKEND=torch``). For each mode the printed code is executed as a user would paste it,
then a small model is built and trained one step, and the dtypes Keras really used (Dense output
and kernel, LayerNormalization gamma) are compared with ampkit's run of the same mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from export_probe import ampkit_dtypes

from ampkit.integrations import export
from ampkit.precision import CANONICAL

MODES = [mode for mode in CANONICAL if export("keras", mode, "cpu").equivalence != "none"]


def _dtype(value: Any) -> torch.dtype:
    """Keras's dtype name (or a torch tensor's dtype) as a torch dtype."""
    name = getattr(value, "dtype", value)
    return name if isinstance(name, torch.dtype) else getattr(torch, str(name))


@pytest.mark.parametrize("mode", MODES)
def test_printed_keras_code_sets_the_policy_and_trains_as_ampkit(
    mode: str, keras: Any, restore_torch_flags: None, tmp_path: Path
) -> None:
    result = export("keras", mode, "cpu")
    assert result.config is not None
    namespace: dict[str, Any] = {}
    exec(result.code, namespace)
    policy = result.config["config"]["name"]
    assert keras.config.dtype_policy().name == policy
    assert keras.dtype_policies.deserialize(result.config).name == policy  # the JSON config loads as-is
    assert torch.backends.cudnn.allow_tf32 is (mode == "tf32")
    assert os.environ["KERAS_BACKEND"] == "torch"

    norm_dtype = namespace.get("NORM_DTYPE")  # true-half: norms built in float32, as ampkit
    dense = keras.layers.Dense(8)
    norm = keras.layers.LayerNormalization(dtype=norm_dtype)
    model = keras.Sequential([keras.Input((4,)), dense, norm, keras.layers.Dense(2)])
    optimizer = namespace.get("optimizer") or keras.optimizers.SGD(0.1)
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    y = np.random.default_rng(1).standard_normal((2, 2)).astype("float32")
    loss = model.train_on_batch(x, y)
    assert np.isfinite(float(np.asarray(loss).reshape(-1)[0]))

    ours = ampkit_dtypes(mode)
    assert _dtype(dense(x)) == ours.linear_out  # what the first layer computed in
    assert _dtype(dense.kernel) == ours.linear_weight
    assert _dtype(norm.gamma) == ours.norm_weight
    if mode == "fp16-mixed":  # ampkit's scaler, not Keras's default initial scale 2**15
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert float(optimizer.initial_scale) == 2.0**16 and optimizer.dynamic_growth_steps == 2000
    label = result.equivalence
    if mode in ("bf16-mixed", "fp16-mixed"):  # no autocast op lists: the notes say what differs
        assert label == "approximate" and "normalisation and softmax" in result.notes[0]
