"""Johnson-Lindenstrauss projections against the chi-square law and the JL bound."""
import math

import pytest
import torch

from plmkit.theory.random_projection import (gaussian_projection, jl_eps, jl_min_dim, log_rule_dim,
                                             pairwise_distortion, sparse_projection)


def test_bound_matches_scikit_learn():
    rp = pytest.importorskip("sklearn.random_projection")
    for n, eps in [(1000, 0.1), (10_000, 0.5), (50, 0.9)]:
        ours, theirs = jl_min_dim(n, eps), int(rp.johnson_lindenstrauss_min_dim(n, eps=eps))
        assert theirs <= ours <= theirs + 1  # scikit-learn truncates where we round up
        assert jl_eps(n, ours) <= eps < jl_eps(n, ours - 1)


def test_rule_and_the_bound_at_eps_one():
    assert log_rule_dim(1000) == math.ceil(8.33 * math.log(1000)) == 58
    assert jl_eps(1000, log_rule_dim(1000)) == math.inf  # the bound promises nothing at 8.33 ln N
    assert jl_eps(1000, math.ceil(24 * math.log(1000))) <= 1.0


@pytest.mark.parametrize("make", [gaussian_projection, sparse_projection])
def test_norm_ratio_is_chi_square_over_n(make):
    gen = torch.Generator().manual_seed(0)
    d, n, trials = 64, 16, 4000
    x = torch.randn(d, generator=gen, dtype=torch.float64)
    ratios = torch.stack([(x @ make(d, n, generator=gen, dtype=torch.float64)).pow(2).sum() for _ in range(trials)])
    ratios = ratios / x.pow(2).sum()
    # chi2(n)/n: mean 1, variance 2/n; Achlioptas' entries share the Gaussian fourth moment, so the same
    se_mean, se_var = math.sqrt(2 / n / trials), (2 / n) * math.sqrt(2 / trials) * 2
    assert abs(ratios.mean().item() - 1) < 4 * se_mean
    assert abs(ratios.var().item() - 2 / n) < 2 * se_var


@pytest.mark.parametrize("make", [gaussian_projection, sparse_projection])
def test_distortion_within_the_jl_bound(make):
    gen = torch.Generator().manual_seed(1)
    points, eps = 120, 0.5
    x = torch.randn(points, 384, generator=gen)
    n = jl_min_dim(points, eps)
    for _ in range(3):
        ratio = pairwise_distortion(x, x @ make(384, n, generator=gen))
        assert (ratio - 1).abs().max() < eps
    # far below the bound the worst pair breaks it, though the typical pair stays close
    ratio = pairwise_distortion(x, x @ make(384, 8, generator=gen))
    assert (ratio - 1).abs().max() > eps


def test_sparse_entries_and_errors():
    r = sparse_projection(300, 30, generator=torch.Generator().manual_seed(0))
    values = set((r * math.sqrt(30 / 3)).round().unique().tolist())
    assert values == {-1.0, 0.0, 1.0}
    assert abs((r != 0).float().mean().item() - 1 / 3) < 0.02
    with pytest.raises(ValueError, match="duplicate"):
        pairwise_distortion(torch.zeros(2, 3), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="eps"):
        jl_min_dim(10, 1.5)
