"""Hypothesis fuzzing of the tokenizers and the data readers on hostile text (issue 28), bounded in time.

Text is drawn from every Unicode category (lone surrogates, controls, combining marks, format
characters included), CJK ideographs, special-token strings and words past WordPiece's
100-character limit. The properties are invariants stated by hand, not captured outputs:
no exception, ids inside the vocabulary, encode == tokenize == the batch call, truncation keeps
a prefix, offsets inside the text and in order, spans that spell their tokens (ASCII), and
decode inverting encode where it can (CJK for WordPiece, the model's own alphabet for
SentencePiece).
"""
from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plmkit.data import DataError, iter_rows, read_examples
from plmkit.tokenizers import WordPieceTokenizer

# Each test runs in about a second on a busy 2-core machine; no deadline, since a shared machine stalls.
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                database=None)

LETTERS = "abcdefghijklmnopqrstuvwxyz"
CJK = "你好中国人民的一是不了在有和大这"
PUNCT = ".,!?;:'\"()[]-，。！？、"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = (SPECIALS + list(LETTERS) + ["##" + c for c in LETTERS] + list(CJK) + list(dict.fromkeys(PUNCT))
         + ["un", "##aff", "##able", "hello", "world", "##ing", "\u00e9"])

TRICKY = ["[MASK]", "[CLS]", "[unk]", "\ud83d", "\ude00", "\ud83d\ude00", "😀", "\u0301", "e\u0301", "\x00",
          "\x7f", "\u200b", "\ufeff", "\ufffd", "\u3000", "\t", "\r\n",
          "İ", "ß", "ﬁ", "Σ", "\U00020000", "ＡＢ", "\u202e"]

# Any code point, surrogates included (Hypothesis leaves out category Cs unless told otherwise).
any_char = st.characters(codec=None, exclude_categories=())
pieces = st.one_of(
    any_char,
    st.sampled_from(TRICKY),
    st.text(alphabet=LETTERS + CJK + PUNCT + " ", max_size=12),
    st.text(alphabet="ab##", min_size=95, max_size=140),  # around max_input_chars_per_word = 100
)
hostile_text = st.lists(pieces, max_size=25).map("".join)


@pytest.fixture(scope="module")
def wordpiece():
    return WordPieceTokenizer(VOCAB)


@pytest.fixture(autouse=True, scope="module")
def _quiet_replacement_warnings():
    """Replacement warnings are tested in test_text_input.py; here they would only flood the log."""
    logger = logging.getLogger("plmkit.text")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def _is_bert_control(c: str) -> bool:
    return (ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127


# ----------------------------------------------------------------------------- WordPiece
@FUZZ
@given(text=hostile_text, second=st.none() | hostile_text, maxlen=st.integers(3, 40))
def test_wordpiece_invariants(wordpiece, text, second, maxlen):
    tok = wordpiece
    tokens = tok.tokenize(text)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert all(t in VOCAB for t in tokens)
    ids, segments = tok.encode(text)
    assert ids == tok.tokens_to_ids(tokens) and segments == [0] * len(ids)
    assert all(0 <= i < tok.vocab_size for i in ids)

    batch = tok([text], return_offsets=True)
    assert batch["input_ids"][0].tolist() == ids
    offsets = batch["offset_mapping"][0].tolist()
    assert offsets[0] == offsets[-1] == [0, 0]
    starts = [s for s, _ in offsets[1:-1]]
    assert starts == sorted(starts) and all(0 <= s <= e <= len(text) for s, e in offsets)

    spans = tok.rematch(text, tokens)
    assert len(spans) == len(tokens) and spans[0] == spans[-1] == []
    for span in spans[1:-1]:
        assert span == list(range(span[0], span[-1] + 1)) if span else True  # contiguous
        assert all(0 <= i < len(text) for i in span)
    firsts = [s[0] for s in spans if s]
    assert firsts == sorted(firsts)

    # bert4keras truncation keeps a prefix of each segment and never exceeds maxlen.
    cut, _ = tok.encode(text, maxlen=maxlen)
    assert len(cut) <= maxlen and cut[:-1] == ids[:len(cut) - 1] and cut[-1] == tok.sep_token_id
    pair_ids, pair_segments = tok.encode(text, second, maxlen=maxlen)
    assert len(pair_ids) <= maxlen and len(pair_segments) == len(pair_ids)
    if second is not None:
        full_b = tok.encode(second)[0][1:]
        n_a = pair_segments.count(0)
        assert pair_ids[:n_a - 1] == ids[:n_a - 1] and pair_ids[n_a - 1] == tok.sep_token_id
        assert pair_ids[n_a:-1] == full_b[:len(pair_ids) - n_a - 1]
        # transformers' longest_first in the batch call: also within max_length, also prefixes.
        row = tok([text], [second], max_length=maxlen)
        got = row["input_ids"][0][row["attention_mask"][0].bool()].tolist()
        assert len(got) <= maxlen and got[0] == tok.cls_token_id and got.count(tok.sep_token_id) >= 2


@FUZZ
@given(text=st.text(alphabet=LETTERS.upper() + LETTERS + " \t\x00\x07\x7f.,!?-", max_size=60))
def test_wordpiece_ascii_spans_spell_their_tokens(wordpiece, text):
    """On ASCII, BERT's normalisation is lower-casing and dropping control characters, so each
    token's span, normalised by hand, is the token (without "##")."""
    tok = wordpiece
    batch = tok(text, return_offsets=True)
    for token_id, (s, e) in zip(batch["input_ids"][0].tolist()[1:-1], batch["offset_mapping"][0].tolist()[1:-1]):
        token = tok.id_to_token(token_id)
        normal = "".join(c for c in text[s:e].lower() if not _is_bert_control(c))
        if token != "[UNK]":
            assert normal == token.removeprefix("##"), (text, token, text[s:e])


@FUZZ
@given(text=st.text(alphabet=CJK + " \u3000\n", max_size=50))
def test_wordpiece_decode_inverts_encode_on_cjk(wordpiece, text):
    """Every CJK character is a word and a token, and decode writes CJK without spaces."""
    ids, _ = wordpiece.encode(text)
    assert wordpiece.decode(ids) == "".join(text.split())


# ----------------------------------------------------------------------------- SentencePiece
SP_ALPHABET = "abcdehilnorstw"


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    from plmkit.tokenizers.sentencepiece import SentencePieceTokenizer

    tmp = tmp_path_factory.mktemp("spm")
    words = ["hello", "world", "this", "is", "a", "test", "tower", "bird", "side", "note", "cold", "wash"]
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(" ".join(words[(i * 5 + j * 7) % len(words)] for j in range(9))
                                for i in range(300)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp / "spiece"), vocab_size=30,
                                   character_coverage=1.0, minloglevel=2, bos_id=-1, pad_id=0, eos_id=1, unk_id=2)
    tok = SentencePieceTokenizer.for_t5(tmp / "spiece.model", extra_ids=3)
    pieces = {tok.id_to_token(i) for i in range(tok.vocab_size)}
    assert set(SP_ALPHABET) <= pieces, "every letter of SP_ALPHABET is a piece of the model"
    return tok


