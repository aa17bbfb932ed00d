"""position_ids through the whole model for the families whose positions live inside attention.

RoFormer (1-D rotary) against transformers' own rotary code fed the same positions; 2-D RoFormer
(kexue.fm/archives/8397) and NEZHA by identities that hold for any relative scheme: shifting every
position by one constant changes nothing, carrying positions along with permuted tokens permutes
the outputs, and a KV cache reproduces the full forward. NEZHA's relative attention with given
positions is also checked against Shaw et al.'s formula written out densely here.
"""
import math

import pytest
import torch
from torch import nn

import plmkit
from oracles import random_hf_model
from plmkit.models import build_model, get_family
from plmkit.modules.attention import KVCache, Positions, attach_positions
from plmkit.modules.relative_position import sinusoid_table


def _tiny(family, **options):
    torch.manual_seed(0)
    model = build_model(get_family(family).tiny(), **options).eval()
    with torch.no_grad():  # larger weights than init, so that positions visibly move the outputs
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.3)
            elif not name.endswith("weight"):
                nn.init.normal_(p, std=0.1)
    return model


def _batch(B=2, T=7, vocab=50, seed=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    types = torch.randint(0, 2, (B, T), generator=g)
    return ids, types


def _run(model, ids, types, positions=None, mask=None):
    with torch.no_grad():
        return model(ids, token_type_ids=types, attention_mask=mask, position_ids=positions).last_hidden_state


def _grid(rows, cols):
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.stack((r.flatten(), c.flatten()), dim=-1)  # (rows * cols, 2), row-major


# ---- 1-D RoFormer: transformers' rotary code on the same weights and positions ----------------------------

def test_roformer_position_ids_match_transformers_rotary(tmp_path):
    """transformers' RoFormerModel takes no position_ids, but its sinusoid table does: we feed the same
    positions to it (transformers' table, transformers' rotation) and compare the whole forward."""
    transformers = pytest.importorskip("transformers")
    config = transformers.RoFormerConfig(vocab_size=61, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
                                         intermediate_size=50, max_position_embeddings=40, embedding_size=22,
                                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf = random_hf_model(transformers.RoFormerModel, config, tmp_path)
    with torch.no_grad():  # larger weights than init, so that positions visibly move the outputs
        for name, p in hf.named_parameters():
            if p.dim() >= 2 and "embed_positions" not in name:  # the sinusoid table stays as it is
                p.mul_(15.0)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    ours = plmkit.from_pretrained(tmp_path)
    table = hf.roformer.encoder.embed_positions if hasattr(hf, "roformer") else hf.encoder.embed_positions
    table_forward = table.forward
    ids, types = _batch(B=3, T=9, vocab=61)

    def reference(positions):
        table.forward = lambda shape, cache_length=0: table_forward(shape, cache_length, position_ids=positions)
        try:
            with torch.no_grad():
                return hf(input_ids=ids, token_type_ids=types).last_hidden_state
        finally:
            del table.forward

    permuted = torch.tensor([4, 0, 7, 1, 8, 2, 5, 3, 6])
    for positions in (permuted, torch.arange(9) + 13, torch.tensor([0, 2, 3, 9, 10, 11, 30, 31, 39])):
        ref = reference(positions)
        assert (_run(ours, ids, types, positions[None]) - ref).abs().max() <= 1e-5, positions
    # the reference is sensitive to positions: a permutation is not the default order
    assert (reference(permuted) - reference(torch.arange(9))).abs().max() > 1e-2


def test_roformer_per_row_positions_match_rows_run_alone():
    model = _tiny("roformer")
    ids, types = _batch(B=3, T=6)
    g = torch.Generator().manual_seed(5)
    positions = torch.stack([torch.randperm(20, generator=g)[:6] for _ in range(3)])  # (B, T), a different set per row
    out = _run(model, ids, types, positions)
    for b in range(3):
        alone = _run(model, ids[b:b + 1], types[b:b + 1], positions[b:b + 1])
        assert (out[b] - alone[0]).abs().max() <= 1e-6


@pytest.mark.parametrize("family", ["roformer", "roformer_v2"])
def test_rotary_position_ids_are_relative(family):
    """Shifting every position by a constant leaves the outputs as they are; reordering them does not."""
    model = _tiny(family, application="encoder")
    ids, types = _batch()
    default = _run(model, ids, types)
    assert (_run(model, ids, types, torch.arange(7)[None]) - default).abs().max() <= 1e-6
    for shift in (5, 123, 1000):
        assert (_run(model, ids, types, torch.arange(7)[None] + shift) - default).abs().max() <= 1e-5, shift
    reordered = torch.tensor([[3, 0, 6, 1, 5, 2, 4]])
    assert (_run(model, ids, types, reordered) - default).abs().max() > 1e-2


@pytest.mark.parametrize("family", ["roformer", "nezha"])
def test_positions_travel_with_their_tokens(family):
    """With no absolute position table, permuting the tokens together with their positions (and types,
    and padding) permutes the outputs: the positions, not the token order, place the tokens."""
    model = _tiny(family)
    ids, types = _batch(B=2, T=8)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    positions = torch.arange(8)[None].repeat(2, 1)
    out = _run(model, ids, types, positions, mask)
    perm = torch.tensor([5, 2, 7, 0, 3, 6, 1, 4])
    moved = _run(model, ids[:, perm], types[:, perm], positions[:, perm], mask[:, perm])
    keep = mask[:, perm].bool()
    assert (moved - out[:, perm])[keep].abs().max() <= 1e-5
    # without its positions the permuted input is a different sentence
    assert (_run(model, ids[:, perm], types[:, perm], None, mask[:, perm]) - out[:, perm])[keep].abs().max() > 1e-2


# ---- 2-D RoFormer --------------------------------------------------------------------------------------------

def _tiny_2d(**options):
    return _tiny("roformer", rotary_dims=2, **options)  # head size 8: two halves of two pairs


def test_2d_roformer_depends_only_on_relative_grid_positions():
    model = _tiny_2d()
    assert model.blocks[0].attn.rotary.grid
    ids, types = _batch(B=2, T=12)
    grid = _grid(3, 4)[None].repeat(2, 1, 1)  # (B, T, 2)
    out = _run(model, ids, types, grid)
    for dr, dc in [(1, 0), (0, 1), (7, -3), (-20, 50), (300, 1000)]:
        shifted = grid + torch.tensor([dr, dc])
        assert (_run(model, ids, types, shifted) - out).abs().max() <= 1e-5, (dr, dc)
    # a different row-shift per batch row is still a pure translation of each row's grid
    per_row = grid + torch.tensor([[[2, 9]], [[-5, 1]]])
    assert (_run(model, ids, types, per_row) - out).abs().max() <= 1e-5
    # changing relative positions changes the outputs: the transposed grid, rows only, columns only
    for changed in (grid.flip(-1), grid * torch.tensor([1, 0]), grid * torch.tensor([0, 1]),
                    grid * torch.tensor([2, 1])):
        assert (_run(model, ids, types, changed) - out).abs().max() > 1e-2
    # one token moved alone moves the outputs of the others too
    one = grid.clone()
    one[:, 5] += torch.tensor([1, 1])
    assert (_run(model, ids, types, one) - out)[:, :5].abs().max() > 1e-3


def test_2d_roformer_grid_width_places_tokens_row_major():
    model = _tiny_2d(grid_width=4)
    ids, types = _batch(B=2, T=10)
    assert torch.equal(_run(model, ids, types), _run(model, ids, types, _grid(3, 4)[:10][None]))
    with pytest.raises(ValueError, match="grid_width"):
        _run(_tiny_2d(), ids, types)  # no positions and no grid to place the tokens on


def test_2d_roformer_is_kept_by_save_and_load(tmp_path):
    model = _tiny_2d(with_mlm=True)
    assert model.config.options.rotary_dims == 2
    plmkit.save_pretrained(model, tmp_path)
    back = plmkit.from_pretrained(tmp_path, with_mlm=True)
    assert back.blocks[0].attn.rotary.grid
    ids, types = _batch(B=2, T=6)
    grid = _grid(2, 3)[None]
    assert (_run(back, ids, types, grid) - _run(model, ids, types, grid)).abs().max() <= 1e-6
    # the saved choice can be overridden explicitly, and the rebuilt config records the override
    one_d = plmkit.from_pretrained(tmp_path, with_mlm=True, rotary_dims=1)
    assert not one_d.blocks[0].attn.rotary.grid and one_d.config.options.rotary_dims == 1


def test_roformer_rotary_options_are_checked():
    config = get_family("roformer").tiny()
    with pytest.raises(ValueError, match="rotary_dims must be 1"):
        build_model(config, rotary_dims=3)
    with pytest.raises(ValueError, match="needs rotary_dims=2"):
        build_model(config, grid_width=4)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_model(config.replace(hidden_size=18, head_size=None), rotary_dims=2)  # head size 6
    from plmkit.config import ConfigError
    from plmkit.models.roformer import config_from_hf
    d = {"vocab_size": 50, "hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 3,
         "intermediate_size": 37, "rotary_dims": "2d"}
    with pytest.raises(ConfigError, match="rotary_dims"):
        config_from_hf(d, "x/config.json")


# ---- KV cache with given positions: the cache identity ---------------------------------------------------------

@pytest.mark.parametrize("family,options,positions", [
    ("roformer", {}, torch.tensor([[4, 5, 6, 7, 8, 9, 10, 11, 12], [0, 0, 1, 2, 3, 4, 5, 6, 7]])),
    ("nezha", {}, torch.tensor([[4, 5, 6, 7, 8, 9, 10, 11, 12], [0, 0, 1, 2, 3, 4, 5, 6, 7]])),
    ("roformer", {"rotary_dims": 2}, torch.stack((_grid(3, 3), _grid(3, 3).flip(-1)))),
])
def test_cached_steps_with_positions_reproduce_the_full_forward(family, options, positions):
    model = _tiny(family, with_mlm=True, application="unilm", **options)
    ids, types = _batch(B=2, T=9)
    types[:, :5], types[:, 5:] = 0, 1
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = model(ids, types, mask, position_ids=positions).logits
        cache = KVCache(capacity=9)
        parts = [model(ids[:, a:b], types[:, a:b], mask[:, :b], position_ids=positions[:, a:b], cache=cache).logits
                 for a, b in ((0, 5), (5, 7), (7, 8), (8, 9))]
        torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
        # positions for some steps and not others is refused, not guessed
        cache = KVCache()
        model(ids[:, :5], types[:, :5], mask[:, :5], position_ids=positions[:, :5], cache=cache)
        with pytest.raises(ValueError, match="every step or at none"):
            model(ids[:, 5:6], types[:, 5:6], mask[:, :6], cache=cache)
        if "rotary_dims" in options:
            return  # 2-D positions have no default without a grid_width
        cache = KVCache()
        model(ids[:, :5], types[:, :5], mask[:, :5], cache=cache)
        with pytest.raises(ValueError, match="every step or at none"):
            model(ids[:, 5:6], types[:, 5:6], mask[:, :6], position_ids=positions[:, 5:6], cache=cache)


# ---- NEZHA ---------------------------------------------------------------------------------------------------

def test_nezha_position_ids_are_used_and_relative():
    model = _tiny("nezha")  # max_relative_position 5: distances beyond 5 are clipped
    ids, types = _batch(B=2, T=9)
    default = _run(model, ids, types)
    # the default is 0..T-1, and a shift gives the same distances: the same numbers exactly
    assert torch.equal(_run(model, ids, types, torch.arange(9)[None]), default)
    assert torch.equal(_run(model, ids, types, torch.arange(9)[None] + 17), default)
    # spreading the tokens apart (all distances clipped to 5) or reordering them changes the outputs
    assert (_run(model, ids, types, torch.arange(9)[None] * 6) - default).abs().max() > 1e-2
    assert (_run(model, ids, types, torch.tensor([[8, 0, 7, 1, 6, 2, 5, 3, 4]])) - default).abs().max() > 1e-2
    with pytest.raises(ValueError, match="relative positions are 1-D"):
        _run(model, ids, types, _grid(3, 3)[None])


def test_nezha_attention_with_positions_matches_shaw_formula():
    """score_ij = q_i·(k_j + a_ij)/√d, out_i = Σ_j p_ij (v_j + a_ij), a_ij = table[clip(p_j - p_i, ±M) + M],
    written out with a dense (T, T, hs) tensor of a_ij rather than the module's table gather / scatter."""
    model = _tiny("nezha")
    attn = model.blocks[0].attn
    M, hs, nh = attn.relative.max_relative_position, attn.head_size, attn.num_heads
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 6, 24, generator=g)
    pos = torch.tensor([[0, 3, 4, 10, 11, 2], [7, 6, 5, 4, 3, 2]])
    with torch.no_grad(), attach_positions([attn], Positions(pos, pos)):
        out = attn(x)
    table = sinusoid_table(2 * M + 1, hs).float()
    with torch.no_grad():
        q, k, v = attn.qkv(x).view(2, 6, 3, nh, hs).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        expected = []
        for b in range(2):
            rel = (pos[b][None, :] - pos[b][:, None]).clamp(-M, M) + M  # (T, T)
            a = table[rel]  # (T, T, hs)
            scores = (torch.einsum("htd,tsd->hts", q[b], a) + q[b] @ k[b].transpose(-1, -2)) / math.sqrt(hs)
            p = scores.softmax(-1)
            y = p @ v[b] + torch.einsum("hts,tsd->htd", p, a)  # (nh, T, hs)
            expected.append(attn.out(y.transpose(0, 1).reshape(6, nh * hs)))
    assert (out - torch.stack(expected)).abs().max() <= 1e-5


# ---- nothing ignored -----------------------------------------------------------------------------------------

def test_position_ids_with_no_reader_are_refused():
    model = _tiny("roformer")
    for block in model.blocks:
        block.attn.rotary = None  # no position signal left anywhere
    ids, types = _batch()
    _run(model, ids, types)  # fine without positions
    with pytest.raises(ValueError, match="no position signal that reads them"):
        _run(model, ids, types, torch.arange(7)[None])


def test_position_ids_of_the_wrong_shape_are_refused():
    model = _tiny("roformer")
    ids, types = _batch(B=2, T=7)
    for bad in (torch.arange(7), torch.arange(6)[None], torch.zeros(3, 7, dtype=torch.long)):
        with pytest.raises(ValueError, match="position_ids must be"):
            _run(model, ids, types, bad)
    with pytest.raises(ValueError, match=r"\(row, col\) pair"):
        _run(_tiny_2d(), ids, types, torch.arange(7)[None])
