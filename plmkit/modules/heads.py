"""Output heads over the final hidden states."""
from __future__ import annotations

import torch
from torch import nn

from .linear import Linear, canonical_activation, linear


class Pooler(nn.Module):
    """First token ─► dense ─► tanh (BERT's pooled output)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = Linear(hidden_size, hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class MLMHead(nn.Module):
    """dense ─► act ─► norm ─► (tied token embeddings)ᵀ + bias: logits over the vocabulary."""

    def __init__(self, hidden_size: int, embedding: nn.Embedding, act: str, norm: nn.Module,
                 in_size: int | None = None) -> None:
        super().__init__()
        dim = embedding.weight.shape[1]
        self.dense = Linear(in_size or hidden_size, dim)
        self.act = canonical_activation(act)
        self.norm = norm
        self.embedding = [embedding]  # a list hides it from the module tree: the weight is the token table's
        self.bias = nn.Parameter(torch.zeros(embedding.weight.shape[0]))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dense.forward_act(hidden, self.act))
        return linear(h, self.embedding[0].weight, self.bias)  # (B, T, V)


class TiedLMHead(nn.Module):
    """[dense to embedding size] ─► dropout ─► (tied token embeddings)ᵀ, no bias, no weight of its own
    but the optional dense: GPT / GPT-2's LM head (plain) and RoFormer-v2's MLM head."""

    def __init__(self, embedding: nn.Embedding, dropout: float = 0.0, in_size: int | None = None) -> None:
        super().__init__()
        dim = embedding.weight.shape[1]
        self.dense = Linear(in_size, dim, bias=False) if in_size is not None and in_size != dim else None
        self.dropout = nn.Dropout(dropout)
        self.embedding = [embedding]  # a list hides it from the module tree: the weight is the token table's

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.dense(hidden) if self.dense is not None else hidden
        return linear(self.dropout(h), self.embedding[0].weight)  # (B, T, V)


class NSPHead(nn.Module):
    """Next-sentence prediction: pooled output ─► 2 logits."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = Linear(hidden_size, 2)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(pooled)


class Classifier(nn.Module):
    """Pooled output ─► dropout ─► dense: one logit per label (sequence classification)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(pooled))
