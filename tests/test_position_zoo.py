"""The position-encoding zoo (kexue.fm/archives/8130): what each scheme guarantees, checked.

Seven schemes: learned and sinusoidal absolute positions (added to the embeddings), NEZHA's clipped
relative table, T5's buckets, RoPE, Transformer-XL's relative attention and DeBERTa's disentangled
attention (inside attention). One encoder (BERT's post-norm blocks) takes each as its part, and every
scheme gets the test of its promise: relative schemes give the same outputs when every position
moves by the same offset, absolute ones do not; plus each scheme's own identity, against closed
forms, and DeBERTa against transformers' DebertaV2 attention.
"""
import math

import pytest
import torch
from torch import nn

from plmkit.config import ModelConfig
from plmkit.models.bert import post_norm_block
from plmkit.modules.attention import Positions, SelfAttention, attach_positions
from plmkit.modules.disentangled import DisentangledPositions, DisentangledSelfAttention, log_bucket_position
from plmkit.modules.embeddings import Embeddings
from plmkit.modules.encoder import Encoder
from plmkit.modules.positions import LearnedPositions
from plmkit.modules.relative_bias import RelativePositionBias
from plmkit.modules.relative_position import FunctionalRelativePositions, RelativeSelfAttention
from plmkit.modules.rotary import RotaryEmbedding
from plmkit.modules.sinusoidal import SinusoidalPositions, sinusoid
from plmkit.modules.xl_attention import XLRelativeAttention, XLRelativePositions

H, NH, HS = 24, 3, 8
CONFIG = ModelConfig(family="bert", vocab_size=50, hidden_size=H, num_layers=2, num_heads=NH, intermediate_size=40,
                     type_vocab_size=0, dropout=0.0, attention_dropout=0.0)


def _learned() -> nn.Module:
    table = LearnedPositions(64, H)
    nn.init.normal_(table.weight, std=0.5)  # built as zeros: random rows, or every position would look alike
    return table


# scheme -> (position module added to the embeddings or None, attention factory or None, is relative)
SCHEMES = {
    "learned": (_learned, None, False),
    "sinusoidal": (lambda: SinusoidalPositions(H), None, False),
    "nezha": (None, lambda: RelativeSelfAttention(H, NH, HS, relative=FunctionalRelativePositions(HS, 4)), True),
    "rope": (None, lambda: SelfAttention(H, NH, HS, rotary=RotaryEmbedding(HS)), True),
    "transfo_xl": (None, lambda: _randomised(XLRelativeAttention(H, NH, HS, relative=XLRelativePositions(H, 6)))),
    "deberta": (None, lambda: _randomised(DisentangledSelfAttention(
        H, NH, HS, relative=DisentangledPositions(H, buckets=4, max_distance=16)))),
}
SCHEMES["transfo_xl"] += (True,)
SCHEMES["deberta"] += (True,)


