"""plmkit.theory: Taylor-softmax, smooth approximations by convolution, Mitchell's multiplication."""
import math
import struct

import numpy as np
import pytest
import torch
from scipy import integrate

from plmkit.theory.mitchell import MitchellLinear, mitchell_linear, mitchell_multiply
from plmkit.theory.smooth_activations import (gaussian_relu, kernel_density, smooth_abs, smooth_floor,
                                              smooth_gated, smooth_relu, smooth_step)
from plmkit.theory.taylor_softmax import (expected_calibration_error, monotone_taylor_exp, taylor_exp,
                                          taylor_exp_minimum, taylor_log_softmax, taylor_softmax)

# ---------------------------------------------------------------- Taylor-softmax

# the post's table: n -> (argmin, minimum value)
MINIMA = {2: (-1, 0.5), 4: (-1.59607, 0.270395), 6: (-2.18061, 0.149325), 8: (-2.759, 0.0832715),
          10: (-3.33355, 0.0466991)}


def test_taylor_exp_is_the_partial_sum():
    x = torch.linspace(-5, 5, 41, dtype=torch.float64)
    for n in (1, 2, 3, 7):
        expected = sum(x ** k / math.factorial(k) for k in range(n + 1))
        torch.testing.assert_close(taylor_exp(x, n), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", sorted(MINIMA))
def test_minima_table(n):
    x_min, value = taylor_exp_minimum(n)
    assert x_min == pytest.approx(MINIMA[n][0], abs=6e-6)
    assert value == pytest.approx(MINIMA[n][1], rel=2e-6)
    # independently: the smallest value of f_n on a fine grid around x*
    grid = torch.linspace(x_min - 0.01, x_min + 0.01, 20001, dtype=torch.float64)
    f = taylor_exp(grid, n)
    assert float(f.min()) == pytest.approx(value, rel=1e-9)
    assert float(grid[f.argmin()]) == pytest.approx(x_min, abs=2e-6)


def test_positive_for_even_orders_negative_for_odd():
    x = torch.linspace(-60, 60, 240_001, dtype=torch.float64)
    for n in (2, 4, 6, 8, 10, 12):
        assert float(taylor_exp(x, n).min()) > 0
    for n in (1, 3, 5, 7, 9):
        assert float(taylor_exp(torch.tensor(-20.0, dtype=torch.float64), n)) < 0


def test_monotone_variant_is_non_decreasing_and_equal_right_of_the_minimum():
    x = torch.linspace(-20, 10, 30_001, dtype=torch.float64)
    for n in (2, 4, 6):
        g = monotone_taylor_exp(x, n)
        assert bool((g[1:] >= g[:-1]).all())
        right = x >= taylor_exp_minimum(n)[0]
        torch.testing.assert_close(g[right], taylor_exp(x[right], n))
        assert float(g.min()) == pytest.approx(taylor_exp_minimum(n)[1], rel=1e-12)
    # plain f_2 falls left of -1: a lower logit can get a higher probability
    p = taylor_softmax(torch.tensor([[-3.0, 0.0]], dtype=torch.float64), n=2)
    assert float(p[0, 0]) > 0.5
    p = taylor_softmax(torch.tensor([[-3.0, 0.0]], dtype=torch.float64), n=2, monotone=True)
    assert float(p[0, 0]) < 0.5


def test_taylor_softmax_sums_to_one_and_log_matches():
    z = torch.randn(5, 7, dtype=torch.float64) * 4
    for n, monotone in ((2, False), (4, True), (10, False)):
        p = taylor_softmax(z, n=n, monotone=monotone)
        torch.testing.assert_close(p.sum(-1), torch.ones(5, dtype=torch.float64))
        assert bool((p > 0).all())
        torch.testing.assert_close(taylor_log_softmax(z, n=n, monotone=monotone), torch.log(p))
    # high order approaches softmax for moderate logits
    z = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(taylor_softmax(z, n=20), torch.softmax(z, -1), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="even"):
        taylor_softmax(z, n=3)


def test_expected_calibration_error_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    # 2 bins: (0, .5] holds none (max prob >= .5); (.5, 1] holds all four: accuracy 0.5, confidence 0.7375
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.2375)
    # 10 bins: .9 alone (acc 1), .8 alone (acc 0), .7 alone (acc 1), .55 alone (acc 0)
    expected = (abs(1 - .9) + abs(0 - .8) + abs(1 - .7) + abs(0 - .55)) / 4
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(expected)


# ---------------------------------------------------------------- smooth approximations by convolution

def _convolve(f, x, scale, kernel, breaks):
    """(f * k_s)(x) by scipy.integrate.quad over t, split where f(x - t) has corners."""
    width = (12.0 if kernel == "gaussian" else 45.0) * scale

    def integrand(t):
        return f(x - t) * float(kernel_density(torch.tensor(t, dtype=torch.float64), scale, kernel))

    points = sorted({b for b in breaks if -width < b < width} | {-width, width})
    return sum(integrate.quad(integrand, lo, hi, epsabs=1e-12, epsrel=1e-12, limit=200)[0]
               for lo, hi in zip(points[:-1], points[1:]))


