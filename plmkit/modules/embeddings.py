"""Input embeddings: token + segment + position, normalised."""
from __future__ import annotations

import torch
from torch import nn

from .linear import Linear


class Embeddings(nn.Module):
    """token (+ segment) (+ position) ─► norm ─► dropout (─► project to hidden, ALBERT/ELECTRA).

    `positions` is any module mapping (input_ids, position_ids) to additive position vectors,
    or None for families whose positions live inside attention (RoFormer, NEZHA).
    """

    def __init__(self, vocab_size: int, dim: int, *, type_vocab_size: int, positions: nn.Module | None,
                 norm: nn.Module | None, dropout: float, project_to: int | None = None) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, dim)
        self.segment = nn.Embedding(type_vocab_size, dim) if type_vocab_size > 0 else None
        self.position = positions
        self.norm = norm
        self.dropout = nn.Dropout(dropout)
        self.project = Linear(dim, project_to) if project_to is not None else None

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        x = self.token(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        if self.segment is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.segment(token_type_ids)
        if self.position is not None:
            x = x + self.position(input_ids, position_ids)
        if self.norm is not None:
            x = self.norm(x)
        x = self.dropout(x)
        return self.project(x) if self.project is not None else x
