"""Performer FAVOR+ (arXiv:2009.14794): the estimator against the exact softmax kernel, orthogonal
blocks against their closed-form distribution, prefix-sum causal and bidirectional linear attention
against the explicit quadratic computation with the same features, padding, and drop-in use.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plmkit.generation import generate
from plmkit.models import build_model, get_family
from plmkit.modules.performer import (PerformerAttention, causal_linear_attention, gaussian_projection,
                                      linear_attention, positive_features, use_performer, use_softmax)


def _qkv(B=2, nh=2, Tq=9, Tk=9, d=4, seed=0, size=0.4):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, nh, Tq, d, generator=g, dtype=torch.float64) * size
    k = torch.randn(B, nh, Tk, d, generator=g, dtype=torch.float64) * size
    v = torch.randn(B, nh, Tk, d, generator=g, dtype=torch.float64)
    return q, k, v


def test_iid_estimator_is_unbiased_with_closed_form_variance():
    g = torch.Generator().manual_seed(1)
    d, n = 4, 200_000
    q = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)
    k = torch.tensor([-0.1, 0.25, 0.3, 0.2], dtype=torch.float64)
    w = gaussian_projection(n, d, orthogonal=False, generator=g).double()
    samples = positive_features(q, w) * positive_features(k, w) * n  # n one-feature estimates of exp(q·k)
    exact = math.exp(q @ k)
    s = q + k  # Var = E[exp(2w·s - |q|² - |k|²)] - exp(q·k)² = exp(2|s|² - |q|² - |k|²) - exp(2 q·k)
    sigma = math.sqrt(math.exp(2 * s @ s - q @ q - k @ k) - exact ** 2)
    assert abs(samples.mean().item() - exact) < 4.5 * sigma / math.sqrt(n)
    assert abs(samples.std().item() - sigma) < 0.05 * sigma


def test_orthogonal_estimator_is_unbiased_for_a_whole_kernel_matrix():
    g = torch.Generator().manual_seed(2)
    d, draws = 4, 3000
    Q = torch.randn(3, d, generator=g, dtype=torch.float64) * 0.4
    K = torch.randn(5, d, generator=g, dtype=torch.float64) * 0.4
    est = torch.stack([positive_features(Q, w) @ positive_features(K, w).T  # m = 2d features per draw
                       for w in (gaussian_projection(2 * d, d, generator=g).double() for _ in range(draws))])
    exact = torch.exp(Q @ K.T)  # the softmax kernel, computed directly
    se = est.std(0) / math.sqrt(draws)
    assert ((est.mean(0) - exact).abs() < 4.5 * se).all()


def test_orthogonal_blocks_are_orthogonal_with_chi_norms():
    g = torch.Generator().manual_seed(3)
    d = 8
    w = gaussian_projection(3 * d - 3, d, generator=g)  # two whole blocks and a cut one
    for start in (0, d, 2 * d):
        block = w[start:start + d]
        gram = block @ block.T
        off = gram - torch.diag(torch.diagonal(gram))
        assert off.abs().max() < 1e-4 * gram.diagonal().max()
    # row lengths: |w|² ~ chi²(d), a Gamma(d/2, scale 2); Kolmogorov-Smirnov against its CDF
    n = 4000
    sq = gaussian_projection(n, d, generator=g).pow(2).sum(1).double().sort().values
    cdf = torch.special.gammainc(torch.tensor(d / 2, dtype=torch.float64), sq / 2)
    ecdf_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum(ecdf_hi - cdf, cdf - (ecdf_hi - 1 / n)).max().item()
    assert ks < 1.95 / math.sqrt(n)  # 0.1 % critical value
    # directions are uniform (Haar): the mean of the unit rows of many blocks is near zero
    rows = torch.cat([gaussian_projection(d, d, generator=g) for _ in range(500)])
    unit = rows / rows.norm(dim=1, keepdim=True)
    assert unit.mean(0).abs().max() < 5 * math.sqrt(1 / d / len(unit))


def _quadratic(q, k, v, w, scale, causal, key_mask=None):
    """Linearised attention written out: the (Tq, Tk) matrix φ(q)φ(k)ᵀ, masked, row-normalised."""
    root = math.sqrt(scale)
    a = positive_features(q * root, w) @ positive_features(k * root, w).transpose(-2, -1)
    Tq, Tk = a.shape[-2:]
    if causal:
        a = a * torch.ones(Tq, Tk, dtype=a.dtype).tril(Tk - Tq)
    if key_mask is not None:
        a = a * key_mask[:, None, None, :]
    return (a / a.sum(-1, keepdim=True)) @ v


@pytest.mark.parametrize("causal", [False, True])
def test_prefix_sum_form_equals_quadratic_form(causal):
    q, k, v = _qkv(Tq=10, Tk=10)
    kern = PerformerAttention(4, 16, causal=causal, chunk_size=3, seed=0).double()  # chunks cut 10 as 3+3+3+1
    got = kern(q, k, v)
    want = _quadratic(q, k, v, kern.projection.double(), 1 / math.sqrt(4), causal)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_causal_with_history_equals_quadratic_form():
    q, k, v = _qkv(Tq=4, Tk=11)  # 7 cached keys, then 4 queries (a KV-cache step)
    feats = gaussian_projection(12, 4, generator=torch.Generator().manual_seed(5)).double()
    root = 1 / 2  # scale = 1/4
    got = causal_linear_attention(positive_features(q * root, feats), positive_features(k * root, feats), v, 3)
    torch.testing.assert_close(got, _quadratic(q, k, v, feats, 0.25, True), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="queries cannot sit"):
        causal_linear_attention(positive_features(k, feats), positive_features(q, feats), v[..., :4, :])


def test_bidirectional_helper_matches_explicit_sum():
    q, k, v = _qkv()
    w = gaussian_projection(8, 4, generator=torch.Generator().manual_seed(6)).double()
    got = linear_attention(positive_features(q, w), positive_features(k, w), v)
    torch.testing.assert_close(got, _quadratic(q, k, v, w, 1.0, False), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("causal", [False, True])
def test_padded_keys_contribute_nothing(causal):
    q, k, v = _qkv(B=2, Tq=7, Tk=7)
    keep = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    lowest = torch.finfo(torch.float64).min  # as masks.additive writes a masked key
    additive = torch.zeros(2, 1, 1, 7, dtype=torch.float64).masked_fill(~keep[:, None, None], lowest)
    kern = PerformerAttention(4, 16, causal=causal, seed=1).double()
    out = kern(q, k, v, additive)
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 4:], v2[1, :, 4:] = 50.0, 1e6  # junk in padded slots changes nothing
    torch.testing.assert_close(kern(q, k2, v2, additive), out, rtol=1e-9, atol=1e-9)
    # row 1's real queries equal attention over its 4 real keys alone
    short = kern(q[1:, :, :4], k[1:, :, :4], v[1:, :, :4])
    torch.testing.assert_close(out[1:, :, :4], short, rtol=1e-9, atol=1e-9)
    want = _quadratic(q, k, v, kern.projection.double(), 0.5, causal, keep.double())
    torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-9)


def test_masks_it_cannot_follow_are_refused():
    q, k, v = _qkv(B=1, Tq=5, Tk=5)
    kern = PerformerAttention(4, 8, seed=0).double()
    causal = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
    with pytest.raises(ValueError, match="key padding only"):
        kern(q, k, v, causal)
    assert torch.isfinite(PerformerAttention(4, 8, causal=True, seed=0).double()(q, k, v, causal)).all()
    with pytest.raises(ValueError, match="score biases"):
        kern(q, k, v, torch.randn(1, 1, 5, 5, dtype=torch.float64))
    model = build_model(get_family("bert").tiny(), application="unilm")
    with pytest.raises(ValueError, match="unilm"):
        use_performer(model)
    with pytest.raises(ValueError, match="no SelfAttention"):
        use_performer(build_model(get_family("nezha").tiny()))
    with pytest.raises(ValueError, match="position bias"):
        use_performer(build_model(get_family("t5.1.1").tiny()))


def test_many_features_approach_softmax_attention():
    q, k, v = _qkv(B=1, nh=2, Tq=6, Tk=6, d=8, size=0.5)
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = []
    for m in (16, 16384):
        errors.append((PerformerAttention(8, m, seed=7).double()(q, k, v) - exact).abs().mean().item())
    assert errors[1] < 0.01 and errors[1] < errors[0] / 8  # error ~ 1/sqrt(m): 32x more is ~5.7x expected


def test_redraw_schedule_in_training_and_fixed_in_eval():
    q, k, v = _qkv(d=4)
    kern = PerformerAttention(4, 8, redraw_every=2, seed=3).double()
    seen = []
    for _ in range(5):
        kern(q, k, v)
        seen.append(kern.projection.clone())
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    assert torch.equal(seen[2], seen[3]) and not torch.equal(seen[3], seen[4])
    kern.eval()
    before = kern.projection.clone()
    for _ in range(4):
        kern(q, k, v)
    assert torch.equal(kern.projection, before)
    again = PerformerAttention(4, 8, redraw_every=2, seed=3)
    torch.testing.assert_close(again.projection.double(), seen[0])  # the seed reproduces the first draw


def _tiny(family, **options):
    torch.manual_seed(0)
    model = build_model(get_family(family).tiny(), **options).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.35)
    return model


def test_use_performer_on_a_built_encoder():
    model = _tiny("bert")
    ids = torch.randint(3, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    exact = model(ids, attention_mask=mask).last_hidden_state
    names = set(model.state_dict())
    use_performer(model, features=32)
    assert set(model.state_dict()) == names  # features are not weights: checkpoints load unchanged
    out = model(ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(out, exact, atol=1e-3)  # the kernel is really in use
    alone = model(ids[1:, :4]).last_hidden_state  # padding changes nothing on the real tokens
    torch.testing.assert_close(out[1, :4], alone[0], rtol=1e-5, atol=1e-5)
    use_softmax(model)
    torch.testing.assert_close(model(ids, attention_mask=mask).last_hidden_state, exact)


def test_causal_performer_decodes_the_same_with_and_without_cache():
    model = use_performer(_tiny("gpt"), features=32)
    assert all(m.kernel.causal for m in model.modules() if hasattr(m, "kernel") and m.kernel is not None)
    ids = torch.randint(3, 50, (2, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    cached = generate(model, ids * mask, attention_mask=mask, max_new_tokens=6, eos_token_id=())
    full = generate(model, ids * mask, attention_mask=mask, max_new_tokens=6, eos_token_id=(), use_cache=False)
    assert torch.equal(cached, full)
    # causality: the hidden state of token t does not depend on later tokens
    h = model(ids).last_hidden_state
    h_cut = model(ids[:, :3]).last_hidden_state
    torch.testing.assert_close(h[:, :3], h_cut, rtol=1e-5, atol=1e-5)
