"""CAN (Classification with Alternating Normalization): correct uncertain predictions with a class prior.

    probs (N, C) ─► top-k entropy per row ─► confident rows (uncertainty < threshold) and uncertain rows
    for each uncertain row u, on its own:
        L = [confident rows; u]                                   # (M + 1, C)
        repeat `iterations` times:
            L = L ** alpha;  L /= column sums;  L *= prior;  L /= row sums
        u ← the last row of L

kexue.fm/archives/8728; arXiv:2109.13449. The post's settings are the defaults (k=3,
threshold 0.9, alpha 1, one iteration). Its prior is the label distribution of the training
set; without one, the mean predicted distribution of the confident rows stands in.
"""
from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def topk_uncertainty(probs: ArrayLike, k: int = 3) -> np.ndarray:
    """(N,) entropy of each row's k largest probabilities (renormalised), divided by log k: 0..1."""
    p = _as_probs(probs, "probs")
    if not 2 <= k <= p.shape[1]:
        raise ValueError(f"k must be in 2..{p.shape[1]} (the number of classes), found {k}")
    top = np.sort(p, axis=1)[:, -k:]
    top = top / top.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(top > 0, top * np.log(top), 0.0)  # 0 log 0 = 0
    return -plogp.sum(axis=1) / np.log(k)


def can_correct(probs: ArrayLike, prior: ArrayLike | None = None, *, k: int = 3, threshold: float = 0.9,
                alpha: float = 1.0, iterations: int = 1, chunk_size: int = 256) -> np.ndarray:
    """(N, C) probabilities with every uncertain row re-normalised against `prior` (C,) and the confident rows.

    Confident rows are returned unchanged. `k` is capped at the number of classes (binary tasks use k=2).
    """
    p = _as_probs(probs, "probs")
    n, c = p.shape
    k = min(k, c)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, found {iterations}")
    uncertain = topk_uncertainty(p, k) >= threshold
    confident = p[~uncertain]
    if prior is None:
        if len(confident) == 0:
            raise ValueError(f"no row is confident at threshold {threshold}: pass prior= (e.g. the training "
                             "set's label frequencies)")
        prior_v = confident.mean(axis=0)
    else:
        prior_v = np.asarray(prior.detach().cpu() if isinstance(prior, torch.Tensor) else prior, np.float64)
        if prior_v.shape != (c,) or (prior_v < 0).any() or prior_v.sum() <= 0:
            raise ValueError(f"prior must be {c} non-negative class weights, found shape {prior_v.shape} "
                             f"with values {prior_v.tolist()[:8]}")
    prior_v = prior_v / prior_v.sum()
    out = p.copy()
    rows = np.flatnonzero(uncertain)
    for start in range(0, len(rows), chunk_size):  # chunks bound memory at chunk_size * (M + 1) * C
        idx = rows[start:start + chunk_size]
        out[idx] = _alternate(confident, p[idx], prior_v, alpha, iterations)
    return out


def _alternate(confident: np.ndarray, uncertain: np.ndarray, prior: np.ndarray, alpha: float,
               iterations: int) -> np.ndarray:
    """Alternating normalisation of [confident; u] for each u in `uncertain` at once: (U, C) -> (U, C)."""
    if iterations == 1:
        # only the last row is read back: its column sums are the confident rows' plus its own
        col = (confident ** alpha).sum(axis=0)[None, :]  # (1, C)
        u = uncertain ** alpha  # (U, C)
        with np.errstate(invalid="ignore"):  # a class no row gives any mass: 0/0 -> 0
            y = np.nan_to_num(u / (col + u)) * prior[None, :]
        return _normalise_rows(y, uncertain)
    u_count = len(uncertain)
    stack = np.concatenate([np.broadcast_to(confident, (u_count, *confident.shape)), uncertain[:, None, :]],
                           axis=1)  # (U, M + 1, C)
    for _ in range(iterations):
        stack = stack ** alpha
        with np.errstate(invalid="ignore"):
            stack = np.nan_to_num(stack / stack.sum(axis=1, keepdims=True))
        stack = stack * prior[None, None, :]
        with np.errstate(invalid="ignore"):
            stack = np.nan_to_num(stack / stack.sum(axis=2, keepdims=True))
    return _normalise_rows(stack[:, -1], uncertain)


def _normalise_rows(y: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows of y scaled to sum 1; a row the prior zeroed entirely keeps its original probabilities."""
    total = y.sum(axis=1, keepdims=True)
    return np.where(total > 0, y / np.where(total > 0, total, 1.0), fallback)


def _as_probs(x: ArrayLike, name: str) -> np.ndarray:
    p = np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name} must be (N, C) with C >= 2 classes, found shape {p.shape}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        bad = int(np.flatnonzero((p < 0).any(axis=1) | ~np.isclose(p.sum(axis=1), 1.0, atol=1e-4))[0])
        raise ValueError(f"{name} rows must be probability distributions; row {bad} sums to {p[bad].sum():.6f} "
                         f"(min {p[bad].min():.3g}): apply softmax first")
    return p
