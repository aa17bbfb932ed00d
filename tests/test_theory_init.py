"""Non-square initialisation (kexue.fm/archives/8725): the means, their closed forms, and Monte-Carlo moments."""
import math

import pytest
import torch
from torch import nn

from plmkit.theory.init_scaling import (alternating_widths, apply_nonsquare_init, init_variance,
                                        monte_carlo_second_moments, nonsquare_init_, predicted_second_moments)


def test_means_and_their_defining_equations():
    m, n = 96, 384
    assert init_variance(m, n, "arithmetic") * (m + n) / 2 == pytest.approx(1.0)
    s = init_variance(m, n, "geometric")
    assert (m * s) * (n * s) == pytest.approx(1.0)
    s = init_variance(m, n, "quadratic")  # a stationary point of (m s - 1)^2 + (n s - 1)^2
    assert m * (m * s - 1) + n * (n * s - 1) == pytest.approx(0.0, abs=1e-12)
    for mean in ("arithmetic", "geometric", "quadratic"):
        assert init_variance(m, n, mean) == init_variance(n, m, mean)  # symmetric in the two sizes
        assert init_variance(64, 64, mean) == pytest.approx(1 / 64)
    with pytest.raises(ValueError, match="mean must be"):
        init_variance(2, 3, "harmonic")


def test_arithmetic_is_torch_xavier():
    w = torch.empty(300, 1200)
    nn.init.xavier_normal_(w, generator=torch.Generator().manual_seed(0))
    ours = nonsquare_init_(torch.empty(300, 1200), "arithmetic", generator=torch.Generator().manual_seed(0))
    assert torch.equal(w, ours)


def test_pair_factors_closed_form():
    m, n = 64, 256
    fwd = {mean: predicted_second_moments(alternating_widths(m, n, 2), mean)[0][-1]
           for mean in ("arithmetic", "geometric", "quadratic")}
    assert fwd["geometric"] == pytest.approx(1.0)
    assert fwd["arithmetic"] == pytest.approx(4 * m * n / (m + n) ** 2)
    assert fwd["quadratic"] == pytest.approx(m * n * (m + n) ** 2 / (m * m + n * n) ** 2)
    assert fwd["quadratic"] < fwd["arithmetic"] < fwd["geometric"]


@pytest.mark.parametrize("mean", ["arithmetic", "geometric", "quadratic", "fan_in"])
def test_monte_carlo_matches_the_recursion(mean):
    widths = alternating_widths(32, 128, 8)
    fwd, bwd = predicted_second_moments(widths, mean)
    mc_fwd, mc_bwd = monte_carlo_second_moments(widths, mean, batch=128, trials=64,
                                                generator=torch.Generator().manual_seed(0))
    for got, want in zip(mc_fwd + mc_bwd, fwd + bwd):
        assert got == pytest.approx(want, rel=0.08)
    if mean == "geometric":
        assert mc_fwd[-1] == pytest.approx(1.0, rel=0.08) and mc_bwd[0] == pytest.approx(1.0, rel=0.08)
    if mean == "arithmetic":  # 4 pairs of 32 x 128: (4 * 32 * 128 / 160^2)^4 = 0.64^4
        assert mc_fwd[-1] == pytest.approx(0.64 ** 4, rel=0.1)


def test_apply_to_a_model():
    model = nn.Sequential(nn.Embedding(10, 48), nn.Linear(48, 192), nn.GELU(), nn.Linear(192, 48))
    embedding = model[0].weight.detach().clone()
    assert apply_nonsquare_init(model, "geometric", generator=torch.Generator().manual_seed(0)) == 2
    assert torch.equal(model[0].weight, embedding)
    for layer in (model[1], model[3]):
        want = math.sqrt(1 / math.sqrt(48 * 192))
        assert layer.weight.std().item() == pytest.approx(want, rel=0.05)
        assert not layer.bias.any()
