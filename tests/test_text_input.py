"""Bad text where text enters plmkit: lone surrogates, undecodable vocabularies and configs (issue 28).

Lone UTF-16 surrogates ("half an emoji", which JSON allows as "\\ud83d") become U+FFFD, one for
one, with a warning (plmkit/tokenizers/text.py says why). Expected values come from Python's own
UTF-16 codec (which turns an unpaired surrogate into U+FFFD under errors="replace"), from
transformers' pure-Python BERT tokenizer (a separate implementation, which drops the surrogate)
and from hand-written files.
"""
from __future__ import annotations

import json
import logging

import pytest

from plmkit.data import DataError, iter_rows, read_examples
from plmkit.tokenizers import WordPieceTokenizer, load_tokenizer

HALF = "\ud83d"  # the high half of 😀 (U+1F600 = \ud83d\ude00)
LOW = "\ude00"

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "ab", "##b", "你", "好", "ok", "\ufffd"]


def codec_replaced(text: str) -> str:
    """Python's UTF-16 codec's answer for text holding lone surrogates: each becomes U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def warnings_from(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]


@pytest.fixture()
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def broken_jsonl(tmp_path):
    """Rows written as JSON text with real \\ud83d escapes, as a scraper cutting an emoji in half writes them."""
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"text": "ok", "label": "pos"}\n'
        '\n'
        '{"text": "a\\ud83db \\ud83d\\ude00 \\ude00", "label": "neg"}\n'   # two halves and one whole emoji
        '{"text": "\\ud83d", "label": "p\\ud83dos", "meta": {"k\\ud83d": ["\\ud83d", 1]}}\n'
        '{"text": "\\ud83d\\ude00 whole", "label": "pos"}\n',
        encoding="ascii")
    return path


# ----------------------------------------------------------------------------- data readers
def test_jsonl_lone_surrogates_become_replacement_characters(broken_jsonl, caplog):
    raw = [json.loads(line) for line in broken_jsonl.read_text().splitlines() if line]
    assert raw[1]["text"] == f"a{HALF}b 😀 {LOW}"  # what json gives Python: real lone surrogates
    with caplog.at_level(logging.WARNING, logger="plmkit.data"):
        ex = read_examples(broken_jsonl)
    assert ex.texts == ["ok", "a\ufffdb 😀 \ufffd", "\ufffd", "😀 whole"]
    assert ex.texts == [codec_replaced(r["text"]) for r in raw]
    assert [len(t) for t in ex.texts] == [len(r["text"]) for r in raw]  # one for one: offsets survive
    assert ex.labels == ["pos", "neg", "p\ufffdos", "pos"]
    assert ex.lines == [1, 3, 4, 5]
    # One warning for the file: 2 (line 3) + 1 text + 1 label + 1 key + 1 list item (line 4) = 6.
    assert warnings_from(caplog, "plmkit.data") == [
        f"{broken_jsonl}: replaced 6 lone UTF-16 surrogate(s) (half a character, e.g. half an emoji, "
        "a \\ud800-\\udfff escape without its pair) with U+FFFD, first on line 3"]
    rows = dict(iter_rows(broken_jsonl))
    assert rows[4]["meta"] == {"k\ufffd": ["\ufffd", 1]}


def test_the_warning_is_given_when_reading_stops_early(broken_jsonl, caplog):
    with caplog.at_level(logging.WARNING, logger="plmkit.data"):
        rows = iter_rows(broken_jsonl)
        assert next(rows)[0] == 1 and next(rows)[0] == 3
        rows.close()
    (message,) = warnings_from(caplog, "plmkit.data")
    assert "replaced 2 lone UTF-16 surrogate(s)" in message and "first on line 3" in message


def test_clean_files_give_no_warning(tmp_path, caplog):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "\\ud83d\\ude00 \\\\ud83d", "label": 1}\n{"text": "b", "label": 2}\n', encoding="ascii")
    with caplog.at_level(logging.WARNING):
        ex = read_examples(path)
    assert ex.texts == ["😀 \\ud83d", "b"]  # a valid pair is one character; an escaped backslash is text
    assert warnings_from(caplog, "plmkit.data") == []


def test_surrogate_bytes_in_a_csv_are_undecodable_and_named(tmp_path):
    # CESU-style bytes for U+D83D: strict UTF-8 refuses them, so CSV/TSV never carry a surrogate.
    path = tmp_path / "x.csv"
    path.write_bytes(b"text,label\nok,1\nbad \xed\xa0\xbd here,0\n")
    with pytest.raises(DataError, match=r"x\.csv: line 3: bytes that are not UTF-8 at byte offset 20"):
        read_examples(path)


# ----------------------------------------------------------------------------- tokenizers
def test_wordpiece_replaces_and_warns_in_every_entry_point(vocab_file, caplog):
    tok = WordPieceTokenizer(vocab_file)
    text = f"a{HALF}b 你{LOW}好 ok{HALF}"
    clean = codec_replaced(text)
    assert clean == "a\ufffdb 你\ufffd好 ok\ufffd"
    with caplog.at_level(logging.WARNING, logger="plmkit.text"):
        tokens = tok.tokenize(text)
        ids, segments = tok.encode(text, HALF + "b")
        batch = tok(["ok", text], [HALF, "a"], return_offsets=True)
        spans = tok.rematch(text, tokens)
    # BERT's normaliser drops U+FFFD as an invalid character, so "a\ufffdb" is the word "ab".
    assert tokens == ["[CLS]", "ab", "你", "好", "ok", "[SEP]"]
    assert tokens == tok.tokenize(clean)
    assert tok.ids_to_tokens(ids) == tokens + ["b", "[SEP]"] and segments == [0] * 6 + [1] * 2
    assert tok.ids_to_tokens(batch["input_ids"][1].tolist()) == tokens + ["a", "[SEP]"]
    assert tok.ids_to_tokens(batch["input_ids"][0].tolist()) == ["[CLS]", "ok", "[SEP]", "[SEP]"] + ["[PAD]"] * 4
    # Offsets index the text as given: "ab" covers a, the replaced half and b (0..3).
    assert batch["offset_mapping"][1, 1].tolist() == [0, 3]
    assert spans == [[], [0, 1, 2], [4], [6], [8, 9], []]
    messages = warnings_from(caplog, "plmkit.text")
    assert messages == [
        "WordPieceTokenizer.tokenize: replaced 3 lone UTF-16 surrogate(s) (half a character, e.g. half an emoji) "
        "with U+FFFD, first in the text",
        "WordPieceTokenizer.encode (first): replaced 3 lone UTF-16 surrogate(s) (half a character, e.g. half an "
        "emoji) with U+FFFD, first in the text",
        "WordPieceTokenizer.encode (second): replaced 1 lone UTF-16 surrogate(s) (half a character, e.g. half an "
        "emoji) with U+FFFD, first in the text",
        "WordPieceTokenizer.__call__: replaced 3 lone UTF-16 surrogate(s) (half a character, e.g. half an emoji) "
        "with U+FFFD, first in texts[1]",
        "WordPieceTokenizer.__call__: replaced 1 lone UTF-16 surrogate(s) (half a character, e.g. half an emoji) "
        "with U+FFFD, first in pairs[0]",
        "WordPieceTokenizer.rematch: replaced 3 lone UTF-16 surrogate(s) (half a character, e.g. half an emoji) "
        "with U+FFFD, first in the text"]


def test_wordpiece_agrees_with_the_python_bert_tokenizer_on_surrogates(vocab_file):
    """transformers' Python BERT tokenizer reads surrogates itself (it drops them as category Cs)."""
    from test_tokenizer_wordpiece import python_bert

    ours, ref = WordPieceTokenizer(vocab_file), python_bert(vocab_file)
    for text in (f"a{HALF}b", HALF, LOW + HALF, f"你{HALF}好 a {LOW}b", f"ok {HALF}{HALF} ok", f"{HALF}[MASK]"):
        assert ours.encode(text)[0] == ref(text)["input_ids"], repr(text)


