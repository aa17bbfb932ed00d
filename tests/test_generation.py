"""Decoding identities: cached == uncached for every family, padding invariance, seeded sampling,
constraints in every strategy, streaming, and the user-scored AutoRegressiveDecoder.

The models are tiny and random, with weights scaled up so that next-token scores have clear
margins (a near-tie could otherwise flip between two exact-in-math computations).
"""
import pytest
import torch
from torch import nn

from plmkit.generation import AutoRegressiveDecoder, generate, generate_stream
from plmkit.models import build_model, get_family
from plmkit.modules.attention import KVCache


def _tiny(family, **options):
    torch.manual_seed(0)
    model = build_model(get_family(family).tiny(), **options).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.35)
            elif not name.endswith("weight"):  # biases
                nn.init.normal_(p, std=0.1)
    return model


def _prompts(B=3, T=6, vocab=50, pad_rows=True, left=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones_like(ids)
    if pad_rows:
        for b, n in enumerate((T, 2, T - 2)[:B]):
            if left:
                mask[b, :T - n] = 0
            else:
                mask[b, n:] = 0
    return ids * mask, mask


DECODER_ONLY = ["gpt", "gpt2"]
SEQ2SEQ = ["t5.1.0", "t5.1.1", "mt5.1.1"]
UNILM = ["bert", "roformer", "nezha", "albert", "roformer_v2"]


@pytest.mark.parametrize("family", DECODER_ONLY)
def test_decoder_only_cached_equals_uncached(family):
    model = _tiny(family)
    ids, mask = _prompts()
    for kw in (dict(), dict(num_beams=3, length_penalty=1.2)):
        cached = generate(model, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=(), **kw)
        full = generate(model, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=(), use_cache=False, **kw)
        assert cached.shape == (3, 16) and torch.equal(cached, full)
        assert torch.equal(cached[:, :6], ids)  # prompt + continuation
    # a left-padded row decodes as it does alone
    alone = generate(model, ids[1:2, 4:], max_new_tokens=10, eos_token_id=())
    greedy = generate(model, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=())
    assert torch.equal(greedy[1, 4:], alone[0])


@pytest.mark.parametrize("family", SEQ2SEQ)
def test_seq2seq_cached_equals_uncached(family):
    model = _tiny(family)
    src, mask = _prompts(left=False)
    for kw in (dict(), dict(num_beams=3, length_penalty=0.8, num_return_sequences=2)):
        cached = generate(model, src, attention_mask=mask, max_new_tokens=10, eos_token_id=(), **kw)
        full = generate(model, src, attention_mask=mask, max_new_tokens=10, eos_token_id=(), use_cache=False, **kw)
        assert cached.shape[1] == 11 and torch.equal(cached, full)
        assert (cached[:, 0] == 0).all()  # decoder ids from the start token
    alone = generate(model, src[1:2, :2], max_new_tokens=10, eos_token_id=())
    greedy = generate(model, src, attention_mask=mask, max_new_tokens=10, eos_token_id=())
    assert torch.equal(greedy[1], alone[0])  # a padded source decodes as it does alone


@pytest.mark.parametrize("family", UNILM)
def test_unilm_cached_equals_uncached_and_padding_invariant(family):
    model = _tiny(family, with_mlm=True, application="unilm")
    src, mask = _prompts(left=False)  # right-padded sources, as tokenizers pad them
    for kw in (dict(), dict(num_beams=3, length_penalty=1.5)):
        cached = generate(model, src, attention_mask=mask, max_new_tokens=8, eos_token_id=(), **kw)
        full = generate(model, src, attention_mask=mask, max_new_tokens=8, eos_token_id=(), use_cache=False, **kw)
        assert cached.shape == (3, 8) and torch.equal(cached, full)  # target tokens only
    greedy = generate(model, src, attention_mask=mask, max_new_tokens=8, eos_token_id=())
    for b, n in enumerate((6, 2, 4)):
        alone = generate(model, src[b:b + 1, :n], max_new_tokens=8, eos_token_id=())
        assert torch.equal(greedy[b], alone[0]), b


def test_unilm_cache_matches_full_forward_logits():
    """The cache-level identity behind UniLM decoding: appended target tokens see what a full forward shows them."""
    model = _tiny("roformer", with_mlm=True, application="unilm")
    ids, mask = _prompts(B=2, T=9, pad_rows=False)
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    with torch.no_grad():
        full = model(ids, types, mask).logits
        cache = KVCache(capacity=9)
        parts = []
        for a, b in ((0, 5), (5, 7), (7, 8), (8, 9)):  # the source, two target tokens at once, then one by one
            parts.append(model(ids[:, a:b], types[:, a:b], mask[:, :b], cache=cache).logits)
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="capacity 9 exceeded"):
        model(ids[:, :1], types[:, :1], torch.ones(2, 10, dtype=torch.long), cache=cache)


