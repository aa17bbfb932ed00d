"""ELECTRA discriminator and generator against transformers on the same tiny random weights."""
import pytest
import torch

import plmkit
from oracles import logits_parity_and_round_trip, padded_batch as _batch, random_hf_model

transformers = pytest.importorskip("transformers")

CONFIGS = [
    # embedding size below the hidden size (projected), odd head counts, sizes that are not powers of two
    dict(vocab_size=97, embedding_size=14, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
         intermediate_size=50, type_vocab_size=3, max_position_embeddings=40),
    # embedding size equal to the hidden size: no projection; relu (the generator head stays GELU)
    dict(vocab_size=61, embedding_size=30, hidden_size=30, num_hidden_layers=3, num_attention_heads=5,
         intermediate_size=47, type_vocab_size=1, max_position_embeddings=33, hidden_act="relu",
         layer_norm_eps=1e-6, initializer_range=0.1),
]
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)




def _hf(cls, cfg, path):
    return random_hf_model(cls, transformers.ElectraConfig(**cfg, **NO_DROPOUT), path)


def _run(model, ids, types, mask):
    with torch.no_grad():
        return model(input_ids=ids, token_type_ids=types, attention_mask=mask)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_electra_model_parity(cfg, tmp_path):
    hf = _hf(transformers.ElectraModel, cfg, tmp_path)
    ours = plmkit.from_pretrained(tmp_path)
    assert ours.config.family == "electra"
    assert (ours.embeddings.project is not None) == (cfg["embedding_size"] != cfg["hidden_size"])
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    ref, out = _run(hf, ids, types, mask), _run(ours, ids, types, mask)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= 1e-5


@pytest.mark.parametrize("cfg", CONFIGS)
def test_electra_discriminator_parity_and_round_trip(cfg, tmp_path):
    hf = _hf(transformers.ElectraForPreTraining, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_rtd=True)
    batch = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    logits_parity_and_round_trip(hf, ours, transformers.ElectraForPreTraining, batch, tmp_path,
                                 batch[0].shape)  # one logit per token
    enc = plmkit.from_pretrained(tmp_path / "hf")  # the head not asked for is skipped and reported
    assert sorted(enc.load_report.skipped_heads) == sorted(
        f"discriminator_predictions.{n}.{w}" for n in ("dense", "dense_prediction") for w in ("weight", "bias"))


@pytest.mark.parametrize("cfg", CONFIGS)
def test_electra_generator_parity_and_round_trip(cfg, tmp_path):
    hf = _hf(transformers.ElectraForMaskedLM, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True)
    batch = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    back = logits_parity_and_round_trip(hf, ours, transformers.ElectraForMaskedLM, batch, tmp_path,
                                        (3, 11, cfg["vocab_size"]))
    assert back.config.embedding_size == cfg["embedding_size"]


def test_electra_lm_matches_hf_decoder_and_unilm_identity(tmp_path):
    """application='lm' is causal attention, as ElectraModel(is_decoder=True); 'unilm' keeps the source to itself."""
    cfg = CONFIGS[0]
    hf = _hf(transformers.ElectraModel, dict(cfg, is_decoder=True), tmp_path)
    lm = plmkit.from_pretrained(tmp_path, application="lm")
    ids, types, _ = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, use_cache=False).last_hidden_state
        assert (lm(ids, token_type_ids=types).last_hidden_state - ref).abs().max() <= 1e-5
    unilm = plmkit.from_pretrained(tmp_path, application="unilm")
    enc = plmkit.from_pretrained(tmp_path)
    seg = torch.tensor([[0] * 5 + [1] * 6])
    with torch.no_grad():
        out = unilm(ids[:1], token_type_ids=seg).last_hidden_state
        src = enc(ids[:1, :5], token_type_ids=seg[:, :5]).last_hidden_state
        assert (out[:, :5] - src).abs().max() <= 1e-5
        full = enc(ids[:1], token_type_ids=seg).last_hidden_state
        assert (out[:, :5] - full[:, :5]).abs().max() > 1e-3  # the encoder's source does see the target


def test_electra_refuses_heads_it_does_not_have(tmp_path):
    _hf(transformers.ElectraModel, CONFIGS[0], tmp_path)
    with pytest.raises(ValueError, match="different ELECTRA checkpoints"):
        plmkit.from_pretrained(tmp_path, with_mlm=True, with_rtd=True)
    with pytest.raises(ValueError, match="no pooler"):
        plmkit.from_pretrained(tmp_path, with_pool=True)
    with pytest.raises(plmkit.CheckpointError, match="generator_predictions.dense.weight"):
        plmkit.from_pretrained(tmp_path, with_mlm=True)  # an ElectraModel file holds no generator head
