"""Attention mask policies as pure functions.

Each returns a boolean "may attend" tensor broadcastable to (B, 1, Tq, Tk); `additive`
turns it into the float mask SDPA adds to the scores. `build` serves a whole forward and a
decoding step alike: with `past` cached tokens the T new queries attend over past + T keys,
and the policy's per-row state (UniLM's segment order) lives in the cache's `state` between
steps, so cached and uncached attention follow one definition. Policies follow bert4keras:

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


POLICIES = ("encoder", "lm", "unilm")


def build(policy: str, new: torch.Tensor, token_type_ids: torch.Tensor | None,
          attention_mask: torch.Tensor | None, *, past: int = 0,
          state: dict[str, torch.Tensor] | None = None) -> torch.Tensor | None:
    """Combine a policy with padding into one bool mask (B|1, 1, T, past + T), or None when nothing is masked.

    `new` (B, T, ...) holds the new tokens (ids or embeddings: only T and the device are read);
    `past` tokens are cached before them, and
    `attention_mask` (B, past + T) marks the real ones among all. `state` (a KV cache's) carries
    what a policy needs from earlier steps; pass it on every step of one decoding run.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown attention policy {policy!r}; expected one of {', '.join(POLICIES)}")
    T = new.shape[1]
    if attention_mask is not None and attention_mask.shape[1] != past + T:
        raise ValueError(f"attention_mask has {attention_mask.shape[1]} columns; with {past} cached and {T} new "
                         f"tokens it must cover all {past + T}")
    mask = None if attention_mask is None else padding(attention_mask)
    if policy == "lm" and T > 1:  # a single new query may see every key
        c = causal(T, past + T, device=new.device)
        mask = c if mask is None else mask & c
    elif policy == "unilm":
        if token_type_ids is None:
            raise ValueError("application='unilm' needs token_type_ids (segment 0 = source, 1 = target)")
        if state is None and not past:
            u = unilm(token_type_ids)
        else:  # unilm's order (cumulative segment id) continued across steps
            before = None if state is None else state.get("unilm_order")  # (B, past)
            if before is None and past:
                raise ValueError(f"application='unilm' with {past} cached tokens needs the cache's state "
                                 "from the steps that cached them")
            order = torch.cumsum(token_type_ids, dim=1)  # (B, T)
            if before is not None:
                order = order + before[:, -1:]
            keys = order if before is None else torch.cat((before, order), dim=1)  # (B, past + T)
            if state is not None:
                state["unilm_order"] = keys
            u = (keys[:, None, :] <= order[:, :, None])[:, None]  # (B, 1, T, past + T)
        mask = u if mask is None else mask & u
    return mask


def additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """bool mask -> float mask with 0 where allowed and the dtype's minimum elsewhere.

    The finite minimum (not -inf) keeps a fully masked row finite, as BERT implementations do.
    """
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
