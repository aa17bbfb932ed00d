"""Encoder-decoder (cross) attention: queries from the decoder, keys and values from the encoder output.

    x ──► q ──┐
              ├─► SDPA(memory mask) ──► out
    memory ──► kv (one fused Linear) ──► k, v

`memory_kv` and `attend` are separate so that incremental decoding can project the encoder
output once and reuse k, v for every generated token: under a KV cache (attention.KVCache,
attached by the decoder stack) the first step stores them and later steps read them back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache
from .linear import Linear


class CrossAttention(nn.Module):
    """Multi-head attention of `x` over `memory`; `scale=None` means 1/sqrt(head_size)."""

    kv_cache: KVCache | None = None  # attached by a stack running with a cache

    def __init__(self, hidden_size: int, num_heads: int, head_size: int, *, memory_size: int | None = None,
                 bias: bool = True, dropout: float = 0.0, scale: float | None = None) -> None:
        super().__init__()
        self.num_heads, self.head_size = num_heads, head_size
        self.q = Linear(hidden_size, num_heads * head_size, bias=bias)
        self.kv = Linear(memory_size or hidden_size, 2 * num_heads * head_size, bias=bias)
        self.out = Linear(num_heads * head_size, hidden_size, bias=bias)
        self.dropout = dropout
        self.scale = scale

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the encoder output, each (B, nh, S, hs)."""
        B, S, _ = memory.shape
        kv = self.kv(memory).view(B, S, 2, self.num_heads, self.head_size)
        k, v = kv.permute(2, 0, 3, 1, 4)  # 2 x (B, nh, S, hs)
        return k, v

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of x (B, T, H) over precomputed k, v; `mask` is additive, broadcastable to (B, nh, T, S)."""
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_size))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.kv_cache is not None:
            return self.attend(x, *self.kv_cache.memory_kv(memory, self.memory_kv), mask)
        return self.attend(x, *self.memory_kv(memory), mask)
