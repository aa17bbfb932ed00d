"""Input files, label handling and MLM masking."""
import json

import pytest
import torch

from plmkit.data import (DataError, build_char_vocab, encode_labels, iter_rows, label_index, mask_tokens,
                         read_examples)


def test_headerless_tsv_like_bert4keras_sentiment(tmp_path):
    p = tmp_path / "train.data"
    p.write_text("很好\t1\n太差了\t0\n\n一般般吧\t1\n", encoding="utf-8")
    ex = read_examples(p)
    assert ex.texts == ["很好", "太差了", "一般般吧"] and ex.labels == ["1", "0", "1"]
    assert ex.lines == [1, 2, 4]


def test_csv_with_header_and_pairs(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text('id,sentence1,sentence2,label\n1,"a, b",c,same\n2,d,e,diff\n', encoding="utf-8")
    ex = read_examples(p, text_col="sentence1", pair_col="sentence2")
    assert ex.texts == ["a, b", "d"] and ex.pairs == ["c", "e"] and ex.labels == ["same", "diff"]
    assert label_index(ex) == ["diff", "same"]


def test_jsonl(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text("\n".join(json.dumps({"text": t, "label": l}) for t, l in [("好", 2), ("坏", 10), ("中", 2)]))
    ex = read_examples(p)
    assert label_index(ex) == ["2", "10"]  # numeric names in numeric order
    assert encode_labels(ex, label_index(ex)) == [0, 1, 0]


def test_missing_label_column(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("text,score\nhello,1\n")
    with pytest.raises(DataError, match=r"x\.csv: line 1: header has no column 'label' \(found columns \['text', 'score'\]\)"):
        read_examples(p)
    j = tmp_path / "x.jsonl"
    j.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r"x\.jsonl: line 2: no field 'label'"):
        read_examples(j)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tsv"
    p.write_text("\n\n")
    with pytest.raises(DataError, match=r"empty\.tsv: no examples found"):
        read_examples(p)


def test_undecodable_bytes_name_line(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_bytes("好\t1\n".encode() + b"\xff\xfe bad\t0\n")
    with pytest.raises(DataError, match=r"bad\.tsv: line 2: bytes that are not UTF-8"):
        read_examples(p)


def test_unseen_label(tmp_path):
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    train.write_text("a\tpos\nb\tneg\n")
    test.write_text("c\tpos\nd\tneutral\n")
    names = label_index(read_examples(train))
    with pytest.raises(DataError, match=r"test\.tsv: line 2: label 'neutral' never appears in the training set"):
        encode_labels(read_examples(test), names)


def test_over_long_line_is_read_whole(tmp_path):
    p = tmp_path / "long.tsv"
    p.write_text("字" * 300_000 + "\t1\nb\t0\n")
    ex = read_examples(p)
    assert len(ex.texts[0]) == 300_000  # truncation happens at tokenization (max_length), not here


def test_char_vocab():
    vocab = build_char_vocab(["aab", "ba", "c"], min_count=2)
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocab[5:] == ["a", "b"]


def test_mask_tokens_rates_and_specials():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (400, 128), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    masked, labels = mask_tokens(ids, mask_id=4, vocab_size=1000, special=special, prob=0.15, generator=g)
    picked = labels != -100
    assert not picked[special].any()
    assert torch.equal(labels[picked], ids[picked])
    rate = picked.float().sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.005  # 50k non-special positions: sd of the rate ~0.0016
    frac_mask = (masked[picked] == 4).float().mean()
    frac_same = (masked[picked] == ids[picked]).float().mean()
    assert abs(frac_mask - 0.8) < 0.015 and abs(frac_same - 0.1 - 0.001) < 0.01  # random may hit the same id (1/995)
    assert torch.equal(masked[~picked], ids[~picked])


def test_whole_word_masking_masks_words_together():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (200, 12), generator=g)
    # words: [0], [1,2,3], [4,5], [6], [7,8,9,10], [11]  -> first-token positions
    word_ids = torch.tensor([0, 1, 1, 1, 4, 4, 6, 7, 7, 7, 7, 11]).expand(200, -1)
    special = torch.zeros_like(ids, dtype=torch.bool)
    _, labels = mask_tokens(ids, mask_id=4, vocab_size=100, special=special, prob=0.3, word_ids=word_ids, generator=g)
    picked = labels != -100
    for word in ([1, 2, 3], [4, 5], [7, 8, 9, 10]):
        cols = picked[:, word]
        assert torch.all(cols.all(1) | ~cols.any(1))  # all or nothing within each word
    assert picked.any()


@pytest.mark.parametrize("line, found", [
    ('{"text": "b", "label": null}', "found null"),
    ('{"text": "b", "label": ["x"]}', 'found list ["x"]'),
    ('{"text": "b", "label": {"name": "x"}}', 'found dict {"name": "x"}'),
])
def test_null_or_structured_label_is_an_error_naming_the_line(tmp_path, line, found):
    # Before issue 28 a null label was trained as a class named "None".
    p = tmp_path / "train.jsonl"
    p.write_text('{"text": "a", "label": "pos"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_examples(p)
    assert str(err.value) == (f"{p}: line 3: field 'label' must be a label (a string or a number), {found}")
    assert read_examples(p, label_col=None).texts == ["a", "b"]  # unlabelled reading does not look at it


def test_empty_label_is_an_error(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_text("好\t1\n坏\t \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.tsv: line 2: field 'label' is empty; every training example needs"):
        read_examples(p)
    j = tmp_path / "train.jsonl"
    j.write_text('{"text": "a", "label": ""}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl: line 1: field 'label' is empty"):
        read_examples(j)


def test_null_text_or_pair_is_an_error(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "a", "other": "c", "label": 1}\n{"text": null, "other": "d", "label": 0}\n')
    with pytest.raises(DataError, match=r"x\.jsonl: line 2: field 'text' must be a string, found null"):
        read_examples(p)
    p.write_text('{"text": "a", "other": true, "label": 1}\n')
    with pytest.raises(DataError, match=r"x\.jsonl: line 1: field 'other' must be a string, found bool true"):
        read_examples(p, pair_col="other")


def test_numbers_and_booleans_stay_usable_labels(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": 12, "label": true}\n{"text": "b", "label": false}\n{"text": "c", "label": 0}\n')
    ex = read_examples(p)
    assert ex.texts == ["12", "b", "c"] and ex.labels == ["True", "False", "0"]


def test_text_format_reads_lines(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_bytes("第一行\r\n\n  \ntext\n最后".encode())
    assert list(iter_rows(p, "text")) == [(1, ["第一行"]), (4, ["text"]), (5, ["最后"])]
    assert read_examples(p, fmt="text", label_col=None).texts == ["第一行", "text", "最后"]  # "text" is no header
    p.write_bytes(b"ok\n\xff\xfe bad\n")
    with pytest.raises(DataError, match=r"corpus\.txt: line 2: bytes that are not UTF-8 at byte offset 3"):
        list(iter_rows(p, "text"))
    with pytest.raises(ValueError, match="fmt must be"):
        list(iter_rows(p, "xml"))


def test_jsonl_rows_may_hold_raw_line_separators(tmp_path):
    """U+2028 / U+0085 are legal raw inside JSON strings; a row holding them is one row, and line
    numbers count "\\n" as `wc -l` does."""
    from plmkit.data import read_examples

    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a\u2028b", "label": "1"}\r\n{"text": "c\u0085d", "label": "0"}\n'
                    '{"text": "e", "label": null}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3"):
        read_examples(path)
    path.write_text('{"text": "a\u2028b", "label": "1"}\r\n{"text": "c\u0085d", "label": "0"}\n', encoding="utf-8")
    data = read_examples(path)
    assert data.texts == ["a\u2028b", "c\u0085d"] and data.labels == ["1", "0"]
