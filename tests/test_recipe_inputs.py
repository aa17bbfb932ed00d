"""Recipe inputs checked before anything is written: config fields, corpora, blank lines in predict."""
import json

import pytest

import plmkit
from plmkit.config import ModelConfig
from plmkit.data import DataError, build_char_vocab
from plmkit.models import build_model
from plmkit.recipes.finetune import FinetuneConfig, finetune, predict_file
from plmkit.recipes.pretrain import PretrainConfig, pretrain
from plmkit.tokenizers import WordPieceTokenizer


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("lr", 0.0), ("lr", -1e-4),
                                          ("max_length", 2), ("warmup", 1.5), ("patience", 0), ("ema", 1.0),
                                          ("dropout", 1.0), ("train_seconds", 0.0), ("precision", "fp16"),
                                          ("epochs", 2.5), ("text_col", "")])
def test_finetune_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}: expected"):
        FinetuneConfig(**{field: value})


def test_finetune_config_max_length_leaves_room_for_both_texts_of_a_pair():
    FinetuneConfig(max_length=3)  # [CLS] x [SEP]
    with pytest.raises(ValueError, match="max_length: expected >= 5"):
        FinetuneConfig(max_length=4, pair_col="pair")


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", 0), ("mask_prob", 0.0), ("lr", 0.0),
                                          ("max_length", 300), ("grow_layers", 4)])
def test_pretrain_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        PretrainConfig(**{field: value})


def _tiny(tmp_path, max_position=16):
    vocab = build_char_vocab(["好差这个东西"], min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=16, num_layers=1, num_heads=2,
                      intermediate_size=24, max_position=max_position)
    plmkit.save_pretrained(build_model(cfg, with_pool=True), tmp_path / "base", tokenizer=WordPieceTokenizer(vocab))
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\n" + "这个好\t1\n这个差\t0\n" * 4, encoding="utf-8")
    return tmp_path / "base", train


def test_a_row_longer_than_the_model_s_positions_is_named_before_any_output(tmp_path):
    base, train = _tiny(tmp_path)
    valid = tmp_path / "valid.tsv"
    valid.write_text("text\tlabel\n这个好\t1\n" + "这" * 40 + "差\t0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"valid.tsv: line 3: 18 tokens, more than the 16 positions"):
        finetune(base, train, valid, tmp_path / "out", cfg=FinetuneConfig(max_length=18, precision="fp32"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_predict_keeps_blank_lines_as_empty_records(tmp_path):
    base, train = _tiny(tmp_path)
    finetune(base, train, train, tmp_path / "clf", cfg=FinetuneConfig(epochs=1, batch_size=4, precision="fp32"),
             progress=False)
    rows = ["这个好", "", "这个差", "   ", "", "东西"]  # blank lines between rows (whitespace-only is blank too)
    (tmp_path / "in.txt").write_text("text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = predict_file(tmp_path / "clf", tmp_path / "in.txt", tmp_path / "out.jsonl")
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(out) == len(rows) and result["predictions"] == 3 and result["blank"] == 3
    for row, record in zip(rows, out):
        if row.strip():
            assert record["text"] == row and record["label"] in ("0", "1") and set(record["probs"]) == {"0", "1"}
        else:
            assert record == {"text": "", "label": None, "probs": None}
    # a CSV record spanning two lines (a quoted line break) is one row, not a blank line
    (tmp_path / "in.csv").write_text('text\n"这个\n好"\n\n这个差\n', encoding="utf-8")
    predict_file(tmp_path / "clf", tmp_path / "in.csv", tmp_path / "csv.jsonl")
    out = [json.loads(line) for line in (tmp_path / "csv.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in out] == ["这个\n好", "", "这个差"] and out[1]["label"] is None


def test_pretrain_with_too_little_text_writes_nothing(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("今天天气很好\n", encoding="utf-8")
    cfg = PretrainConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24, max_position=32,
                         max_length=16, vocab_min_count=1, batch_size=8, steps=2, precision="fp32")
    with pytest.raises(DataError, match="fewer than one batch"):
        pretrain([corpus], tmp_path / "out", cfg, progress=False)
    assert not (tmp_path / "out").exists()
