"""Synthetic CT-like volumes in Hounsfield units (HU), made by code: no download needed.

A phantom is an air background holding a body ellipsoid of soft tissue with fat, water and bone
ellipsoids inside, plus noise. Its label is which of ``LESIONS`` it contains: a small ellipsoid
whose HU value is the class signal, so a classifier can learn it. ``integer=True`` rounds to whole
HU (as CT scanners store them) and clips to [-1024, 3071]; ``integer=False`` keeps the noise
continuous, as after resampling. Volumes are written as ``.npz`` (array ``volume`` plus 0-d
``slope``/``intercept``) with a JSON sidecar (label, UID with dots, generator settings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import write_atomic

HU_RANGE = (-1024.0, 3071.0)
"""Values a 12-bit CT scanner stores (after rescaling to HU)."""
TISSUE_HU = {"air": -1000.0, "fat": -100.0, "water": 0.0, "soft_tissue": 40.0, "bone": 1000.0}
"""Nominal HU of each tissue."""
LESIONS = ("none", "cyst", "hemorrhage", "calcification")
"""Label classes: the HU of a lesion (None for none); index in this tuple = ``meta["label"]``."""
LESION_HU: dict[str, float | None] = {"none": None, "cyst": 5.0, "hemorrhage": 70.0, "calcification": 400.0}
"""HU of each lesion class (cysts sit near water, hemorrhage above soft tissue, calcium far above)."""


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1] along each axis."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float64) for n in shape]
    return np.meshgrid(*axes, indexing="ij")  # type: ignore[return-value]


def _ellipsoid(grid: tuple[np.ndarray, ...], center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0  # type: ignore[no-any-return]


def make_phantom(
    seed: int,
    shape: tuple[int, int, int] = (32, 32, 32),
    integer: bool = True,
    label: int | None = None,
    noise_hu: float = 12.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One phantom volume in HU (float32) and its metadata (label, slope, intercept, uid, ...).

    ``label`` picks the lesion class (default: ``seed % len(LESIONS)``, so consecutive seeds are
    balanced). The same arguments always give the same volume.
    """
    rng = np.random.default_rng(seed)
    label = seed % len(LESIONS) if label is None else int(label)
    if not 0 <= label < len(LESIONS):
        raise ValueError(f"label {label} out of range; valid: 0..{len(LESIONS) - 1} ({', '.join(LESIONS)})")
    grid = _grid(shape)
    vol = np.full(shape, TISSUE_HU["air"], dtype=np.float64)
    body = rng.uniform(0.7, 0.9, size=3)
    vol[_ellipsoid(grid, rng.uniform(-0.05, 0.05, 3), body)] = TISSUE_HU["soft_tissue"]
    # organs inside the body: fat and water blobs, then bones (drawn last so they stay on top)
    for tissue, count, size in (
        ("fat", 2, (0.15, 0.3)),
        ("water", 2, (0.12, 0.25)),
        ("bone", 2, (0.08, 0.15)),
    ):
        for _ in range(count):
            center = rng.uniform(-0.45, 0.45, 3) * body
            vol[_ellipsoid(grid, center, rng.uniform(*size, 3))] = TISSUE_HU[tissue]
    lesion = LESIONS[label]
    lesion_hu = LESION_HU[lesion]
    if lesion_hu is not None:
        center = rng.uniform(-0.3, 0.3, 3) * body
        vol[_ellipsoid(grid, center, rng.uniform(0.2, 0.3, 3))] = lesion_hu
    vol += rng.normal(0.0, noise_hu, size=shape)
    if integer:
        vol = np.round(vol)
    vol = np.clip(vol, *HU_RANGE).astype(np.float32)
    uid = f"1.2.826.0.1.3680043.8.498.{seed}.{label}"
    meta = {
        "label": label,
        "lesion": lesion,
        "uid": uid,
        "slope": 1.0,
        "intercept": 0.0,
        "integer": bool(integer),
        "seed": int(seed),
        "noise_hu": float(noise_hu),
    }
    return vol, meta


def write_phantom_dataset(
    directory: str | Path,
    n: int,
    seed: int = 0,
    shape: tuple[int, int, int] = (32, 32, 32),
    integer: bool = True,
) -> list[Path]:
    """Write ``n`` phantoms as ``DIR/phantom-00000.npz`` + ``.json`` sidecars; returns the ``.npz`` paths.

    Phantom ``i`` is ``make_phantom(seed + i, ...)``; integer volumes are stored as int16 raw
    values (as scanners do, slope 1 intercept 0), non-integer ones as float32.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        vol, meta = make_phantom(seed + i, shape=shape, integer=integer)
        path = directory / f"phantom-{i:05d}.npz"
        data = vol.astype(np.int16) if integer else vol
        np.savez(path, volume=data, slope=np.float32(meta["slope"]), intercept=np.float32(meta["intercept"]))
        sidecar = {k: v for k, v in meta.items() if k not in ("slope", "intercept")}
        write_atomic(path.with_suffix(".json"), json.dumps(sidecar, sort_keys=True, indent=1) + "\n")
        paths.append(path)
    return paths
