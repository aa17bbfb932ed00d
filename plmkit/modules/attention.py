"""Multi-head self-attention on torch's scaled_dot_product_attention.

    x ──► qkv (one fused Linear) ──► split heads ──► [position hook on q, k] ──► SDPA(mask) ──► out Linear

Position schemes that act on q and k (rotary) or add a score bias (T5, NEZHA) are passed in
as modules; this class knows nothing about any particular family.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear


class SelfAttention(nn.Module):
    """Fused-QKV self-attention; `rotary` (optional) rotates q and k before the product."""

    def __init__(self, hidden_size: int, num_heads: int, head_size: int, *, bias: bool = True,
                 dropout: float = 0.0, rotary: nn.Module | None = None, scale: float | None = None) -> None:
        super().__init__()
        self.num_heads, self.head_size = num_heads, head_size
        self.qkv = Linear(hidden_size, 3 * num_heads * head_size, bias=bias)
        self.out = Linear(num_heads * head_size, hidden_size, bias=bias)
        self.dropout = dropout
        self.rotary = rotary
        self.scale = scale  # None: 1/sqrt(head_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_size).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        if position_bias is not None:
            mask = position_bias if mask is None else mask + position_bias
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_size))
