"""Logits filters as pure functions: scores (N, V) and the ids decoded so far -> new scores.

None modifies its input. A filtered-out token gets -inf, so softmax gives it probability 0
and argmax / top-k never pick it. They work on raw logits and on log-probabilities alike
(beam search applies them after log-softmax, as transformers does).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

NEG_INF = -math.inf


def apply_temperature(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """scores / temperature: below 1 sharpens the distribution, above 1 flattens it."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, found {temperature} (for deterministic output use greedy)")
    return scores / temperature


def top_k_filter(scores: torch.Tensor, k: int, min_keep: int = 1) -> torch.Tensor:
    """Keep each row's k highest scores (and any tied with the k-th), -inf elsewhere."""
    if k <= 0:
        raise ValueError(f"top_k must be a positive number of tokens, found {k}")
    k = min(max(k, min_keep), scores.shape[-1])
    kth = scores.topk(k, dim=-1).values[..., -1:]  # (N, 1) the k-th highest score
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus filter (arXiv:1904.09751): keep the most probable tokens until their probability reaches p.

    A token survives when the probability of the tokens ranked above it is still below p;
    the `min_keep` best always survive.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], found {p}")
    ranked, order = scores.sort(dim=-1, descending=True)  # (N, V)
    probs = ranked.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked strictly higher
    drop_ranked = mass_above >= p
    drop_ranked[..., :min_keep] = False
    drop = torch.zeros_like(drop_ranked).scatter(-1, order, drop_ranked)  # back to vocabulary order
    return scores.masked_fill(drop, NEG_INF)


def repetition_penalty(scores: torch.Tensor, ids: torch.Tensor, penalty: float,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """CTRL's penalty (arXiv:1909.05858) on every token present in the row's ids.

    A present token's score is divided by `penalty` when positive and multiplied by it when
    negative, so penalty > 1 always makes it less likely. `mask` (N, T) marks the positions
    that count (left padding of a prompt does not).
    """
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, found {penalty}")
    V = scores.shape[-1]
    if mask is not None:
        ids = ids.masked_fill(~mask.bool(), V)  # uncounted positions land in a spare column
    seen = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
    seen.scatter_(1, ids.clamp(max=V), True)
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen[:, :V], penalised, scores)


def no_repeat_ngram_filter(scores: torch.Tensor, ids: torch.Tensor, n: int) -> torch.Tensor:
    """Ban each token that would complete an n-gram already present in the row (n=1: any seen token)."""
    if n <= 0:
        raise ValueError(f"no_repeat_ngram_size must be positive, found {n}")
    N, T = ids.shape
    V = scores.shape[-1]
    if T < n:  # no complete n-gram yet
        return scores
    grams = ids.unfold(1, n, 1)  # (N, T - n + 1, n): every n-gram of the row
    tail = ids[:, T - n + 1:]  # (N, n - 1): what the next token would extend
    repeats = (grams[..., :-1] == tail[:, None, :]).all(dim=-1)  # (N, T - n + 1): n-grams that start like it
    banned = torch.zeros(N, V + 1, dtype=torch.bool, device=scores.device)
    banned.scatter_(1, torch.where(repeats, grams[..., -1].clamp(max=V), V), True)  # non-matches -> spare column
    return scores.masked_fill(banned[:, :V], NEG_INF)


def ban_tokens(scores: torch.Tensor, token_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Set the given tokens to -inf in every row (e.g. end tokens before min_new_tokens)."""
    token_ids = torch.as_tensor(token_ids, dtype=torch.long, device=scores.device)
    return scores.index_fill(-1, token_ids, NEG_INF)


def allowed_tokens_filter(scores: torch.Tensor, allowed: Sequence[Sequence[int] | torch.Tensor]) -> torch.Tensor:
    """Keep only `allowed[row]` in each row (a constraint on the next token), -inf elsewhere."""
    if len(allowed) != scores.shape[0]:
        raise ValueError(f"allowed token lists: {len(allowed)} given for {scores.shape[0]} rows")
    blocked = torch.ones_like(scores, dtype=torch.bool)
    for row, ids in enumerate(allowed):
        ids = torch.as_tensor(ids, dtype=torch.long, device=scores.device)
        if ids.numel() == 0:
            raise ValueError(f"the constraint allows no token for row {row}: it cannot be satisfied")
        if int(ids.min()) < 0 or int(ids.max()) >= scores.shape[-1]:
            raise ValueError(f"the constraint allows token ids outside [0, {scores.shape[-1]}) for row {row}: "
                             f"{ids.tolist()}")
        blocked[row, ids] = False
    return scores.masked_fill(blocked, NEG_INF)
