"""The T5 PEGASUS / WoBERT tokenizer: jieba words in the vocabulary stay whole, the rest is WordPiece.

Oracle: bert4keras 0.11.5's ``Tokenizer(vocab, do_lower_case=True, pre_tokenize=lambda s: jieba.cut(s,
HMM=False))`` rules, applied by hand below (https://kexue.fm/archives/8209): lower-case and strip
accents on the whole text; segment with jieba; a word that is a vocabulary entry is one token;
any other word gets BERT's basic split (control characters dropped, each CJK character and
punctuation mark alone, split on spaces) and greedy longest-match WordPiece with "##" pieces. Each
case asserts jieba's segmentation first, so the premise the expectation rests on is checked.
"""

from __future__ import annotations

import json
import pickle
import shutil
import unicodedata
from pathlib import Path

import pytest
import torch

import plmkit
from plmkit.tokenizers import JiebaWordPieceTokenizer, WordPieceTokenizer

jieba = pytest.importorskip("jieba")

FIXTURES = Path(__file__).parent / "fixtures"

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    # whole words, as T5 PEGASUS's vocabulary holds them
    "中国", "人民", "银行", "我们", "喜欢", "北京", "天安门", "c++",
    # single characters
    "我", "们", "爱", "中", "国", "人", "民", "银", "行", "在", "存", "钱", "是", "的", "和", "年", "上", "海",
    "喜", "欢", "北", "京", "天", "安", "门",
    # punctuation
    "，", "。", ",", "!", ".", "+", "#",
    # ASCII words and "##" continuations
    "hello", "world", "##s", "un", "##aff", "##able", "2021", "3", "14", "cafe", "bert", "##4", "##ker", "##as", "c",
]


def segment(text: str) -> list[str]:
    """jieba's words as bert4keras's T5 PEGASUS tokenizer sees them (text already lower-cased)."""
    return list(jieba.cut(text, HMM=False))


@pytest.fixture(scope="module")
def tok() -> JiebaWordPieceTokenizer:
    return JiebaWordPieceTokenizer(VOCAB)


@pytest.fixture(scope="module")
def wordpiece() -> WordPieceTokenizer:
    return WordPieceTokenizer(VOCAB)


# ----------------------------------------------------------------------------- the rules
@pytest.mark.parametrize("text, words, tokens", [
    # (a) jieba words that are vocabulary entries stay one token
    ("我们喜欢北京天安门", ["我们", "喜欢", "北京", "天安门"], ["我们", "喜欢", "北京", "天安门"]),
    ("中国的人民喜欢银行", ["中国", "的", "人民", "喜欢", "银行"], ["中国", "的", "人民", "喜欢", "银行"]),
    ("银行，中国，人民。", ["银行", "，", "中国", "，", "人民", "。"], ["银行", "，", "中国", "，", "人民", "。"]),
    # ... even with punctuation inside, which WordPiece alone would split
    ("c++", ["c++"], ["c++"]),
])
def test_words_in_the_vocabulary_stay_whole(tok, text, words, tokens):
    assert segment(text.lower()) == words
    assert tok.tokenize(text) == ["[CLS]", *tokens, "[SEP]"]


@pytest.mark.parametrize("text, words, tokens", [
    # (b) a jieba word missing from the vocabulary is never re-segmented: it goes to WordPiece, which
    # makes each CJK character a word, although "中国" "人民" "银行" are vocabulary entries
    ("我们在中国人民银行存钱", ["我们", "在", "中国人民银行", "存钱"],
     ["我们", "在", "中", "国", "人", "民", "银", "行", "存", "钱"]),
    # characters the vocabulary lacks are [UNK] (bert4keras: the character itself, with the [UNK] id)
    ("上海浦东", ["上海浦东"], ["上", "海", "[UNK]", "[UNK]"]),
    # ASCII words fall back to "##" pieces, after lower-casing
    ("unaffable Worlds", ["unaffable", " ", "worlds"], ["un", "##aff", "##able", "world", "##s"]),
    ("c#", ["c#"], ["c", "#"]),
])
def test_other_words_fall_back_to_wordpiece(tok, text, words, tokens):
    assert segment(text.lower()) == words
    assert tok.tokenize(text) == ["[CLS]", *tokens, "[SEP]"]


@pytest.mark.parametrize("text, words, tokens", [
    # (c) ASCII, digits and punctuation: jieba splits punctuation and spaces off; spaces vanish
    ("Hello, World! 2021年3.14", ["hello", ",", " ", "world", "!", " ", "2021", "年", "3", ".", "14"],
     ["hello", ",", "world", "!", "2021", "年", "3", ".", "14"]),
    # accents are stripped before segmenting (bert4keras: lower, NFD, drop Mn on the whole text)
    ("Café和bert4keras", ["cafe", "和", "bert4keras"], ["cafe", "和", "bert", "##4", "##ker", "##as"]),
    ("c++和c#", ["c++", "和", "c#"], ["c++", "和", "c", "#"]),
    # a tab is its own jieba word and a zero-width space (Cf) too: both are dropped, words stay whole
    ("中国\t人民\u200b银行", ["中国", "\t", "人民", "\u200b", "银行"], ["中国", "人民", "银行"]),
])
def test_ascii_digits_punctuation_and_spaces(tok, text, words, tokens):
    assert segment(unicode_lower_strip(text)) == words
    assert tok.tokenize(text) == ["[CLS]", *tokens, "[SEP]"]


