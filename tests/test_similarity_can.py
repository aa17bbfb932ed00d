"""CAN against a line-by-line numpy transcription of kexue.fm/archives/8728 and a hand-worked case."""
import numpy as np
import pytest
import torch

from plmkit.similarity.can import can_correct, topk_uncertainty


def post_algorithm(y_pred, prior, k=3, threshold=0.9, alpha=1.0, iters=1):
    """The post's procedure, written the way it reads: one uncertain sample at a time."""
    top = np.sort(y_pred, axis=1)[:, -k:]
    top = top / top.sum(axis=1, keepdims=True)
    uncertainty = -(top * np.log(top)).sum(1) / np.log(k)
    confident = y_pred[uncertainty < threshold]
    out = y_pred.copy()
    for i in np.flatnonzero(uncertainty >= threshold):
        Y = np.concatenate([confident, y_pred[i][None]], axis=0)
        for _ in range(iters):
            Y = Y ** alpha
            Y = Y / Y.sum(axis=0, keepdims=True)
            Y = Y * prior[None]
            Y = Y / Y.sum(axis=1, keepdims=True)
        out[i] = Y[-1]
    return out


def _probs(rng, n, c):
    # a mix of peaked (confident) and flat (uncertain) rows
    conc = np.where(rng.random(n) < 0.6, 0.15, 3.0)[:, None]
    return np.stack([rng.dirichlet(np.full(c, a[0])) for a in conc])


@pytest.mark.parametrize("c, k, alpha, iters", [(5, 3, 1.0, 1), (7, 3, 1.0, 1), (6, 4, 0.5, 1), (5, 3, 1.0, 3),
                                                (4, 3, 2.0, 2)])
def test_matches_the_post_transcription(c, k, alpha, iters):
    rng = np.random.default_rng(c * 10 + iters)
    probs = _probs(rng, 300, c)
    prior = rng.dirichlet(np.ones(c))
    expected = post_algorithm(probs, prior, k=k, alpha=alpha, iters=iters)
    ours = can_correct(probs, prior, k=k, alpha=alpha, iterations=iters, chunk_size=37)
    assert np.abs(ours - expected).max() <= 1e-12
    changed = (ours.argmax(1) != probs.argmax(1)).sum()
    assert changed > 0  # the test data really exercises the correction
    # torch input, the same numbers
    assert np.abs(can_correct(torch.from_numpy(probs), torch.from_numpy(prior), k=k, alpha=alpha,
                              iterations=iters) - expected).max() <= 1e-12


def test_binary_example_by_hand():
    """The post's example: a confident [0.05, 0.95] and an undecided [0.5, 0.5] with a uniform prior."""
    probs = np.array([[0.05, 0.95], [0.5, 0.5]])
    out = can_correct(probs, [0.5, 0.5], k=2)
    # column sums 0.55 and 1.45; last row 0.5/0.55 and 0.5/1.45, times 0.5, renormalised
    a, b = 0.5 / 0.55, 0.5 / 1.45
    assert out[1] == pytest.approx([a / (a + b), b / (a + b)], abs=1e-12)
    assert out[1].argmax() == 0
    assert np.array_equal(out[0], probs[0])  # the confident row is untouched


def test_uncertainty_by_hand_and_prior_fallback():
    p = np.array([[0.5, 0.25, 0.25, 0.0], [0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    u = topk_uncertainty(p, k=3)
    h = -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)) / np.log(3)
    assert u == pytest.approx([h, np.log(2) / np.log(3), 0.0], abs=1e-12)
    rng = np.random.default_rng(3)
    probs = _probs(rng, 200, 4)
    confident = probs[topk_uncertainty(probs, 3) < 0.9]
    assert np.abs(can_correct(probs) - post_algorithm(probs, confident.mean(0))).max() <= 1e-12


def test_errors():
    with pytest.raises(ValueError, match="row 1"):
        can_correct(np.array([[0.5, 0.5], [2.0, 0.1]]), [0.5, 0.5])
    with pytest.raises(ValueError, match="prior must be 3"):
        can_correct(np.full((2, 3), 1 / 3), [0.5, 0.5])
    with pytest.raises(ValueError, match="no row is confident"):
        can_correct(np.full((2, 3), 1 / 3))
