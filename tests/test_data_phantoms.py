"""Phantoms: deterministic CT-like HU volumes, integer and non-integer variants, learnable labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ampkit.data.phantoms import LESION_HU, LESIONS, make_phantom, write_phantom_dataset


def test_deterministic_and_in_ct_range() -> None:
    a, meta = make_phantom(3)
    b, _ = make_phantom(3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (32, 32, 32)
    assert a.min() >= -1024 and a.max() <= 3071 and np.array_equal(a, np.round(a))
    assert meta["label"] == 3 % len(LESIONS) and meta["slope"] == 1.0 and meta["intercept"] == 0.0
    assert (a < -900).mean() > 0.2 and (a > 500).any()  # air around the body, bone inside it
    assert not np.array_equal(a, make_phantom(4)[0])


def test_non_integer_variant() -> None:
    vol, meta = make_phantom(0, shape=(16, 16, 16), integer=False)
    assert not meta["integer"] and (vol != np.round(vol)).mean() > 0.9


def test_label_is_visible_in_the_volume() -> None:
    """The lesion's HU is over-represented exactly when the label says so (noise-free phantoms)."""
    for label, lesion in enumerate(LESIONS):
        vol, meta = make_phantom(100 + label, shape=(24, 24, 24), label=label, noise_hu=0.0)
        assert meta["lesion"] == lesion
        for other, hu in LESION_HU.items():
            if hu is not None:
                assert ((vol == hu).sum() > 20) == (other == lesion), (lesion, other)
    with pytest.raises(ValueError, match="label"):
        make_phantom(0, label=len(LESIONS))


def test_write_dataset(tmp_path: Path) -> None:
    paths = write_phantom_dataset(tmp_path, 4, seed=7, shape=(8, 8, 8), integer=True)
    assert [p.name for p in paths] == [f"phantom-{i:05d}.npz" for i in range(4)]
    with np.load(paths[1]) as npz:
        assert npz["volume"].dtype == np.int16 and npz["slope"].ndim == 0
        np.testing.assert_array_equal(npz["volume"], make_phantom(8, shape=(8, 8, 8))[0])
    sidecar = json.loads(paths[1].with_suffix(".json").read_text())
    assert sidecar["label"] == 8 % len(LESIONS) and "." in sidecar["uid"]
    labels = [json.loads(p.with_suffix(".json").read_text())["label"] for p in paths]
    assert sorted(labels) == list(range(len(LESIONS)))
