"""GlobalPointer: every (start, end) token pair scored at once, one score matrix per entity type.

    hidden (B, T, H) ─► Linear ─► q, k (B, T, heads, hs) ─► RoPE on both (relative positions)
                     ─► s[b, h, i, j] = q_i · k_j / √hs   (i = start, j = end)
                     ─► padding rows/columns and i > j set to NEG ─► (B, heads, T, T)

Su et al., https://kexue.fm/archives/8373 (with RoPE, https://kexue.fm/archives/8265). Trained
with the multilabel cross-entropy (losses.multilabel_categorical_crossentropy) for nested NER,
or with a softmax over all T² pairs when exactly one span is the answer (extractive MRC).
A span is predicted where its score is above the threshold (0).
"""
from __future__ import annotations

import torch
from torch import nn

from ..modules.linear import Linear
from ..modules.rotary import RotaryEmbedding

__all__ = ["GlobalPointer", "NEG", "decode_spans", "span_targets"]

NEG = -1e12  # score of pairs that can never be a span; exp() of it is 0 in fp32


class GlobalPointer(nn.Module):
    """Scores of all (start, end) pairs for ``heads`` span types."""

    def __init__(self, hidden_size: int, heads: int, head_size: int = 64, *, rope: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        if heads < 1 or head_size < 2 or head_size % 2:
            raise ValueError(f"GlobalPointer: heads must be >= 1 and head_size even, found {heads}, {head_size}")
        self.heads, self.head_size = heads, head_size
        self.dense = Linear(hidden_size, heads * head_size * 2, bias=bias)
        self.rotary = RotaryEmbedding(head_size) if rope else None

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, heads, T, T) span scores; ``mask`` (B, T) marks tokens that may start or end a span."""
        B, T, _ = hidden.shape
        qk = self.dense(hidden).view(B, T, self.heads, 2, self.head_size)  # (B, T, h, 2, hs)
        q, k = qk[..., 0, :].transpose(1, 2), qk[..., 1, :].transpose(1, 2)  # (B, h, T, hs)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        scores = torch.matmul(q, k.transpose(-1, -2)).float() / self.head_size ** 0.5  # (B, h, T, T)
        keep = torch.ones(T, T, dtype=torch.bool, device=hidden.device).triu()  # start <= end
        keep = keep.expand(B, 1, T, T)
        if mask is not None:
            m = mask.bool()
            keep = keep & m[:, None, :, None] & m[:, None, None, :]
        return scores.masked_fill(~keep, NEG)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, head_size={self.head_size}, rope={self.rotary is not None}"


def span_targets(spans: list[list[tuple[int, int, int]]], heads: int, length: int) -> torch.Tensor:
    """(B, heads, T, T) 0/1 targets from (head, start, end) token spans per sequence (end inclusive)."""
    out = torch.zeros(len(spans), heads, length, length)
    for b, items in enumerate(spans):
        for h, s, e in items:
            if not (0 <= h < heads and 0 <= s <= e < length):
                raise ValueError(f"span_targets: sequence {b}: span (head {h}, {s}, {e}) outside "
                                 f"{heads} heads x length {length} (or start > end)")
            out[b, h, s, e] = 1.0
    return out


def decode_spans(scores: torch.Tensor, threshold: float = 0.0) -> list[list[tuple[int, int, int, float]]]:
    """(head, start, end, score) of every pair scoring above ``threshold``, per sequence, sorted by position."""
    if scores.dim() != 4 or scores.shape[-1] != scores.shape[-2]:
        raise ValueError(f"decode_spans: expected (B, heads, T, T) scores, found shape {tuple(scores.shape)}")
    found: list[list[tuple[int, int, int, float]]] = [[] for _ in range(scores.shape[0])]
    index = (scores > threshold).nonzero()  # (N, 4): b, h, start, end
    values = scores[tuple(index.t())].tolist()
    for (b, h, s, e), v in zip(index.tolist(), values):
        found[b].append((h, s, e, v))
    for items in found:
        items.sort(key=lambda x: (x[1], x[2], x[0]))
    return found
