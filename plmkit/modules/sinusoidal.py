"""Absolute sinusoidal positions (Vaswani et al. 2017, arXiv:1706.03762, section 3.5), added to the embeddings.

    PE(p, 2i) = sin(p w_i)      PE(p, 2i+1) = cos(p w_i)      w_i = base^(-2i/d)

Nothing is learned and any position has a vector. Each pair (sin, cos) of PE(p + k) is the pair of
PE(p) turned by the angle k w_i, so PE(p + k) = M_k PE(p) with M_k block-diagonal and independent
of p: the property the paper hoped would let attention read relative offsets (kexue.fm/archives/8130).
"""
from __future__ import annotations

import torch
from torch import nn


def sinusoid(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """(..., dim) float64 PE rows for integer or real positions (...): interleaved sin, cos pairs."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even width, found {dim}")
    w = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)  # (dim/2,)
    angle = positions.to(torch.float64)[..., None] * w  # (..., dim/2)
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2)


class SinusoidalPositions(nn.Module):
    """Fixed sinusoids with LearnedPositions' interface: (input_ids, position_ids) -> additive vectors.

    Positions default to 0..T-1; given ones are (T,) or (B, T). No parameters, no length limit.
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal positions need an even width, found {dim}")
        self.dim, self.base = dim, float(base)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # (1, T)
        if position_ids.shape[-1] != input_ids.shape[1]:
            raise ValueError(f"position_ids must be (batch, {input_ids.shape[1]}), found {tuple(position_ids.shape)}")
        return sinusoid(position_ids, self.dim, self.base).float()  # (B|1, T, D)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base:g}"
