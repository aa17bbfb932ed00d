"""Position-wise feed-forward networks."""
from __future__ import annotations

import torch
from torch import nn

from .linear import Linear, canonical_activation


class FeedForward(nn.Module):
    """up ─► activation ─► down (BERT, GPT, T5.1.0)."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str, *, bias: bool = True) -> None:
        super().__init__()
        self.up = Linear(hidden_size, intermediate_size, bias=bias)
        self.down = Linear(intermediate_size, hidden_size, bias=bias)
        self.act = canonical_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.up.forward_act(x, self.act))
