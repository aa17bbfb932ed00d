"""The repetition measure R = sum_k Tr((P o P)^k) (kexue.fm/archives/8128) against independent computations."""
import itertools

import numpy as np
import pytest

from plmkit.theory.repetition import (bigram_transitions, decoding_transitions, monte_carlo_repetition,
                                      repetition_bounds, repetition_measure, repetition_measure_eig,
                                      repetition_series)


def _random_transitions(n: int, alpha: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(n, alpha), size=n)


def _loops_by_enumeration(p: np.ndarray, k: int) -> float:
    """sum over every token sequence w1..wk of prod_t P[w_t, w_(t+1)]^2 with w_(k+1) = w1: loops, no matrices."""
    total = 0.0
    for loop in itertools.product(range(p.shape[0]), repeat=k):
        prob = 1.0
        for a, b in zip(loop, loop[1:] + loop[:1]):
            prob *= p[a, b]
        total += prob ** 2  # the loop, then the same loop again
    return total


def test_trace_series_counts_repeated_loops():
    p = _random_transitions(3, 0.7, seed=1)
    series = repetition_series(p, 5)
    for k in range(1, 6):
        assert series[k - 1] == pytest.approx(_loops_by_enumeration(p, k), rel=1e-12)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 5.0])
def test_closed_forms_agree_with_the_series(alpha):
    p = _random_transitions(8, alpha, seed=2)
    r = repetition_measure(p)
    assert repetition_measure_eig(p) == pytest.approx(r, rel=1e-9)
    assert repetition_series(p, 2000).sum() == pytest.approx(r, rel=1e-9)
    lower, upper = repetition_bounds(p)
    assert lower <= r <= upper


def test_monte_carlo_decoder_matches_truncated_series():
    p = _random_transitions(5, 0.5, seed=3)
    estimate, stderr = monte_carlo_repetition(p, max_k=6, num_chains=200_000, seed=0)
    exact = repetition_series(p, 6).sum()
    assert stderr < 0.05 * exact  # the check below is not vacuous
    assert abs(estimate - exact) < 4 * stderr


def test_uniform_rows_have_the_smallest_closed_form():
    n = 7  # P = J/n: P o P = J/n^2 has one nonzero eigenvalue 1/n, so R = 1/(n-1)
    assert repetition_measure(np.full((n, n), 1.0 / n)) == pytest.approx(1.0 / (n - 1), rel=1e-12)


def test_greedy_makes_repetition_infinite():
    p = _random_transitions(10, 1.0, seed=4)
    greedy = decoding_transitions(p, greedy=True)
    assert np.array_equal(greedy, decoding_transitions(p, top_k=1))  # continuous draws: no ties
    assert repetition_measure(greedy) == float("inf")
    assert repetition_measure(p) < float("inf")


def test_truncation_raises_and_flattening_lowers():
    p = _random_transitions(30, 1.0, seed=5)
    r = repetition_measure(p)
    assert repetition_measure(decoding_transitions(p, top_k=5)) > r
    assert repetition_measure(decoding_transitions(p, temperature=0.5)) > r
    assert repetition_measure(decoding_transitions(p, temperature=2.0)) < r
    rows = decoding_transitions(p, top_p=0.5)
    assert np.allclose(rows.sum(axis=1), 1.0) and repetition_measure(rows) > r


def test_bigram_counts_and_errors():
    p = bigram_transitions([[0, 1, 0, 1, 1], [2, 0]], vocab_size=3)
    assert np.allclose(p, [[0, 1, 0], [0.5, 0.5, 0], [1, 0, 0]])
    assert np.allclose(bigram_transitions([[0, 0]], vocab_size=2)[1], [0.5, 0.5])  # unseen row: uniform
    with pytest.raises(ValueError, match="outside"):
        bigram_transitions([[0, 3]], vocab_size=3)
    with pytest.raises(ValueError, match="row 0 sums"):
        repetition_measure(np.array([[0.5, 0.4], [0.5, 0.5]]))
