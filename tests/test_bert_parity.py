"""BERT / RoBERTa against Hugging Face transformers on the same (tiny, random) weights."""
import pytest
import torch

import plmkit
from oracles import logits_parity_and_round_trip, padded_batch as _batch, random_hf_model

transformers = pytest.importorskip("transformers")

CONFIGS = [
    # odd head counts, sizes that are not powers of two, type_vocab_size 1 and 3
    dict(vocab_size=97, hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=50,
         type_vocab_size=3, max_position_embeddings=40),
    dict(vocab_size=61, hidden_size=30, num_hidden_layers=3, num_attention_heads=5, intermediate_size=47,
         type_vocab_size=1, max_position_embeddings=33, hidden_act="gelu_new", layer_norm_eps=1e-6),
    dict(vocab_size=128, hidden_size=64, num_hidden_layers=1, num_attention_heads=1, intermediate_size=100,
         type_vocab_size=2, max_position_embeddings=64, hidden_act="relu"),
]




def _hf(cls, cfg_cls, cfg, tmp_path, safe=True):
    config = cfg_cls(**cfg, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return random_hf_model(cls, config, tmp_path, safe=safe)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("safe", [True, False])
def test_bert_model_parity(cfg, safe, tmp_path):
    hf = _hf(transformers.BertModel, transformers.BertConfig, cfg, tmp_path, safe)
    ours = plmkit.from_pretrained(tmp_path, with_pool=True)
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= 1e-5
    assert (out.pooled_output - ref.pooler_output).abs().max() <= 1e-5
    assert ours.load_report.unexpected == [] and ours.load_report.missing == []


@pytest.mark.parametrize("cfg", CONFIGS[:2])
def test_bert_mlm_parity_and_round_trip(cfg, tmp_path):
    hf = _hf(transformers.BertForMaskedLM, transformers.BertConfig, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True)
    batch = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    # and the round trip: plmkit writes, transformers reads, same outputs
    logits_parity_and_round_trip(hf, ours, transformers.BertForMaskedLM, batch, tmp_path,
                                 (3, 11, cfg["vocab_size"]))


def test_bert_pretraining_heads(tmp_path):
    cfg = CONFIGS[0]
    hf = _hf(transformers.BertForPreTraining, transformers.BertConfig, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True, with_nsp=True)
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    assert (out.logits - ref.prediction_logits).abs().max() <= 1e-5
    assert (out.nsp_logits - ref.seq_relationship_logits).abs().max() <= 1e-5
    # an encoder-only load of the same file skips (and reports) the heads it did not build
    enc = plmkit.from_pretrained(tmp_path / "hf")
    assert any(n.startswith("cls.predictions") for n in enc.load_report.skipped_heads)
    assert any(n.startswith("bert.pooler") for n in enc.load_report.skipped_heads)
    plmkit.save_pretrained(ours, tmp_path / "ours")
    back = transformers.BertForPreTraining.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        again = back(input_ids=ids, token_type_ids=types, attention_mask=mask)
    assert (again.seq_relationship_logits - out.nsp_logits).abs().max() <= 1e-5


@pytest.mark.parametrize("cfg", CONFIGS[:2])
def test_roberta_parity_and_round_trip(cfg, tmp_path):
    cfg = dict(cfg, pad_token_id=1, max_position_embeddings=cfg["max_position_embeddings"] + 2)
    hf = _hf(transformers.RobertaForMaskedLM, transformers.RobertaConfig, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf", with_mlm=True)
    assert ours.config.family == "roberta"
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"], pad=1)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask, output_hidden_states=True)
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    assert (out.last_hidden_state - ref.hidden_states[-1]).abs().max() <= 1e-5
    assert (out.logits - ref.logits).abs().max() <= 1e-5
    plmkit.save_pretrained(ours, tmp_path / "ours")
    back = transformers.RobertaForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        again = back(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
    assert (again - out.logits).abs().max() <= 1e-5


def test_roberta_model_with_pooler(tmp_path):
    cfg = dict(CONFIGS[1], pad_token_id=1, max_position_embeddings=40)
    hf = _hf(transformers.RobertaModel, transformers.RobertaConfig, cfg, tmp_path)
    ours = plmkit.from_pretrained(tmp_path, with_pool=True)
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"], pad=1)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask)
        out = ours(ids, token_type_ids=types, attention_mask=mask)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= 1e-5
    assert (out.pooled_output - ref.pooler_output).abs().max() <= 1e-5


def test_lm_application_matches_hf_decoder(tmp_path):
    """application='lm' is causal attention over the whole sequence, as BertModel(is_decoder=True)."""
    cfg = CONFIGS[0]
    hf = _hf(transformers.BertModel, transformers.BertConfig, dict(cfg, is_decoder=True), tmp_path)
    ours = plmkit.from_pretrained(tmp_path, application="lm")
    ids, types, _ = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types).last_hidden_state
        out = ours(ids, token_type_ids=types).last_hidden_state
    assert (out - ref).abs().max() <= 1e-5


def test_keep_tokens_slices_vocab_rows(tmp_path):
    cfg = CONFIGS[0]
    hf = _hf(transformers.BertForMaskedLM, transformers.BertConfig, cfg, tmp_path)
    keep = [0, 5, 7, 3, 50, 96]
    ours = plmkit.from_pretrained(tmp_path, with_mlm=True, keep_tokens=keep)
    assert ours.config.vocab_size == len(keep)
    ids = torch.tensor([[1, 2, 3, 4, 5]])  # new ids -> old ids 5, 7, 3, 50, 96
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor([[keep[i] for i in ids[0]]])).logits[..., keep]
        out = ours(ids).logits
    assert (out - ref).abs().max() <= 1e-5


def test_sequence_classification_parity_and_round_trip(tmp_path):
    cfg = dict(CONFIGS[0], num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"},
               label2id={"neg": 0, "neu": 1, "pos": 2})
    hf = _hf(transformers.BertForSequenceClassification, transformers.BertConfig, cfg, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf")  # the classifier head comes with the checkpoint
    assert ours.config.labels == ["neg", "neu", "pos"]
    ids, types, mask = _batch(cfg["vocab_size"], cfg["type_vocab_size"])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
        out = ours(ids, token_type_ids=types, attention_mask=mask).label_logits
    assert (out - ref).abs().max() <= 1e-5
    plmkit.save_pretrained(ours, tmp_path / "ours")
    back = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    assert back.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    with torch.no_grad():
        again = back(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
    assert (again - out).abs().max() <= 1e-5