XS = [-3.7, -1.0, -0.2, 0.0, 0.35, 1.3, 4.2]


@pytest.mark.parametrize("kernel,scale", [("gaussian", 1.0), ("gaussian", 0.3), ("logistic", 1.0), ("logistic", 0.5)])
def test_closed_forms_match_numerical_convolution(kernel, scale):
    relu, step = (lambda y: max(y, 0.0)), (lambda y: 1.0 if y > 0 else 0.0)
    for x in XS:
        t = torch.tensor(x, dtype=torch.float64)
        # f(x - t) has its corner at t = x
        assert float(smooth_relu(t, scale, kernel)) == pytest.approx(_convolve(relu, x, scale, kernel, [x]), abs=1e-6)
        assert float(smooth_step(t, scale, kernel)) == pytest.approx(_convolve(step, x, scale, kernel, [x]), abs=1e-6)
        assert float(smooth_abs(t, scale, kernel)) == pytest.approx(_convolve(abs, x, scale, kernel, [x]), abs=1e-6)
        gated = x * _convolve(step, x, scale, kernel, [x])
        assert float(smooth_gated(t, scale, kernel)) == pytest.approx(gated, abs=1e-6)


@pytest.mark.parametrize("kernel,scale", [("gaussian", 0.1), ("gaussian", 0.4), ("logistic", 0.1)])
def test_smooth_floor_matches_numerical_convolution(kernel, scale):
    for x in (-2.5, -0.95, 0.0, 0.5, 0.97, 3.2):
        breaks = [x - n for n in range(-80, 80)]  # floor(x - t) jumps at t = x - n
        expected = _convolve(math.floor, x, scale, kernel, breaks)
        assert float(smooth_floor(torch.tensor(x, dtype=torch.float64), scale, kernel)) == pytest.approx(expected, abs=1e-6)


def test_known_activations_are_the_smoothings():
    x = torch.linspace(-6, 6, 121, dtype=torch.float64)
    torch.testing.assert_close(smooth_gated(x, 1.0, "gaussian"), torch.nn.functional.gelu(x))
    torch.testing.assert_close(smooth_gated(x, 1.0, "logistic"), torch.nn.functional.silu(x))
    torch.testing.assert_close(smooth_relu(x, 1.0, "logistic"), torch.nn.functional.softplus(x))
    # the post's erf form of relu * Gaussian, written out
    s = 0.7
    erf_form = 0.5 * (x * torch.erf(x / (math.sqrt(2) * s)) + x + math.sqrt(2 / math.pi) * s * torch.exp(-x**2 / (2 * s * s)))
    torch.testing.assert_close(smooth_relu(x, s, "gaussian"), erf_form)
    # and they converge to the non-smooth function as the kernel narrows
    assert float((smooth_relu(x, 1e-3) - torch.relu(x)).abs().max()) < 1e-3
    y = x + 0.25  # at least 0.05 from every integer: 50 kernel widths at s = 1e-3
    assert float((smooth_floor(y, 1e-3) - torch.floor(y)).abs().max()) < 1e-9


def test_gaussian_relu_by_monte_carlo():
    x = torch.tensor([-1.5, 0.0, 0.8], dtype=torch.float64)
    z = torch.randn(2_000_000, 1, dtype=torch.float64)
    mc = torch.relu(x + z).mean(0)  # E[relu(x + Z)]
    torch.testing.assert_close(gaussian_relu(x), mc, atol=3e-3, rtol=0)


@pytest.mark.parametrize("act", ["gaussian_relu", "softplus"])
def test_activations_a_config_can_name(act):
    from plmkit.config import ModelConfig
    from plmkit.models import build_model
    from plmkit.modules.linear import activation

    x = torch.linspace(-4, 4, 17)
    reference = gaussian_relu(x) if act == "gaussian_relu" else smooth_relu(x, 1.0, "logistic")
    torch.testing.assert_close(activation(act)(x), reference)
    config = ModelConfig(family="bert", vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
                         intermediate_size=24, max_position=16, hidden_act=act)
    model = build_model(config).eval()
    relu_model = build_model(config.replace(hidden_act="relu")).eval()
    relu_model.load_state_dict(model.state_dict())
    ids = torch.randint(1, 50, (2, 5))
    out, relu_out = model(ids).last_hidden_state, relu_model(ids).last_hidden_state
    assert torch.isfinite(out).all()
    assert (out - relu_out).abs().max() > 1e-3  # the named activation is the one the feed-forward uses


# ---------------------------------------------------------------- Mitchell's multiplication

