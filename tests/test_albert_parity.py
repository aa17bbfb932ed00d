"""ALBERT / albert_unshared against transformers on the same tiny random weights."""
import json

import pytest
import torch

import plmkit
from oracles import logits_parity_and_round_trip, padded_batch as _batch, random_hf_model

transformers = pytest.importorskip("transformers")

CONFIGS = [
    # odd head counts, sizes that are not powers of two, embedding size below / equal to the hidden size
    dict(vocab_size=97, embedding_size=14, hidden_size=36, num_hidden_layers=3, num_attention_heads=3,
         intermediate_size=50, type_vocab_size=3, max_position_embeddings=40),
    dict(vocab_size=61, embedding_size=30, hidden_size=30, num_hidden_layers=2, num_attention_heads=5,
         intermediate_size=47, type_vocab_size=1, max_position_embeddings=33, hidden_act="gelu",
         layer_norm_eps=1e-6, initializer_range=0.1),
]
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0)




def _hf(cls, cfg, path):
    return random_hf_model(cls, transformers.AlbertConfig(**cfg, **NO_DROPOUT), path)


def _run(model, ids, types, mask, **kw):
    with torch.no_grad():
        return model(input_ids=ids, token_type_ids=types, attention_mask=mask, **kw)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_albert_model_parity(cfg, tmp_path):
    hf = _hf(transformers.AlbertModel, cfg, tmp_path)
    ours = plmkit.from_pretrained(tmp_path, with_pool=True)
    assert ours.config.family == "albert"
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    ref, out = _run(hf, ids, types, mask), _run(ours, ids, types, mask)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= 1e-5
    assert (out.pooled_output - ref.pooler_output).abs().max() <= 1e-5
    # one copy of the shared block in the state dict, as in the checkpoint
    block_keys = [k for k in ours.state_dict() if k.startswith("blocks.")]
    assert block_keys and all(k.startswith("blocks.block.") for k in block_keys)
    hf_keys = [k for k in hf.state_dict() if "albert_layer_groups" in k]
    assert len(block_keys) == len(hf_keys) - 4  # their q, k, v (weight + bias) are our fused qkv


@pytest.mark.parametrize("cfg", CONFIGS)
def test_albert_mlm_parity_and_round_trip(cfg, tmp_path):
    hf = _hf(transformers.AlbertForMaskedLM, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True)
    batch = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    back = logits_parity_and_round_trip(hf, ours, transformers.AlbertForMaskedLM, batch, tmp_path,
                                        (3, 11, cfg["vocab_size"]))
    assert back.config.num_hidden_groups == 1 and back.config.embedding_size == cfg["embedding_size"]


def test_albert_pretraining_sop_head(tmp_path):
    cfg = CONFIGS[0]
    hf = _hf(transformers.AlbertForPreTraining, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True, with_nsp=True)
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    ref, out = _run(hf, ids, types, mask), _run(ours, ids, types, mask)
    assert (out.logits - ref.prediction_logits).abs().max() <= 1e-5
    assert (out.nsp_logits - ref.sop_logits).abs().max() <= 1e-5
    enc = plmkit.from_pretrained(tmp_path / "hf")  # heads not asked for are skipped and reported
    assert {n.split(".")[0] for n in enc.load_report.skipped_heads} == {"predictions", "sop_classifier", "albert"}
    plmkit.save_pretrained(ours, tmp_path / "ours")
    back = transformers.AlbertForPreTraining.from_pretrained(tmp_path / "ours").eval()
    again = _run(back, ids, types, mask)
    assert (again.sop_logits - out.nsp_logits).abs().max() <= 1e-5
    assert (again.prediction_logits - out.logits).abs().max() <= 1e-5


def test_albert_unshared_equals_albert_then_saves_every_layer(tmp_path):
    cfg = CONFIGS[0]
    hf = _hf(transformers.AlbertForMaskedLM, cfg, tmp_path / "hf")
    shared = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True)
    unshared = plmkit.from_pretrained(tmp_path / "hf", model="albert_unshared", with_mlm=True)
    L = cfg["num_hidden_layers"]
    assert len(unshared.blocks) == L and len({id(b) for b in unshared.blocks}) == L
    sd = unshared.state_dict()
    assert all(torch.equal(sd[f"blocks.{i}.attn.qkv.weight"], shared.state_dict()["blocks.block.attn.qkv.weight"])
               for i in range(L))
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    a, b = _run(shared, ids, types, mask).logits, _run(unshared, ids, types, mask).logits
    assert torch.equal(a, b)  # same weights, same arithmetic: identical before any training
    assert (b - _run(hf, ids, types, mask).logits).abs().max() <= 1e-5

    # one training step moves each layer on its own: the layers diverge
    unshared.train()
    loss = unshared(ids, token_type_ids=types, attention_mask=mask).logits.logsumexp(-1).mean()
    loss.backward()
    with torch.no_grad():
        for p in unshared.parameters():
            p -= 0.5 * p.grad
    unshared.eval()
    w = [unshared.blocks[i].attn.qkv.weight for i in range(L)]
    assert not torch.equal(w[0], w[1])
    out = _run(unshared, ids, types, mask).logits
    assert (out - a).abs().max() > 1e-3
    # saved as one layer group per layer, which transformers' ALBERT reads as independent layers
    plmkit.save_pretrained(unshared, tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert (saved["num_hidden_groups"], saved["inner_group_num"]) == (L, 1)
    back = transformers.AlbertForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    assert (_run(back, ids, types, mask).logits - out).abs().max() <= 1e-5
    for name in ("albert_unshared", None):  # and plmkit reads it back, under either name
        again = plmkit.from_pretrained(tmp_path / "ours", model=name, with_mlm=True)
        assert (_run(again, ids, types, mask).logits - out).abs().max() <= 1e-6


def test_albert_lm_and_unilm_attention(tmp_path):
    """application='lm' is causal; 'unilm' lets the source see only itself (identities, no oracle needed)."""
    cfg = CONFIGS[0]
    _hf(transformers.AlbertModel, cfg, tmp_path)
    ids, _, _ = _batch(cfg["vocab_size"], cfg["type_vocab_size"], B=1)
    lm = plmkit.from_pretrained(tmp_path, application="lm")
    enc = plmkit.from_pretrained(tmp_path)
    with torch.no_grad():
        full = lm(ids).last_hidden_state
        assert (lm(ids[:, :6]).last_hidden_state - full[:, :6]).abs().max() <= 1e-5
        assert (enc(ids).last_hidden_state[:, :6] - full[:, :6]).abs().max() > 1e-3
    unilm = plmkit.from_pretrained(tmp_path, application="unilm")
    types = torch.tensor([[0] * 5 + [1] * 6])
    with torch.no_grad():
        out = unilm(ids, token_type_ids=types).last_hidden_state
        src = enc(ids[:, :5], token_type_ids=types[:, :5]).last_hidden_state
        assert (out[:, :5] - src).abs().max() <= 1e-5  # the source sees only the source, both ways
        prefix = unilm(ids[:, :8], token_type_ids=types[:, :8]).last_hidden_state
        assert (out[:, :8] - prefix).abs().max() <= 1e-5  # the target sees the source and earlier targets


def test_albert_refuses_layer_groups_it_cannot_build(tmp_path):
    cfg = dict(CONFIGS[0], num_hidden_groups=2)  # 3 layers cannot be split into 2 groups
    _hf(transformers.AlbertModel, cfg, tmp_path)
    with pytest.raises(plmkit.ConfigError, match="num_hidden_groups is 2"):
        plmkit.from_pretrained(tmp_path)
