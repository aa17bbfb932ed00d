"""Smooth approximations of non-smooth functions by convolution with a delta-approximating kernel.

kexue.fm post 用狄拉克函数来构造非光滑函数的光滑近似. A density k_s(t) = k(t / s) / s tends to Dirac's
delta as s -> 0, so (f * k_s)(x) = integral f(x - t) k_s(t) dt is a smooth function close to f. Two
kernels give closed forms for the usual corners:

    kernel                    step * k = CDF     relu * k                            x (step * k)
    logistic  s'(t), s = sigmoid  sigmoid(x / s)   s softplus(x / s)                   x sigmoid(x / s) = Swish / SiLU
    Gaussian  N(0, sigma^2)   Phi(x / sigma)     x Phi(x / sigma) + sigma phi(x / sigma)  x Phi(x / sigma) = GELU

(relu * k)' = step * k, and relu * k -> 0 as x -> -inf, which fixes the constant. The Gaussian one,
written with erf: 1/2 [x erf(x / (sqrt2 sigma)) + x + sqrt(2/pi) sigma exp(-x^2 / (2 sigma^2))].
GELU: Hendrycks & Gimpel 2016 (arXiv:1606.08415); Swish: Ramachandran et al. 2017 (arXiv:1710.05941).

floor is a sum of unit steps, floor(x) = m - K + sum_{n=m-K+1}^{m+K} step(x - n) on [m - K, m + K + 1),
so its smoothing is a sum of kernel CDFs over the integers within reach of the kernel.

`gaussian_relu` (relu * N(0, 1)) and `softplus` (relu * logistic density) are activations a
ModelConfig can name (`hidden_act`); "gelu" and "silu"/"swish" were already there. They are
plmkit-only names: transformers' configs do not know "gaussian_relu".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KERNELS = ("gaussian", "logistic")
_SQRT2 = math.sqrt(2.0)


def _check(kernel: str, scale: float) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, found {kernel!r}")
    if not scale > 0:
        raise ValueError(f"the kernel scale must be positive, found {scale}")


def kernel_density(t: torch.Tensor, scale: float = 1.0, kernel: str = "gaussian") -> torch.Tensor:
    """k_s(t): the N(0, s^2) density or the logistic density sigmoid'(t / s) / s."""
    _check(kernel, scale)
    u = t / scale
    if kernel == "gaussian":
        return torch.exp(-0.5 * u * u) / (math.sqrt(2 * math.pi) * scale)
    return torch.sigmoid(u) * torch.sigmoid(-u) / scale


def smooth_step(x: torch.Tensor, scale: float = 1.0, kernel: str = "gaussian") -> torch.Tensor:
    """step * k_s: the kernel's CDF, Phi(x / s) or sigmoid(x / s)."""
    _check(kernel, scale)
    if kernel == "gaussian":
        return 0.5 * (1 + torch.erf(x / (_SQRT2 * scale)))
    return torch.sigmoid(x / scale)


def smooth_relu(x: torch.Tensor, scale: float = 1.0, kernel: str = "gaussian") -> torch.Tensor:
    """relu * k_s: Gaussian x Phi(x/s) + s phi(x/s), or logistic s softplus(x / s)."""
    _check(kernel, scale)
    if kernel == "gaussian":
        return 0.5 * (x * torch.erf(x / (_SQRT2 * scale)) + x
                      + math.sqrt(2 / math.pi) * scale * torch.exp(-x * x / (2 * scale * scale)))
    return scale * F.softplus(x / scale)


def smooth_gated(x: torch.Tensor, scale: float = 1.0, kernel: str = "gaussian") -> torch.Tensor:
    """x (step * k_s): GELU for the standard Gaussian, Swish / SiLU for the standard logistic kernel."""
    return x * smooth_step(x, scale, kernel)


def smooth_abs(x: torch.Tensor, scale: float = 1.0, kernel: str = "gaussian") -> torch.Tensor:
    """|x| * k_s = relu * k_s (x) + relu * k_s (-x) (both kernels are symmetric)."""
    return smooth_relu(x, scale, kernel) + smooth_relu(-x, scale, kernel)


def smooth_floor(x: torch.Tensor, scale: float = 0.1, kernel: str = "gaussian") -> torch.Tensor:
    """floor * k_s: m - K + sum of step * k_s (x - n) over the 2K integers n around m = floor(x)."""
    _check(kernel, scale)
    # the kernel mass beyond K is below 1e-15: Phi(-8) ~ 6e-16, and the logistic tail e^-35 ~ 6e-16
    reach = math.ceil((8.0 if kernel == "gaussian" else 35.0) * scale) + 1
    m = torch.floor(x)
    offsets = torch.arange(-reach + 1, reach + 1, dtype=x.dtype, device=x.device)  # (2K,)
    n = m[..., None] + offsets  # (..., 2K)
    return m - reach + smooth_step(x[..., None] - n, scale, kernel).sum(-1)


def gaussian_relu(x: torch.Tensor) -> torch.Tensor:
    """relu convolved with the standard normal density: E[relu(x + Z)], Z ~ N(0, 1) (activation "gaussian_relu")."""
    return smooth_relu(x, 1.0, "gaussian")
