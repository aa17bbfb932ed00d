"""A linear-chain conditional random field over per-token tag scores, with Viterbi decoding.

    emissions (B, T, K) ─► score(y) = start[y_0] + Σ_t emit[t, y_t] + Σ_t trans[y_{t-1}, y_t] + end[y_last]
                        ─► loss  = log Σ_y exp score(y) - score(gold)     (forward algorithm)
                        ─► decode = argmax_y score(y)                      (Viterbi)

Lafferty et al. 2001; as a head over BERT for Chinese NER: kexue.fm/archives/5542 (bert4keras'
ConditionalRandomField, which keeps only the transition matrix; start/end scores are added here
so a tag scheme's illegal first/last tags can be learned too).

Masks are left-aligned: ``mask[b, :n_b]`` is 1 and the rest 0 (padding on the right only).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["CRF", "crf_log_partition", "crf_path_score", "viterbi_decode"]


def _check(emissions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if emissions.dim() != 3:
        raise ValueError(f"CRF emissions: expected (B, T, num_tags), found shape {tuple(emissions.shape)}")
    B, T, _ = emissions.shape
    if mask is None:
        return torch.ones(B, T, dtype=torch.bool, device=emissions.device)
    if mask.shape != (B, T):
        raise ValueError(f"CRF mask: expected shape {(B, T)} like the emissions, found {tuple(mask.shape)}")
    mask = mask.bool()
    if T and not bool(mask[:, 0].all()):
        raise ValueError("CRF mask: every sequence must have its first position unmasked (left-aligned masks)")
    if T > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("CRF mask: padding must sit on the right only (a 0 followed by a 1 was found)")
    return mask


def crf_path_score(emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None,
                   transitions: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """(B,) score of the given tag paths; positions under mask 0 do not count."""
    mask = _check(emissions, mask)
    e = emissions.float()
    m = mask.to(e.dtype)
    emit = e.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
    score = start[tags[:, 0]] + (emit * m).sum(1)
    if tags.shape[1] > 1:
        step = transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1) score of y_{t-1} -> y_t
        score = score + (step * m[:, 1:]).sum(1)
    last = tags.gather(1, (mask.sum(1) - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # (B,)
    return score + end[last]


def crf_log_partition(emissions: torch.Tensor, mask: torch.Tensor | None, transitions: torch.Tensor,
                      start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """(B,) log of the sum of exp(score) over all tag paths (forward algorithm)."""
    mask = _check(emissions, mask)
    e = emissions.float()
    alpha = start + e[:, 0]  # (B, K): log-sum over paths ending in each tag
    for t in range(1, e.shape[1]):
        # (B, K, 1) + (K, K) -> (B, K, K) over (previous tag, next tag)
        step = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + e[:, t]
        alpha = torch.where(mask[:, t:t + 1], step, alpha)
    return torch.logsumexp(alpha + end, dim=1)


@torch.no_grad()
def viterbi_decode(emissions: torch.Tensor, mask: torch.Tensor | None, transitions: torch.Tensor,
                   start: torch.Tensor, end: torch.Tensor) -> list[list[int]]:
    """The best tag path of each sequence, as many tags as its unmasked positions."""
    mask = _check(emissions, mask)
    e = emissions.float()
    B, T, K = e.shape
    best = start + e[:, 0]  # (B, K) best score of a path ending in each tag
    back = []
    for t in range(1, T):
        scores = best.unsqueeze(2) + transitions  # (B, K_prev, K_next)
        top, arg = scores.max(dim=1)
        back.append(arg)
        best = torch.where(mask[:, t:t + 1], top + e[:, t], best)
    best = best + end
    lengths = mask.sum(1).tolist()
    paths = []
    for b in range(B):
        n = int(lengths[b])
        tag = int(best[b].argmax())
        path = [tag]
        for t in range(n - 1, 0, -1):  # back[t - 1] holds the argmax for step t
            tag = int(back[t - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


class CRF(nn.Module):
    """Transition, start and end scores of a linear-chain CRF over ``num_tags`` tags."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"CRF num_tags: expected >= 1, found {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def _params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.transitions.float(), self.start.float(), self.end.float()

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) negative log-likelihood of the gold tags."""
        if emissions.shape[-1] != self.num_tags:
            raise ValueError(f"CRF built for {self.num_tags} tags, emissions have {emissions.shape[-1]}")
        if tags.shape != emissions.shape[:2]:
            raise ValueError(f"CRF tags: expected shape {tuple(emissions.shape[:2])}, found {tuple(tags.shape)}")
        trans, start, end = self._params()
        return (crf_log_partition(emissions, mask, trans, start, end)
                - crf_path_score(emissions, tags, mask, trans, start, end))

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None) -> list[list[int]]:
        """Viterbi paths, one list of tag ids per sequence (its unmasked length)."""
        return viterbi_decode(emissions, mask, *self._params())

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"
