"""Position-wise feed-forward networks."""
from __future__ import annotations

import torch
from torch import nn

from .linear import Linear, activation, canonical_activation


class FeedForward(nn.Module):
    """up ─► activation ─► down (BERT, GPT, T5.1.0)."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str, *, bias: bool = True) -> None:
        super().__init__()
        self.up = Linear(hidden_size, intermediate_size, bias=bias)
        self.down = Linear(intermediate_size, hidden_size, bias=bias)
        self.act = canonical_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.up.forward_act(x, self.act))


class GatedFeedForward(nn.Module):
    """act(x W_gate) * (x W_up) ─► down: the GLU variants of arXiv:2002.05202 (T5.1.1, mT5).

    The gate and up projections are one fused Linear (`gate_up`, gate rows first), so the
    input is read once; the two halves are split after the matmul.
    """

    def __init__(self, hidden_size: int, intermediate_size: int, act: str, *, bias: bool = True) -> None:
        super().__init__()
        self.intermediate_size = intermediate_size
        self.gate_up = Linear(hidden_size, 2 * intermediate_size, bias=bias)
        self.down = Linear(intermediate_size, hidden_size, bias=bias)
        self.act = activation(canonical_activation(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.intermediate_size, dim=-1)  # 2 x (B, T, I)
        return self.down(self.act(gate) * up)
