"""DeBERTa's disentangled attention: content and relative position as separate vectors, with log-bucketed distances.

He et al. 2020, "DeBERTa" (arXiv:2006.03654), section 3.1; v2's log buckets and shared projections as
microsoft/DeBERTa's code (and transformers' DebertaV2) compute them; kexue.fm/archives/8130. With
δ_ij = bucket(i - j) clamped to the 2k learned relative embeddings P (k = `buckets`):

    score_ij = [ q_i·k_j  +  q_i·K^r_{δ_ij}  +  k_j·Q^r_{δ_ij} ] / sqrt(3 d)
                 content    content→position    position→content

where Q^r = P W_q + b_q and K^r = P W_k + b_k reuse the content projections (v2's share_att_key).
(The paper writes the p2c index as δ(j, i); the released code, followed here, indexes both terms by
i - j.) Distances below k/2 keep their own bucket; longer ones share log-spaced buckets up to
`max_distance` and beyond it, so the score depends on positions only through i - j.

    x ──► qkv ─┬─► q·kᵀ ─────────────────────────────┐
               ├─► gather_δ(q·(K^r)ᵀ)                  ├─► / sqrt(3d) ─► softmax(mask) ─► ·v ─► out
    P ──► q,k ─┴─► gather_δ(k·(Q^r)ᵀ), transposed ────┘
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Positions
from .linear import Linear


def log_bucket_position(relative: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """DeBERTa-v2's bucket of each signed distance: |δ| <= buckets/2 exact, longer ones log-spaced (sign kept)."""
    sign = torch.sign(relative)
    mid = buckets // 2
    near = (relative < mid) & (relative > -mid)
    magnitude = torch.where(near, torch.full_like(relative, mid - 1), relative.abs()).float()
    # float32 as the released code rounds it: ceil() of a float64 log could land in another bucket at a boundary
    far = torch.ceil(torch.log(magnitude / mid) / torch.log(torch.tensor((max_distance - 1) / mid)) * (mid - 1)) + mid
    return torch.where(magnitude <= mid, relative.float(), far * sign).long()


class DisentangledPositions(nn.Module):
    """The 2k learned relative embeddings P (`weight`, (2 buckets, hidden)) and the distance -> row rule.

    `norm` (optional) normalises P before use (DeBERTa-v2's norm_rel_ebd="layer_norm").
    """

    def __init__(self, hidden_size: int, *, buckets: int = 256, max_distance: int = 512,
                 norm: nn.Module | None = None) -> None:
        super().__init__()
        if buckets < 2 or max_distance <= buckets // 2 + 1:
            raise ValueError(f"disentangled positions need buckets >= 2 and max_distance > buckets/2 + 1, found "
                             f"buckets={buckets}, max_distance={max_distance}")
        self.buckets, self.max_distance = buckets, max_distance
        self.weight = nn.Parameter(torch.zeros(2 * buckets, hidden_size))
        self.norm = norm

    def embeddings(self) -> torch.Tensor:
        """(2k, hidden) relative embeddings as attention reads them."""
        return self.weight if self.norm is None else self.norm(self.weight)

    def index(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """(B|1, Tq, Tk) row of P for each pair from positions (B|1, Tq), (B|1, Tk): clamp(bucket(i - j) + k)."""
        delta = log_bucket_position(query[:, :, None] - key[:, None, :], self.buckets, self.max_distance)
        return (delta + self.buckets).clamp(0, 2 * self.buckets - 1)

    def extra_repr(self) -> str:
        return f"buckets={self.buckets}, max_distance={self.max_distance}"


class DisentangledSelfAttention(nn.Module):
    """Fused-QKV self-attention scored by content, content→position and position→content (DeBERTa-v2).

    `terms` picks the position terms ("c2p", "p2c"); the scale is 1/sqrt(head_size × (1 + len(terms))).
    Positions default to 0..T-1; a stack that attaches `Positions` gives them (distances p_i - p_j).
    """

    positions: Positions | None = None  # attached by a stack given position ids (see attention.attach_positions)
    reads_positions = True

    def __init__(self, hidden_size: int, num_heads: int, head_size: int, *, relative: DisentangledPositions,
                 terms: tuple[str, ...] = ("c2p", "p2c"), bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        unknown = set(terms) - {"c2p", "p2c"}
        if unknown:
            raise ValueError(f"disentangled attention terms are 'c2p' and 'p2c', found {sorted(unknown)}")
        if relative.weight.shape[1] != hidden_size:
            raise ValueError(f"relative embeddings of width {relative.weight.shape[1]} != hidden size {hidden_size}")
        self.num_heads, self.head_size = num_heads, head_size
        self.qkv = Linear(hidden_size, 3 * num_heads * head_size, bias=bias)
        self.out = Linear(num_heads * head_size, hidden_size, bias=bias)
        self.relative, self.terms, self.dropout = relative, tuple(terms), dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        nh, hs, width = self.num_heads, self.head_size, self.num_heads * self.head_size
        q, k, v = self.qkv(x).view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        if self.positions is None:
            where = torch.arange(T, device=x.device)[None]
            index = self.relative.index(where, where)  # (1, T, T)
        else:
            index = self.relative.index(self.positions.query, self.positions.key)  # (B|1, T, T)
        index = index[:, None].expand(B, nh, T, index.shape[-1])  # (B, nh, T, L)
        w, b = self.qkv.weight[:2 * width], None if self.qkv.bias is None else self.qkv.bias[:2 * width]
        # the relative embeddings through the content projections (shared): Q^r, K^r (nh, 2k, hs)
        qr, kr = F.linear(self.relative.embeddings(), w, b).view(-1, 2, nh, hs).permute(1, 2, 0, 3)
        scores = q @ k.transpose(-1, -2)  # (B, nh, T, L)
        if "c2p" in self.terms:
            scores = scores + torch.gather(q @ kr.transpose(-1, -2), -1, index)  # q_i · K^r_δij
        if "p2c" in self.terms:
            by_key = (k @ qr.transpose(-1, -2)).transpose(-1, -2)  # (B, nh, 2k, L): k_j · Q^r_r
            scores = scores + torch.gather(by_key, -2, index)  # k_j · Q^r_δij
        scores = scores / math.sqrt(hs * (1 + len(self.terms)))
        if mask is not None:
            scores = scores + mask
        if position_bias is not None:
            scores = scores + position_bias
        probs = F.dropout(scores.softmax(dim=-1), self.dropout, self.training)
        y = probs @ v  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(B, T, width))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_size={self.head_size}, terms={self.terms}"
