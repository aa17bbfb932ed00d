"""MASS and PEGASUS pretraining objectives: hand-checked masks, seeded spans, and tiny end-to-end runs."""
import random

import pytest
import torch

from plmkit.data import DataError
from plmkit.recipes.pretrain import MassBatches, PretrainConfig, char_tokenizer, mass_example, pretrain
from plmkit.recipes.seq2seq import model_mode

M = 99  # [MASK] in the hand-made examples


def test_mass_example_is_figure_one_of_the_paper():
    # MASS Figure 1: x1..x8, span x3..x6 (start 2, length 4): encoder x1 x2 _ _ _ _ x7 x8; the decoder reads
    # _ x3 x4 x5 at the span's positions and predicts x3 x4 x5 x6; every other decoder position is [MASK]
    body = [10, 11, 12, 13, 14, 15, 16, 17]
    encoder, decoder, labels = mass_example(body, 2, 4, M)
    assert encoder == [10, 11, M, M, M, M, 16, 17]
    assert decoder == [M, M, M, 12, 13, 14]
    assert labels == [-100, -100, 12, 13, 14, 15]


def test_mass_example_edges():
    assert mass_example([5, 6, 7], 0, 2, M) == ([M, M, 7], [M, 5], [5, 6])  # span at the start
    assert mass_example([5, 6, 7], 2, 1, M) == ([5, 6, M], [M, M, M], [-100, -100, 7])  # one token at the end
    with pytest.raises(ValueError, match="does not fit"):
        mass_example([5, 6, 7], 2, 2, M)


def _tokenizer():
    return char_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("甲乙丙丁戊己庚辛壬癸子丑"))


def test_seeded_spans_match_a_hand_computation():
    tok = _tokenizer()
    cls, sep, mask = (tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
    rows = [[cls] + list(range(5, 5 + n)) + [sep] for n in (8, 5, 1)]
    batches = MassBatches(tok, 0.5, random.Random(7), pad=0)
    batch = batches([(r, []) for r in rows])
    # the same draws by hand: lengths round(8/2) = 4, round(5/2) = 2 (round half to even), max(1, round(0.5)) = 1;
    # starts uniform over the places the span fits
    replay = random.Random(7)
    starts = [replay.randrange(8 - 4 + 1), replay.randrange(5 - 2 + 1), replay.randrange(1)]
    for b, (n, length, start) in enumerate(zip((8, 5, 1), (4, 2, 1), starts)):
        enc = batch["input_ids"][b, 1:n + 1].tolist()
        masked = [t for t, v in enumerate(enc) if v == mask]
        assert masked == list(range(start, start + length))
        assert batch["input_ids"][b, 0] == cls and batch["input_ids"][b, n + 1] == sep
        end = start + length
        assert batch["decoder_input_ids"][b, :end].tolist() == [5 + t - 1 if start < t < end else mask
                                                                 for t in range(end)]
        assert batch["labels"][b, :end].tolist() == [5 + t if t >= start else -100 for t in range(end)]
        assert (batch["labels"][b, end:] == -100).all() and batch["decoder_attention_mask"][b, :end].all()
        assert not batch["decoder_attention_mask"][b, end:].any()


def test_mass_needs_a_mask_token():
    from plmkit.tokenizers import WordPieceTokenizer

    with pytest.raises(ValueError, match=r"\[MASK\]"):
        MassBatches(WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "甲"]), 0.5, random.Random(0))


def test_encoder_decoder_objectives_need_an_encoder_decoder():
    with pytest.raises(ValueError, match="family"):
        PretrainConfig(objective="pegasus")  # family bert, no init
    with pytest.raises(ValueError, match="objective"):
        PretrainConfig(objective="bart", family="t5.1.1")


TINY = dict(family="t5.1.1", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, steps=2, batch_size=2,
            vocab_min_count=1, max_length=32, max_target_length=16, precision="fp32", device="cpu")


@pytest.mark.parametrize("objective", ["pegasus", "mass"])
def test_tiny_runs_write_a_seq2seq_model(tmp_path, objective):
    corpus = tmp_path / "c.txt"
    # POS-tagged lines (word/tag) keep their own segmentation: no jieba dictionary to load
    corpus.write_text("春天/n 来/v 了/u 。/w 花/n 开/v 了/u 。/w 鸟/n 叫/v 了/u 。/w\n"
                      "今天/t 下雨/v 。/w 明天/t 晴天/n 。/w 后天/t 刮风/v 。/w\n一二三四五/m 。/w 六七八九十/m 。/w\n",
                      encoding="utf-8")
    model_dir = pretrain([corpus], tmp_path / objective, PretrainConfig(objective=objective, **TINY), progress=False)
    assert model_mode(model_dir) == "encoder-decoder"


def test_pegasus_on_one_sentence_documents_fails_clearly(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("只有/d 一/m 句/q 话/n 。/w\n也是/v 一句/m\n", encoding="utf-8")
    with pytest.raises(DataError, match="0 pseudo-summary pairs"):
        pretrain([corpus], tmp_path / "o", PretrainConfig(objective="pegasus", **TINY), progress=False)
    assert not (tmp_path / "o").exists()
