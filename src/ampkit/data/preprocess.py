"""The float32 preprocessing chain that follows decoding: rescale, clip, normalise, resize.

Every step runs in float32 (the guide's rule: store in 2 bytes, compute in 4), on whatever
device the batch is on. With a float32 loader output the loaders run steps 1-4 per sample as
they widen it (:func:`scale_`) and steps 5-6 on the batch (:func:`reshape`); with a 2-byte output
(``output_dtype`` float16/bfloat16, or ``on="device"``) the loader hands over the stored values,
which cross the host-to-device bus at half the bytes of float32, and :func:`finish_batch` widens
and preprocesses them on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..errors import UsageError
from .batchmem import OutputPool

_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


@dataclass(frozen=True)
class PreprocessConfig:
    """What happens to a decoded float32 sample before it reaches the model."""

    rescale: bool = True
    """Apply each sample's ``x * slope + intercept`` (e.g. stored values -> Hounsfield units)."""
    clip: tuple[float, float] | None = None
    """``(lo, hi)``: clip rescaled values to this range (e.g. ``(-1000, 1000)`` HU); None: no clip."""
    normalize: Literal["none", "range", "meanstd"] = "none"
    """``range``: map ``clip`` linearly onto [-1, 1]; ``meanstd``: ``(x - mean) / std``; ``none``."""
    mean: float = 0.0
    """Mean subtracted by ``normalize="meanstd"``."""
    std: float = 1.0
    """Standard deviation divided by ``normalize="meanstd"``."""
    resize: tuple[int, ...] | None = None
    """Target size of the trailing 1-3 axes (``torch.nn.functional.interpolate``); None: keep."""
    resize_mode: Literal["linear", "nearest", "area"] = "linear"
    """Interpolation: ``linear`` (linear/bilinear/trilinear by rank), ``nearest`` or ``area``."""
    add_channel: bool = False
    """Insert a channel axis of size 1 after the batch axis (``Conv3d`` wants ``N, C, D, H, W``)."""
    on: Literal["cpu", "device"] = "cpu"
    """Where the chain runs: in the loader (CPU) or on the training device after the 2-byte copy."""

    def __post_init__(self) -> None:
        if self.normalize not in ("none", "range", "meanstd"):
            raise UsageError(f"normalize={self.normalize!r}; valid: none, range, meanstd")
        if self.normalize == "range" and self.clip is None:
            raise UsageError("normalize='range' maps the clip range to [-1, 1]; give clip=(lo, hi)")
        if self.clip is not None and not self.clip[0] < self.clip[1]:
            raise UsageError(f"clip={self.clip}: need lo < hi")
        if self.normalize == "meanstd" and not self.std > 0:
            raise UsageError(f"std={self.std}: must be > 0")
        if self.resize is not None and not 1 <= len(self.resize) <= 3:
            raise UsageError(f"resize={self.resize}: give 1 to 3 sizes for the trailing axes")
        if self.on not in ("cpu", "device"):
            raise UsageError(f"on={self.on!r}; valid: cpu, device")


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Shape a ``[B]`` vector to broadcast over ``x``'s sample axes."""
    return v.to(x.device, torch.float32).reshape(-1, *([1] * (x.dim() - 1)))


def apply_chain(
    stored: torch.Tensor,
    offset: torch.Tensor,
    slope: torch.Tensor,
    intercept: torch.Tensor,
    cfg: PreprocessConfig,
) -> torch.Tensor:
    """Batch of stored values ``[B, ...]`` (any dtype) -> preprocessed float32.

    ``offset``, ``slope`` and ``intercept`` are per-sample ``[B]`` vectors from the metadata.
    Runs in float32 even inside an autocast region (evaluation under a mixed precision).
    """
    with torch.autocast(stored.device.type, enabled=False):
        return _chain(stored, offset, slope, intercept, cfg)


_WIDENED = OutputPool()
"""float32 batches that :func:`finish_batch` widens on the CPU, written again once released."""


