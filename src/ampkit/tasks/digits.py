"""``digits``: a small CNN on scikit-learn's bundled 8x8 digits (1797 images, no download).

The split is fixed (independent of the training seed) so every seed and every precision
is evaluated on the same 20% held-out images. BatchNorm is included on purpose: it is the
layer true-half modes must keep in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Task, TaskSpec
from .metrics import accuracy
from .sampling import batch_indices

_SPLIT_SEED = 20240601


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


class DigitsCNN(nn.Module):
    """conv-bn-relu x2 (+ ``extra`` blocks at 2·width), max-pool, then a linear classifier over 10 classes.

    ``upsample`` > 1 first enlarges the 8x8 images (nearest neighbour), so the convolutions work on
    ``8·upsample`` pixels a side: the ``gpu`` size's way to make them, not launches, the step time.
    Its pooled maps are averaged down to 4x4, so the classifier has the default's shape (2·width·16 inputs).
    """

    def __init__(self, width: int = 32, *, upsample: int = 1, extra: int = 0):
        super().__init__()
        layers: list[nn.Module] = [nn.Upsample(scale_factor=upsample)] if upsample > 1 else []
        layers += _conv_block(1, width) + _conv_block(width, 2 * width)
        for _ in range(extra):
            layers += _conv_block(2 * width, 2 * width)
        layers.append(nn.MaxPool2d(2))  # 8x8 -> 4x4
        if upsample > 1:
            layers.append(nn.AdaptiveAvgPool2d(4))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 images as (N, 1, 8, 8) floats in [0, 1] and labels (N,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(data.target, dtype=torch.long)


#: ``TaskSpec.size`` -> DigitsCNN arguments. ``small`` narrows the CNN for fp16-on-CPU tests; ``gpu``
#: works on 32x32 upsampled images, width 128 and two more 256-channel convolutions (about 3 GFLOP
#: per image forward, 1.5M parameters), so that on a GPU the convolutions, not the launches, set the
#: step time.
SIZES: dict[str, dict[str, int]] = {
    "small": {"width": 8},
    "default": {"width": 32},
    "gpu": {"width": 128, "upsample": 4, "extra": 2},
}


def make_task(spec: TaskSpec) -> Task:
    """Factory for the digits task (sizes: :data:`SIZES`)."""
    images, labels = load_digits_tensors()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    n_eval = len(images) // 5
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    train_x, train_y = images[train_idx].to(spec.device), labels[train_idx].to(spec.device)
    eval_x, eval_y = images[eval_idx].to(spec.device), labels[eval_idx].to(spec.device)
    if spec.size not in SIZES:
        raise ValueError(f"digits task: size {spec.size!r}; valid: {', '.join(SIZES)}")
    torch.manual_seed(spec.seed)
    model = DigitsCNN(**SIZES[spec.size])

    def train_batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = batch_indices(len(train_x), spec.batch_size, spec.seed, i).to(spec.device)
        return train_x[idx], train_y[idx]

    def eval_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
        step = 256
        return [(eval_x[i : i + step], eval_y[i : i + step]) for i in range(0, len(eval_x), step)]

    return Task(
        name="digits",
        model=model,
        train_batch=train_batch,
        eval_batches=eval_batches,
        loss_fn=F.cross_entropy,
        metric_fn=accuracy,
        metric_name="accuracy",
        samples_per_epoch=len(train_x),
        default_lr=3e-3,
    )
