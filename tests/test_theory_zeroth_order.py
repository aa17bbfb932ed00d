"""Policy gradient == zeroth-order estimator (kexue.fm/archives/7737), checked numerically on a quadratic."""
import pytest
import torch

from plmkit.theory.zeroth_order import ZerothOrder, reinforce_gradient, zeroth_order_gradient

D = 6


def _quadratic():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(D, D, generator=gen, dtype=torch.float64)
    a = m @ m.T + torch.eye(D, dtype=torch.float64)  # SPD
    b = torch.randn(D, generator=gen, dtype=torch.float64)
    f = lambda theta: 0.5 * ((theta @ a) * theta).sum(-1) + theta @ b  # (S, D) -> (S,)
    return a, b, f


def test_reinforce_equals_zeroth_order_on_the_same_samples():
    _, _, f = _quadratic()
    mu = torch.linspace(-1, 1, D, dtype=torch.float64)
    for antithetic, baseline in [(True, None), (True, "mean"), (False, "center")]:
        pg = reinforce_gradient(f, mu, 0.3, 64, baseline=baseline, antithetic=antithetic,
                                generator=torch.Generator().manual_seed(7))
        zo = zeroth_order_gradient(f, mu, 0.3, 64, two_point=antithetic, generator=torch.Generator().manual_seed(7))
        assert torch.allclose(pg, zo, rtol=1e-10, atol=1e-12), (antithetic, baseline)


@pytest.mark.parametrize("sigma", [0.05, 1.0])
def test_smoothed_gradient_of_a_quadratic_is_its_gradient(sigma):
    a, b, f = _quadratic()
    mu = torch.linspace(-1, 1, D, dtype=torch.float64)
    exact = a @ mu + b
    gen = torch.Generator().manual_seed(1)
    draws = {
        "reinforce": [reinforce_gradient(f, mu, sigma, 200, baseline=None, generator=gen) for _ in range(200)],
        "reinforce+mean": [reinforce_gradient(f, mu, sigma, 200, baseline="mean", generator=gen) for _ in range(200)],
        "two-point": [zeroth_order_gradient(f, mu, sigma, 200, generator=gen) for _ in range(200)],
    }
    spread = {}
    for name, g in draws.items():
        g = torch.stack(g)  # (200, D)
        se = g.std(0) / g.shape[0] ** 0.5
        assert ((g.mean(0) - exact).abs() < 5 * se + 1e-9).all(), name
        spread[name] = g.var(0).sum().item()
    # the baseline exists to cut variance: without one, f's offset multiplies the noise
    assert spread["reinforce+mean"] < spread["reinforce"]
    assert spread["two-point"] < spread["reinforce"]


def test_two_point_tends_to_the_gradient_as_sigma_shrinks():
    f = lambda t: torch.sin(t).sum(-1) + (t ** 3).sum(-1)
    x = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    g = torch.stack([zeroth_order_gradient(f, x, 1e-4, 2000, generator=gen) for _ in range(50)]).mean(0)
    assert torch.allclose(g, torch.cos(x) + 3 * x ** 2, atol=0.1)


def test_optimizer_minimises_a_quadratic_without_gradients():
    a, b, f = _quadratic()
    x = torch.nn.Parameter(torch.zeros(D, dtype=torch.float64))
    opt = ZerothOrder([x], lr=0.02, sigma=1e-3, num_directions=8, generator=torch.Generator().manual_seed(3))
    closure = lambda: f(x.detach()[None])[0]
    start = float(closure())
    for _ in range(600):
        opt.step(closure)
    best = torch.linalg.solve(a, -b)
    assert x.grad is None
    assert float(closure()) < start
    assert torch.allclose(x.detach(), best, atol=0.1)


def test_errors():
    _, _, f = _quadratic()
    with pytest.raises(ValueError, match="even"):
        zeroth_order_gradient(f, torch.zeros(D, dtype=torch.float64), 0.1, 3)
    with pytest.raises(ValueError, match="baseline"):
        reinforce_gradient(f, torch.zeros(D, dtype=torch.float64), 0.1, 4, baseline="median")
    with pytest.raises(ValueError, match="closure"):
        ZerothOrder([torch.nn.Parameter(torch.zeros(2))]).step(None)
