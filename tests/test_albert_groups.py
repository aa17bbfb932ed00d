"""ALBERT with any layer-group layout (num_hidden_groups x inner_group_num) against transformers' AlbertModel.

transformers runs, for layer i, group int(i / (L / G)) and inside it the group's I layers in sequence;
these tests build its models at several layouts with tiny random weights and compare outputs, the
weights each of our blocks holds, and what transformers reads back from what we save.
"""
import json

import pytest
import torch
from torch import nn

import plmkit
from oracles import padded_batch, random_hf_model
from plmkit.convert.tensorflow import TFCheckpointReader
from plmkit.models import get_family
from plmkit.modules.attention import KVCache
from plmkit.modules.blocks import ScheduledBlocks, SharedBlocks

transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=67, embedding_size=14, hidden_size=36, num_attention_heads=3, intermediate_size=50,
            type_vocab_size=2, max_position_embeddings=40, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0)
# (num_hidden_layers, num_hidden_groups, inner_group_num)
LAYOUTS = [(4, 2, 1), (4, 2, 2), (3, 1, 2), (6, 3, 1), (2, 2, 2)]
IDS = [f"L{L}-G{G}-I{I}" for L, G, I in LAYOUTS]
TOL = 1e-5
UNSHARED_LAYOUTS = LAYOUTS


def _hf(layout, path, cls=None):
    L, G, I = layout
    config = transformers.AlbertConfig(**BASE, num_hidden_layers=L, num_hidden_groups=G, inner_group_num=I)
    return random_hf_model(cls or transformers.AlbertForPreTraining, config, path)


def _hf_layer(hf, g: int, j: int) -> nn.Module:
    return hf.albert.encoder.albert_layer_groups[g].albert_layers[j]


def _group_of(layout, i: int) -> int:
    L, G, _ = layout
    return int(i / (L / G))  # transformers' AlbertTransformer.forward


def _run(model, batch, **kw):
    ids, types, mask = batch
    with torch.no_grad():
        return model(input_ids=ids, token_type_ids=types, attention_mask=mask, **kw)


def _batch():
    return padded_batch(BASE["vocab_size"], BASE["type_vocab_size"])


def _qkv(layer: nn.Module, leaf: str) -> torch.Tensor:
    a = layer.attention
    return torch.cat([getattr(a, n).get_parameter(leaf) for n in ("query", "key", "value")])


def _holds(block: nn.Module, layer: nn.Module) -> bool:
    """Our block has exactly the weights of transformers' AlbertLayer (a sample that spans every sub-layer)."""
    return (torch.equal(block.attn.qkv.weight, _qkv(layer, "weight"))
            and torch.equal(block.attn.qkv.bias, _qkv(layer, "bias"))
            and torch.equal(block.attn_norm.weight, layer.attention.LayerNorm.weight)
            and torch.equal(block.ffn.up.weight, layer.ffn.weight)
            and torch.equal(block.ffn.down.bias, layer.ffn_output.bias)
            and torch.equal(block.ffn_norm.bias, layer.full_layer_layer_norm.bias))