@FUZZ
@given(text=hostile_text, second=st.none() | hostile_text, maxlen=st.integers(2, 30))
def test_sentencepiece_invariants(t5, text, second, maxlen):
    ids, _ = t5.encode(text)
    assert ids[-1] == t5.end_token_id and all(0 <= i < t5.vocab_size for i in ids)
    assert t5.tokenize(text) == [t5.id_to_token(i) for i in ids]
    batch = t5([text])
    assert batch["input_ids"][0].tolist() == ids
    cut, _ = t5.encode(text, maxlen=maxlen)
    assert len(cut) <= maxlen and cut[:-1] == ids[:len(cut) - 1]
    pair, segments = t5.encode(text, second, maxlen=maxlen + 1)
    assert len(pair) <= maxlen + 1 and len(segments) == len(pair)
    t5.decode(ids)  # any ids it produced decode


@FUZZ
@given(text=st.text(alphabet=SP_ALPHABET + " ", max_size=60))
def test_sentencepiece_decode_inverts_encode_on_its_alphabet(t5, text):
    """Letters the model holds never become <unk>; decoding gives the text with whitespace collapsed,
    SentencePiece's own normalisation of spaces."""
    ids, _ = t5.encode(text)
    assert t5.unk_token_id not in ids
    assert t5.decode(ids) == " ".join(text.split())


# ----------------------------------------------------------------------------- data readers
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
                          max_leaves=6)
rows = st.lists(st.fixed_dictionaries({"text": json_value, "label": json_value}), min_size=1, max_size=6)


@FUZZ
@given(rows=rows, junk=st.binary(max_size=20), junk_at=st.integers(0, 6))
def test_jsonl_reader_raises_only_data_errors(tmp_path_factory, rows, junk, junk_at):
    """Any JSONL, surrogate escapes and undecodable or non-JSON junk included: examples or a DataError."""
    lines = [json.dumps(r).encode() for r in rows]  # ensure_ascii: lone surrogates as \\udXXX escapes
    lines.insert(min(junk_at, len(lines)), junk)
    path = tmp_path_factory.mktemp("jsonl") / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        ex = read_examples(path)
    except DataError as e:
        assert str(path) in str(e)
        return
    for text, label in zip(ex.texts, ex.labels):
        assert isinstance(text, str) and isinstance(label, str) and label.strip()
        text.encode("utf-8")  # no surrogate survives: every string can be written back out
        label.encode("utf-8")
    for _, row in iter_rows(path):
        json.dumps(row, ensure_ascii=False).encode("utf-8")
