"""Transformer-XL's relative positional attention, with segment-level memory.

Dai et al. 2019, "Transformer-XL" (arXiv:1901.02860), section 3.3; kexue.fm/archives/8130 (the
position-encoding zoo). With queries from this segment and keys from [memory; segment]:

    score_ij = (q_i + u) · k_j  +  (q_i + v) · W_r R_{i-j}          (times 1/sqrt(head size))
             = content (a) + content bias (c) + content-to-position (b) + position bias (d)

R_δ is a fixed sinusoid of the distance δ = i - j (query minus key position), laid out
[sin(δ w_0), ..., sin(δ w_{d/2-1}), cos(δ w_0), ...] with w_k = 10000^(-2k/d) over the model width d;
W_r (`r`) projects it to each head's key space; u and v (the released code's r_w_bias and
r_r_bias) are learned per head and replace the query's absolute-position part. Nothing in the
score reads an absolute position, so the memory of the previous segment can be attended to
without positions clashing.

    x ──► q (this segment)          ┐
    [memory; x] ──► k, v            ├─► (q+u)·kᵀ + gather_δ((q+v)·(W_r R)ᵀ) ──► softmax(mask) ──► ·v ──► out
    R (distances in use) ──► W_r   ┘

`memory` (B, M, D) is attached by the model for one call, as `attention.attach_positions` attaches
positions: blocks pass nothing extra. Distances default to (M + t) - j for query t and key j;
a stack that attaches `Positions` gives them as p_i - p_j (keys: memory then segment).
Used as the attention of any encoder block (post_norm_block(config, attn)), it needs no memory and
reads signed distances (the sinusoid is defined for negative ones too).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Positions
from .linear import Linear


def xl_sinusoid(distances: torch.Tensor, dim: int) -> torch.Tensor:
    """(..., dim) float64 rows [sin(δ w), cos(δ w)] (halves, not interleaved) for distances δ, w_k = 10000^(-2k/dim)."""
    if dim % 2:
        raise ValueError(f"Transformer-XL's relative sinusoid needs an even width, found {dim}")
    inv = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64, device=distances.device) / dim)
    angle = distances.to(torch.float64)[..., None] * inv  # (..., dim/2)
    return torch.cat((angle.sin(), angle.cos()), dim=-1)


class XLRelativePositions(nn.Module):
    """Transformer-XL's fixed relative position signal R_δ of width `dim` (the model width).

    `clamp_len` > 0 caps |δ| there (the released code's clamp_len: distances beyond it share one
    row); <= 0 leaves distances unclamped. No parameters: nothing is saved, one instance can serve
    every layer.
    """

    def __init__(self, dim: int, clamp_len: int = 0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"Transformer-XL's relative sinusoid needs an even model width, found {dim}")
        self.dim, self.clamp_len = dim, clamp_len

    def table(self, low: int, high: int, device: torch.device | None, dtype: torch.dtype) -> torch.Tensor:
        """(high - low + 1, dim): row r is R_δ for δ = low + r (clamped to ±clamp_len)."""
        distances = torch.arange(low, high + 1, device=device)
        if self.clamp_len > 0:
            distances = distances.clamp(-self.clamp_len, self.clamp_len)
        return xl_sinusoid(distances, self.dim).to(dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, clamp_len={self.clamp_len}"


class XLRelativeAttention(nn.Module):
    """Multi-head attention with Transformer-XL's relative scores and an optional memory of earlier states.

    Parameters: `qkv` (one fused projection, no bias in the released model), `r` (W_r), `out`,
    and the per-head biases `u`, `v` (nh, hs). Memory keys are never masked by the causal mask
    here: the caller's mask (B|1, 1|nh, T, M + T) covers memory and segment together.
    """

    positions: Positions | None = None  # attached by a stack given position ids (see attention.attach_positions)
    memory: torch.Tensor | None = None  # (B, M, D) attached by a Transformer-XL stack for one call
    reads_positions = True  # scores read distances

    def __init__(self, hidden_size: int, num_heads: int, head_size: int, *, relative: XLRelativePositions,
                 bias: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if relative.dim != hidden_size:
            raise ValueError(f"Transformer-XL relative signal width {relative.dim} != hidden size {hidden_size}")
        self.num_heads, self.head_size = num_heads, head_size
        self.qkv = Linear(hidden_size, 3 * num_heads * head_size, bias=bias)
        self.r = Linear(hidden_size, num_heads * head_size, bias=False)  # W_r: R_δ -> each head's key space
        self.out = Linear(num_heads * head_size, hidden_size, bias=bias)
        self.u = nn.Parameter(torch.zeros(num_heads, head_size))  # content bias (replaces U_i W_q in term c)
        self.v = nn.Parameter(torch.zeros(num_heads, head_size))  # position bias (term d)
        self.dropout = dropout
        self.relative = relative

    def _distances(self, T: int, L: int, device: torch.device) -> tuple[torch.Tensor, int, int]:
        """(B|1, T, L) distance index into the table of distances low..high, and (low, high)."""
        if self.positions is None:  # queries sit at M..M+T-1, keys at 0..L-1 (M = L - T memory slots)
            M = L - T
            delta = torch.arange(M, L, device=device)[:, None] - torch.arange(L, device=device)[None, :]
            low, high = M - (L - 1), L - 1  # -(T - 1) .. L - 1
            return (delta - low)[None], low, high
        query, key = self.positions.query, self.positions.key
        if query.dim() != 2 or key.dim() != 2 or key.shape[-1] != L:
            raise ValueError(f"Transformer-XL positions are 1-D: expected query positions (B|1, {T}) and key positions "
                             f"(B|1, {L}), found {tuple(query.shape)} and {tuple(key.shape)}")
        delta = query[:, :, None] - key[:, None, :]  # (B|1, T, L)
        low, high = int(delta.min()), int(delta.max())
        return delta - low, low, high

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        nh, hs = self.num_heads, self.head_size
        full = x if self.memory is None else torch.cat((self.memory.to(x.dtype), x), dim=1)  # (B, L, D), L = M + T
        L = full.shape[1]
        w = self.qkv.weight
        b = self.qkv.bias
        width = nh * hs
        # queries from the segment only; keys and values from memory and segment (no wasted memory queries)
        q = F.linear(x, w[:width], None if b is None else b[:width])
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        kv = F.linear(full, w[width:], None if b is None else b[width:]).view(B, L, 2, nh, hs)
        k, v = kv.permute(2, 0, 3, 1, 4)  # 2 x (B, nh, L, hs)
        index, low, high = self._distances(T, L, x.device)  # (B|1, T, L)
        table = self.relative.table(low, high, x.device, x.dtype)  # (R, D)
        rk = self.r(table).view(-1, nh, hs).transpose(0, 1)  # (nh, R, hs)
        content = (q + self.u[:, None]) @ k.transpose(-1, -2)  # (B, nh, T, L): terms a + c
        by_distance = (q + self.v[:, None]) @ rk.transpose(-1, -2)  # (B, nh, T, R)
        position = torch.gather(by_distance, -1, index[:, None].expand(B, nh, T, L))  # terms b + d
        scores = (content + position) / math.sqrt(hs)
        if mask is not None:
            scores = scores + mask
        if position_bias is not None:
            scores = scores + position_bias
        probs = F.dropout(scores.softmax(dim=-1), self.dropout, self.training)  # (B, nh, T, L)
        y = probs @ v  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(B, T, width))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_size={self.head_size}"
