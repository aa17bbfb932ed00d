"""Dropout switched for a phase of training: off for short pretraining, set for fine-tuning."""
from __future__ import annotations

import torch

from ..modules.attention import SelfAttention


def set_dropout(model: torch.nn.Module, p: float, *, attention: bool = True) -> None:
    """Every dropout of the model (hidden, and attention unless `attention` is False) to `p`,
    leaving its config alone.

    A short pretraining run on a small corpus learns faster without dropout (Geiping and
    Goldstein, "Cramming", 2022), and without attention dropout the attention runs as one fused
    kernel instead of materialising (B, heads, T, T) masks of random numbers (about a third of a
    step at 32 x 256 on this CPU)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
        elif attention and isinstance(m, SelfAttention):
            m.dropout = p


def set_hidden_dropout(model: torch.nn.Module, p: float) -> None:
    """Every hidden-state dropout (embeddings, blocks, classifier) of `model` to `p`, recorded in its config
    (HF: hidden_dropout_prob). Attention dropout is left alone."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: expected 0 <= p < 1, found {p}")
    set_dropout(model, p, attention=False)
    model.config.dropout = p