def _randomised(module: nn.Module) -> nn.Module:
    """Parameters built as zeros (u, v, relative tables) made random, so the position terms count."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.abs().sum():
                p.normal_(std=0.5)
    return module


def _encoder(scheme: str) -> Encoder:
    positions, attention, _ = SCHEMES[scheme]
    embeddings = Embeddings(CONFIG.vocab_size, H, type_vocab_size=0, positions=positions() if positions else None,
                            norm=nn.LayerNorm(H), dropout=0.0)
    blocks = nn.ModuleList(post_norm_block(CONFIG, attention() if attention else None) for _ in range(2))
    return Encoder(CONFIG, embeddings, blocks).eval()


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_relative_schemes_ignore_a_common_shift_and_absolute_ones_do_not(scheme):
    """Every token moved by the same offset (positions 0..T-1 -> 37..37+T-1): same outputs exactly when relative."""
    torch.manual_seed(0)
    model = _encoder(scheme)
    ids = torch.randint(0, CONFIG.vocab_size, (2, 11))
    base = torch.arange(11)[None]
    with torch.no_grad():
        a = model(ids, position_ids=base).last_hidden_state
        b = model(ids, position_ids=base + 37).last_hidden_state
        c = model(ids, position_ids=base.flip(-1)).last_hidden_state  # a different order of the same positions
    assert not torch.allclose(a, c, atol=1e-3), "the positions are read at all"
    if SCHEMES[scheme][2]:
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    else:
        assert not torch.allclose(a, b, atol=1e-3)


def test_t5_buckets_depend_only_on_the_offset_and_merge_far_distances():
    """The bias block of tokens s..s+T-1 in a longer sequence equals the bias of a sequence starting at 0;
    offsets beyond max_distance share the last bucket (T5's bias reads no positions, so it is shifted by slicing)."""
    torch.manual_seed(0)
    bias = RelativePositionBias(8, 20, NH, bidirectional=True)
    nn.init.normal_(bias.weight)
    T, s = 9, 13
    assert torch.equal(bias(T + s)[..., s:, s:], bias(T))
    far = bias(1, 60)[0, :, 0]  # query at 0, keys at 0..59
    assert torch.equal(far[:, 20:], far[:, 20:21].expand(-1, 40)) and not torch.equal(far[:, 0], far[:, 5])


def test_nezha_clips_distances_beyond_its_range():
    """a_ij = r[clip(j - i, -M, M)]: every distance past M reads the same row (the row of M)."""
    rel = FunctionalRelativePositions(HS, 4)
    a = rel(1, 12)[0]  # (keys, hs): distances 0..11 from query 0
    assert all(torch.equal(a[j], a[4]) for j in range(4, 12)) and not torch.equal(a[3], a[4])


def test_rope_scores_depend_only_on_the_offset():
    """q_m · k_n after RoPE = q · (R_{n-m} k): one rotation by the offset (R_m^T R_n = R_{n-m})."""
    torch.manual_seed(0)
    rope = RotaryEmbedding(HS)
    q, k = torch.randn(HS, dtype=torch.float64), torch.randn(HS, dtype=torch.float64)
    for m, n in ((0, 5), (17, 22), (3, 1), (40, 38)):
        score = rope(q[None], torch.tensor([m])) @ rope(k[None], torch.tensor([n]))[0]
        # closed form: pair i of k turned by (n - m) θ_i, θ_i = 10000^(-2i/d)
        theta = (n - m) * 10000.0 ** (-torch.arange(0, HS, 2, dtype=torch.float64) / HS)
        a, b = k[0::2], k[1::2]
        turned = torch.stack((a * theta.cos() - b * theta.sin(), b * theta.cos() + a * theta.sin()), -1).flatten()
        assert torch.allclose(score[0], q @ turned, atol=1e-12)


def test_sinusoid_shift_is_a_rotation_independent_of_the_position():
    """PE(p + k) = M_k PE(p): M_k fitted by least squares on positions 0, 37, ..., < 20000 (spread wide enough for
    the slowest pair, w = 10000^(-14/16), to turn) is the closed-form block rotation [[cos kw, sin kw],
    [-sin kw, cos kw]], and it predicts PE(p + k) far away (p = 100000..100063)."""
    d = 16
    w = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    for k in (1, 7, 30):
        rotation = torch.zeros(d, d, dtype=torch.float64)
        for i, angle in enumerate(k * w):
            rotation[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[angle.cos(), angle.sin()],
                                                                        [-angle.sin(), angle.cos()]])
        near = torch.arange(0, 20000, 37)
        fitted = torch.linalg.lstsq(sinusoid(near, d), sinusoid(near + k, d)).solution.T  # PE(p+k) ≈ M PE(p)
        assert torch.allclose(fitted, rotation, atol=1e-6)
        far = torch.arange(100000, 100064)
        assert torch.allclose(sinusoid(far, d) @ rotation.T, sinusoid(far + k, d), atol=1e-9)
    # and the dot product of two positions depends only on their distance: Σ_i cos((p - q) w_i)
    p, q = torch.tensor([3, 40, 103]), torch.tensor([10, 47, 110])
    dots = (sinusoid(p, d) * sinusoid(q, d)).sum(-1)
    assert torch.allclose(dots, torch.cos(7 * w).sum().expand(3), atol=1e-12)


def test_transfo_xl_distances_past_clamp_len_share_one_row():
    """R_δ for |δ| > clamp_len is R_clamp_len: keys far back are told apart by content only."""
    rel = XLRelativePositions(H, clamp_len=6)
    rows = rel.table(-10, 10, None, torch.float64)  # δ = -10..10
    assert all(torch.equal(rows[10 + d], rows[16]) for d in range(6, 11))
    assert all(torch.equal(rows[10 - d], rows[4]) for d in range(6, 11)) and not torch.equal(rows[15], rows[16])


def test_transfo_xl_attention_scores_by_hand():
    """One head, two tokens, no memory: the four terms (q+u)·k_j + (q+v)·W_r R_{i-j} written out."""
    torch.manual_seed(1)
    attn = _randomised(XLRelativeAttention(4, 1, 4, relative=XLRelativePositions(4))).double().requires_grad_(False)
    x = torch.randn(1, 2, 4, dtype=torch.float64)
    W = attn.qkv.weight
    q, k, v = x[0] @ W[:4].T, x[0] @ W[4:8].T, x[0] @ W[8:].T
    R = lambda d: torch.tensor([math.sin(d), math.sin(d / 100), math.cos(d), math.cos(d / 100)],  # noqa: E731
                               dtype=torch.float64)  # w = 10000^(-0/4), 10000^(-2/4)
    out = torch.zeros(2, 4, dtype=torch.float64)
    for i in range(2):
        s = torch.tensor([(q[i] + attn.u[0]) @ k[j] + (q[i] + attn.v[0]) @ (attn.r.weight @ R(i - j))
                          for j in range(2)]) / 2.0
        out[i] = s.softmax(-1) @ v  # bidirectional: no mask
    with torch.no_grad():
        assert torch.allclose(attn(x)[0], out @ attn.out.weight.T, atol=1e-12)


