"""Your own model in distclip: a small causal Transformer language model on the bundled Penn Treebank.

Everything distclip needs from you is here: ``model()`` returns an ``nn.Module``, ``data()`` returns
(train, test) datasets of (input, label) pairs, and the config (transformer_ptb.toml) names them. Nothing in
this file knows about distclip's algorithms; any of them (CELGC, Clip21, EPISODE, SCAFFOLD, ...) trains it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distclip.data.corpus import load_corpus

CONTEXT = 32  # tokens per training window
WIDTH, HEADS, LAYERS = 64, 2, 2


class Block(nn.Module):
    """Pre-norm Transformer block: causal self-attention, then an MLP, each with a residual connection."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(w, dim=-1)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(w // self.heads)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, w))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, width: int = WIDTH, heads: int = HEADS, layers: int = LAYERS) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(CONTEXT, width))
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position[: tokens.shape[-1]]
        return self.head(self.norm(self.blocks(x)))  # logits [batch, time, vocab]


def model() -> nn.Module:
    return TinyGPT(len(load_corpus("ptb").vocab))


def _windows(ids: torch.Tensor) -> torch.utils.data.TensorDataset:
    """Non-overlapping windows: input tokens t..t+C-1, labels t+1..t+C."""
    n = (len(ids) - 1) // CONTEXT
    x = ids[: n * CONTEXT].view(n, CONTEXT)
    y = ids[1: n * CONTEXT + 1].view(n, CONTEXT)
    return torch.utils.data.TensorDataset(x, y)


def data() -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    corpus = load_corpus("ptb")
    return _windows(torch.from_numpy(corpus.train)), _windows(torch.from_numpy(corpus.valid))
