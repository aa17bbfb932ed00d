"""T5.1.0 / T5.1.1 / mT5 against Hugging Face transformers on the same (tiny, random) weights."""
import json
import math

import pytest
import torch

import plmkit
from plmkit.config import ConfigError
from plmkit.models.t5 import config_from_hf, family_from_hf_config
from plmkit.modules.relative_bias import RelativePositionBias, relative_position_bucket

transformers = pytest.importorskip("transformers")

# unusual shapes: odd head counts, d_kv != d_model / num_heads, sizes that are not powers of two,
# more decoder than encoder layers, few buckets so that sequences of ~10 reach the log-spaced ones
SHAPES = [
    dict(vocab_size=61, d_model=30, d_kv=7, d_ff=43, num_layers=2, num_decoder_layers=3, num_heads=5,
         relative_attention_num_buckets=10, relative_attention_max_distance=9),
    dict(vocab_size=97, d_model=36, d_kv=11, d_ff=50, num_layers=3, num_decoder_layers=1, num_heads=3,
         relative_attention_num_buckets=12, relative_attention_max_distance=20, layer_norm_epsilon=1e-5),
]
VARIANTS = {  # family -> (HF model class, HF config class, config fields)
    "t5.1.0": ("T5ForConditionalGeneration", "T5Config", dict(feed_forward_proj="relu")),
    "t5.1.1": ("T5ForConditionalGeneration", "T5Config", dict(feed_forward_proj="gated-gelu",
                                                              tie_word_embeddings=False)),
    "mt5.1.1": ("MT5ForConditionalGeneration", "MT5Config", dict(feed_forward_proj="gated-gelu",
                                                                 tie_word_embeddings=False)),
}


def _hf(family, shape, path):
    model_name, config_name, fields = VARIANTS[family]
    cfg = getattr(transformers, config_name)(**shape, **fields, dropout_rate=0.0)
    torch.manual_seed(0)
    hf = getattr(transformers, model_name)(cfg).eval()
    with torch.no_grad():  # norms away from 1 so that a missing or misplaced norm shows
        for n, p in hf.named_parameters():
            if "layer_norm" in n:
                p.add_(torch.randn_like(p) * 0.2)
        if fields.get("tie_word_embeddings") is False:
            # transformers 5 ties every T5 head when it builds one; released T5.1.1 / mT5 files hold
            # their own lm_head.weight, which it keeps apart on load: make this file like those
            hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight) * 0.5)
            hf.config.tie_word_embeddings = False
    hf.save_pretrained(path)
    return hf


def _batch(vocab, B=3, S=10, T=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    for b, n in enumerate((S, S - 4, 2)):  # source rows padded to different lengths
        mask[b, n:] = 0
        ids[b, n:] = 0
    dec = torch.randint(2, vocab, (B, T), generator=g)
    dec[:, 0] = 0  # decoder_start_token_id
    dec_mask = torch.ones(B, T, dtype=torch.long)
    for b, n in enumerate((T, 3, T - 1)):  # padded targets too
        dec_mask[b, n:] = 0
        dec[b, n:] = 0
    return ids, mask, dec, dec_mask


def _run_hf(hf, ids, mask, dec, dec_mask):
    with torch.no_grad():
        return hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("family", sorted(VARIANTS))
def test_parity_and_round_trip(family, shape, tmp_path):
    hf = _hf(family, shape, tmp_path / "hf")
    ours = plmkit.from_pretrained(tmp_path / "hf")  # no model=: the family comes from config.json
    assert ours.config.family == family
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids, mask, dec, dec_mask = _batch(shape["vocab_size"])
    ref = _run_hf(hf, ids, mask, dec, dec_mask)
    with torch.no_grad():
        out = ours(ids, decoder_input_ids=dec, attention_mask=mask, decoder_attention_mask=dec_mask)
    assert out.logits.shape == ref.logits.shape == (3, 8, shape["vocab_size"])
    assert (out.encoder_last_hidden_state - ref.encoder_last_hidden_state).abs().max() <= 1e-5
    assert (out.logits - ref.logits).abs().max() <= 1e-5
    # the decoder's hidden states differ from the logits by the head only: check them too
    with torch.no_grad():
        ref_dec = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask,
                     output_hidden_states=True).decoder_hidden_states[-1]
    assert (out.last_hidden_state - ref_dec).abs().max() <= 1e-5

    plmkit.save_pretrained(ours, tmp_path / "ours")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert written["architectures"] == [VARIANTS[family][0]]
    back = getattr(transformers, VARIANTS[family][0]).from_pretrained(tmp_path / "ours").eval()
    again = _run_hf(back, ids, mask, dec, dec_mask)
    assert (again.logits - out.logits).abs().max() <= 1e-5
    assert (back.lm_head.weight is back.shared.weight) == (family == "t5.1.0")


