"""The von Mises-Fisher distribution on the unit sphere S^{d-1}: Wood's sampler and the KL to the uniform prior.

    vMF(z; mu, kappa) = C_d(kappa) exp(kappa mu.z),   C_d(kappa) = kappa^{d/2-1} / ((2 pi)^{d/2} I_{d/2-1}(kappa))

A VAE whose posterior is vMF(mu, kappa) and whose prior is uniform on the sphere has a KL term
that depends on kappa alone, not on mu: with kappa fixed it is a constant and cannot collapse to
zero (Davidson et al. 2018, arXiv:1804.00891; kexue.fm/archives/8404).

Sampling (Wood 1994, "Simulation of the von Mises Fisher distribution"; Algorithm 1 of Davidson
et al.): the component w = mu.z is drawn by rejection from a Beta proposal, the tangent direction v
is a normalised Gaussian orthogonal to e1, z' = (w, sqrt(1 - w^2) v) is concentrated around e1, and
a Householder reflection that maps e1 to mu carries it to mu. The reflection is differentiable in mu;
w = h(eps, kappa) of an accepted proposal eps is differentiable in kappa (the reparameterised part of
Davidson et al.'s gradient; their correction term for the acceptance step is left out, as in their
reference code's default, since it is small for the kappa a VAE uses).
"""
from __future__ import annotations

import math

import torch

__all__ = ["log_bessel_iv", "mean_resultant", "vmf_kl_uniform", "log_sphere_area", "sample_vmf_w", "householder",
           "sample_vmf", "slerp"]


def _check_kappa(kappa: torch.Tensor, name: str = "kappa") -> None:
    if bool((kappa <= 0).any()) or not bool(torch.isfinite(kappa).all()):
        raise ValueError(f"{name} must be positive and finite, found min {float(kappa.min())}")


def log_bessel_iv(order: float, x: torch.Tensor, terms: int | None = None) -> torch.Tensor:
    """log I_order(x) for x > 0 by the power series summed in log space (differentiable in x).

    I_v(x) = sum_m (x/2)^{2m+v} / (m! Gamma(m+v+1)); the terms peak near m = x/2 with a width of
    about sqrt(x), so x + 10 sqrt(x) + 40 terms leave a relative error far below float64 precision.
    torch has only I_0 and I_1 (torch.special.i0e / i1e), and the KL needs I_{d/2-1} for any d.
    """
    x = torch.as_tensor(x)
    _check_kappa(x, "x")
    if order < 0:
        raise ValueError(f"order must be >= 0, found {order}")
    xd = x.double()
    if terms is None:
        top = float(xd.detach().max())
        terms = int(top + 10 * math.sqrt(top) + 40)
    m = torch.arange(terms, dtype=torch.float64, device=x.device)  # (M,)
    logs = ((2 * m + order) * torch.log(xd[..., None] / 2)
            - torch.lgamma(m + 1) - torch.lgamma(m + order + 1))  # (..., M)
    return torch.logsumexp(logs, dim=-1).to(x.dtype)


def mean_resultant(d: int, kappa: torch.Tensor) -> torch.Tensor:
    """A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) = E[mu.z] under vMF(mu, kappa) on S^{d-1}."""
    kappa = torch.as_tensor(kappa)
    return torch.exp(log_bessel_iv(d / 2, kappa) - log_bessel_iv(d / 2 - 1, kappa))


def log_sphere_area(d: int) -> float:
    """log of the surface area of S^{d-1} in R^d: 2 pi^{d/2} / Gamma(d/2)."""
    return math.log(2) + d / 2 * math.log(math.pi) - math.lgamma(d / 2)


def vmf_kl_uniform(d: int, kappa: torch.Tensor) -> torch.Tensor:
    """KL(vMF(mu, kappa) || uniform on S^{d-1}) in nats; independent of mu.

    = kappa A_d(kappa) + log C_d(kappa) + log |S^{d-1}|   (Davidson et al. 2018, eq. 14)
    """
    if d < 2:
        raise ValueError(f"the sphere needs d >= 2 dimensions, found d={d}")
    kappa = torch.as_tensor(kappa)
    _check_kappa(kappa)
    k = kappa.double()
    log_c = (d / 2 - 1) * torch.log(k) - d / 2 * math.log(2 * math.pi) - log_bessel_iv(d / 2 - 1, k)
    return (k * mean_resultant(d, k) + log_c + log_sphere_area(d)).to(kappa.dtype)


