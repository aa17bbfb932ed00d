"""Attention mask policies as pure functions.

Each returns a boolean "may attend" tensor broadcastable to (B, 1, Tq, Tk); `additive`
turns it into the float mask SDPA adds to the scores. Policies follow bert4keras:

- encoder: every token sees every non-padding token.
- lm:      token t sees tokens <= t (causal over the whole sequence).
- unilm:   segment 0 is bidirectional; segment 1 is causal and also sees all of segment 0
           (arXiv:1905.03197; kexue.fm/archives/6933).
"""
from __future__ import annotations

import torch


def padding(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 1/0 key mask -> (B, 1, 1, T) bool."""
    return attention_mask.bool()[:, None, None, :]


def causal(q_len: int, k_len: int | None = None, device=None) -> torch.Tensor:
    """(1, 1, Tq, Tk) bool: query i (the last Tq positions of Tk) sees keys <= its position."""
    k_len = q_len if k_len is None else k_len
    q_pos = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    k_pos = torch.arange(k_len, device=device)[None, :]
    return (k_pos <= q_pos)[None, None]


def unilm(token_type_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) segment ids -> (B, 1, T, T) bool, the UniLM seq2seq pattern."""
    # a key is visible if it is in segment 0, or precedes (or is) the query;
    # cumsum of segment ids orders positions so that this holds (bert4keras' formulation)
    idx = torch.cumsum(token_type_ids, dim=1)  # (B, T)
    return (idx[:, None, :] <= idx[:, :, None])[:, None]


def build(policy: str, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
          attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Combine a policy with padding into one bool mask, or None when nothing is masked."""
    B, T = input_ids.shape
    mask = None if attention_mask is None else padding(attention_mask)
    if policy == "encoder":
        pass
    elif policy == "lm":
        c = causal(T, device=input_ids.device)
        mask = c if mask is None else mask & c
    elif policy == "unilm":
        if token_type_ids is None:
            raise ValueError("application='unilm' needs token_type_ids (segment 0 = source, 1 = target)")
        u = unilm(token_type_ids)
        mask = u if mask is None else mask & u
    else:
        raise ValueError(f"unknown attention policy {policy!r}; expected 'encoder', 'lm' or 'unilm'")
    return mask


def additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """bool mask -> float mask with 0 where allowed and the dtype's minimum elsewhere.

    The finite minimum (not -inf) keeps a fully masked row finite, as BERT implementations do.
    """
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
