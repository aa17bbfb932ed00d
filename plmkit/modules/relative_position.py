"""Relative position encodings that enter attention through both the keys and the values.

NEZHA (arXiv:1909.00204) uses the scheme of Shaw et al. (arXiv:1803.02155) with a fixed
(functional, sinusoidal) table instead of a learned one. With a_ij = r[clip(j - i)],

    score_ij = q_i · (k_j + a_ij) / sqrt(d)        out_i = Σ_j p_ij (v_j + a_ij)

where clip bounds the distance to [-M, M] (M = max_relative_position). The table row for
distance δ is the sinusoid of the shifted index δ + M in 0..2M, as NEZHA's released code
computes it: row r holds sin(r·w_0), cos(r·w_0), sin(r·w_1), ... with w_i = 10000^(-2i/d).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache, Positions
from .linear import Linear


def sinusoid_table(rows: int, dim: int) -> torch.Tensor:
    """(rows, dim) float64 table: row r = [sin(r w_0), cos(r w_0), sin(r w_1), cos(r w_1), ...]."""
    if dim % 2:
        raise ValueError(f"a sinusoid table needs an even width, found {dim}")
    w = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))  # (dim/2,)
    angle = torch.arange(rows, dtype=torch.float64)[:, None] * w  # (rows, dim/2)
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)  # interleaved sin, cos


def relative_index(q_len: int, k_len: int, max_distance: int, device=None, offset: int = 0) -> torch.Tensor:
    """(Tq, Tk) row of the table for each (query i, key j): clip(j - i, -M, M) + M.

    Queries sit at positions offset..offset+Tq-1 (a KV cache holds the `offset` earlier tokens).
    """
    i = torch.arange(offset, offset + q_len, device=device)[:, None]
    j = torch.arange(k_len, device=device)[None, :]
    return (j - i).clamp(-max_distance, max_distance) + max_distance


def relative_index_from_positions(query: torch.Tensor, key: torch.Tensor, max_distance: int) -> torch.Tensor:
    """(B|1, Tq, Tk) table row for each (query i, key j) from given positions: clip(p_j - p_i, -M, M) + M."""
    if query.dim() != 2 or key.dim() != 2:
        raise ValueError("relative positions are 1-D: position_ids must be (batch, tokens), found query positions "
                         f"{tuple(query.shape)} and key positions {tuple(key.shape)}")
    distance = key[:, None, :] - query[:, :, None]  # (B|1, Tq, Tk)
    return (distance.clamp(-max_distance, max_distance) + max_distance).long()


class FunctionalRelativePositions(nn.Module):
    """NEZHA's fixed relative position table: nothing to learn, nothing saved."""

    def __init__(self, head_size: int, max_relative_position: int = 64) -> None:
        super().__init__()
        if max_relative_position < 1:
            raise ValueError(f"max_relative_position must be >= 1, found {max_relative_position}")
        if head_size % 2:
            raise ValueError(f"functional relative positions need an even head size, found {head_size}")
        self.head_size, self.max_relative_position = head_size, max_relative_position
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def table(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(2M+1, hs) embeddings of the clipped distances -M..M (row δ + M)."""
        key = (device, dtype, torch.is_inference_mode_enabled())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, sinusoid_table(2 * self.max_relative_position + 1, self.head_size).to(device, dtype))
        return self._cache[1]

    def index(self, q_len: int, k_len: int, device: torch.device | None = None, offset: int = 0) -> torch.Tensor:
        """(Tq, Tk) table row of each query/key pair (queries from position `offset`)."""
        return relative_index(q_len, k_len, self.max_relative_position, device, offset)

    def forward(self, q_len: int, k_len: int | None = None, *, device=None, dtype=torch.float32) -> torch.Tensor:
        """The full (Tq, Tk, hs) tensor a_ij (for inspection; attention uses the compact table)."""
        k_len = q_len if k_len is None else k_len
        return self.table(device, dtype)[self.index(q_len, k_len, device)]

    def extra_repr(self) -> str:
        return f"head_size={self.head_size}, max_relative_position={self.max_relative_position}"


class RelativeSelfAttention(nn.Module):
    """Fused-QKV self-attention whose scores and outputs also read relative positions (NEZHA).

        x ──► qkv ──► split heads ──► q·kᵀ + q·a_ij ──► softmax(mask) ──► p·v + Σ_j p_ij a_ij ──► out

    Same parameters (qkv, out) as SelfAttention, so name maps are shared. The softmax is
    explicit: the value term needs the probabilities, which SDPA does not return. Only
    2M+1 distinct a_ij exist, so both extra terms go through the (2M+1, hs) table:
    q·a_ij is gathered from q·tableᵀ, and Σ_j p_ij a_ij is (p summed per distance)·table.
    Under a KV cache (see attention.KVCache) the new queries sit after the cached keys.
    Distances are j - i by default, p_j - p_i when the stack attaches positions p.
    """

    kv_cache: KVCache | None = None  # attached by a stack running with a cache
    positions: Positions | None = None  # attached by a stack given position ids (see attention.attach_positions)
    reads_positions = True  # distances come from positions

    def __init__(self, hidden_size: int, num_heads: int, head_size: int, *, relative: FunctionalRelativePositions,
                 bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if relative.head_size != head_size:
            raise ValueError(f"relative position table width {relative.head_size} != head size {head_size}")
        self.num_heads, self.head_size = num_heads, head_size
        self.qkv = Linear(hidden_size, 3 * num_heads * head_size, bias=bias)
        self.out = Linear(num_heads * head_size, hidden_size, bias=bias)
        self.dropout = dropout
        self.relative = relative

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_size).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        offset = 0
        if self.kv_cache is not None:
            offset = self.kv_cache.length
            k, v = self.kv_cache.append(k, v)  # (B, nh, L, hs)
        L = k.shape[2]
        table = self.relative.table(x.device, x.dtype)  # (R, hs), R = 2M+1
        if self.positions is None:
            index = self.relative.index(T, L, x.device, offset)  # (T, L)
        else:
            index = relative_index_from_positions(self.positions.query, self.positions.key,
                                                  self.relative.max_relative_position)[:, None]  # (B|1, 1, T, L)
        index = index.expand(B, self.num_heads, T, L)  # (B, nh, T, L)
        scores = q @ k.transpose(-1, -2)  # (B, nh, T, L)
        scores = scores + torch.gather(q @ table.t(), -1, index)  # q_i · a_ij, from (B, nh, T, R)
        scores = scores / math.sqrt(self.head_size)
        if mask is not None:
            scores = scores + mask
        if position_bias is not None:
            scores = scores + position_bias
        probs = F.dropout(scores.softmax(dim=-1), self.dropout, self.training)  # (B, nh, T, L)
        per_distance = torch.zeros(B, self.num_heads, T, table.shape[0], dtype=probs.dtype, device=probs.device)
        per_distance = per_distance.scatter_add(-1, index, probs)  # (B, nh, T, R): p mass at each clipped distance
        y = probs @ v + per_distance @ table  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_size))
