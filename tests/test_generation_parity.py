"""plmkit.generate against transformers' generate on the same tiny random GPT-2 / T5 / mT5 weights.

Greedy and beam search (3 and 4 beams, length penalties other than 1, early stopping modes,
several returned sequences), with and without padding in the batch. The end token is one
the model produces often, so that rows really end at different steps. transformers pads a
finished beam with the end token when pad_token_id is 0 (its `pad or eos`), we with the pad
id: tokens after a row's end are compared as "absent" on both sides.
"""
import json

import pytest
import torch

import plmkit
from plmkit.generation import generate

transformers = pytest.importorskip("transformers")

STRATEGIES = [
    dict(),
    dict(num_beams=3, length_penalty=1.5),
    dict(num_beams=4, length_penalty=0.7, num_return_sequences=2),
    dict(num_beams=4, length_penalty=2.0, early_stopping=True),
    dict(num_beams=3, length_penalty=-0.5, early_stopping="never", min_new_tokens=3),
    dict(repetition_penalty=1.3, no_repeat_ngram_size=2),
    dict(num_beams=3, no_repeat_ngram_size=2, repetition_penalty=0.8),
]


def _randomise(hf):
    with torch.no_grad():  # norms and biases away from their init so a misplaced one shows
        for n, p in hf.named_parameters():
            if n.endswith("bias") or "ln_" in n or "layer_norm" in n:
                p.add_(torch.randn_like(p) * 0.2)
    return hf


def _frequent_token(hf, ids, mask, skip):
    """A token that free-running greedy decoding emits in as many rows as possible: a good end token here."""
    free = hf.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=None, do_sample=False)[:, skip:]
    rows = torch.stack([(free == t).any(1).sum() * 100 + (free == t).sum() for t in range(int(free.max()) + 1)])
    return int(rows.argmax())


def _ended(ids, start, eos):
    """ids with every token after a row's first end token (in the generated part) replaced by -1."""
    new = ids[:, start:]
    seen = (new == eos).long().cumsum(1)
    after = (seen - (new == eos).long()) > 0
    out = ids.clone()
    out[:, start:] = new.masked_fill(after, -1)
    return out


def _batch(vocab, padded, B=4, T=7, seed=1, left=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones_like(ids)
    if padded:
        for b, n in enumerate((T, T - 3, 2, T - 1)[:B]):
            if left:
                mask[b, :T - n] = 0
            else:
                mask[b, n:] = 0
    return ids * mask, mask


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=97, n_embd=30, n_layer=3, n_head=5, n_positions=64, bos_token_id=1,
                                  eos_token_id=2, pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  initializer_range=0.3)  # large weights: varied, context-dependent output
    hf = _randomise(transformers.GPT2LMHeadModel(cfg).eval())
    path = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(path)
    return hf, plmkit.from_pretrained(path).eval()


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
def test_gpt2_matches_transformers(gpt2, padded):
    hf, ours = gpt2
    ids, mask = _batch(97, padded)
    eos = _frequent_token(hf, ids, mask, ids.shape[1])
    ended_early = 0
    for kw in STRATEGIES:
        ref = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=eos, **kw)
        got = generate(ours, ids, attention_mask=mask, max_new_tokens=12, eos_token_id=eos, **kw)
        assert got.shape == ref.shape, kw
        assert torch.equal(_ended(got, 7, eos), _ended(ref, 7, eos)), kw
        ended_early += int((ref[:, 7:] == eos).any(1).sum())
    assert ended_early >= 5  # the end token really ends rows, in several strategies