def _chain(
    stored: torch.Tensor,
    offset: torch.Tensor,
    slope: torch.Tensor,
    intercept: torch.Tensor,
    cfg: PreprocessConfig,
    reuse: bool = False,
) -> torch.Tensor:
    # one widening copy, then in place: the same arithmetic as out-of-place ops, no temporaries
    if reuse and stored.device.type == "cpu":  # memory of released batches: no page faults
        x = _WIDENED.take(tuple(stored.shape), torch.float32, shared=False).copy_(stored)
    else:
        x = stored.to(torch.float32, copy=True)
    scale_(x, offset, slope, intercept, cfg)
    return reshape(x, cfg)


def scale_(
    x: torch.Tensor,
    offset: torch.Tensor | float,
    slope: torch.Tensor | float,
    intercept: torch.Tensor | float,
    cfg: PreprocessConfig,
) -> None:
    """Steps 1-4 (offset, rescale, clip, normalise) in place on float32 ``x``.

    ``offset``/``slope``/``intercept`` are ``[B]`` vectors for a batch ``x`` or plain floats for
    one sample. The loaders call this per sample on the row they just widened, while it is still
    in the CPU cache; the arithmetic is the same float32 operations either way, so a batch
    processed row by row equals the batch processed at once.
    """
    if isinstance(offset, torch.Tensor):
        shift = bool(offset.ne(0).any())
        affine = cfg.rescale and bool(
            torch.as_tensor(slope).ne(1).any() | torch.as_tensor(intercept).ne(0).any()
        )
        off, mul, add = (_per_sample(torch.as_tensor(v), x) for v in (offset, slope, intercept))
    else:
        shift = bool(offset != 0)
        affine = cfg.rescale and bool(slope != 1 or intercept != 0)
        off, mul, add = offset, slope, intercept  # type: ignore[assignment]
    if shift:
        x.add_(off)
    if affine:
        x.mul_(mul).add_(add)
    if cfg.clip is not None:
        x.clamp_(cfg.clip[0], cfg.clip[1])
    if cfg.normalize == "range":
        lo, hi = cfg.clip  # type: ignore[misc]  # checked in __post_init__
        x.sub_(lo).mul_(2.0 / (hi - lo)).sub_(1.0)
    elif cfg.normalize == "meanstd":
        x.sub_(cfg.mean).div_(cfg.std)


def reshape(x: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Steps 5-6 on a float32 batch: ``resize`` the trailing axes, insert the channel axis."""
    if cfg.resize is not None:
        x = _resize(x, cfg.resize, cfg.resize_mode)
    if cfg.add_channel:
        x = x.unsqueeze(1)
    return x


def _resize(x: torch.Tensor, size: tuple[int, ...], mode: str) -> torch.Tensor:
    k = len(size)
    if x.dim() - 1 < k:
        raise UsageError(
            f"resize={size} needs samples with at least {k} axes, got shape {tuple(x.shape[1:])}"
        )
    lead, spatial = x.shape[:-k], x.shape[-k:]
    if tuple(spatial) == tuple(size):
        return x
    flat = x.reshape(-1, 1, *spatial)  # interpolate wants (N, C, *spatial)
    kwargs: dict[str, Any] = {"align_corners": False} if mode == "linear" else {}
    out = F.interpolate(flat, size=size, mode=_LINEAR[k] if mode == "linear" else mode, **kwargs)
    return out.reshape(*lead, *size)


def finish_batch(batch: dict[str, Any], device: torch.device | str, cfg: PreprocessConfig) -> dict[str, Any]:
    """Move a loader batch to ``device``; a 2-byte batch (``raw``) is widened and preprocessed there.

    A loader hands over ``raw`` with ``output_dtype`` float16/bfloat16/stored (or
    ``PreprocessConfig(on="device")``): only 2 bytes per value cross the host-to-device bus, then
    the whole chain runs in float32 on ``device`` (on the CPU, into reused memory). Batches
    already preprocessed on the CPU are only moved. Returns a new dict with ``x``
    (float32) on ``device``; other tensors are moved too, lists are kept.
    """
    device = torch.device(device)
    out = dict(batch)
    if "raw" in batch:
        raw = batch["raw"].to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=False):
            out["x"] = _chain(raw, batch["offset"], batch["slope"], batch["intercept"], cfg, reuse=True)
        for name in ("raw", "offset", "slope", "intercept"):
            out.pop(name)
    for name, value in out.items():
        if isinstance(value, torch.Tensor):
            out[name] = value.to(device, non_blocking=True)
    return out
