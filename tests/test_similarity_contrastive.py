"""Exact gradient accumulation for in-batch contrastive losses (two passes, random state replayed per chunk).

Oracle: the chain rule. With dropout on, "the full-batch gradient" means the gradient of the
whole batch's loss under the dropout masks actually drawn; the reference builds the graph of
every chunk at once (drawing the masks in the same order from the same seed) and calls
backward once. With dropout off, the reference is literally one forward of the whole batch.
"""
import pytest
import torch

from plmkit.models import build_model
from plmkit.models.bert import tiny_config
from plmkit.similarity.contrastive import (
    accumulated_backward,
    paired_contrastive_loss,
    paired_similarity_labels,
    simcse_loss,
)

N, T, CHUNK = 8, 7, 2


def _model(dropout: float):
    cfg = tiny_config().replace(dropout=dropout, attention_dropout=dropout)
    return build_model(cfg, with_pool=True)


def _embed(model):
    def embed(ids):
        out = model(ids, attention_mask=torch.ones_like(ids))
        return out.pooled_output  # (n, H)
    return embed


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _max_diff(a, b):
    """Largest difference of any tensor, relative to that tensor's largest reference entry (fp32 rounding
    of gradients of size ~50 is ~1e-6 absolute, so the bound is stated relative)."""
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1e-12)).item() for k in a)


def _data():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (N, T), generator=g)
    return ids, list(ids.split(CHUNK))


def _reference_with_dropout(model, chunks, loss_fn, seed):
    """One graph over all chunks, masks drawn chunk by chunk from `seed`, one backward."""
    model.zero_grad()
    torch.manual_seed(seed)
    z = torch.cat([_embed(model)(c) for c in chunks])
    loss = loss_fn(z)
    loss.backward()
    return loss.detach(), _grads(model)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_equals_full_batch_gradient_with_dropout_and_naive_chunks_differ(dtype, tol):
    model = _model(0.3).to(dtype).train()
    ids, chunks = _data()
    ref_loss, ref = _reference_with_dropout(model, chunks, paired_contrastive_loss, seed=123)

    model.zero_grad()
    torch.manual_seed(123)
    loss = accumulated_backward(_embed(model), chunks, paired_contrastive_loss)
    ours = _grads(model)
    assert abs(loss.item() - ref_loss.item()) <= tol
    assert _max_diff(ours, ref) <= tol
    # the global generator is left where the one-graph reference left it
    after_ours = torch.rand(3)
    torch.manual_seed(123)
    _reference_with_dropout(model, chunks, paired_contrastive_loss, seed=123)
    assert torch.equal(after_ours, torch.rand(3))

    # without replaying the random state, pass 2 draws other masks: the gradient is wrong
    model.zero_grad()
    torch.manual_seed(123)
    accumulated_backward(_embed(model), chunks, paired_contrastive_loss, replay_rng=False)
    assert _max_diff(_grads(model), ref) > 1e-4

    # ordinary accumulation (each chunk's own in-batch loss, averaged) optimises another objective
    model.zero_grad()
    torch.manual_seed(123)
    for c in chunks:
        (paired_contrastive_loss(_embed(model)(c)) / len(chunks)).backward()
    assert _max_diff(_grads(model), ref) > 1e-3


def test_equals_one_forward_of_the_whole_batch_without_dropout():
    model = _model(0.0).train()
    ids, chunks = _data()

    def loss_fn(z):  # any differentiable function of all embeddings, not only the paired loss
        return simcse_loss(z) + 0.1 * z.pow(3).mean()

    model.zero_grad()
    loss_fn(_embed(model)(ids)).backward()
    ref = _grads(model)
    model.zero_grad()
    accumulated_backward(_embed(model), chunks, loss_fn)
    assert _max_diff(_grads(model), ref) <= 1e-6


def test_additive_term_is_back_propagated_with_the_embeddings():
    model = _model(0.2).train()
    ids, chunks = _data()
    weight = torch.randn(model.config.hidden_size)

    def embed(c):  # embeddings plus a per-chunk additive loss (like a seq2seq term over all tokens)
        out = model(c, attention_mask=torch.ones_like(c))
        return out.pooled_output, (out.last_hidden_state @ weight).sum() / ids.numel()

    model.zero_grad()
    torch.manual_seed(7)
    outs = [embed(c) for c in chunks]
    ref_loss = paired_contrastive_loss(torch.cat([o[0] for o in outs])) + sum(o[1] for o in outs)
    ref_loss.backward()
    ref = _grads(model)
    model.zero_grad()
    torch.manual_seed(7)
    loss = accumulated_backward(embed, chunks, paired_contrastive_loss)
    assert abs(loss.item() - ref_loss.item()) <= 1e-6
    assert _max_diff(_grads(model), ref) <= 1e-6


def test_paired_loss_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    assert paired_similarity_labels(4).tolist() == [1, 0, 3, 2]
    cos = z @ z.T  # rows are unit vectors already
    expected = 0.0
    for i in range(4):
        others = [j for j in range(4) if j != i]
        logits = torch.tensor([20.0 * cos[i, j] for j in others])
        expected += -(logits[others.index(i ^ 1)] - torch.logsumexp(logits, 0)).item()
    assert paired_contrastive_loss(z, scale=20.0).item() == pytest.approx(expected / 4, rel=1e-6)
    with pytest.raises(ValueError, match="even batch"):
        paired_contrastive_loss(z[:3])


def test_errors_name_the_problem():
    model = _model(0.0)
    _, chunks = _data()
    with pytest.raises(ValueError, match="scalar"):
        accumulated_backward(_embed(model), chunks, lambda z: z.sum(1))
    with pytest.raises(TypeError, match="embed"):
        accumulated_backward(lambda c: [c], chunks, lambda z: z.sum())
    with pytest.raises(ValueError, match="at least one chunk"):
        accumulated_backward(_embed(model), [], paired_contrastive_loss)
