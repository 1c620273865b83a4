"""A small 2D Gaussian-splatting trainer, written the way such projects are.

A plain object holds the gaussians' nn.Parameters, a custom autograd "kernel" rasterises them
(float32 only, like a CUDA extension), the loss is L1 + SSIM + a Pearson depth term, Adam has a
learning rate per parameter group, and densification clones points with large positional
gradients, prunes nearly transparent ones and rebuilds the optimizer. The target is a synthetic
scene drawn from the seed (no download).

examples/splat_train_plain.py is the script before the port to ampkit (autocast only),
examples/splat_train.py the script after it; docs/adopt.md shows and explains the diff.

    python examples/splat_train.py --mixed_precision --amp_dtype bf16 --iterations 300
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ampkit import Precision, PrecisionOptimizer, add_precision_args, fp32
from ampkit.fsutil import write_atomic

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
LEARNING_RATES = {
    "_xy": 0.1,
    "_log_scale": 0.02,
    "_rotation": 0.02,
    "_rgb": 0.05,
    "_depth": 0.05,
    "_opacity": 0.05,
}
#: The dtypes the rasteriser kernel was handed, counted once per call and dtype.
KERNEL_DTYPES: Counter[torch.dtype] = Counter()


class Rasterize(torch.autograd.Function):
    """Dense splatting of N gaussians onto P pixels: ``out[p] = sum_i alpha_i(p) * feats[i]``,
    ``alpha_i(p) = opacity_i * exp(-(a dx^2 / 2 + b dx dy + c dy^2 / 2))``, ``(dx, dy) = p - mean_i``."""

    @staticmethod
    @fp32
    def forward(
        ctx: Any, means: Tensor, conics: Tensor, opacity: Tensor, feats: Tensor, pix: Tensor
    ) -> Tensor:
        dtypes = {t.dtype for t in (means, conics, opacity, feats, pix)}
        KERNEL_DTYPES.update(dtypes)
        if dtypes != {torch.float32}:  # what a CUDA kernel's data_ptr<float>() says
            raise TypeError(
                f"rasterize: the kernel takes float32 tensors only, got {sorted(map(str, dtypes))}"
            )
        dx, dy = (pix[:, None, :] - means[None, :, :]).unbind(2)  # (P, N) each
        a, b, c = conics.unbind(1)
        gauss = torch.exp(-(a * dx * dx / 2 + b * dx * dy + c * dy * dy / 2))
        ctx.save_for_backward(means, conics, opacity, feats, pix, gauss)
        return (opacity.T * gauss) @ feats

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        means, conics, opacity, feats, pix, gauss = ctx.saved_tensors
        dx, dy = (pix[:, None, :] - means[None, :, :]).unbind(2)
        a, b, c = conics.unbind(1)
        alpha = opacity.T * gauss
        grad_alpha = grad_out @ feats.T
        grad_exponent = grad_alpha * alpha
        grad_means = (grad_exponent * torch.stack([a * dx + b * dy, b * dx + c * dy])).sum(1).T
        grad_conics = -(grad_exponent * torch.stack([dx * dx / 2, dx * dy, dy * dy / 2])).sum(1).T
        return grad_means, grad_conics, (grad_alpha * gauss).sum(0)[:, None], alpha.T @ grad_out, None


class GaussianModel:
    """The scene: N gaussians held as nn.Parameters on a plain object (not an nn.Module), as in 3DGS."""

    _xy: nn.Parameter  # (N, 2) centres, in pixels
    _log_scale: nn.Parameter  # (N, 2)
    _rotation: nn.Parameter  # (N, 1) radians
    _rgb: nn.Parameter  # (N, 3) colour logits
    _depth: nn.Parameter  # (N, 1)
    _opacity: nn.Parameter  # (N, 1) logit
    NAMES = tuple(LEARNING_RATES)

    def __init__(self, tensors: dict[str, Tensor]):
        for name in self.NAMES:
            setattr(self, name, nn.Parameter(tensors[name]))

    @classmethod
    def random(
        cls,
        n: int,
        size: int,
        gen: torch.Generator,
        device: torch.device,
        opacity: tuple[float, float] = (-4.0, 2.0),
    ) -> GaussianModel:
        def rand(cols: int, low: float, high: float) -> Tensor:
            return (low + (high - low) * torch.rand(n, cols, generator=gen)).to(device)

        s = math.log(size / 10)
        return cls(
            {
                "_xy": rand(2, 0, size),
                "_log_scale": rand(2, s - 0.5, s + 0.5),
                "_rotation": rand(1, 0, math.pi),
                "_rgb": rand(3, -2, 2),
                "_depth": rand(1, -1, 1),
                "_opacity": rand(1, *opacity),
            }
        )

    def __len__(self) -> int:
        return self._xy.shape[0]

    def conics(self) -> Tensor:
        """Inverse covariances ``(a, b, c)`` of ``[[a, b], [b, c]] = (R S^-1)(R S^-1)^T``: two batched matmuls."""
        cos, sin = torch.cos(self._rotation), torch.sin(self._rotation)
        m = torch.cat([cos, -sin, sin, cos], 1).view(-1, 2, 2) @ torch.diag_embed(torch.exp(-self._log_scale))
        inv = m @ m.transpose(1, 2)
        return torch.stack([inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 1]], 1)

    def features(self) -> Tensor:
        """Per gaussian: RGB, depth, and a 1 that sums the splat weights (to normalise the depth)."""
        return torch.cat([torch.sigmoid(self._rgb), self._depth, torch.ones_like(self._depth)], 1)

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"params": [getattr(self, name)], "lr": LEARNING_RATES[name], "name": name} for name in self.NAMES
        ]

    def densify_and_prune(
        self, grad_mean: Tensor, threshold: float, min_opacity: float, max_points: int, gen: torch.Generator
    ) -> tuple[int, int]:
        """Clone the points whose mean positional gradient reaches ``threshold`` (largest first, up to
        ``max_points``; each copy moved by a sample of its gaussian), then prune the nearly transparent.
        The parameters are new tensors afterwards: the optimizer must be rebuilt."""
        clone = torch.nonzero(grad_mean >= threshold).flatten()
        clone = clone[grad_mean[clone].argsort(descending=True)][: max(0, max_points - len(self))]
        old = {name: getattr(self, name).detach() for name in self.NAMES}
        new = {name: t[clone] for name, t in old.items()}
        new["_xy"] = (
            new["_xy"] + torch.randn(len(clone), 2, generator=gen).to(new["_xy"]) * new["_log_scale"].exp()
        )
        merged = {name: torch.cat([old[name], new[name]]) for name in self.NAMES}
        keep = torch.sigmoid(merged["_opacity"][:, 0].float()) >= min_opacity
        for name in self.NAMES:
            setattr(self, name, nn.Parameter(merged[name][keep]))
        return len(clone), int((~keep).sum())


def pixel_centres(size: int, device: torch.device) -> Tensor:
    """The (size * size, 2) pixel centres (x, y), row by row."""
    yx = torch.cartesian_prod(torch.arange(size), torch.arange(size))
    return yx.flip(1).float().to(device) + 0.5


def render(model: GaussianModel, pix: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The image (3, size, size) and the depth map (size, size) of ``model``."""
    out = Rasterize.apply(model._xy, model.conics(), torch.sigmoid(model._opacity), model.features(), pix)
    return out[:, :3].T.reshape(3, size, size), (out[:, 3] / (out[:, 4] + 1e-6)).reshape(size, size)


