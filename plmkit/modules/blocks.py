"""Transformer blocks: how attention, feed-forward, norms and residuals are arranged."""
from __future__ import annotations

import torch
from torch import nn


class PostNormBlock(nn.Module):
    """BERT's arrangement (arXiv:1706.03762):

        x ─► attn ─► dropout ─► (+x) ─► attn_norm ─► h ─► ffn ─► dropout ─► (+h) ─► ffn_norm
    """

    def __init__(self, attn: nn.Module, ffn: nn.Module, attn_norm: nn.Module, ffn_norm: nn.Module,
                 dropout: float) -> None:
        super().__init__()
        self.attn, self.attn_norm = attn, attn_norm
        self.ffn, self.ffn_norm = ffn, ffn_norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn_norm(x + self.dropout(self.attn(x, mask, position_bias)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class PreNormBlock(nn.Module):
    """GPT-2's arrangement (Radford et al. 2019; arXiv:2002.04745 on why it trains stably):

        x ─► attn_norm ─► attn ─► dropout ─► (+x) ─► h ─► ffn_norm ─► ffn ─► dropout ─► (+h)
    """

    def __init__(self, attn: nn.Module, ffn: nn.Module, attn_norm: nn.Module, ffn_norm: nn.Module,
                 dropout: float) -> None:
        super().__init__()
        self.attn_norm, self.attn = attn_norm, attn
        self.ffn_norm, self.ffn = ffn_norm, ffn
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), mask, position_bias))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class SharedBlocks(nn.Module):
    """One block applied `times` times (ALBERT's cross-layer sharing): one copy of the weights."""

    def __init__(self, block: nn.Module, times: int) -> None:
        super().__init__()
        self.block, self.times = block, times

    def __iter__(self):
        return iter([self.block] * self.times)

    def __len__(self) -> int:
        return self.times
