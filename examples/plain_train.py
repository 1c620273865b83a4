"""A plain PyTorch training script that never imports ampkit: the kind ``ampkit compare -- ...`` studies.

It switches AMP the way the seeds' scripts do: ``USE_AMP=1`` (with ``AMP_DTYPE=fp16|bf16``) in
the environment, or the flags ``--mixed_precision --amp_dtype fp16|bf16``, turns on
``torch.autocast`` (and a ``GradScaler`` for fp16). It prints ``step N loss X`` every step and
``val acc Y`` at the end, which ``--parse`` reads::

    python examples/plain_train.py --steps 100                     # fp32
    USE_AMP=1 AMP_DTYPE=bf16 python examples/plain_train.py        # bf16 autocast
    ampkit compare --precisions fp32,bf16-mixed \\
        --parse 'step (?P<step>\\d+) loss (?P<loss>\\S+)' --parse 'val acc (?P<acc>\\S+)' \\
        -- python examples/plain_train.py --steps 100 --seed {seed}

The task: a small MLP classifying Gaussian blobs (generated from ``--seed``, no download).
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from torch import nn


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64, help="MLP width")
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0, help="data and initialisation")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out-dir", default=None, help="folder for metrics.json (a study passes {out})")
    p.add_argument("--mixed_precision", action="store_true", help="autocast (as USE_AMP=1)")
    p.add_argument("--amp_dtype", choices=("fp16", "bf16"), default=None, help="autocast dtype")
    return p.parse_args()


def amp_setting(args: argparse.Namespace) -> torch.dtype | None:
    """The autocast dtype from the flags, else from USE_AMP/AMP_DTYPE; None means fp32."""
    use = args.mixed_precision or os.environ.get("USE_AMP", "0").strip().lower() in ("1", "true", "yes", "on")
    if not use:
        return None
    name = args.amp_dtype or os.environ.get("AMP_DTYPE") or "fp16"
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[name]


def blobs(n: int, features: int, classes: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    centres = torch.randn(classes, features, generator=torch.Generator().manual_seed(1234)) * 1.5
    y = torch.randint(0, classes, (n,), generator=gen)
    return centres[y] + torch.randn(n, features, generator=gen), y


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    device = torch.device(args.device)
    dtype = amp_setting(args)
    model = nn.Sequential(
        nn.Linear(args.features, args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.classes)
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loss_fn = nn.CrossEntropyLoss()
    print(f"amp: {'off' if dtype is None else str(dtype).removeprefix('torch.')} on {device}", flush=True)
    for step in range(1, args.steps + 1):
        x, y = blobs(args.batch_size, args.features, args.classes, gen)
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        print(f"step {step} loss {loss.item():.5f}", flush=True)
    x, y = blobs(1024, args.features, args.classes, torch.Generator().manual_seed(99))
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        acc = (model(x.to(device)).argmax(1) == y.to(device)).float().mean().item()
    print(f"val acc {acc:.4f}", flush=True)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "metrics.json"), "w") as f:
            json.dump({"val_acc": acc, "last_loss": loss.item(), "amp": str(dtype)}, f)


if __name__ == "__main__":
    main()
