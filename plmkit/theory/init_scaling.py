"""Initialisation variance for non-square matrices: which mean of 1/m and 1/n to use.

kexue.fm/archives/8725. For y = x W with W of shape (m, n) (m inputs, n outputs) and i.i.d. zero-mean
entries of variance s, E[y^2] = m s E[x^2] (forward) and E[(dL/dx)^2] = n s E[(dL/dy)^2] (backward):
s = 1/m keeps the forward pass, s = 1/n the backward one. The means on offer:

    arithmetic (Xavier)   s = 2 / (m + n)            (m + n) s / 2 = 1
    geometric             s = 1 / sqrt(m n)          (m s)(n s) = 1: forward factor times backward factor
    quadratic             s = (m + n) / (m^2 + n^2)  least squares: minimises (m s - 1)^2 + (n s - 1)^2

Through a stack that alternates m x n and n x m layers (a Transformer FFN is d -> 4d -> d), each pair
multiplies both second moments by m n s^2: exactly 1 for the geometric mean, 4mn / (m + n)^2 < 1 for
the arithmetic one and mn (m + n)^2 / (m^2 + n^2)^2 (smaller still) for the quadratic one, so only the
geometric mean keeps deep stacks from shrinking; `monte_carlo_second_moments` measures it.

plmkit's model builders keep the checkpoints' N(0, initializer_range) init (they are loaded, not
trained from scratch); `apply_nonsquare_init(model)` re-initialises every nn.Linear weight instead.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

MEANS = ("arithmetic", "geometric", "quadratic", "fan_in", "fan_out")


def init_variance(fan_in: int, fan_out: int, mean: str = "geometric") -> float:
    """The weight variance for a fan_in x fan_out matrix under `mean` (one of MEANS)."""
    m, n = fan_in, fan_out
    if m < 1 or n < 1:
        raise ValueError(f"fan_in and fan_out must be positive, found {m} and {n}")
    if mean == "arithmetic":
        return 2.0 / (m + n)
    if mean == "geometric":
        return 1.0 / math.sqrt(m * n)
    if mean == "quadratic":
        return (m + n) / (m * m + n * n)
    if mean == "fan_in":
        return 1.0 / m
    if mean == "fan_out":
        return 1.0 / n
    raise ValueError(f"mean must be one of {MEANS}, found {mean!r}")


def alternating_widths(m: int, n: int, depth: int) -> list[int]:
    """[m, n, m, n, ...]: the widths of `depth` layers alternating m x n and n x m."""
    return [m if i % 2 == 0 else n for i in range(depth + 1)]


def predicted_second_moments(widths: Sequence[int], mean: str) -> tuple[list[float], list[float]]:
    """(forward, backward) second-moment ratios of a linear stack with widths d0 -> d1 -> ... -> dL.

    forward[l] = E[h_l^2] / E[x^2] after layer l (l = 1..L); backward[l] = E[g_l^2] / E[g_L^2] for the
    gradient entering layer l + 1's input (l = 0..L-1), g_L the output gradient.
    """
    var = [init_variance(a, b, mean) for a, b in zip(widths[:-1], widths[1:])]
    forward, f = [], 1.0
    for a, s in zip(widths[:-1], var):
        f *= a * s
        forward.append(f)
    backward, g = [], 1.0
    for b, s in zip(reversed(widths[1:]), reversed(var)):
        g *= b * s
        backward.append(g)
    return forward, backward[::-1]


@torch.no_grad()
def monte_carlo_second_moments(widths: Sequence[int], mean: str, *, batch: int = 256, trials: int = 16,
                               generator: torch.Generator | None = None) -> tuple[list[float], list[float]]:
    """The same ratios measured: fresh Gaussian weights per trial, Gaussian inputs and output gradients."""
    forward = torch.zeros(len(widths) - 1, dtype=torch.float64)
    backward = torch.zeros(len(widths) - 1, dtype=torch.float64)
    for _ in range(trials):
        ws = [torch.randn(a, b, generator=generator, dtype=torch.float64) * math.sqrt(init_variance(a, b, mean))
              for a, b in zip(widths[:-1], widths[1:])]
        h = torch.randn(batch, widths[0], generator=generator, dtype=torch.float64)  # (B, d0)
        x2 = h.pow(2).mean()
        for l, w in enumerate(ws):
            h = h @ w  # (B, d_l)
            forward[l] += h.pow(2).mean() / x2
        g = torch.randn(batch, widths[-1], generator=generator, dtype=torch.float64)  # (B, dL) dLoss/dy
        g2 = g.pow(2).mean()
        for l in range(len(ws) - 1, -1, -1):
            g = g @ ws[l].T  # (B, d_l) gradient at layer l's input
            backward[l] += g.pow(2).mean() / g2
    return (forward / trials).tolist(), (backward / trials).tolist()


def nonsquare_init_(weight: torch.Tensor, mean: str = "geometric", *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill an nn.Linear-style (out, in) weight in place with N(0, init_variance(in, out, mean))."""
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D (out_features, in_features) weight, found shape {tuple(weight.shape)}")
    std = math.sqrt(init_variance(weight.shape[1], weight.shape[0], mean))
    with torch.no_grad():
        return weight.normal_(0.0, std, generator=generator)


def apply_nonsquare_init(model: nn.Module, mean: str = "geometric", *,
                         generator: torch.Generator | None = None) -> int:
    """Re-initialise every nn.Linear weight of `model` (biases to zero) under `mean`; returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nonsquare_init_(module.weight, mean, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            count += 1
    return count
