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


def test_masked_position_loss_equals_the_full_logits_loss():
    # The head runs on the masked positions only; the loss must be the cross-entropy of the full
    # (B, T, V) logits over the positions whose label is not -100.
    from plmkit.recipes.pretrain import MLMBatches, masked_positions, mlm_loss

    labels = torch.tensor([[-100, 7, -100, 9], [-100, -100, -100, -100], [5, -100, 6, 8]])
    positions, targets = masked_positions(labels)
    assert positions.tolist() == [[1, 3, 0], [0, 0, 0], [0, 2, 3]]
    assert targets.tolist() == [[7, 9, -100], [-100, -100, -100], [5, 6, 8]]

    tok = char_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("一二三四五六七八九十"))
    items = [pack([list("一二三四五六七八九十" * 2)], tok, 24)[0], pack([list("三四五")], tok, 24)[0]]
    torch.manual_seed(1)
    batch = MLMBatches(tok, 0.3, whole_word=False)(items)
    config = plmkit.ModelConfig(family="bert", vocab_size=tok.vocab_size, hidden_size=16, num_layers=1,
                                num_heads=2, intermediate_size=24, max_position=32)
    model = plmkit.build_model(config, with_mlm=True).eval()
    loss, count = mlm_loss(model, batch)
    full = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(full.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100,
                                                 reduction="sum")
    assert count == (batch["labels"] != -100).sum() > 0
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_init_continues_from_a_model_with_its_vocabulary(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["今天/t  天气/n  很/d  好/a", "我们/r  去/v  公园/n  散步/v"] * 40), encoding="utf-8")
    base = pretrain([corpus], tmp_path / "base", PretrainConfig(
        hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24, max_position=32, max_length=16,
        vocab_min_count=1, batch_size=8, steps=2, precision="fp32"), progress=False)
    other = tmp_path / "other.txt"  # new characters are not added: the base vocabulary is kept
    other.write_text("\n".join(["明天下雨了"] * 80), encoding="utf-8")
    cont = pretrain([other], tmp_path / "cont", PretrainConfig(init=str(base), max_length=16, batch_size=8,
                                                               steps=2, lr=1e-12, precision="fp32"), progress=False)
    assert (cont / "vocab.txt").read_text() == (base / "vocab.txt").read_text()
    recorded = json.loads((cont / "pretrain.json").read_text(encoding="utf-8"))["config"]
    assert (recorded["hidden_size"], recorded["num_layers"], recorded["intermediate_size"]) == (16, 1, 24)
    assert "vocab_min_count" not in recorded  # the vocabulary came from the init model
    a, b = plmkit.from_pretrained(base, with_mlm=True), plmkit.from_pretrained(cont, with_mlm=True)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):  # a vanishing lr: the weights are kept
        torch.testing.assert_close(x, y, msg=name)


def test_set_dropout_zero_makes_training_mode_match_eval_mode():
    from plmkit.training import set_dropout

    config = plmkit.ModelConfig(family="bert", vocab_size=30, hidden_size=16, num_layers=2, num_heads=2,
                                intermediate_size=24, max_position=32, dropout=0.3, attention_dropout=0.3)
    model = plmkit.build_model(config, with_mlm=True)
    ids = torch.randint(5, 30, (2, 12))
    expected = model.eval()(ids).logits
    model.train()
    assert not torch.allclose(model(ids).logits, expected)  # dropout 0.3 is on
    set_dropout(model, 0.0)
    torch.testing.assert_close(model(ids).logits, expected)
    assert model.config.dropout == 0.3 and model.config.attention_dropout == 0.3  # the config is left alone


