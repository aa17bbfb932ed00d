"""Sentence vectors from an encoder: pooling, normalisation, batched and length-sorted."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = ("cls", "pooler", "mean", "first_last_mean")


def pool(output, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, H) sentence vectors from a ModelOutput under one pooling rule."""
    if pooling == "cls":
        return output.last_hidden_state[:, 0]
    if pooling == "pooler":
        if output.pooled_output is None:
            raise ValueError("pooling='pooler' needs a model loaded with with_pool=True")
        return output.pooled_output
    m = attention_mask.to(output.last_hidden_state.dtype)[..., None]  # (B, T, 1)
    if pooling == "mean":
        h = output.last_hidden_state
    elif pooling == "first_last_mean":  # kexue.fm/archives/8069: mean of first and last layer outputs
        if output.hidden_states is None:
            raise ValueError("pooling='first_last_mean' needs output_hidden_states=True")
        h = (output.hidden_states[1] + output.hidden_states[-1]) / 2
    else:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


@torch.no_grad()
def encode_sentences(model: nn.Module, tokenizer, texts: Sequence[str], *, pooling: str = "mean",
                     normalize: bool = True, batch_size: int = 32, max_length: int | None = None) -> torch.Tensor:
    """(N, H) vectors for `texts`, computed in length-sorted batches and returned in input order."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    out: list[torch.Tensor] = [None] * len(texts)  # type: ignore[list-item]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], max_length=max_length)
            output = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                           attention_mask=batch["attention_mask"], output_hidden_states=pooling == "first_last_mean")
            vectors = pool(output, batch["attention_mask"], pooling).float()
            if normalize:
                vectors = F.normalize(vectors, dim=-1)
            for i, v in zip(idx, vectors):
                out[i] = v
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros(0, model.config.hidden_size)
    return torch.stack(out)