def test_torch_bin_with_duplicate_tables(tmp_path):
    """pytorch_model.bin files also hold encoder/decoder copies of the shared table: ignored, not unexpected."""
    shape = SHAPES[0]
    hf = _hf("t5.1.0", shape, tmp_path)
    (tmp_path / "model.safetensors").unlink()  # transformers 5 writes safetensors only: write the .bin here
    torch.save({**hf.state_dict(), "encoder.embed_tokens.weight": hf.shared.weight.clone(),
                "decoder.embed_tokens.weight": hf.shared.weight.clone(), "lm_head.weight": hf.shared.weight.clone()},
               tmp_path / "pytorch_model.bin")
    ours = plmkit.from_pretrained(tmp_path)
    assert ours.load_report.unexpected == []
    assert {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"} <= set(ours.load_report.ignored)
    ids, mask, dec, dec_mask = _batch(shape["vocab_size"])
    with torch.no_grad():
        out = ours(ids, decoder_input_ids=dec, attention_mask=mask, decoder_attention_mask=dec_mask)
    assert (out.logits - _run_hf(hf, ids, mask, dec, dec_mask).logits).abs().max() <= 1e-5


def test_encode_once_decode_separately(tmp_path):
    """encode() and decode() are the two halves of forward; the encoder output matches HF's encoder."""
    shape = SHAPES[1]
    hf = _hf("t5.1.1", shape, tmp_path)
    ours = plmkit.from_pretrained(tmp_path, model="t5.1.1")
    ids, mask, dec, dec_mask = _batch(shape["vocab_size"])
    with torch.no_grad():
        memory = ours.encode(ids, mask)
        ref_memory = hf.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        step = ours.decode(dec[:, :4], memory, attention_mask=mask)
        full = ours(ids, decoder_input_ids=dec[:, :4], attention_mask=mask)
    assert (memory - ref_memory).abs().max() <= 1e-5
    assert torch.equal(step.logits, full.logits)
    ref = hf(encoder_outputs=(ref_memory,), attention_mask=mask, decoder_input_ids=dec[:, :4]).logits
    assert (step.logits - ref).abs().max() <= 1e-5


def test_mt5_keep_tokens_slices_embeddings_and_head(tmp_path):
    shape = SHAPES[0]
    hf = _hf("mt5.1.1", shape, tmp_path)
    keep = [0, 1, 2, 40, 7, 59, 13, 33, 21]  # pad, eos, unk first, then the pieces a corpus uses
    ours = plmkit.from_pretrained(tmp_path, keep_tokens=keep)
    assert ours.config.vocab_size == len(keep)
    assert ours.embeddings.token.weight.shape[0] == ours.lm_head.weight.shape[0] == len(keep)
    g = torch.Generator().manual_seed(3)
    ids, dec = torch.randint(1, len(keep), (2, 7), generator=g), torch.randint(1, len(keep), (2, 5), generator=g)
    dec[:, 0] = 0
    old = torch.tensor(keep)
    with torch.no_grad():
        out = ours(ids, decoder_input_ids=dec).logits
        ref = hf(input_ids=old[ids], decoder_input_ids=old[dec]).logits[..., keep]
    assert (out - ref).abs().max() <= 1e-5


def test_relative_buckets_match_hf_and_hand_values():
    """Bucket ids for every offset, against transformers' T5 function and values worked out by hand."""
    bucket = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket
    offsets = torch.arange(-300, 301)[None, :]
    for bidirectional in (True, False):
        for num_buckets, max_distance in ((32, 128), (10, 9), (12, 20), (7, 50)):
            ours = relative_position_bucket(offsets, bidirectional=bidirectional, num_buckets=num_buckets,
                                            max_distance=max_distance)
            theirs = bucket(offsets, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
            assert torch.equal(ours, theirs), (bidirectional, num_buckets, max_distance)
    # 32 buckets, 128 max distance, bidirectional: 16 per sign, 8 exact; 8 + floor(log(d/8)/log(16)*8) beyond
    hand = {0: 0, -1: 1, -7: 7, 1: 17, 7: 23, -8: 8, -16: 10, -127: 15, -200: 15, 200: 31}
    got = relative_position_bucket(torch.tensor(list(hand)), bidirectional=True, num_buckets=32, max_distance=128)
    assert got.tolist() == list(hand.values())
    assert 8 + math.floor(math.log(16 / 8) / math.log(16) * 8) == 10
    # causal: keys after the query share bucket 0; 32 buckets, 16 exact
    got = relative_position_bucket(torch.tensor([5, 0, -3, -15, -16, -1000]), bidirectional=False,
                                   num_buckets=32, max_distance=128)
    assert got.tolist() == [0, 0, 3, 15, 16, 31]


def test_relative_bias_offset_is_a_slice_of_the_full_bias():
    """Queries starting at `offset` (incremental decoding) see the rows of the full-length bias."""
    bias = RelativePositionBias(12, 20, 3, bidirectional=False)
    torch.nn.init.normal_(bias.weight)
    full = bias(9)  # (1, 3, 9, 9)
    assert full.shape == (1, 3, 9, 9)
    assert torch.equal(bias(2, 9, offset=7), full[:, :, 7:])


def test_family_detection_and_conflicts():
    base = dict(vocab_size=10, d_model=8, d_ff=12, num_heads=2, num_layers=1)
    assert family_from_hf_config({**base, "model_type": "t5"}) == "t5.1.0"  # T5Config's default is relu
    assert family_from_hf_config({**base, "model_type": "t5", "feed_forward_proj": "gated-gelu"}) == "t5.1.1"
    assert family_from_hf_config({**base, "model_type": "mt5", "feed_forward_proj": "gated-gelu"}) == "mt5.1.1"
    c = config_from_hf({**base, "model_type": "t5", "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False})
    assert c.hidden_act == "gelu_new" and c.options.gated_ffn and not c.options.tie_word_embeddings
    with pytest.raises(ConfigError, match="feed_forward_proj"):
        config_from_hf({**base, "model_type": "t5", "feed_forward_proj": "relu"}, "x/config.json", family="t5.1.1")
    with pytest.raises(ConfigError, match="feed_forward_proj"):
        config_from_hf({**base, "model_type": "t5", "feed_forward_proj": "swiglu-x"}, "x/config.json")
    with pytest.raises(ConfigError, match="d_ff"):
        config_from_hf({k: v for k, v in base.items() if k != "d_ff"}, "x/config.json")


def test_builder_rejects_heads_it_cannot_build():
    from plmkit.models import get_family
    family = get_family("t5.1.1")
    with pytest.raises(ValueError, match="pooler"):
        family.build(family.tiny(), with_pool=True)
    with pytest.raises(ValueError, match="encoder-decoder"):
        family.build(family.tiny(), application="unilm")
    with pytest.raises(ValueError, match="num_labels"):
        family.build(family.tiny(), num_labels=3)
    model = family.build(family.tiny())
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(torch.tensor([[3, 4]]))