def test_a_token_list_with_a_lone_surrogate_is_refused():
    with pytest.raises(ValueError, match=r"vocabulary entry 5 must be a str without line breaks or lone surrogates"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b" + HALF])


def test_wordpiece_non_text_is_a_type_error(vocab_file):
    tok = WordPieceTokenizer(vocab_file)
    with pytest.raises(TypeError, match=r"WordPieceTokenizer.encode \(first\): the text must be a str, found NoneType"):
        tok.encode(None)
    with pytest.raises(TypeError, match=r"WordPieceTokenizer.__call__: pairs\[1\] must be a str, found int"):
        tok(["a", "b"], ["a", 3])


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    from plmkit.tokenizers.sentencepiece import SentencePieceTokenizer

    tmp = tmp_path_factory.mktemp("spm")
    corpus = tmp / "corpus.txt"
    words = ["hello", "world", "token", "这个", "酒店", "很好", "服务", "test", "data", "a", "b"]
    corpus.write_text("\n".join(" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(8)) for i in range(200)),
                      encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp / "spiece"), vocab_size=30, minloglevel=2,
                                   bos_id=-1, pad_id=0, eos_id=1, unk_id=2)
    return SentencePieceTokenizer.for_t5(tmp / "spiece.model", extra_ids=3)


def test_sentencepiece_replaces_and_warns(t5, caplog):
    text = f"hello{HALF} 这个{LOW}酒店"
    clean = codec_replaced(text)
    assert t5.encode(clean)[0] == t5.encode(text)[0]
    ids = t5.encode(clean)[0]
    assert t5.tokenize(text) == [t5.id_to_token(i) for i in ids]
    batch = t5([text, "hello"], [HALF, "world"])
    row = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert row == ids + t5.encode("\ufffd")[0]  # A </s> B </s>
    assert set(ids) <= set(t5.used_token_ids([text]))
    for call, want in ((lambda: t5.encode(text), "SentencePieceTokenizer.encode (first): replaced 2 "),
                       (lambda: t5.encode("a", text), "SentencePieceTokenizer.encode (second): replaced 2 "),
                       (lambda: t5([text, "a"], ["b", HALF]), "SentencePieceTokenizer.__call__: replaced 2 "),
                       (lambda: t5.used_token_ids(["a", text]), "SentencePieceTokenizer.used_token_ids: replaced 2 ")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="plmkit.text"):
            call()
        got = warnings_from(caplog, "plmkit.text")
        assert len(got) >= 1 and got[0].startswith(want), got
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="plmkit.text"):
        t5.encode(clean)
    assert warnings_from(caplog, "plmkit.text") == []


