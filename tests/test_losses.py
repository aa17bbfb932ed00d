"""Loss functions against arithmetic written out with numpy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plmkit.losses import (
    label_smoothing_cross_entropy,
    multilabel_categorical_crossentropy,
    token_cross_entropy,
)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_label_smoothing_hand_computed():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    targets = np.array([0, 2])
    eps, k = 0.1, 3
    # Target distribution q = (1 - eps) * one_hot + eps / K; loss = -sum q * log p, averaged.
    q = np.full((2, k), eps / k)
    q[0, 0] += 1 - eps
    q[1, 2] += 1 - eps
    expected = -(q * _log_softmax(logits)).sum(axis=1).mean()
    # The same number by hand for the first row: p = softmax([2, 0, -1]).
    z = np.exp(2) + np.exp(0) + np.exp(-1)
    row0 = -(0.9 + 0.1 / 3) * np.log(np.exp(2) / z) - (0.1 / 3) * (np.log(1 / z) + np.log(np.exp(-1) / z))
    assert abs(row0 - (-(q[0] * _log_softmax(logits[:1])[0]).sum())) < 1e-12

    got = label_smoothing_cross_entropy(torch.tensor(logits), torch.tensor(targets), smoothing=eps)
    assert abs(got.item() - expected) < 1e-6
    torch_ref = F.cross_entropy(torch.tensor(logits), torch.tensor(targets), label_smoothing=eps)
    assert abs(got.item() - torch_ref.item()) < 1e-6


def test_label_smoothing_ignores_padding_and_zero_smoothing_is_plain_ce():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 5)
    targets = torch.tensor([[1, 2, -100, -100], [0, 4, 3, -100]])
    got = label_smoothing_cross_entropy(logits, targets, smoothing=0.2)
    keep = targets != -100
    lp = _log_softmax(logits.numpy())[keep.numpy()]  # (5, C)
    t = targets[keep].numpy()
    per = 0.8 * -lp[np.arange(len(t)), t] + 0.2 * -lp.mean(axis=1)
    assert abs(got.item() - per.mean()) < 1e-6
    plain = label_smoothing_cross_entropy(logits, targets, smoothing=0.0)
    assert abs(plain.item() - (-lp[np.arange(len(t)), t]).mean()) < 1e-6
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothing_cross_entropy(logits, targets, smoothing=1.0)


def test_multilabel_categorical_crossentropy_definition():
    # Row 0: positives {1, 3}; row 1: no positive; row 2: all positive.
    y_true = np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=np.float64)
    y_pred = np.array([[0.3, 2.0, -1.0, 0.5], [-2.0, 0.1, -0.5, -3.0], [1.0, -1.0, 0.0, 2.0]])
    # log(1 + sum_{neg} e^{s_i}) + log(1 + sum_{pos} e^{-s_j})  (kexue.fm/archives/7359)
    expected = []
    for t, s in zip(y_true, y_pred):
        neg = np.log(1 + np.exp(s[t == 0]).sum())
        pos = np.log(1 + np.exp(-s[t == 1]).sum())
        expected.append(neg + pos)
    row0 = np.log(1 + np.exp(0.3) + np.exp(-1.0)) + np.log(1 + np.exp(-2.0) + np.exp(-0.5))
    assert abs(expected[0] - row0) < 1e-12
    got = multilabel_categorical_crossentropy(torch.tensor(y_true), torch.tensor(y_pred), reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    mean = multilabel_categorical_crossentropy(torch.tensor(y_true), torch.tensor(y_pred))
    assert abs(mean.item() - np.mean(expected)) < 1e-6


def test_multilabel_ce_global_pointer_shape_and_gradient_direction():
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 5, 5, requires_grad=True)  # (B, heads, L, L)
    labels = (torch.rand(2, 3, 5, 5) > 0.8).float()
    loss = multilabel_categorical_crossentropy(labels.flatten(2), scores.flatten(2))  # (B, heads, L*L)
    loss.backward()
    # Descent raises positive scores and lowers negative ones.
    g = scores.grad
    assert (g[labels.bool()] < 0).all() and (g[~labels.bool()] > 0).all()
    with pytest.raises(ValueError, match="same shape"):
        multilabel_categorical_crossentropy(labels, scores.flatten(2))


def test_token_cross_entropy_sum_and_count():
    logits = np.array([[[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]]])  # (1, 3, 2)
    targets = np.array([[0, 1, -100]])
    loss_sum, count = token_cross_entropy(torch.tensor(logits), torch.tensor(targets))
    # -log softmax: token 0 picks class 0 of [1, 0]; token 1 picks class 1 of [0, 3].
    hand = -np.log(np.e / (np.e + 1)) - np.log(np.exp(3) / (1 + np.exp(3)))
    assert abs(loss_sum.item() - hand) < 1e-6
    assert count.item() == 2
    with pytest.raises(ValueError, match="class dimension"):
        token_cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
