"""Multi-sample dropout head and FGM against arithmetic written out with numpy."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from plmkit.modules.multisample_dropout import MultiSampleDropout
from plmkit.training import FGM, Trainer


def _ce(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


class FixedMasks(nn.Module):
    """A 'dropout' that multiplies by the given masks in turn (already scaled by 1 / (1 - p))."""

    def __init__(self, masks):
        super().__init__()
        self.masks = [torch.tensor(m) for m in masks]
        self.calls = 0

    def forward(self, x):
        if not self.training:
            return x
        mask = self.masks[self.calls % len(self.masks)]
        self.calls += 1
        return x * mask


def test_multisample_dropout_loss_by_hand():
    x = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]])
    y = np.array([1, 0])
    W = np.array([[0.2, -0.1, 0.4], [0.3, 0.5, -0.2]])  # (C, D)
    b = np.array([0.1, -0.3])
    masks = [np.array([[2.0, 0.0, 2.0], [0.0, 2.0, 2.0]]), np.array([[0.0, 2.0, 2.0], [2.0, 2.0, 0.0]])]
    classifier = nn.Linear(3, 2).double()
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor(W))
        classifier.bias.copy_(torch.tensor(b))
    head = MultiSampleDropout(classifier, num_samples=2, dropout=FixedMasks(masks))
    loss = head.loss(torch.tensor(x), torch.tensor(y))
    logits = [(x * m) @ W.T + b for m in masks]
    expected = (_ce(logits[0], y) + _ce(logits[1], y)) / 2
    assert abs(loss.item() - expected) < 1e-12
    # Averaging losses is not the loss of averaged logits (the test would notice a swap).
    assert abs(_ce((logits[0] + logits[1]) / 2, y) - expected) > 1e-3
    np.testing.assert_allclose(head(torch.tensor(x)).detach().numpy(), (logits[0] + logits[1]) / 2, atol=1e-12)
    head.eval()
    assert abs(head.loss(torch.tensor(x), torch.tensor(y)).item() - _ce(x @ W.T + b, y)) < 1e-12
    np.testing.assert_allclose(head(torch.tensor(x)).detach().numpy(), x @ W.T + b, atol=1e-12)


def test_multisample_dropout_default_masks_differ_and_scale():
    head = MultiSampleDropout(nn.Identity(), num_samples=4, p=0.5)
    samples = head.sample_logits(torch.ones(8, 16))  # (K, 8, 16)
    assert samples.shape == (4, 8, 16)
    assert set(samples.unique().tolist()) <= {0.0, 2.0}
    assert not torch.equal(samples[0], samples[1])
    with pytest.raises(ValueError, match="num_samples"):
        MultiSampleDropout(nn.Identity(), num_samples=0)


class EmbedDot(nn.Module):
    """out_i = E[token_i] . w: gradients small enough to write by hand."""

    def __init__(self, E, w):
        super().__init__()
        self.embeddings = nn.ModuleDict({"token": nn.Embedding(*E.shape, dtype=torch.float64)})
        self.w = nn.Parameter(torch.tensor(w))
        with torch.no_grad():
            self.embeddings["token"].weight.copy_(torch.tensor(E))

    def forward(self, tokens):
        return self.embeddings["token"](tokens) @ self.w


E0 = np.array([[0.1, 0.2], [0.5, -0.3], [1.0, 1.0], [-0.4, 0.8]])
W0 = np.array([0.7, -0.2])
TOKENS = np.array([1, 3, 1])
Y = np.array([1.0, 0.0, -1.0])


def _grads(E, w):
    """Gradients of 0.5 * sum (E[t_i] . w - y_i)^2 with respect to E and w."""
    err = E[TOKENS] @ w - Y
    gE = np.zeros_like(E)
    for t, e in zip(TOKENS, err):
        gE[t] += e * w
    gw = (err[:, None] * E[TOKENS]).sum(axis=0)
    return gE, gw


def _sse(model, tokens):
    return 0.5 * ((model(tokens) - torch.tensor(Y)) ** 2).sum()


def test_fgm_attack_and_restore_by_hand():
    model = EmbedDot(E0, W0).double()
    fgm = FGM(model, "embeddings.token")
    _sse(model, torch.tensor(TOKENS)).backward()
    gE, _ = _grads(E0, W0)
    fgm.attack(epsilon=0.5)
    r = 0.5 * gE / np.sqrt((gE**2).sum())
    np.testing.assert_allclose(model.embeddings["token"].weight.detach().numpy(), E0 + r, atol=1e-12)
    assert np.allclose(model.w.detach().numpy(), W0)  # only the embeddings move
    fgm.restore()
    assert np.array_equal(model.embeddings["token"].weight.detach().numpy(), E0)
    with pytest.raises(ValueError, match="no trainable parameter name contains 'nope'"):
        FGM(model, "nope")


def test_fgm_mark_uses_only_this_micro_batch_gradient():
    model = EmbedDot(E0, W0).double()
    fgm = FGM(model)
    earlier = np.full_like(E0, 3.0)
    model.embeddings["token"].weight.grad = torch.tensor(earlier)  # from a previous micro-batch
    fgm.mark()
    _sse(model, torch.tensor(TOKENS)).backward()
    fgm.attack(epsilon=1.0)
    gE, _ = _grads(E0, W0)
    np.testing.assert_allclose(
        model.embeddings["token"].weight.detach().numpy(), E0 + gE / np.sqrt((gE**2).sum()), atol=1e-12
    )


def test_trainer_step_with_fgm_by_hand():
    """SGD lr 1: the update is -(g_clean + g_adv) / count, g_adv taken at E + r."""
    model = EmbedDot(E0, W0).double()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def loss_fn(m, tokens):
        return _sse(m, tokens), tokens.numel()

    trainer = Trainer(model, loss_fn, opt, fgm=FGM(model), fgm_epsilon=0.3, progress=False)
    trainer.fit(DataLoader([torch.tensor(TOKENS)], batch_size=None), epochs=1, resume=False)
    gE, gw = _grads(E0, W0)
    r = 0.3 * gE / np.sqrt((gE**2).sum())
    gE_adv, gw_adv = _grads(E0 + r, W0)
    np.testing.assert_allclose(model.embeddings["token"].weight.detach().numpy(), E0 - (gE + gE_adv) / 3, atol=1e-12)
    np.testing.assert_allclose(model.w.detach().numpy(), W0 - (gw + gw_adv) / 3, atol=1e-12)