def test_stack_layers_repeats_the_top_layers_as_transformers_computes_them(tmp_path):
    """The oracle: transformers' own BertForMaskedLM of the shallow model, its layer modules
    repeated in the stacking order, must compute what the grown plmkit model computes."""
    import copy

    import pytest

    from plmkit.recipes.pretrain import stack_layers

    transformers = pytest.importorskip("transformers")
    config = plmkit.ModelConfig(family="bert", vocab_size=40, hidden_size=16, num_layers=3, num_heads=2,
                                intermediate_size=24, max_position=32, type_vocab_size=2)
    torch.manual_seed(0)
    shallow = plmkit.build_model(config, with_mlm=True, with_pool=True).eval()
    plmkit.save_pretrained(shallow, tmp_path)
    ids = torch.randint(5, 40, (2, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    for grow, order in ((6, [0, 1, 2, 0, 1, 2]), (5, [0, 1, 2, 1, 2]), (4, [0, 1, 2, 2])):
        hf = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
        hf.bert.encoder.layer = torch.nn.ModuleList(copy.deepcopy(hf.bert.encoder.layer[i]) for i in order)
        deep = stack_layers(shallow, grow)
        assert deep.config.num_layers == grow and shallow.config.num_layers == 3
        with torch.no_grad():
            torch.testing.assert_close(deep(ids, attention_mask=mask).logits[mask.bool()],
                                       hf(ids, attention_mask=mask).logits[mask.bool()], atol=1e-5, rtol=1e-5)
    deep.blocks[3].ffn_norm.weight.data.add_(1.0)  # copies, not shared tensors
    assert not torch.equal(deep.blocks[3].ffn_norm.weight, shallow.blocks[2].ffn_norm.weight)
    for bad in (3, 7):
        with pytest.raises(ValueError, match=f"grow_layers {bad}: expected more than the model's 3 layers"):
            stack_layers(shallow, bad)
    with pytest.raises(ValueError, match="grow_layers needs init"):
        pretrain([tmp_path / "none.txt"], tmp_path / "x", PretrainConfig(grow_layers=4), progress=False)


def test_tiny_run_with_the_default_precision_records_it(tmp_path):
    from plmkit.hardware import resolve_precision

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["今天/t  天气/n  很/d  好/a", "我们/r  去/v  公园/n  散步/v"] * 40), encoding="utf-8")
    cfg = PretrainConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24, max_position=32,
                         max_length=16, vocab_min_count=1, batch_size=8, steps=3)
    model_dir = pretrain([corpus], tmp_path / "out", cfg, progress=False)
    about = json.loads((model_dir / "pretrain.json").read_text())
    assert about["steps"] == 3 and about["precision"] == resolve_precision("auto") and about["device"] == "cpu"
    assert plmkit.from_pretrained(model_dir, with_mlm=True).config.vocab_size == plmkit.load_tokenizer(model_dir).vocab_size


def test_resuming_with_another_corpus_is_refused(tmp_path):
    """A killed run's directory resumes only with the corpus and settings it started with (issue 28)."""
    import pytest

    from plmkit.training.checkpoint import ResumeError

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["今天/t  天气/n  很/d  好/a", "我们/r  去/v  公园/n  散步/v"] * 40), encoding="utf-8")
    cfg = PretrainConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24, max_position=32,
                         max_length=16, vocab_min_count=1, batch_size=8, steps=4, stop_after=2, precision="fp32")
    pretrain([corpus], tmp_path / "out", cfg, progress=False)
    checkpoint = (tmp_path / "out" / "run" / "checkpoint.pt").read_bytes()
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text(encoding="utf-8").replace("公园", "学校"), encoding="utf-8")
    with pytest.raises(ResumeError, match="corpus") as err:
        pretrain([other], tmp_path / "out", cfg, progress=False)
    assert "--restart" in str(err.value)
    assert (tmp_path / "out" / "run" / "checkpoint.pt").read_bytes() == checkpoint  # nothing was touched
    cfg.stop_after = 0
    model_dir = pretrain([corpus], tmp_path / "out", cfg, progress=False)  # the same command still resumes
    assert json.loads((model_dir / "pretrain.json").read_text())["steps"] == 4
    model_dir = pretrain([other], tmp_path / "out", cfg, progress=False, resume=False)  # --restart: allowed
    assert json.loads((model_dir / "pretrain.json").read_text())["steps"] == 4