def _prefixes(model) -> set[str]:
    return {k.removesuffix("attn.qkv.weight") for k in model.state_dict() if k.endswith("attn.qkv.weight")}


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_grouped_albert_matches_transformers_and_round_trips(layout, tmp_path):
    L, G, I = layout
    hf = _hf(layout, tmp_path / "hf")
    # the oracle's blocks differ, so a block read from the wrong group or inner index shows
    assert not torch.equal(_hf_layer(hf, 0, 0).ffn.weight, _hf_layer(hf, G - 1, I - 1).ffn.weight)
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True, with_nsp=True)  # family detected
    assert ours.config.family == "albert"
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    assert len(ours.blocks) == L * I  # applications
    # one copy of each distinct block: G x I of them, under the names the module docstring gives
    expected = ({f"blocks.{a}." for a in range(L * I)} if G == L else
                {f"blocks.distinct.{k}." for k in range(G * I)})
    assert _prefixes(ours) == expected
    # block a runs group (i // (L / G))'s inner layer j, a = i * I + j
    for a, block in enumerate(ours.blocks):
        i, j = divmod(a, I)
        assert _holds(block, _hf_layer(hf, _group_of(layout, i), j)), a

    batch = _batch()
    ref, out = _run(hf, batch, output_hidden_states=True), _run(ours, batch, output_hidden_states=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == L * I + 1
    for k, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        assert (a - b).abs().max() <= TOL, k
    assert (out.logits - ref.prediction_logits).abs().max() <= TOL
    assert (out.nsp_logits - ref.sop_logits).abs().max() <= TOL

    plmkit.save_pretrained(ours, tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert (saved["num_hidden_layers"], saved["num_hidden_groups"], saved["inner_group_num"]) == layout
    back = transformers.AlbertForPreTraining.from_pretrained(tmp_path / "ours").eval()
    again = _run(back, batch)
    assert (again.prediction_logits - out.logits).abs().max() <= TOL
    assert (again.sop_logits - out.nsp_logits).abs().max() <= TOL


@pytest.mark.parametrize("layout", UNSHARED_LAYOUTS, ids=IDS)
def test_unshared_from_grouped_checkpoint(layout, tmp_path):
    L, G, I = layout
    hf = _hf(layout, tmp_path / "hf", transformers.AlbertForMaskedLM)
    grouped = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True)
    unshared = plmkit.from_pretrained(tmp_path / "hf", model="albert_unshared", with_mlm=True)
    n = L * I
    assert isinstance(unshared.blocks, nn.ModuleList) and len({id(b) for b in unshared.blocks}) == n
    assert _prefixes(unshared) == {f"blocks.{a}." for a in range(n)}
    for a, block in enumerate(unshared.blocks):  # each starts from the block that application ran
        i, j = divmod(a, I)
        assert _holds(block, _hf_layer(hf, _group_of(layout, i), j)), a
    batch = _batch()
    before = _run(unshared, batch).logits
    assert torch.equal(before, _run(grouped, batch).logits)  # the same weights and arithmetic
    assert (before - _run(hf, batch).logits).abs().max() <= TOL

    with torch.no_grad():  # fine-tuning moves each block on its own
        for block in unshared.blocks:
            block.ffn.up.weight.add_(torch.randn_like(block.ffn.up.weight) * 0.05)
    out = _run(unshared, batch).logits
    assert (out - before).abs().max() > 1e-3
    plmkit.save_pretrained(unshared, tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert (saved["num_hidden_layers"], saved["num_hidden_groups"], saved["inner_group_num"]) == (n, n, 1)
    back = transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    assert (_run(back, batch).logits - out).abs().max() <= TOL
    for name in ("albert_unshared", None):  # plmkit reads it back under either name
        again = plmkit.from_pretrained(tmp_path / "ours", model=name, with_mlm=True)
        assert (_run(again, batch).logits - out).abs().max() <= 1e-6


def _tf_names(reader) -> set[tuple[int, int]]:
    """(group, inner) of the layer scopes a Google ALBERT checkpoint holds."""
    import re
    found = set()
    for name in reader.keys():
        m = re.match(r"bert/encoder/transformer/group_(\d+)/inner_group_(\d+)/", name)
        if m:
            found.add((int(m.group(1)), int(m.group(2))))
    return found


@pytest.mark.parametrize("layout", [(4, 2, 2), (3, 1, 2), (2, 2, 2)], ids=["L4-G2-I2", "L3-G1-I2", "L2-G2-I2"])
def test_grouped_albert_tf_round_trip(layout, tmp_path):
    L, G, I = layout
    hf = _hf(layout, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True, with_nsp=True)
    batch = _batch()
    out = _run(ours, batch)
    plmkit.save_pretrained(ours, tmp_path / "tf", format="tf")
    cfg = json.loads((tmp_path / "tf" / "albert_config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["num_hidden_groups"], cfg["inner_group_num"]) == layout
    reader = TFCheckpointReader(tmp_path / "tf")
    assert _tf_names(reader) == {(g, j) for g in range(G) for j in range(I)}
    for g in range(G):  # Google's scopes hold transformers' group g, inner layer j (kernels stored [in, out])
        for j in range(I):
            t, layer = f"bert/encoder/transformer/group_{g}/inner_group_{j}/", _hf_layer(hf, g, j)
            assert torch.equal(reader.get_torch(f"{t}ffn_1/intermediate/dense/kernel"), layer.ffn.weight.t())
            assert torch.equal(reader.get_torch(f"{t}attention_1/self/key/bias"), layer.attention.key.bias)
            assert torch.equal(reader.get_torch(f"{t}LayerNorm_1/gamma"), layer.full_layer_layer_norm.weight)
    back = plmkit.from_pretrained(tmp_path / "tf", with_mlm=True, with_nsp=True)
    assert back.load_report.missing == [] and back.load_report.unexpected == []
    again = _run(back, batch)
    assert (again.logits - out.logits).abs().max() <= TOL
    assert (again.nsp_logits - out.nsp_logits).abs().max() <= TOL


@pytest.mark.parametrize("layout", [(4, 2, 2), (3, 1, 2)],
                         ids=["L4-G2-I2", "L3-G1-I2"])
def test_unshared_tf_round_trip(layout, tmp_path):
    """albert_unshared from a grouped TF checkpoint, written back as one group of one layer per block."""
    L, G, I = layout
    _hf(layout, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True, with_nsp=True)
    batch = _batch()
    out = _run(ours, batch)
    plmkit.save_pretrained(ours, tmp_path / "tf", format="tf")
    unshared = plmkit.from_pretrained(tmp_path / "tf", model="albert_unshared", with_mlm=True, with_nsp=True)
    assert (_run(unshared, batch).logits - out.logits).abs().max() <= TOL
    plmkit.save_pretrained(unshared, tmp_path / "tf_unshared", format="tf")
    assert _tf_names(TFCheckpointReader(tmp_path / "tf_unshared")) == {(a, 0) for a in range(L * I)}
    again = plmkit.from_pretrained(tmp_path / "tf_unshared", with_mlm=True, with_nsp=True)
    assert (_run(again, batch).logits - out.logits).abs().max() <= TOL


def test_grouped_albert_kv_cache_matches_full_forward(tmp_path):
    """Incremental decoding through blocks applied several times: one cache slot per application."""
    layout = (3, 1, 2)
    _hf(layout, tmp_path / "hf")
    model = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True, application="lm")
    assert isinstance(model.blocks, ScheduledBlocks)
    ids, _, _ = padded_batch(BASE["vocab_size"], BASE["type_vocab_size"], B=1)
    with torch.no_grad():
        full = model(ids).logits
        cache = KVCache()
        parts = [model(ids[:, a:b], cache=cache).logits for a, b in ((0, 4), (4, 5), (5, ids.shape[1]))]
    assert len(cache.keys) == 3 * 2
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("layout", LAYOUTS + [(1, 1, 1), (12, 1, 1), (12, 12, 1)], ids=str)
def test_config_round_trips(layout):
    L, G, I = layout
    hf, tf_source = get_family("albert").sources["hf"], get_family("albert").sources["tf"]
    d = transformers.AlbertConfig(**BASE, num_hidden_layers=L, num_hidden_groups=G, inner_group_num=I).to_dict()
    back = hf.write_config(hf.read_config(d, "config.json", None))
    assert {k: back[k] for k in ("num_hidden_layers", "num_hidden_groups", "inner_group_num")} == \
        {"num_hidden_layers": L, "num_hidden_groups": G, "inner_group_num": I}
    tf = tf_source.write_config(hf.read_config(d, "config.json", None))
    assert tf_source.write_config(tf_source.read_config(tf, "albert_config.json", None)) == tf
    assert (tf["num_hidden_layers"], tf["num_hidden_groups"], tf["inner_group_num"]) == layout


def test_refuses_group_counts_transformers_and_google_disagree_on(tmp_path):
    _hf((3, 2, 1), tmp_path, transformers.AlbertModel)  # transformers builds it: layers 0, 1 -> group 0, 2 -> 1
    with pytest.raises(plmkit.ConfigError,
                       match=r"num_hidden_groups is 2, which does not divide num_hidden_layers \(3\)"):
        plmkit.from_pretrained(tmp_path)
    hf = get_family("albert").sources["hf"]
    d = transformers.AlbertConfig(**BASE, num_hidden_layers=2).to_dict()
    for field, value in (("num_hidden_groups", 3), ("inner_group_num", 0), ("num_hidden_groups", 1.0)):
        with pytest.raises(plmkit.ConfigError, match=field):
            hf.read_config(dict(d, **{field: value}), "config.json", None)


def test_albert_zh_layout_keeps_one_shared_layer_or_one_per_layer():
    family = get_family("albert")
    tf = family.sources["tf"]
    zh = {k: v for k, v in tf.write_config(family.tiny()).items()
          if k not in ("net_structure_type", "gap_size", "num_memory_blocks", "inner_group_num", "down_scale_factor",
                       "num_hidden_groups")}
    zh = dict(zh, num_hidden_layers=4)
    assert tf.read_config(zh, "albert_config.json", None).options.token_projection is True
    assert tf.read_config(dict(zh, num_hidden_groups=4), "albert_config.json", None)  # one group per layer
    with pytest.raises(plmkit.ConfigError, match="albert_zh.*num_hidden_groups 2"):
        tf.read_config(dict(zh, num_hidden_groups=2), "albert_config.json", None)
    config = tf.read_config(zh, "albert_config.json", None)
    with pytest.raises(plmkit.ConfigError, match="albert_zh.*inner_group_num 2"):
        family.build(config.with_options(inner_group_num=2))


def test_layerwise_decay_places_grouped_blocks_at_their_depths(tmp_path):
    from plmkit.training.optim import model_layer_of

    _hf((4, 2, 1), tmp_path)
    layer_of = model_layer_of(plmkit.from_pretrained(tmp_path))
    # transformers runs group 0 at layers 0, 1 and group 1 at layers 2, 3: depths 1, 2 and 3, 4
    assert layer_of("blocks.distinct.0.attn.qkv.weight") == (1, 2)
    assert layer_of("blocks.distinct.1.ffn.up.weight") == (3, 4)


def test_scheduled_blocks_order_names_and_depths():
    blocks = [nn.Linear(2, 2) for _ in range(3)]
    s = ScheduledBlocks(blocks, [0, 1, 0, 1, 2])
    assert len(s) == 5 and [id(b) for b in s] == [id(blocks[k]) for k in (0, 1, 0, 1, 2)]
    assert {k.rsplit(".", 1)[0] for k in s.state_dict()} == {"distinct.0", "distinct.1", "distinct.2"}
    assert s.depths() == {"distinct.0": (1, 3), "distinct.1": (2, 4), "distinct.2": (5,)}
    with pytest.raises(ValueError, match="never applies block 2"):
        ScheduledBlocks(blocks, [0, 1])
    with pytest.raises(ValueError, match="names block 3"):
        ScheduledBlocks(blocks, [0, 1, 2, 3])
    shared = SharedBlocks(blocks[0], 3)  # the name saved models use stays `block`
    assert isinstance(shared, ScheduledBlocks) and len(shared) == 3 and all(b is blocks[0] for b in shared)
    assert set(shared.state_dict()) == {"block.weight", "block.bias"}
    assert shared.depths() == {"block": (1, 2, 3)}