def test_gpt2_ids_from_its_config_file_match_transformers(gpt2, tmp_path):
    """No ids passed: the end id is the file's eos_token_id, and a file with no pad id pads with it."""
    hf, _ = gpt2
    ids, mask = _batch(97, True)
    eos = _frequent_token(hf, ids, mask, ids.shape[1])
    hf.config.eos_token_id, hf.config.pad_token_id = eos, None
    hf.generation_config.eos_token_id, hf.generation_config.pad_token_id = eos, None
    try:
        hf.save_pretrained(tmp_path)
        ref_greedy = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False)
        ref_beam = hf.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, num_beams=3)
    finally:
        hf.config.eos_token_id, hf.config.pad_token_id = 2, 0
        hf.generation_config.eos_token_id, hf.generation_config.pad_token_id = 2, 0
    ours = plmkit.from_pretrained(tmp_path).eval()
    assert json.loads((tmp_path / "config.json").read_text()).get("pad_token_id") is None
    got_greedy = generate(ours, ids, attention_mask=mask, max_new_tokens=12)
    got_beam = generate(ours, ids, attention_mask=mask, max_new_tokens=12, num_beams=3)
    assert (ref_greedy[:, 7:] == eos).any()  # rows do end early, and are padded with the end id
    assert torch.equal(got_greedy, ref_greedy)
    assert torch.equal(got_beam, ref_beam)


T5_VARIANTS = {
    "t5.1.0": ("T5ForConditionalGeneration", "T5Config", dict(feed_forward_proj="relu")),
    "mt5.1.1": ("MT5ForConditionalGeneration", "MT5Config", dict(feed_forward_proj="gated-gelu",
                                                                 tie_word_embeddings=False)),
}


@pytest.fixture(scope="module", params=sorted(T5_VARIANTS))
def t5(request, tmp_path_factory):
    model_name, config_name, fields = T5_VARIANTS[request.param]
    torch.manual_seed(0)
    # (transformers' decoder cache breaks with more decoder than encoder layers; fewer is fine)
    cfg = getattr(transformers, config_name)(
        vocab_size=61, d_model=30, d_kv=7, d_ff=43, num_layers=3, num_decoder_layers=2, num_heads=5,
        relative_attention_num_buckets=10, relative_attention_max_distance=9, dropout_rate=0.0,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, initializer_factor=3.0, **fields)
    hf = _randomise(getattr(transformers, model_name)(cfg).eval())
    if fields.get("tie_word_embeddings") is False:
        with torch.no_grad():
            hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight) * 0.5)
        hf.config.tie_word_embeddings = False
    path = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(path)
    ours = plmkit.from_pretrained(path).eval()
    assert ours.config.family == request.param
    return hf, ours


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded-sources"])
def test_t5_matches_transformers(t5, padded):
    hf, ours = t5
    src, mask = _batch(61, padded, B=3, T=9, left=False)
    eos = _frequent_token(hf, src, mask, 1)
    ended_early = 0
    for kw in STRATEGIES:
        ref = hf.generate(src, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=eos, **kw)
        got = generate(ours, src, attention_mask=mask, max_new_tokens=12, eos_token_id=eos, **kw)
        assert got.shape == ref.shape, kw
        assert torch.equal(_ended(got, 1, eos), _ended(ref, 1, eos)), kw
        ended_early += int((ref[:, 1:] == eos).any(1).sum())
    assert ended_early >= 5
    # the config's own end token (1) and start token (0) are the defaults on both sides
    ref = hf.generate(src, attention_mask=mask, max_new_tokens=6, num_beams=3, length_penalty=0.5)
    got = generate(ours, src, attention_mask=mask, max_new_tokens=6, num_beams=3, length_penalty=0.5)
    assert torch.equal(_ended(got, 1, 1), _ended(ref, 1, 1))


def _parity_constraint(b, row):
    """Allowed next tokens depend on the input and on the last token: even after odd, and a band per input."""
    last = int(row[-1])
    band = list(range(3 + 5 * b, 20 + 5 * b))
    return [t for t in band if t % 2 == (0 if last % 2 else 1)] + [last % 7 + 3]


@pytest.mark.parametrize("kw", [dict(), dict(num_beams=3, length_penalty=1.3)], ids=["greedy", "beam"])
def test_constraint_matches_transformers_prefix_allowed_tokens(gpt2, kw):
    hf, ours = gpt2
    ids, mask = _batch(97, True)
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, eos_token_id=None,
                      prefix_allowed_tokens_fn=_parity_constraint, **kw)
    got = generate(ours, ids, attention_mask=mask, max_new_tokens=8, eos_token_id=(),
                   allowed_tokens=_parity_constraint, **kw)
    assert torch.equal(got, ref)
    for r in range(got.shape[0]):
        for t in range(7, got.shape[1]):
            assert int(got[r, t]) in _parity_constraint(r, got[r, :t])
