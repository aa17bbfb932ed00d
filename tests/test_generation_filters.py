"""Logits filters (plmkit.generation.filters) against hand-computed cases."""
import math

import pytest
import torch

from plmkit.generation import filters

INF = math.inf


def test_top_k_keeps_the_k_best_and_ties_with_the_kth():
    scores = torch.tensor([[1.0, 3.0, 2.0, 5.0, 4.0], [1.0, 3.0, 3.0, 0.0, -2.0]])
    out = filters.top_k_filter(scores, 2)
    assert out.tolist() == [[-INF, -INF, -INF, 5.0, 4.0], [-INF, 3.0, 3.0, -INF, -INF]]
    # k = 1 with a tie for first keeps both tied tokens (nothing scores below the kth)
    assert filters.top_k_filter(scores[1:], 1).tolist() == [[-INF, 3.0, 3.0, -INF, -INF]]
    # min_keep raises k; k beyond the vocabulary keeps everything
    assert filters.top_k_filter(scores[:1], 1, min_keep=3).tolist() == [[-INF, 3.0, -INF, 5.0, 4.0]]
    assert torch.equal(filters.top_k_filter(scores, 9), scores)
    assert torch.equal(scores, torch.tensor([[1.0, 3.0, 2.0, 5.0, 4.0], [1.0, 3.0, 3.0, 0.0, -2.0]]))  # input untouched


@pytest.mark.parametrize("p, kept", [(0.45, {2}), (0.6, {2, 0}), (0.9, {2, 0, 3}), (0.99, {2, 0, 3, 1})])
def test_top_p_keeps_the_smallest_nucleus_reaching_p(p, kept):
    # probabilities 0.3, 0.05, 0.5, 0.15 (out of order): ranked 0.5 (id 2), 0.3 (id 0), 0.15 (id 3), 0.05 (id 1);
    # mass ranked above each: 0, 0.5, 0.8, 0.95 -- a token survives while that mass is below p
    probs = torch.tensor([[0.3, 0.05, 0.5, 0.15]])
    out = filters.top_p_filter(probs.log(), p)
    assert {i for i in range(4) if out[0, i] > -INF} == kept
    assert torch.allclose(out[out > -INF], probs.log()[out > -INF])  # survivors keep their scores


def test_top_p_min_keep_and_p_one():
    scores = torch.tensor([[0.3, 0.05, 0.5, 0.15]]).log()
    assert (filters.top_p_filter(scores, 0.1, min_keep=3) > -INF).tolist() == [[True, False, True, True]]
    assert torch.equal(filters.top_p_filter(scores, 1.0), scores)


def test_repetition_penalty_divides_positive_and_multiplies_negative_scores():
    scores = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    ids = torch.tensor([[0, 1, 1]])
    assert filters.repetition_penalty(scores, ids, 2.0).tolist() == [[1.0, -2.0, 0.5, -3.0]]
    # positions outside the mask (left padding) do not count: token 0 is then unseen
    mask = torch.tensor([[0, 1, 1]])
    assert filters.repetition_penalty(scores, ids, 2.0, mask).tolist() == [[2.0, -2.0, 0.5, -3.0]]
    # a penalty below 1 rewards repetition
    assert filters.repetition_penalty(scores, ids, 0.5).tolist() == [[4.0, -0.5, 0.5, -3.0]]


def test_no_repeat_ngram_bans_completions_of_seen_ngrams():
    scores = torch.zeros(1, 9)
    ids = torch.tensor([[5, 6, 7, 5, 6]])
    banned = lambda n: {i for i in range(9) if filters.no_repeat_ngram_filter(scores, ids, n)[0, i] == -INF}
    assert banned(3) == {7}  # (5, 6) was followed by 7
    assert banned(2) == {7}  # (6,) was followed by 7
    assert banned(1) == {5, 6, 7}  # every seen token
    assert banned(6) == set()  # no complete 6-gram yet
    rows = torch.tensor([[1, 2, 1, 2, 1], [3, 3, 3, 4, 3]])
    out = filters.no_repeat_ngram_filter(torch.zeros(2, 9), rows, 2)
    assert [{i for i in range(9) if out[r, i] == -INF} for r in range(2)] == [{2}, {3, 4}]


def test_ban_and_allowed_tokens():
    scores = torch.tensor([[0.5, 1.5, -1.0, 2.0], [1.0, 0.0, 3.0, 0.0]])
    assert filters.ban_tokens(scores, [1, 3]).tolist() == [[0.5, -INF, -1.0, -INF], [1.0, -INF, 3.0, -INF]]
    out = filters.allowed_tokens_filter(scores, [[1, 2], torch.tensor([0])])
    assert out.tolist() == [[-INF, 1.5, -1.0, -INF], [1.0, -INF, -INF, -INF]]
    with pytest.raises(ValueError, match="allows no token for row 1"):
        filters.allowed_tokens_filter(scores, [[1], []])
    with pytest.raises(ValueError, match="outside"):
        filters.allowed_tokens_filter(scores, [[1], [4]])


def test_temperature():
    scores = torch.tensor([[1.0, -2.0]])
    assert filters.apply_temperature(scores, 0.5).tolist() == [[2.0, -4.0]]
    with pytest.raises(ValueError, match="temperature"):
        filters.apply_temperature(scores, 0.0)
