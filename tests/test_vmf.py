"""vMF distribution, Wood's sampler, its KL, and the sentence VAE around it.

Oracles: scipy.special.ive (Bessel functions), 1-D numeric integration over w = mu.z of the marginal
density exp(kappa w) (1 - w^2)^{(d-3)/2} (needs no Bessel function at all), finite differences
(gradcheck), torch.distributions' Gaussian KL, and identities (norms, Householder maps e1 to mu).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plmkit.models.sentence_vae import GaussianLatent, VMFLatent, build_sentence_vae
from plmkit.modules.vmf import (householder, log_bessel_iv, mean_resultant, sample_vmf, sample_vmf_w, slerp,
                                vmf_kl_uniform)

special = pytest.importorskip("scipy.special", reason="scipy (installed with scikit-learn) is the Bessel oracle")
integrate = pytest.importorskip("scipy.integrate", reason="scipy (installed with scikit-learn) integrates numerically")

CASES = [(3, 1.0), (8, 5.0), (16, 20.0), (32, 80.0)]


def marginal_moments(d: int, kappa: float) -> tuple[float, float]:
    """(E[w], KL to uniform) by quadrature over w in [-1, 1], with no Bessel function involved."""
    a = (d - 3) / 2
    shape = lambda w: (1 - w * w) ** a  # noqa: E731 -- the uniform density of w, up to a constant
    tilt = lambda w: math.exp(kappa * (w - 1)) * shape(w)  # noqa: E731 -- exp(kappa w) scaled by e^-kappa
    peak = (math.sqrt(a * a + kappa * kappa) - a) / kappa  # where kappa (1 - w^2) = 2 a w: the mode of the tilt
    quad = lambda f: integrate.quad(f, -1, 1, limit=400, points=[peak], epsabs=0, epsrel=1e-12)[0]  # noqa: E731
    z0, z1 = quad(shape), quad(tilt)
    mean = quad(lambda w: w * tilt(w)) / z1
    # KL = E_p[log p(w) - log u(w)] = kappa E[w] - kappa - log z1 + log z0 (the e^-kappa scale folded in)
    return mean, kappa * mean - kappa - math.log(z1) + math.log(z0)


@pytest.mark.parametrize("order", [0.0, 0.5, 7.0, 15.0])
def test_log_bessel_matches_scipy(order):
    x = torch.tensor([0.3, 2.0, 17.0, 150.0], dtype=torch.float64)
    expected = np.log(special.ive(order, x.numpy())) + x.numpy()
    np.testing.assert_allclose(log_bessel_iv(order, x).numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("d,kappa", CASES)
def test_mean_resultant_and_kl_against_quadrature(d, kappa):
    mean, kl = marginal_moments(d, kappa)
    ratio = special.ive(d / 2, kappa) / special.ive(d / 2 - 1, kappa)
    assert float(mean_resultant(d, torch.tensor(kappa, dtype=torch.float64))) == pytest.approx(ratio, rel=1e-9)
    assert ratio == pytest.approx(mean, rel=1e-6)
    assert float(vmf_kl_uniform(d, torch.tensor(kappa, dtype=torch.float64))) == pytest.approx(kl, rel=1e-6, abs=1e-8)


def test_kl_grows_with_kappa_and_vanishes_at_zero():
    kl = vmf_kl_uniform(16, torch.tensor([1e-3, 1.0, 10.0, 100.0], dtype=torch.float64))
    assert float(kl[0]) == pytest.approx(0.0, abs=1e-6)  # vMF -> uniform as kappa -> 0
    assert bool((kl.diff() > 0).all())


@pytest.mark.parametrize("d,kappa", [(3, 2.0), (16, 20.0), (64, 300.0)])
def test_sampler_concentration_and_direction(d, kappa):
    torch.manual_seed(0)
    n = 10000
    mu = F.normalize(torch.randn(d, dtype=torch.float64), dim=0)
    z = sample_vmf(mu.expand(n, d), kappa)
    assert torch.allclose(z.norm(dim=-1), torch.ones(n, dtype=torch.float64), atol=1e-10)
    w = z @ mu
    ratio = special.ive(d / 2, kappa) / special.ive(d / 2 - 1, kappa)
    se = float(w.std()) / math.sqrt(n)
    assert abs(float(w.mean()) - ratio) < 5 * se
    m = z.mean(0)  # E[z] = A_d(kappa) mu
    assert float(F.cosine_similarity(m, mu, dim=0)) > 0.99
    assert float(m.norm()) == pytest.approx(ratio, abs=6 * se + 0.02)


def test_w_variance_matches_quadrature():
    torch.manual_seed(1)
    d, kappa = 10, 6.0
    w = sample_vmf_w(d, torch.full((40000,), kappa, dtype=torch.float64))
    a = (d - 3) / 2
    dens = lambda w_, p: w_ ** p * math.exp(kappa * (w_ - 1)) * (1 - w_ * w_) ** a  # noqa: E731
    z = integrate.quad(lambda x: dens(x, 0), -1, 1)[0]
    var = integrate.quad(lambda x: dens(x, 2), -1, 1)[0] / z - (integrate.quad(lambda x: dens(x, 1), -1, 1)[0] / z) ** 2
    assert float(w.var()) == pytest.approx(var, rel=0.05)


def test_householder_maps_e1_to_mu_and_keeps_norms():
    torch.manual_seed(2)
    mu = F.normalize(torch.randn(5, 7, dtype=torch.float64), dim=-1)
    e1 = torch.zeros(5, 7, dtype=torch.float64)
    e1[:, 0] = 1
    assert torch.allclose(householder(e1, mu), mu, atol=1e-12)
    x = torch.randn(5, 7, dtype=torch.float64)
    assert torch.allclose(householder(x, mu).norm(dim=-1), x.norm(dim=-1), atol=1e-12)
    assert torch.allclose(householder(x, e1), x)  # mu = e1: no reflection, and no division by zero


def test_gradients_flow_to_mu_and_kappa_and_match_finite_differences():
    d = 4
    mu0 = F.normalize(torch.randn(2, d, dtype=torch.float64), dim=-1)

    def z_of(mu, kappa):  # the same noise every call: the sample as a function of the parameters
        torch.manual_seed(3)
        return sample_vmf(F.normalize(mu, dim=-1), kappa)

    mu = mu0.clone().requires_grad_()
    kappa = torch.tensor([2.0, 30.0], dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(z_of, (mu, kappa), eps=1e-6, atol=1e-5)
    z_of(mu, kappa).sum().backward()
    assert float(mu.grad.abs().sum()) > 0 and float(kappa.grad.abs().sum()) > 0


def test_slerp_stays_on_the_sphere():
    torch.manual_seed(4)
    a, b = F.normalize(torch.randn(2, 9, dtype=torch.float64), dim=-1)
    for t in (0.0, 0.3, 0.5, 1.0):
        p = slerp(a, b, t)
        assert float(p.norm()) == pytest.approx(1.0, abs=1e-9)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    angle = torch.acos((a * b).sum())
    assert float(torch.acos((a * slerp(a, b, 0.25)).sum())) == pytest.approx(0.25 * float(angle), rel=1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="kappa must be positive"):
        vmf_kl_uniform(8, torch.tensor([1.0, -2.0]))
    with pytest.raises(ValueError, match="mu must be"):
        sample_vmf(torch.ones(3, 1), 1.0)
    with pytest.raises(ValueError, match=r"kappa must be a float or shape \(3,\)"):
        sample_vmf(F.normalize(torch.ones(3, 4), dim=-1), torch.ones(2))


def test_gaussian_latent_kl_matches_torch_distributions():
    torch.manual_seed(5)
    latent = GaussianLatent(6, 4)
    h = torch.randn(3, 6)
    out = latent(h)
    mu, logvar = latent.proj(h).chunk(2, -1)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(out.kl, torch.distributions.kl_divergence(q, p).sum(-1), atol=1e-6)


def test_sentence_vae_vmf_kl_is_the_constant_and_teacher_forcing_matches_stepwise_decoding():
    torch.manual_seed(6)
    vae = build_sentence_vae(12, VMFLatent(32, 8, kappa=10.0), embed_size=8, hidden_size=16)
    ids = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 9, 4, 3, 8, 2]])
    out = vae(ids)
    expected_kl = special.ive(4, 10.0) / special.ive(3, 10.0) * 10.0 + 3 * math.log(10.0) - 4 * math.log(2 * math.pi) \
        - (math.log(special.ive(3, 10.0)) + 10.0) + math.log(2) + 4 * math.log(math.pi) - math.lgamma(4)
    assert torch.allclose(out.kl, torch.full((2,), expected_kl), rtol=1e-5)
    assert torch.allclose(out.latent.z.norm(dim=-1), torch.ones(2), atol=1e-5)
    # reconstruction by teacher forcing == the same NLL summed one token at a time through the recurrent state
    z, state, nll = out.latent.z, None, torch.zeros(2)
    for t in range(ids.shape[1] - 1):
        logits, state = vae.decoder(ids[:, t:t + 1], z, state)
        step = F.cross_entropy(logits[:, 0], ids[:, t + 1], reduction="none")
        nll = nll + step * (ids[:, t + 1] != 0)
    assert torch.allclose(out.reconstruction, nll, atol=1e-5)
    out.loss.backward()
    assert vae.latent.proj.weight.grad.abs().sum() > 0  # the reconstruction reaches mu through the sample
    assert len(vae.decode(out.latent.mean, max_length=5)) == 2


def test_learned_kappa_is_positive_and_trains():
    torch.manual_seed(7)
    vae = build_sentence_vae(10, VMFLatent(16, 4, kappa=None), embed_size=8, hidden_size=8)
    out = vae(torch.tensor([[1, 3, 4, 2], [1, 5, 2, 0]]))
    out.loss.backward()
    assert bool((out.kl > 0).all()) and vae.latent.kappa_proj.weight.grad.abs().sum() > 0