def ssim(img1: Tensor, img2: Tensor, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(window_size, device=img1.device) - window_size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    window = (torch.outer(g, g) / g.sum() ** 2).expand(img1.shape[0], 1, window_size, window_size).to(img1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t[None], window, padding=window_size // 2, groups=img1.shape[0])[0]

    mu1, mu2 = blur(img1), blur(img2)
    var1, var2, cov = blur(img1 * img1) - mu1**2, blur(img2 * img2) - mu2**2, blur(img1 * img2) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1**2 + mu2**2 + c1) * (var1 + var2 + c2))).mean()


def pearson_depth_loss(depth: Tensor, target: Tensor) -> Tensor:
    """1 - Pearson correlation: a depth prior is right only up to scale and shift."""
    d, t = depth.flatten() - depth.mean(), target.flatten() - target.mean()
    return 1 - (d * t).sum() / (d.norm() * t.norm() + 1e-8)


@fp32
def splat_loss(image: Tensor, depth: Tensor, target: Tensor, target_depth: Tensor) -> Tensor:
    """(1 - λ) L1 + λ (1 - SSIM) with λ = 0.2, as in 3DGS, plus 0.1 x the Pearson depth loss."""
    l1, d_ssim = (image - target).abs().mean(), 1 - ssim(image, target)
    return 0.8 * l1 + 0.2 * d_ssim + 0.1 * pearson_depth_loss(depth, target_depth)