def _mitchell_by_formula(a: float, b: float) -> float:
    """The post's formula from exponents and mantissas, with Python floats (an independent computation)."""
    if a == 0 or b == 0:
        return 0.0
    a32, b32 = (struct.unpack("f", struct.pack("f", v))[0] for v in (a, b))  # round to float32 first
    ma, ea = math.frexp(abs(a32))  # abs = ma * 2^ea, ma in [0.5, 1)
    mb, eb = math.frexp(abs(b32))
    fa, fb = 2 * ma - 1, 2 * mb - 1  # abs = (1 + f) 2^(e - 1)
    e = ea + eb - 2
    value = (1 + fa + fb) * 2.0 ** e if fa + fb < 1 else (fa + fb) * 2.0 ** (e + 1)
    return math.copysign(value, a32 * b32)


def test_the_posts_example_and_worst_case():
    assert float(mitchell_multiply(torch.tensor(12.3), torch.tensor(4.56))) == pytest.approx(53.68, rel=1e-6)
    assert float(mitchell_multiply(torch.tensor(1.5), torch.tensor(1.5))) == 2.0  # 8/9 of 2.25
    assert 2.0 / 2.25 == pytest.approx(8 / 9)


def test_exact_on_powers_of_two_and_signs():
    p = torch.tensor([2.0 ** k for k in range(-20, 21)])
    torch.testing.assert_close(mitchell_multiply(p[:, None], p[None, :]), p[:, None] * p[None, :], rtol=0, atol=0)
    x = torch.tensor([3.7, -3.7, 0.0, -0.0, 1e-3])
    two = torch.tensor([2.0, -0.5, 5.0, 7.0, -8.0])
    torch.testing.assert_close(mitchell_multiply(x, two), x * two, rtol=0, atol=0)  # one operand a power of two: exact
    assert float(mitchell_multiply(torch.tensor(-3.0), torch.tensor(5.0))) == -14.0
    assert float(mitchell_multiply(torch.tensor(1e-30), torch.tensor(1e-30))) == 0.0  # underflow
    assert math.isinf(float(mitchell_multiply(torch.tensor(1e30), torch.tensor(1e30))))  # overflow


def test_matches_the_formula_on_random_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=2000) * 10.0 ** rng.integers(-5, 5, size=2000)
    b = rng.normal(size=2000) * 10.0 ** rng.integers(-5, 5, size=2000)
    got = mitchell_multiply(torch.tensor(a), torch.tensor(b)).double().numpy()
    expected = np.array([_mitchell_by_formula(x, y) for x, y in zip(a, b)])
    np.testing.assert_allclose(got, expected, rtol=2e-7)  # float32 rounding of the result only


def test_relative_error_never_exceeds_one_ninth_on_a_dense_grid():
    m = torch.linspace(1.0, 2.0, 2049)[:-1]  # every mantissa step of 1/2048
    scales = torch.tensor([2.0 ** -7, 1.0, 2.0 ** 11])
    a = (m[:, None] * scales[None, :]).flatten()  # (2048 * 3,)
    b = -(m[:, None] * scales.flip(0)[None, :]).flatten()
    approx = mitchell_multiply(a[:, None], b[None, :]).double()
    exact = a.double()[:, None] * b.double()[None, :]
    ratio = approx / exact  # (6144, 6144), signs cancel
    assert float(ratio.max()) <= 1.0 + 1e-7  # never too large
    assert float(ratio.min()) >= 8 / 9 - 1e-7  # relative error <= 1/9
    worst = ratio.argmin()
    i, j = divmod(int(worst), ratio.shape[1])
    assert float(ratio.min()) == pytest.approx(8 / 9, abs=1e-7)
    # the worst pair has mantissas 1.5 x 1.5
    assert float(a[i] / 2 ** math.floor(math.log2(abs(float(a[i]))))) == 1.5
    assert float(abs(b[j]) / 2 ** math.floor(math.log2(abs(float(b[j]))))) == 1.5


def test_mitchell_linear_layer():
    torch.manual_seed(0)
    x, w, bias = torch.randn(7, 3, 11), torch.randn(5, 11), torch.randn(5)
    expected = (mitchell_multiply(x[..., None, :], w).sum(-1) + bias)  # (7, 3, 5), elementwise then summed
    torch.testing.assert_close(mitchell_linear(x, w, bias, chunk_elements=60), expected, rtol=1e-6, atol=1e-6)
    exact = torch.nn.functional.linear(x, w, bias)
    # each product is within 1/9 (low), so the sum is within 1/9 of the sum of |products|
    slack = (x[..., None, :].abs() * w.abs()).sum(-1) / 9
    assert bool(((mitchell_linear(x, w, bias) - exact).abs() <= slack + 1e-5).all())
    layer = torch.nn.Linear(11, 5)
    approx = MitchellLinear.from_linear(layer)
    assert approx.weight is layer.weight
    y = approx(x)
    torch.testing.assert_close(y, mitchell_linear(x, layer.weight, layer.bias))
    # backward is the exact layer's (straight-through)
    y.sum().backward()
    g_mitchell = layer.weight.grad.clone()
    layer.weight.grad = None
    layer(x).sum().backward()
    torch.testing.assert_close(g_mitchell, layer.weight.grad)
