"""``tinygpt``: a small decoder-only transformer on generated tokens (matmul-bound, no download).

The corpus is a seeded second-order Markov chain with sparse transitions: structured enough
that the loss falls fast, and identical on every machine. Throughput is reported in tokens.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import Task, TaskSpec
from .metrics import accuracy

_CORPUS_SEED = 1234


@functools.lru_cache(maxsize=4)
def markov_corpus(vocab: int = 64, length: int = 120_000, branching: int = 3) -> torch.Tensor:
    """Tokens of a second-order Markov chain: each (a, b) context has ``branching`` likely successors."""
    rng = np.random.default_rng(_CORPUS_SEED)
    successors = rng.integers(0, vocab, size=(vocab, vocab, branching))
    weights = rng.dirichlet(np.ones(branching), size=(vocab, vocab))
    choice = rng.random(length)
    tokens = np.empty(length, dtype=np.int64)
    tokens[:2] = rng.integers(0, vocab, size=2)
    cumulative = weights.cumsum(axis=-1)
    for t in range(2, length):
        a, b = tokens[t - 2], tokens[t - 1]
        k = min(int(np.searchsorted(cumulative[a, b], choice[t])), branching - 1)
        tokens[t] = successors[a, b, k]
    return torch.from_numpy(tokens)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a 4x MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    """Token + position embeddings, ``layers`` blocks, final norm, untied head."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, seq_len: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq_len, dim)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(
                    p, std=0.02 / (math.sqrt(2 * layers) if name.endswith("proj.weight") else 1.0)
                )

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.norm(self.blocks(self.tok(idx) + self.pos(positions))))


def _next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


#: ``TaskSpec.size`` -> (vocab, dim, layers, heads, context). ``gpu`` is GPT-2 small's body (12 layers,
#: d=768, 12 heads, context 1024; 85M parameters with this task's 64-token vocabulary): on a GPU its
#: matmuls, not kernel launches, set the step time.
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "small": (64, 32, 1, 2, 16),
    "default": (64, 256, 4, 4, 128),
    "gpu": (64, 768, 12, 12, 1024),
}


def make_task(spec: TaskSpec) -> Task:
    """Factory for tinygpt: dim 256, 4 layers, seq 128 (``size="small"``: dim 32, 1 layer, seq 16;
    ``size="gpu"``: GPT-2 small's shape, dim 768, 12 layers, seq 1024)."""
    if spec.size not in SIZES:
        raise ValueError(f"tinygpt task: size {spec.size!r}; valid: {', '.join(SIZES)}")
    vocab, dim, layers, heads, seq = SIZES[spec.size]
    corpus = markov_corpus(vocab)
    split = int(len(corpus) * 0.9)
    train_tokens, eval_tokens = corpus[:split].to(spec.device), corpus[split:].to(spec.device)
    torch.manual_seed(spec.seed)
    model = TinyGPT(vocab, dim, layers, heads, seq)

    def windows(tokens: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = starts.to(tokens.device)[:, None] + torch.arange(seq + 1, device=tokens.device)
        chunk = tokens[offsets]
        return chunk[:, :-1], chunk[:, 1:]

    def train_batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(spec.seed * 1_000_003 + i)
        return windows(train_tokens, torch.randint(0, split - seq - 1, (spec.batch_size,), generator=gen))

    eval_starts = torch.arange(0, len(eval_tokens) - seq - 1, max(seq, (len(eval_tokens) - seq) // 64))[:64]

    def eval_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [windows(eval_tokens, eval_starts[i : i + 16]) for i in range(0, len(eval_starts), 16)]

    return Task(
        name="tinygpt",
        model=model,
        train_batch=train_batch,
        eval_batches=eval_batches,
        loss_fn=_next_token_loss,
        metric_fn=accuracy,
        metric_name="next_token_accuracy",
        samples_per_epoch=0,
        items_per_sample=seq,
        item_unit="tokens",
        default_lr=1e-3,
    )