def test_deberta_buckets_match_transformers():
    deberta = pytest.importorskip("transformers.models.deberta_v2.modeling_deberta_v2",
                                  reason="transformers (the test extra) holds DebertaV2")
    distance = torch.arange(-300, 301)[:, None]
    for buckets, far in ((4, 16), (32, 128), (256, 512)):
        assert torch.equal(log_bucket_position(distance, buckets, far),
                           deberta.make_log_bucket_position(distance, buckets, far).long())


def test_deberta_attention_matches_transformers_debertav2():
    """Our module against transformers 5's DebertaV2 DisentangledSelfAttention (share_att_key, c2p + p2c, log
    buckets) on the same weights and relative embeddings; 12 tokens over 4 buckets so far distances are bucketed."""
    transformers = pytest.importorskip("transformers", reason="transformers (the test extra) holds DebertaV2")
    from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention as Theirs

    config = transformers.DebertaV2Config(hidden_size=H, num_attention_heads=NH, relative_attention=True,
                                          pos_att_type=["c2p", "p2c"], share_att_key=True, position_buckets=4,
                                          max_relative_positions=16, hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    theirs = Theirs(config).eval()
    ours = DisentangledSelfAttention(H, NH, HS, relative=DisentangledPositions(H, buckets=4, max_distance=16)).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(std=0.3)
        ours.qkv.weight.copy_(torch.cat([theirs.query_proj.weight, theirs.key_proj.weight, theirs.value_proj.weight]))
        ours.qkv.bias.copy_(torch.cat([theirs.query_proj.bias, theirs.key_proj.bias, theirs.value_proj.bias]))
        ours.out.weight.copy_(torch.eye(H))  # theirs stops before the output projection
        ours.out.bias.zero_()
        ours.relative.weight.normal_()
        x = torch.randn(2, 12, H)
        keep = torch.ones(2, 12, dtype=torch.bool)
        keep[1, 9:] = False  # padded keys in row 1
        mask = (keep[:, None, :] & keep[:, :, None])[:, None]  # (B, 1, T, T) as DebertaV2Model builds it
        ref = theirs(x, mask, rel_embeddings=ours.relative.weight)[0]
        mine = ours(x, torch.zeros(2, 1, 1, 12).masked_fill(~keep[:, None, None], torch.finfo(torch.float32).min))
    assert torch.allclose(mine[0], ref[0], atol=1e-5)
    assert torch.allclose(mine[1, :9], ref[1, :9], atol=1e-5)  # their padded queries also mask every key


def test_deberta_buckets_by_hand_and_far_distances_share_the_last_row():
    """k = 8, max 64: |δ| <= 4 exact; else ceil(log(|δ|/4) / log(63/4) × 3) + 4 (hand-computed: 5 -> 5, 20 -> 6,
    63 -> 7, 64 -> 8, 200 -> 9), sign kept; rows clamp to 0..15, so every δ >= 63 reads row 15."""
    delta = torch.tensor([0, 1, 4, 5, 20, 63, 64, 200])
    assert log_bucket_position(delta, 8, 64).tolist() == [0, 1, 4, 5, 6, 7, 8, 9]
    assert log_bucket_position(-delta, 8, 64).tolist() == [0, -1, -4, -5, -6, -7, -8, -9]
    keys = 300 - torch.arange(301)[None]  # distances 0..300 from a query at 300
    rows = DisentangledPositions(H, buckets=8, max_distance=64).index(torch.tensor([[300]]), keys)
    assert rows[0, 0, :5].tolist() == [8, 9, 10, 11, 12] and (rows[0, 0, 63:] == 15).all()


def test_position_schemes_read_only_distances_under_attached_positions():
    """The attention modules given Positions with a common shift: identical outputs, module by module."""
    torch.manual_seed(0)
    x = torch.randn(2, 7, H)
    for scheme in ("nezha", "rope", "transfo_xl", "deberta"):
        attn = SCHEMES[scheme][1]().eval()
        outs = []
        for shift in (0, 100):
            p = torch.arange(7)[None] + shift
            with torch.no_grad(), attach_positions([attn], Positions(p, p)):
                outs.append(attn(x))
        assert torch.allclose(*outs, atol=1e-5), scheme
