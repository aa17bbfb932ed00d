"""The pretraining recipe: corpus parsing, packing, a tiny run that exports a loadable MLM model."""
import json

import torch

import plmkit
from plmkit.recipes.pretrain import PretrainConfig, char_tokenizer, line_words, pack, pretrain


def test_pos_tagged_lines_keep_their_words():
    assert line_words("迈向/v  充满/v  希望/n  的/u  新/a  世纪/n") == ["迈向", "充满", "希望", "的", "新", "世纪"]
    assert line_words("今天 天气") == ["今", "天", "天", "气"]  # plain text without a segmenter: characters


def test_pack_marks_word_starts():
    tok = char_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "迈", "向", "的", "新"])
    (ids, word), = pack([["迈向", "的", "新"]], tok, max_length=16)
    assert tok.ids_to_tokens(ids) == ["[CLS]", "迈", "向", "的", "新", "[SEP]"]
    assert word == [0, 1, 1, 3, 4, 5]  # each token points at the first token of its word


def test_tiny_run_exports_a_model_that_loads_and_resumes(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["今天/t  天气/n  很/d  好/a", "我们/r  去/v  公园/n  散步/v"] * 40), encoding="utf-8")
    cfg = PretrainConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24, max_position=32,
                         max_length=16, vocab_min_count=1, batch_size=8, steps=4, stop_after=2, precision="fp32")
    model_dir = pretrain([corpus], tmp_path / "out", cfg, progress=False)
    about = json.loads((model_dir / "pretrain.json").read_text())
    assert about["steps"] == 2 and about["lines"] == 80
    cfg.stop_after = 0  # the same command without the stop resumes and runs the whole schedule
    model_dir = pretrain([corpus], tmp_path / "out", cfg, progress=False)
    assert json.loads((model_dir / "pretrain.json").read_text())["steps"] == 4
    model = plmkit.from_pretrained(model_dir, with_mlm=True)
    tok = plmkit.load_tokenizer(model_dir)
    batch = tok(["今天天气很好"])
    assert model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits.shape == (1, 8, tok.vocab_size)
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())  # stored fp16, loaded fp32


def test_whole_word_switch_masks_words_or_single_characters():
    from plmkit.recipes.pretrain import MLMBatches

    tok = char_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("一二三四五六七八"))
    ids = [2] + [5 + i % 8 for i in range(60)] + [3]
    word = [0] + [1] * 60 + [61]  # one word of 60 characters
    torch.manual_seed(0)
    counts = {}
    for whole in (True, False):
        picked = [int((MLMBatches(tok, 0.5, whole)([(ids, word)])["labels"] != -100).sum()) for _ in range(20)]
        counts[whole] = picked
    assert set(counts[True]) <= {0, 60} and 60 in counts[True]  # the word is masked all or nothing
    assert all(0 < c < 60 for c in counts[False])  # characters are drawn one by one
