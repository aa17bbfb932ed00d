"""Policy gradient and zeroth-order optimisation: one gradient estimator reached two ways.

kexue.fm/archives/7737. To minimise an objective f(theta) that has no usable gradient (accuracy, F1,
a sequence metric), sample theta from a policy N(mu, sigma^2 I) and descend the smoothed objective
E[f(mu + sigma eps)]. Its gradient in mu is, by the score function (REINFORCE),

    E[(f(theta) - b) grad_mu log N(theta; mu, sigma^2)] = E[(f(mu + sigma eps) - b) eps] / sigma,

for any baseline b. With b = f(mu) this is the forward-difference zeroth-order estimator, and with
antithetic samples (eps, -eps) it is the two-point one, E[(f(mu + sigma eps) - f(mu - sigma eps)) eps]
/ (2 sigma), where the baseline cancels: the same estimate from the RL side and the optimisation side.
For a quadratic the smoothed gradient equals the true gradient at every sigma.

Objectives passed to the estimators take a batch of parameter vectors (S, D) and return (S,) values;
`ZerothOrder` is a torch optimiser whose closure returns the objective at the current parameters.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch.distributions import Normal

BatchObjective = Callable[[torch.Tensor], torch.Tensor]


def _directions(num_samples: int, dim: int, antithetic: bool, generator: torch.Generator | None,
                dtype: torch.dtype) -> torch.Tensor:
    if num_samples < 1 or (antithetic and num_samples % 2):
        raise ValueError(f"num_samples must be positive{' and even (antithetic pairs)' if antithetic else ''}, "
                         f"found {num_samples}")
    eps = torch.randn(num_samples // 2 if antithetic else num_samples, dim, generator=generator, dtype=dtype)
    return torch.cat([eps, -eps]) if antithetic else eps  # (S, D)


def reinforce_gradient(objective: BatchObjective, mean: torch.Tensor, sigma: float, num_samples: int, *,
                       baseline: str | float | None = None, antithetic: bool = False,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Policy gradient of E_(theta ~ N(mean, sigma^2 I)) f(theta) in `mean`, by autograd through log N (REINFORCE).

    baseline: None, "mean" (of this batch's values), "center" (f(mean)) or a number.
    """
    if mean.dim() != 1:
        raise ValueError(f"mean must be a (D,) vector, found shape {tuple(mean.shape)}")
    eps = _directions(num_samples, mean.numel(), antithetic, generator, mean.dtype)
    mu = mean.detach().clone().requires_grad_(True)
    theta = (mu + sigma * eps).detach()  # (S, D) actions sampled from the policy
    with torch.no_grad():
        values = objective(theta).to(mean.dtype)  # (S,)
        if baseline == "mean":
            b = values.mean()
        elif baseline == "center":
            b = objective(mean.detach()[None])[0].to(mean.dtype)
        elif baseline is None or isinstance(baseline, (int, float)):
            b = torch.tensor(float(baseline or 0.0), dtype=mean.dtype)
        else:
            raise ValueError(f"baseline must be None, 'mean', 'center' or a number, found {baseline!r}")
    log_prob = Normal(mu, sigma).log_prob(theta).sum(-1)  # (S,)
    (grad,) = torch.autograd.grad(((values - b) * log_prob).mean(), mu)
    return grad


def zeroth_order_gradient(objective: BatchObjective, x: torch.Tensor, sigma: float, num_samples: int, *,
                          two_point: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Finite differences along random directions: mean((f(x + s e) - f(x - s e)) e) / 2s, or forward (f(x + s e) - f(x)).

    num_samples counts objective evaluations along directions (two_point uses num_samples / 2 directions,
    each both ways), so it draws the same eps as reinforce_gradient(..., antithetic=two_point).
    """
    if x.dim() != 1:
        raise ValueError(f"x must be a (D,) vector, found shape {tuple(x.shape)}")
    eps = _directions(num_samples, x.numel(), two_point, generator, x.dtype)
    with torch.no_grad():
        if two_point:
            half = eps[: num_samples // 2]  # (S/2, D)
            diff = objective(x + sigma * half) - objective(x - sigma * half)
            return (diff.to(x.dtype)[:, None] * half).mean(0) / (2 * sigma)
        diff = objective(x + sigma * eps) - objective(x[None])[0]
        return (diff.to(x.dtype)[:, None] * eps).mean(0) / sigma


class ZerothOrder(torch.optim.Optimizer):
    """SGD on two-point zeroth-order gradients: step(closure) where closure() returns the objective (no backward).

    Each step draws `num_directions` Gaussian directions over all parameters together and calls the
    closure 2 num_directions + 1 times (the last at the updated point's start, for the returned loss).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-2, sigma: float = 1e-2,
                 num_directions: int = 16, *, generator: torch.Generator | None = None):
        if lr <= 0 or sigma <= 0 or num_directions < 1:
            raise ValueError(f"lr, sigma and num_directions must be positive, found {lr}, {sigma}, {num_directions}")
        super().__init__(params, dict(lr=lr, sigma=sigma, num_directions=num_directions))
        self.generator = generator

    @torch.no_grad()
    def step(self, closure: Callable[[], float | torch.Tensor]) -> float:  # type: ignore[override]
        """One update; returns the objective at the parameters before it."""
        if closure is None:
            raise ValueError("ZerothOrder.step needs a closure returning the objective at the current parameters")
        loss = float(closure())
        for group in self.param_groups:
            params = [p for p in group["params"]]
            sigma, directions = group["sigma"], group["num_directions"]
            grads = [torch.zeros_like(p) for p in params]
            for _ in range(directions):
                eps = [torch.randn(p.shape, generator=self.generator, dtype=p.dtype).to(p.device) for p in params]
                for p, e in zip(params, eps):
                    p.add_(e, alpha=sigma)
                plus = float(closure())
                for p, e in zip(params, eps):
                    p.add_(e, alpha=-2 * sigma)
                minus = float(closure())
                for p, e, g in zip(params, eps, grads):
                    p.add_(e, alpha=sigma)  # back to the start
                    g.add_(e, alpha=(plus - minus) / (2 * sigma * directions))
            for p, g in zip(params, grads):
                p.add_(g, alpha=-group["lr"])
        return loss
