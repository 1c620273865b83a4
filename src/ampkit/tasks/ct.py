"""``ct``: a small 3D CNN classifying lesions in CT-like phantoms, read from fp16 shards.

The guide's three layers end to end: phantom volumes in HU are stored as float16 shards
(``ampkit.data.convert``), loaded back to float32 and preprocessed (clip to a [-200, 600] HU
window, map to [-1, 1]), and trained under whatever ``--precision`` says. The dataset is generated on
first use into a cache folder (``$AMPKIT_CACHE`` or ``~/.cache/ampkit``) and reused after; its
content depends only on the size, never on the training seed, so every arm of a study reads
the same bytes. On a GPU the 2-byte batch is copied and preprocessed there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.loader_indexed import IndexedShards
from ..data.order import epoch_order
from ..data.preprocess import PreprocessConfig, finish_batch
from .base import Task, TaskSpec
from .metrics import accuracy

CACHE_ENV = "AMPKIT_CACHE"
"""Environment variable naming the cache folder (default ``~/.cache/ampkit``)."""
DATA_SEED = 20240917
"""Seed of the phantom generator: the data never changes with the training seed."""


@dataclass(frozen=True)
class CTSize:
    """Shape of the generated dataset for one ``TaskSpec.size``."""

    volumes: int
    """Number of phantoms (a quarter per lesion class; 512 so that a 32^3 model generalises, not memorises)."""
    side: int
    """Edge of each cubic volume, in voxels."""
    per_shard: int
    """Samples per shard."""
    width: int
    """Channels of the CNN's first convolution."""


SIZES = {"default": CTSize(512, 32, 64, 8), "small": CTSize(80, 16, 16, 4)}
"""``TaskSpec.size`` -> dataset and model size (small: 64 training volumes, so that the default
``--batch-size 64`` fits; 16 held out)."""
PREPROCESS = PreprocessConfig(clip=(-200.0, 600.0), normalize="range", add_channel=True)
"""The guide's chain: HU rescale (from metadata), clip to a soft-tissue window that keeps the lesions
apart (cyst 5, hemorrhage 70, calcification 400 HU), normalise to [-1, 1], channel axis."""


def cache_root() -> Path:
    """``$AMPKIT_CACHE`` or ``~/.cache/ampkit``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ampkit")


def make_phantom_shards(
    directory: Path, volumes: int, side: int, per_shard: int, seed: int = DATA_SEED
) -> Path:
    """Generate ``volumes`` phantoms and store them as float16 shards in ``directory`` (atomically).

    Built in a temporary sibling folder and renamed, so concurrent processes (study arms) never
    see half a dataset; when another process wins the race its copy is kept.
    """
    from ..data.codec import CodecOptions
    from ..data.convert import ConvertOptions, convert
    from ..data.phantoms import write_phantom_dataset
    from ..data.sources import discover

    directory = Path(directory)
    if (directory / "manifest.json").is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        paths = write_phantom_dataset(work / "source", volumes, seed=seed, shape=(side, side, side))
        opts = ConvertOptions(
            out=work / "shards", codec=CodecOptions(dtype="fp16"), samples_per_shard=per_shard
        )
        convert(discover([str(p) for p in paths]), opts)
        try:
            os.rename(work / "shards", directory)
        except OSError:
            if not (directory / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return directory


class LesionCNN(nn.Module):
    """Three conv-bn-relu-pool blocks, global max pool (a lesion is small: presence, not average), linear head."""

    def __init__(self, width: int, classes: int):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = 1
        for c_out in (width, 2 * width, 4 * width):
            blocks += [
                nn.Conv3d(c_in, c_out, 3, padding=1),
                nn.BatchNorm3d(c_out),
                nn.ReLU(),
                nn.MaxPool3d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.AdaptiveMaxPool3d(1))
        self.head = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def make_task(spec: TaskSpec) -> Task:
    """Factory for the ct task: builds the shard cache on first use, then reads batches from it."""
    from ..data.phantoms import LESIONS

    if spec.size not in SIZES:
        raise ValueError(f"ct task: size {spec.size!r}; valid: {', '.join(SIZES)}")
    size = SIZES[spec.size]
    name = f"ct-phantoms-{size.volumes}x{size.side}-fp16-v1"
    folder = make_phantom_shards(cache_root() / name, size.volumes, size.side, size.per_shard)
    on = "device" if spec.device.type != "cpu" else "cpu"  # 2-byte host-to-device copy on accelerators
    cfg = PreprocessConfig(**{**PREPROCESS.__dict__, "on": on})
    data = IndexedShards(folder, preprocess=cfg, label="label")
    if len(data):  # a folder converted without labels: refused now (UsageError), not at the first step
        data.get_batch([0])
    everything = np.arange(len(data))
    eval_idx, train_idx = everything[everything % 5 == 4], everything[everything % 5 != 4]
    batch = min(spec.batch_size, len(train_idx))
    per_epoch = len(train_idx) // batch

    def load(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        out = finish_batch(data.get_batch(indices), spec.device, cfg)
        return out["x"], out["y"]

    def train_batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, pos = divmod(i, per_epoch)
        order = epoch_order([len(train_idx)], spec.seed, epoch)
        return load(train_idx[order[pos * batch : (pos + 1) * batch]])

    def eval_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [load(eval_idx[j : j + 64]) for j in range(0, len(eval_idx), 64)]

    torch.manual_seed(spec.seed)
    model = LesionCNN(size.width, len(LESIONS)).to(spec.device)
    return Task(
        name="ct",
        model=model,
        train_batch=train_batch,
        eval_batches=eval_batches,
        loss_fn=F.cross_entropy,
        metric_fn=accuracy,
        metric_name="accuracy",
        samples_per_epoch=len(train_idx),
        items_per_sample=1,
        item_unit="samples",
        default_lr=3e-3,
    )