def test_a_broken_jsonl_file_goes_through_reader_and_tokenizer(broken_jsonl, vocab_file, caplog):
    """The path `plmkit finetune` / `predict` take: the reader replaces, so the tokenizer sees clean text."""
    tok = load_tokenizer(vocab_file)
    with caplog.at_level(logging.WARNING):
        ex = read_examples(broken_jsonl)
        caplog.clear()
        batch = tok(ex.texts)
    assert warnings_from(caplog, "plmkit.text") == []
    assert tok.ids_to_tokens(batch["input_ids"][1].tolist()[:4]) == ["[CLS]", "ab", "[UNK]", "[SEP]"]


# ----------------------------------------------------------------------------- undecodable vocabularies and configs
def test_undecodable_vocab_is_named_with_its_line(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("[PAD]\n[UNK]\n[CLS]\n[SEP]\n好\n".encode() + "坏\n".encode("gbk") + b"ok\n")
    with pytest.raises(ValueError) as err:
        load_tokenizer(tmp_path)
    message = str(err.value)
    offset = len("[PAD]\n[UNK]\n[CLS]\n[SEP]\n好\n".encode())
    assert str(path) in message and "line 6 (token id 5)" in message
    assert f"byte offset {offset}" in message and "UTF-8" in message
    with pytest.raises(ValueError, match="line 6"):
        WordPieceTokenizer(path)


def test_undecodable_tokenizer_config_is_named(vocab_file):
    config = vocab_file.parent / "tokenizer_config.json"
    config.write_bytes(b'{"do_lower_case": true,\n "unk_token": "\xff"}\n')
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: line 2: bytes that are not UTF-8 at byte offset 39"):
        load_tokenizer(vocab_file.parent)