def test_bert_lm_application_decodes_like_a_decoder():
    model = _tiny("bert", with_mlm=True, application="lm")
    ids, mask = _prompts()
    cached = generate(model, ids, attention_mask=mask, max_new_tokens=6, eos_token_id=())
    assert torch.equal(cached, generate(model, ids, attention_mask=mask, max_new_tokens=6, eos_token_id=(),
                                        use_cache=False))


def test_seeded_sampling_is_reproducible():
    model = _tiny("gpt2")
    ids, mask = _prompts()
    kw = dict(attention_mask=mask, max_new_tokens=12, do_sample=True, temperature=1.5, top_k=20, top_p=0.95,
              num_return_sequences=3, eos_token_id=())
    a = generate(model, ids, seed=7, **kw)
    b = generate(model, ids, generator=torch.Generator().manual_seed(7), **kw)
    c = generate(model, ids, seed=8, **kw)
    assert a.shape == (9, 18) and torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(a[::3, :6], ids) and torch.equal(a[2::3, :6], ids)  # each input's samples adjacent
    assert len({tuple(r) for r in a[:3, 6:].tolist()}) > 1  # several different samples per input
    # cached and uncached sampling draw the same tokens from the same seed
    assert torch.equal(a, generate(model, ids, seed=7, use_cache=False, **kw))


def test_top_k_one_sampling_is_greedy():
    model = _tiny("t5.1.0")
    src, mask = _prompts(left=False)
    greedy = generate(model, src, attention_mask=mask, max_new_tokens=8)
    assert torch.equal(generate(model, src, attention_mask=mask, max_new_tokens=8, do_sample=True, top_k=1, seed=3),
                       greedy)
    assert torch.equal(generate(model, src, attention_mask=mask, max_new_tokens=8, do_sample=True, top_p=1e-6,
                                seed=3), greedy)


def _constraint(b, row):
    """Only tokens in a band that depends on the input; after an even token only odd ones."""
    band = range(10 + 8 * b, 30 + 8 * b)
    if len(row) == 0:  # a UniLM target starts empty
        return list(band)
    odd_next = int(row[-1]) % 2 == 0
    return [t for t in band if (t % 2 == 1) == odd_next]