def sample_vmf_w(d: int, kappa: torch.Tensor) -> torch.Tensor:
    """w = mu.z for z ~ vMF(mu, kappa) on S^{d-1}, by Wood's rejection sampler; shape of `kappa`.

    Every row draws proposals until one is accepted; accepted proposals keep their graph to kappa.
    """
    if d < 2:
        raise ValueError(f"the sphere needs d >= 2 dimensions, found d={d}")
    kappa = torch.as_tensor(kappa)
    _check_kappa(kappa)
    k = kappa.double()
    m1 = d - 1
    root = torch.sqrt(4 * k * k + m1 * m1)
    b = m1 / (2 * k + root)  # = (-2k + root) / (d-1), in the form that does not cancel for large kappa
    a = (m1 + 2 * k + root) / 4
    c = 4 * a * b / (1 + b) - m1 * math.log(m1)
    beta = torch.distributions.Beta(torch.tensor(m1 / 2, dtype=torch.float64),
                                    torch.tensor(m1 / 2, dtype=torch.float64))
    flat_b, flat_a, flat_c = b.reshape(-1), a.reshape(-1), c.reshape(-1)
    n = flat_b.numel()
    eps = torch.zeros(n, dtype=torch.float64, device=k.device)
    done = torch.zeros(n, dtype=torch.bool, device=k.device)
    for _ in range(1000):  # the acceptance rate is above 0.5 for every d and kappa (Wood 1994)
        todo = (~done).nonzero().squeeze(-1)
        if todo.numel() == 0:
            break
        e = beta.sample((todo.numel(),)).to(k.device)
        u = torch.rand(todo.numel(), dtype=torch.float64, device=k.device)
        bb, aa, cc = flat_b.detach()[todo], flat_a.detach()[todo], flat_c.detach()[todo]
        t = 2 * aa * bb / (1 - (1 - bb) * e)
        accept = m1 * torch.log(t) - t + cc >= torch.log(u)
        eps[todo[accept]] = e[accept]
        done[todo[accept]] = True
    else:
        raise RuntimeError("Wood's sampler accepted nothing for some rows in 1000 rounds; is kappa finite?")
    w = (1 - (1 + flat_b) * eps) / (1 - (1 - flat_b) * eps)  # differentiable in kappa through b
    return w.reshape(kappa.shape).to(kappa.dtype)


def householder(z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Reflect `z` (..., d) by the Householder map that sends e1 to the unit vector `mu` (..., d)."""
    e1 = torch.zeros_like(mu)
    e1[..., 0] = 1
    u = e1 - mu
    norm = u.norm(dim=-1, keepdim=True)
    # mu == e1 needs no reflection; the clamp keeps the division finite, and u = 0 leaves z unchanged
    u = u / norm.clamp_min(1e-12)
    return z - 2 * (z * u).sum(-1, keepdim=True) * u


def sample_vmf(mu: torch.Tensor, kappa: torch.Tensor | float) -> torch.Tensor:
    """z ~ vMF(mu, kappa) for unit rows `mu` (..., d) and kappa (...) or a float; differentiable in mu (and kappa)."""
    if mu.dim() < 1 or mu.shape[-1] < 2:
        raise ValueError(f"mu must be (..., d) with d >= 2, found shape {tuple(mu.shape)}")
    d = mu.shape[-1]
    kappa = torch.as_tensor(kappa, dtype=mu.dtype, device=mu.device)
    if kappa.dim() == 0:
        kappa = kappa.expand(mu.shape[:-1])
    if kappa.shape != mu.shape[:-1]:
        raise ValueError(f"kappa must be a float or shape {tuple(mu.shape[:-1])}, found {tuple(kappa.shape)}")
    w = sample_vmf_w(d, kappa)[..., None]  # (..., 1)
    v = torch.randn(*mu.shape[:-1], d - 1, dtype=mu.dtype, device=mu.device)
    v = v / v.norm(dim=-1, keepdim=True)  # uniform on S^{d-2}, the tangent directions at e1
    z = torch.cat((w, torch.sqrt((1 - w * w).clamp_min(0)) * v), dim=-1)  # (..., d) around e1
    return householder(z, mu)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between unit vectors `a` and `b` (..., d) at fraction t: stays on the sphere."""
    cos = (a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    t = torch.as_tensor(t, dtype=a.dtype)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