def unicode_lower_strip(text: str) -> str:
    """bert4keras's do_lower_case normalisation of the whole text."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


def test_case_kept_without_do_lower_case():
    cased = JiebaWordPieceTokenizer(VOCAB, do_lower_case=False)
    assert segment("Hello中国") == ["Hello", "中国"]
    assert cased.tokenize("Hello中国") == ["[CLS]", "[UNK]", "中国", "[SEP]"]


def test_ids_are_the_vocabulary_lines(tok):
    token_ids, segment_ids = tok.encode("我们在中国人民银行")
    expected = ["[CLS]", "我们", "在", "中", "国", "人", "民", "银", "行", "[SEP]"]
    assert token_ids == [VOCAB.index(t) for t in expected]
    assert segment_ids == [0] * len(expected)
    assert tok.ids_to_tokens(token_ids) == expected and tok.tokens_to_ids(expected) == token_ids


# ----------------------------------------------------------------------------- what the post describes
def test_word_vocabulary_shortens_sequences(tok, wordpiece):
    """A word-level vocabulary gives fewer tokens than one token per character (kexue.fm/archives/8209)."""
    text = "我们喜欢北京天安门，中国的人民喜欢银行。"
    assert segment(text) == ["我们", "喜欢", "北京", "天安门", "，", "中国", "的", "人民", "喜欢", "银行", "。"]
    words, chars = tok.tokenize(text), wordpiece.tokenize(text)
    assert len(chars) == len(text) + 2  # every character one token
    assert len(words) == 11 + 2 < len(chars)
    # the same text either way
    assert tok.decode(tok.encode(text)[0]) == wordpiece.decode(wordpiece.encode(text)[0]) == text


# ----------------------------------------------------------------------------- the WordPiece API
def test_encode_pairs_and_bert4keras_truncation(tok):
    # A: 我们 喜欢 银行 (3 words); B: 中国 人民 (2). maxlen 6 leaves 3 content tokens: pop A's last
    # word (A longer), then A again on the 2-2 tie (the first one).
    ids, segs = tok.encode("我们喜欢银行", "中国人民", maxlen=6)
    assert tok.ids_to_tokens(ids) == ["[CLS]", "我们", "[SEP]", "中国", "人民", "[SEP]"]
    assert segs == [0, 0, 0, 1, 1, 1]
    assert tok.encode("我们喜欢银行", "中国人民", max_length=6) == (ids, segs)


def test_batch_call_matches_encode_and_pads(tok):
    texts = ["我们喜欢银行", "中国"]
    batch = tok(texts)
    assert batch["input_ids"].shape == (2, 5)
    for row, text in zip(batch["input_ids"].tolist(), texts):
        ids = tok.encode(text)[0]
        assert row == ids + [tok.pad_token_id] * (5 - len(ids))
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert torch.equal(batch["token_type_ids"], torch.zeros(2, 5, dtype=torch.long))


def test_offsets_and_rematch_cover_whole_words(tok):
    text = "Café和中国人民"
    assert segment(unicode_lower_strip(text)) == ["cafe", "和", "中国", "人民"]
    tokens = tok.tokenize(text)
    assert tokens == ["[CLS]", "cafe", "和", "中国", "人民", "[SEP]"]
    assert tok.rematch(text, tokens) == [[], [0, 1, 2, 3], [4], [5, 6], [7, 8], []]
    offsets = tok([text], return_offsets=True)["offset_mapping"][0].tolist()
    assert offsets == [[0, 0], [0, 4], [4, 5], [5, 7], [7, 9], [0, 0]]


def test_pickle_round_trip(tok):
    again = pickle.loads(pickle.dumps(tok))
    assert isinstance(again, JiebaWordPieceTokenizer)
    assert again.tokenize("我们在中国人民银行") == tok.tokenize("我们在中国人民银行")


def test_segmenter_must_return_the_text():
    bad = JiebaWordPieceTokenizer(VOCAB, pre_tokenize=lambda s: ["中国", "xx"])
    # the engine re-raises the segmenter check's ValueError as a plain Exception with its message
    with pytest.raises(Exception, match="pre_tokenize function returned 'xx'"):
        bad.tokenize("中国人民")


# ----------------------------------------------------------------------------- loading
def write_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize("config", [
    "bert4keras",  # T5 PEGASUS's own config.json: bert4keras T5 keys, no model_type
    {"model_type": "mt5", "d_model": 16, "vocab_size": len(VOCAB)},  # a transformers conversion
])
def test_t5_config_beside_vocab_txt_loads_the_jieba_tokenizer(tmp_path, config):
    folder = write_vocab(tmp_path / "t5_pegasus")
    if config == "bert4keras":
        shutil.copy(FIXTURES / "tf" / "mt5" / "config.json", folder / "config.json")
    else:
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    loaded = plmkit.load_tokenizer(folder)
    assert type(loaded) is JiebaWordPieceTokenizer
    assert loaded.tokenize("中国人民")[1:-1] == ["中国", "人民"]
    assert type(plmkit.load_tokenizer(folder, pre_tokenize=None)) is WordPieceTokenizer


def test_explicit_option_and_save_round_trip(tmp_path):
    folder = write_vocab(tmp_path / "plain")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 16}), encoding="utf-8")
    assert type(plmkit.load_tokenizer(folder)) is WordPieceTokenizer
    loaded = plmkit.load_tokenizer(folder, pre_tokenize="jieba")
    assert type(loaded) is JiebaWordPieceTokenizer
    loaded.save(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())["pre_tokenize"] == "jieba"
    assert type(plmkit.load_tokenizer(tmp_path / "saved")) is JiebaWordPieceTokenizer
    with pytest.raises(ValueError, match="pre_tokenize"):
        plmkit.load_tokenizer(folder, pre_tokenize="spaces")
