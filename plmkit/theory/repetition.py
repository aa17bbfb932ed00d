"""Repetition in decoding: how likely a bigram decoder is to repeat a loop it has just made.

kexue.fm/archives/8128 (a simplified and corrected reading of Fu et al., "A Theoretical Analysis of
the Repetition Problem in Text Generation", AAAI 2021, arXiv:2012.14660).

A bigram (first-order Markov) decoder has transitions P[i, j] = p(j | i), rows summing to 1. Standing
on w1, it writes the loop w1 w2 ... wk w1 and then the same loop again with probability

    prod_t P[w_t, w_(t+1)]^2,

so summing over every loop of every length k and every start token gives the repetition measure

    R = sum_(k>=1) Tr(Q^k),   Q = P o P (the elementwise square)
      = sum_i lambda_i / (1 - lambda_i)     (lambda_i the eigenvalues of Q)
      = Tr(Q (I - Q)^(-1)),

finite exactly when the spectral radius rho(Q) < 1; R / N (start token uniform) is the post's
average repetition probability. Because Q is nonnegative, rho(Q) <= eta = max_i sum_j P[i, j]^2,
and Tr(Q^k) lies between sum_i Q[i, i]^k (the loops that stay on one token) and N eta^k, so

    sum_i Q_ii / (1 - Q_ii)  <=  R  <=  N eta / (1 - eta).

The post's predictions follow from the row sums sum_j P[i, j]^2: truncating rows (top-k, top-p,
temperature below 1) concentrates them and raises R, flatter rows lower it, and greedy decoding
makes every row one-hot: Q = P is then a 0/1 matrix whose functional graph always closes a cycle,
so Q has the eigenvalue 1 and R is infinite.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..generation.filters import apply_temperature, top_k_filter, top_p_filter


def _check_stochastic(p: np.ndarray, name: str = "P") -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise ValueError(f"{name} must be a square (N, N) transition matrix, found shape {p.shape}")
    if (p < 0).any():
        raise ValueError(f"{name} has negative entries (min {p.min():.3g}): not transition probabilities")
    rows = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(rows - 1.0) > 1e-6)
    if bad.size:
        raise ValueError(f"{name} row {bad[0]} sums to {rows[bad[0]]:.6g}, expected 1 ({bad.size} such rows)")
    return p


def repetition_matrix(p: np.ndarray) -> np.ndarray:
    """Q = P o P, the elementwise square of a transition matrix: Q^k sums squared loop probabilities."""
    p = _check_stochastic(p)
    return p * p


def spectral_radius(q: np.ndarray) -> float:
    """The largest eigenvalue modulus of a square matrix."""
    return float(np.abs(np.linalg.eigvals(np.asarray(q, np.float64))).max())


def repetition_measure(p: np.ndarray, *, tol: float = 1e-9) -> float:
    """R = sum_k Tr((P o P)^k) = Tr(Q (I - Q)^-1); inf when rho(P o P) >= 1 - tol (e.g. greedy decoding)."""
    q = repetition_matrix(p)
    if spectral_radius(q) >= 1.0 - tol:
        return float("inf")
    eye = np.eye(q.shape[0])
    return float(np.trace(np.linalg.solve(eye - q, q)))


def repetition_measure_eig(p: np.ndarray, *, tol: float = 1e-9) -> float:
    """R from the eigenvalues of P o P: sum_i lambda_i / (1 - lambda_i) (the post's closed form)."""
    lam = np.linalg.eigvals(repetition_matrix(p))
    if np.abs(lam).max() >= 1.0 - tol:
        return float("inf")
    return float((lam / (1.0 - lam)).sum().real)  # complex eigenvalues come in conjugate pairs


def repetition_series(p: np.ndarray, max_k: int) -> np.ndarray:
    """Tr(Q^k) for k = 1..max_k, Q = P o P: the truncated series whose sum tends to R."""
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, found {max_k}")
    q = repetition_matrix(p)
    out, power = np.empty(max_k), np.eye(q.shape[0])
    for k in range(max_k):
        power = power @ q
        out[k] = np.trace(power)
    return out


def repetition_bounds(p: np.ndarray) -> tuple[float, float]:
    """(lower, upper) bounds on R: sum_i Q_ii/(1-Q_ii) and N eta/(1-eta), eta the largest row sum of P o P."""
    q = repetition_matrix(p)
    diag, eta = np.diag(q), q.sum(axis=1).max()
    lower = float("inf") if (diag >= 1.0).any() else float((diag / (1.0 - diag)).sum())
    upper = float("inf") if eta >= 1.0 else float(q.shape[0] * eta / (1.0 - eta))
    return lower, upper


def monte_carlo_repetition(p: np.ndarray, max_k: int, num_chains: int, *, seed: int = 0) -> tuple[float, float]:
    """Estimate sum_(k<=max_k) Tr(Q^k) by sampling the chain: (estimate, standard error).

    Each chain starts at a uniform token x0 and runs 2 max_k steps; it scores the number of k <= max_k
    with x[k:2k+1] == x[0:k+1] (a loop back to x0, then repeated). The expected score times N is the
    truncated series, so this checks the closed form against the decoder itself, not its algebra.
    """
    p = _check_stochastic(p)
    n = p.shape[0]
    gen = torch.Generator().manual_seed(seed)
    probs = torch.from_numpy(p)
    x = torch.empty(num_chains, 2 * max_k + 1, dtype=torch.long)
    x[:, 0] = torch.randint(n, (num_chains,), generator=gen)
    for t in range(2 * max_k):
        x[:, t + 1] = torch.multinomial(probs[x[:, t]], 1, generator=gen).squeeze(1)  # (C,)
    score = torch.zeros(num_chains, dtype=torch.float64)
    for k in range(1, max_k + 1):
        score += (x[:, k:2 * k + 1] == x[:, :k + 1]).all(dim=1).double()
    values = n * score
    return float(values.mean()), float(values.std() / num_chains ** 0.5)


def bigram_transitions(sequences: Sequence[Sequence[int]], vocab_size: int, *, smoothing: float = 0.0) -> np.ndarray:
    """Maximum-likelihood bigram matrix from id sequences (add-`smoothing` counts); unseen rows are uniform."""
    counts = np.full((vocab_size, vocab_size), float(smoothing))
    for seq in sequences:
        ids = np.asarray(seq, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"sequence holds id {ids.max() if ids.max() >= vocab_size else ids.min()} outside "
                             f"0..{vocab_size - 1}")
        np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    rows = counts.sum(axis=1, keepdims=True)
    return np.where(rows > 0, counts / np.where(rows > 0, rows, 1.0), 1.0 / vocab_size)


def decoding_transitions(p: np.ndarray, *, temperature: float = 1.0, top_k: int | None = None,
                         top_p: float | None = None, greedy: bool = False) -> np.ndarray:
    """The transition matrix a decoder actually follows: P's rows through plmkit's logits filters, renormalised.

    greedy keeps each row's most probable token (the first on ties) with probability 1.
    """
    p = _check_stochastic(p)
    if greedy:
        out = np.zeros_like(p)
        out[np.arange(p.shape[0]), p.argmax(axis=1)] = 1.0
        return out
    with np.errstate(divide="ignore"):
        scores = torch.from_numpy(np.log(p))  # (N, N) log-probabilities; zeros become -inf
    scores = apply_temperature(scores, temperature)
    if top_k is not None:
        scores = top_k_filter(scores, top_k)
    if top_p is not None:
        scores = top_p_filter(scores, top_p)
    return torch.softmax(scores, dim=-1).numpy()