def _check_constraint(out, start, k):
    for r in range(out.shape[0]):
        for t in range(start, out.shape[1]):
            assert int(out[r, t]) in _constraint(r // k, out[r, :t]), (r, t)


@pytest.mark.parametrize("family", ["gpt2", "t5.1.1", "bert"])
def test_constraint_is_honoured_by_every_strategy(family):
    model = _tiny(family, **(dict(with_mlm=True, application="unilm") if family == "bert" else {}))
    ids, mask = _prompts(left=family == "gpt2")
    start = {"gpt2": 6, "t5.1.1": 1, "bert": 0}[family]
    for kw, k in ((dict(), 1), (dict(num_beams=4, num_return_sequences=2), 2),
                  (dict(do_sample=True, num_return_sequences=3, seed=0, temperature=2.0), 3),
                  (dict(num_beams=3, do_sample=True, seed=0), 1)):
        out = generate(model, ids, attention_mask=mask, max_new_tokens=7, eos_token_id=(),
                       allowed_tokens=_constraint, **kw)
        assert out.shape[0] == 3 * k
        _check_constraint(out, start, k)


def test_min_new_tokens_and_stop_tokens():
    model = _tiny("gpt2")
    ids, mask = _prompts()
    free = generate(model, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=())
    stop = [int(free[0, 7]), int(free[2, 8])]  # tokens rows 0 and 2 produce at their 2nd and 3rd step
    out = generate(model, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=stop, pad_token_id=0)
    for r in range(3):
        ends = [t for t in range(6, out.shape[1]) if int(out[r, t]) in stop]
        if ends:  # after the first stop token the row holds only padding
            assert (out[r, ends[0] + 1:] == 0).all()
    assert int(out[0, 7]) in stop and (out[0, 8:] == 0).all()
    late = generate(model, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=stop, min_new_tokens=5)
    assert not any(int(t) in stop for t in late[:, 6:11].flatten())


def test_streaming_yields_the_tokens_generate_returns():
    model = _tiny("gpt2")
    ids, mask = _prompts()
    out = generate(model, ids, attention_mask=mask, max_new_tokens=9, do_sample=True, seed=5)
    streamed = torch.stack(list(generate_stream(model, ids, attention_mask=mask, max_new_tokens=9, do_sample=True,
                                                seed=5)), 1)
    assert torch.equal(streamed, out[:, 6:])
    seen = []
    generate(model, ids, attention_mask=mask, max_new_tokens=9, streamer=seen.append)
    assert torch.equal(torch.stack(seen, 1), generate(model, ids, attention_mask=mask, max_new_tokens=9)[:, 6:])
    with pytest.raises(ValueError, match="num_beams must be 1"):
        generate(model, ids, num_beams=2, streamer=seen.append)


class _Scored(AutoRegressiveDecoder):
    """Scores from a GPT-2 over prompt + output ids, recomputed in full (or with a KV cache in `states`)."""

    def __init__(self, model, **kw):
        super().__init__(**kw)
        self.model = model

    def predict(self, inputs, output_ids, states):
        prompt, = inputs
        if isinstance(states, KVCache):
            new = torch.cat((prompt, output_ids), 1) if states.length == 0 else output_ids[:, -1:]
            return self.model(new, cache=states).logits[:, -1], states
        logits = self.model(torch.cat((prompt, output_ids), 1)).logits[:, -1]
        return logits.softmax(-1) if self.scores == "probas" else logits


def test_autoregressive_decoder_matches_generate():
    model = _tiny("gpt2")
    ids, _ = _prompts(pad_rows=False)
    ref_greedy = generate(model, ids, max_new_tokens=8, eos_token_id=())[:, 6:]
    ref_beam = generate(model, ids, max_new_tokens=8, num_beams=3, length_penalty=1.3, num_return_sequences=2,
                        eos_token_id=())[:, 6:]
    dec = _Scored(model, start_id=None, end_id=None, maxlen=8)
    assert torch.equal(dec.greedy_search([ids]), ref_greedy)
    assert torch.equal(_Scored(model, start_id=None, end_id=None, maxlen=8, scores="probas").greedy_search(ids),
                       ref_greedy)
    assert torch.equal(dec.beam_search([ids], topk=3, length_penalty=1.3, num_return_sequences=2), ref_beam)
    # a KV cache carried in `states` is reordered with the beams
    assert torch.equal(dec.beam_search([ids], topk=3, states=KVCache(), length_penalty=1.3,
                                       num_return_sequences=2), ref_beam)
    samples = dec.random_sample([ids], n=2, topk=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(samples, generate(model, ids, max_new_tokens=8, do_sample=True, top_k=10,
                                         num_return_sequences=2, seed=1, eos_token_id=())[:, 6:])
    assert torch.equal(torch.stack(list(dec.stream([ids])), 1), ref_greedy)


def test_autoregressive_decoder_with_a_start_token_matches_seq2seq_generate():
    model = _tiny("t5.1.0")
    src, mask = _prompts(left=False)

    class T5Scores(AutoRegressiveDecoder):
        def predict(self, inputs, output_ids, states):
            source, source_mask = inputs
            return model(source, output_ids, attention_mask=source_mask).logits[:, -1]

    dec = T5Scores(start_id=0, end_id=1, maxlen=9, minlen=2)
    assert torch.equal(dec.beam_search([src, mask], topk=4, length_penalty=0.6),
                       generate(model, src, attention_mask=mask, max_new_tokens=9, min_new_tokens=2, num_beams=4,
                                length_penalty=0.6))


def test_errors_name_the_problem():
    gpt2 = _tiny("gpt2")
    ids, mask = _prompts(left=False)
    with pytest.raises(ValueError, match="left-padded"):
        generate(gpt2, ids, attention_mask=mask)
    with pytest.raises(ValueError, match="with_mlm=True"):
        generate(_tiny("bert", application="unilm"), ids)
    with pytest.raises(ValueError, match="application"):
        generate(_tiny("bert", with_mlm=True), ids)
    with pytest.raises(ValueError, match="num_return_sequences"):
        generate(gpt2, ids, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(gpt2, ids, max_new_tokens=0)
    cache = KVCache()
    with torch.no_grad():
        gpt2(ids, cache=cache)
        with pytest.raises(ValueError, match="must cover all 7"):
            gpt2(ids[:, :1], attention_mask=torch.ones(3, 6), cache=cache)