def at_least(low: int) -> Any:
    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return integer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--iterations", type=at_least(1), default=300)
    parser.add_argument(
        "--size", type=at_least(11), default=32, help="image side in pixels (>= the SSIM window)"
    )
    parser.add_argument("--points", type=at_least(1), default=48, help="gaussians at the start")
    parser.add_argument("--max_points", type=at_least(1), default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--densify_from", type=at_least(1), default=50)
    parser.add_argument("--densify_every", type=at_least(1), default=50)
    parser.add_argument("--densify_grad_threshold", type=float, default=2e-3)
    parser.add_argument("--min_opacity", type=float, default=0.05)
    parser.add_argument("--log_every", type=at_least(1), default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="also write the results (JSON) here")
    parser.add_argument(
        "--mixed_precision", action="store_true", help="mixed precision for the whole pipeline"
    )
    parser.add_argument("--amp_dtype", choices=sorted(AMP_DTYPES), default="fp16")
    add_precision_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    prec = Precision.from_args(args, device=device)
    gen = torch.Generator().manual_seed(args.seed)
    pix = pixel_centres(args.size, device)
    with torch.no_grad():
        truth = GaussianModel.random(12, args.size, gen, device, opacity=(1.0, 3.0))
        target, target_depth = render(truth, pix, args.size)
    model = GaussianModel.random(args.points, args.size, gen, device)
    print(prec.describe(prec.prepare(vars(model))))
    opt = PrecisionOptimizer(torch.optim.Adam(model.param_groups(), eps=1e-15), prec)
    grad_sum, grad_steps, losses, densified = torch.zeros(len(model), device=device), 0, [], []
    for it in range(1, args.iterations + 1):
        with prec.autocast():
            image, depth = render(model, pix, args.size)
            loss = splat_loss(image, depth, target, target_depth)
        opt.backward(loss)
        opt.unscale_()
        grad_sum += model._xy.grad.norm(dim=1)  # densification statistic: mean positional gradient
        grad_steps += 1
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        if it >= args.densify_from and it % args.densify_every == 0 and it < args.iterations:
            stat = grad_sum / grad_steps
            cloned, pruned = model.densify_and_prune(
                stat, args.densify_grad_threshold, args.min_opacity, args.max_points, gen
            )
            opt.rebind(torch.optim.Adam(model.param_groups(), eps=1e-15))
            grad_sum, grad_steps = torch.zeros(len(model), device=device), 0
            densified.append({"iteration": it, "cloned": cloned, "pruned": pruned, "gaussians": len(model)})
        if it % args.log_every == 0 or it == args.iterations:
            print(f"iter {it:5d}  loss {losses[-1]:.5f}  gaussians {len(model)}")
    result = {
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "gaussians": len(model),
        "densified": densified,
    }
    print(json.dumps(result))
    if args.out:
        write_atomic(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:  # a flag combination argparse cannot check on its own
        print(f"{sys.argv[0]}: error: {err}", file=sys.stderr)
        sys.exit(2)
