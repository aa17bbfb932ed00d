"""Taylor-softmax: the even-order Taylor polynomials of exp are positive, so they can replace exp in softmax.

kexue.fm post exp(x)的偶次泰勒展开式总是正的; Taylor-softmax: de Brébisson & Vincent 2016
(arXiv:1511.05042), Banerjee et al. 2020 (arXiv:2011.11538).

    f_n(x) = sum_{k=0}^{n} x^k / k!

f_n' = f_{n-1}, so f_n (n even) has its minimum where the odd polynomial f_{n-1} has its one real root
x*, and there f_n(x*) = f_{n-1}(x*) + x*^n / n! = x*^n / n! > 0: f_n is positive for even n (for odd
n it goes to -inf as x -> -inf). f_n falls on (-inf, x*): the monotone variant holds it at its minimum
there, max over x' <= x, i.e. f_n(max(x, x*)), so larger logits never get a smaller probability.

    taylor_softmax(z)_i = f_n(z_i) / sum_j f_n(z_j)
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


def _check_order(n: int, even: bool = True) -> None:
    if not isinstance(n, int) or n < 1 or (even and n % 2):
        raise ValueError(f"the Taylor order n must be a positive {'even ' if even else ''}integer, found {n!r}")


def taylor_exp(x: torch.Tensor, n: int) -> torch.Tensor:
    """f_n(x) = sum_{k<=n} x^k / k!, elementwise (Horner's rule), any n >= 1."""
    _check_order(n, even=False)
    out = torch.ones_like(x)
    for k in range(n, 0, -1):  # 1 + x/1 (1 + x/2 (1 + ... (1 + x/n)))
        out = 1 + x / k * out
    return out


@lru_cache(maxsize=None)
def taylor_exp_minimum(n: int) -> tuple[float, float]:
    """(x*, f_n(x*)): where the even-order f_n is smallest and its value there, x*^n / n!."""
    _check_order(n)
    # the one real root of f_{n-1} (odd degree, increasing since f_{n-1}' = f_{n-2} > 0)
    coefficients = [1 / math.factorial(k) for k in range(n - 1, -1, -1)]  # highest power first
    roots = np.roots(coefficients)
    real = roots[np.abs(roots.imag) < 1e-9].real
    if real.size != 1:
        raise ArithmeticError(f"f_{n - 1} should have exactly one real root, found {real.tolist()}")
    x = torch.tensor(float(real[0]), dtype=torch.float64)
    if n > 2:  # polish the root with Newton steps on f_{n-1}, whose derivative is f_{n-2}
        for _ in range(3):
            x = x - taylor_exp(x, n - 1) / taylor_exp(x, n - 2)
    x = float(x)
    return x, x ** n / math.factorial(n)


def monotone_taylor_exp(x: torch.Tensor, n: int) -> torch.Tensor:
    """f_n(max(x, x*)): the even-order Taylor polynomial held at its minimum left of x*, so non-decreasing."""
    x_min, _ = taylor_exp_minimum(n)
    return taylor_exp(x.clamp(min=x_min), n)


def _positive_taylor(logits: torch.Tensor, n: int, monotone: bool) -> torch.Tensor:
    _check_order(n)  # even only: an odd order goes negative
    return monotone_taylor_exp(logits, n) if monotone else taylor_exp(logits, n)


def taylor_softmax(logits: torch.Tensor, n: int = 2, dim: int = -1, monotone: bool = False) -> torch.Tensor:
    """f_n(z) / sum f_n(z) along `dim`, for even n (monotone: f_n held at its minimum below x*)."""
    f = _positive_taylor(logits, n, monotone)
    return f / f.sum(dim, keepdim=True)


def taylor_log_softmax(logits: torch.Tensor, n: int = 2, dim: int = -1, monotone: bool = False) -> torch.Tensor:
    """log taylor_softmax, for a cross-entropy loss (nll_loss on it)."""
    log_f = torch.log(_positive_taylor(logits, n, monotone))
    return log_f - torch.logsumexp(log_f, dim, keepdim=True)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of |accuracy - mean confidence|, weighted by the bin's share of rows."""
    confidence, predicted = probs.max(-1)  # (N,), (N,)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=confidence.dtype)
    # bin b holds confidences in (edges[b], edges[b+1]]; confidence 0 cannot occur for a max probability
    which = torch.bucketize(confidence, edges[1:-1], right=False)  # (N,) in 0..bins-1
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.double().mean().item() * abs(correct[mask].mean().item() - confidence[mask].double().mean().item())
    return ece
