"""Normalisation layers other than nn.LayerNorm."""
from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm: x / rms(x) * weight, no mean subtraction, no bias (T5's "LayerNorm").

    arXiv:1910.07467. The mean of squares is taken in float32 whatever the input dtype, so
    bf16 / fp16 activations do not lose the statistic; the result comes back in the input dtype.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
