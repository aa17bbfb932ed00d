"""Position signals that are added to the embeddings."""
from __future__ import annotations

import torch
from torch import nn


class LearnedPositions(nn.Module):
    """A learned table indexed 0..T-1 (+ offset) (BERT, GPT)."""

    def __init__(self, max_position: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_position, dim))

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.weight.shape[0]:
            raise ValueError(f"sequence length {T} exceeds the {self.weight.shape[0]} learned positions")
        if position_ids is None:
            return self.weight[:T][None]  # (1, T, D)
        return self.weight[position_ids]  # (B, T, D)


class PaddingAwarePositions(LearnedPositions):
    """RoBERTa's learned positions: non-pad tokens count from pad_id + 1, pads sit at pad_id."""

    def __init__(self, max_position: int, dim: int, pad_token_id: int) -> None:
        super().__init__(max_position, dim)
        self.pad_token_id = pad_token_id

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if position_ids is None:
            not_pad = input_ids.ne(self.pad_token_id).long()
            position_ids = torch.cumsum(not_pad, dim=1) * not_pad + self.pad_token_id
        if int(position_ids.max()) >= self.weight.shape[0]:
            raise ValueError(f"position {int(position_ids.max())} exceeds the {self.weight.shape[0]} learned positions")
        return self.weight[position_ids]
