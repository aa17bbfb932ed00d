"""plmkit seq2seq / generate: the UniLM and encoder-decoder losses against hand computation and transformers,
the recipe end to end with its defaults (UniLM on the embedded model, a T5 PEGASUS-style T5), and bad input."""
import json

import pytest
import torch

import plmkit
from plmkit.cli import main
from plmkit.data import DataError
from plmkit.models import build_model, get_family
from plmkit.recipes.seq2seq import Pairs, Seq2SeqConfig, Seq2SeqGenerator, generate_file, seq2seq, seq2seq_loss
from plmkit.tokenizers import WordPieceTokenizer
from plmkit.zoo import embedded_model_dir

DIGITS = "零一二三四五六七八九"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *DIGITS, "十", "百"]
ID = {t: i for i, t in enumerate(VOCAB)}


def _unilm_model():
    torch.manual_seed(0)
    cfg = get_family("bert").tiny().replace(vocab_size=len(VOCAB), dropout=0.0, attention_dropout=0.0)
    return build_model(cfg, with_mlm=True, application="unilm").eval()


def test_unilm_batches_are_laid_out_as_bert4keras_does():
    pairs = Pairs(WordPieceTokenizer(VOCAB), "unilm", 8, 6, None, 0)
    batch = pairs([("一二三", "三二一"), ("四五六七八九", "九")])
    c, s = ID["[CLS]"], ID["[SEP]"]
    assert batch["input_ids"][0].tolist() == [c, ID["一"], ID["二"], ID["三"], s, ID["三"], ID["二"], ID["一"], s, 0]
    assert batch["input_ids"][1].tolist() == [c, *[ID[x] for x in "四五六七八九"], s, ID["九"], s]
    assert batch["token_type_ids"].tolist() == [[0] * 5 + [1] * 4 + [0], [0] * 8 + [1] * 2]  # row 0 padded
    assert batch["attention_mask"].tolist() == [[1] * 9 + [0], [1] * 10]


def test_unilm_loss_is_the_next_token_cross_entropy_on_segment_one_only():
    model = _unilm_model()
    pairs = Pairs(WordPieceTokenizer(VOCAB), "unilm", 8, 6, None, 0)
    batch = pairs([("一二三", "三二一"), ("四五六七八九", "九")])
    loss, count = seq2seq_loss(model, batch)
    with torch.no_grad():
        logits = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                       attention_mask=batch["attention_mask"]).logits
    # by hand: position t predicts token t+1 wherever token t+1 is a real segment-1 token
    # row 0: targets 三 二 一 [SEP] at positions 5..8, predicted from 4..7; row 1: 九 [SEP] at 8, 9
    hand = 0.0
    for b, positions in ((0, range(4, 8)), (1, range(7, 9))):
        for t in positions:
            hand -= logits[b, t].log_softmax(-1)[batch["input_ids"][b, t + 1]].item()
    assert count.item() == 6
    assert loss.item() == pytest.approx(hand, rel=1e-5)
    # segment 1 is causal: changing the last target token moves no logit before it; the source sees both ways
    changed = batch["input_ids"].clone()
    changed[0, 7] = ID["九"]
    with torch.no_grad():
        again = model(changed, token_type_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(again[0, :7], logits[0, :7], atol=1e-6) and not torch.allclose(again[0, 7], logits[0, 7])


class _SpStandIn:
    """A SentencePiece-like template (no start token, "</s>" = 1 last), characters as ids."""

    start_token, end_token = None, "</s>"

    def token_to_id(self, token):
        return 1

    def encode(self, text, maxlen=None):
        ids = [3 + DIGITS.index(c) for c in text]
        ids = ids[:maxlen - 1] if maxlen else ids
        return ids + [1], [0] * (len(ids) + 1)


def test_t5_loss_and_gradient_equal_transformers_on_the_same_batch(tmp_path):
    transformers = pytest.importorskip("transformers")
    family = get_family("t5.1.1")
    torch.manual_seed(0)
    model = family.build(family.tiny()).eval()
    plmkit.save_pretrained(model, tmp_path)
    theirs = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    pairs = Pairs(_SpStandIn(), "encoder-decoder", 10, 8, model.config.decoder_start_token_id, 0)
    batch = pairs([("一二三四", "四三二一"), ("五六", "六五五六六")])
    assert batch["decoder_input_ids"][0].tolist()[:5] == [0, 7, 6, 5, 4]  # start, then the target
    assert batch["labels"][0].tolist() == [7, 6, 5, 4, 1, -100]  # the target, then the end
    loss, count = seq2seq_loss(model, batch)
    (loss / count).backward()
    ref = theirs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    ref.backward()
    assert (loss / count).item() == pytest.approx(ref.item(), rel=1e-5)
    ours_grad = model.embeddings.token.weight.grad
    assert torch.allclose(ours_grad, theirs.shared.weight.grad, atol=1e-6)


def _write(path, rows, fmt="jsonl"):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text("source\ttarget\n" + "".join(f"{r['source']}\t{r['target']}\n" for r in rows),
                        encoding="utf-8")
    return path


def _reverse_task(n, seed):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        k = int(torch.randint(2, 5, (1,), generator=g))
        s = "".join(DIGITS[int(i)] for i in torch.randint(0, 10, (k,), generator=g))
        rows.append({"source": s, "target": s[::-1]})
    return rows


def test_unilm_recipe_end_to_end_with_its_defaults_and_generate(tmp_path):
    """UniLM on the embedded model, every option at its default: the run writes the model, settings, curves and
    scores, and `plmkit generate` reads the directory back."""
    train = _write(tmp_path / "train.jsonl", _reverse_task(48, 0))
    valid = _write(tmp_path / "valid.tsv", _reverse_task(12, 1), fmt="tsv")
    report = seq2seq(embedded_model_dir(), train, valid, tmp_path / "out", progress=False)
    out = tmp_path / "out"
    assert report["mode"] == "unilm" and (out / "model" / "seq2seq.json").exists() and (out / "curves.png").exists()
    assert not (out / "checkpoint.pt").exists() and not (tmp_path / "out.partial").exists()
    for key in ("rouge-l", "bleu", "exact_match", "char_f1", "unfinished", "distinct-1"):
        assert 0 <= report["valid"][key] <= 1, key
    results = json.loads((out / "results.json").read_text())
    assert results["valid"] == report["valid"]
    # generate: one output per row, blank lines kept, scored against the file's targets
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"source": "一二", "target": "二一"}\n\n{"source": "三四五", "target": "五四三"}\n', encoding="utf-8")
    assert main(["generate", "--model", str(out), "--input", str(inputs), "--out", str(tmp_path / "g.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "g.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [x["source"] for x in lines] == ["一二", "", "三四五"] and lines[1]["output"] is None
    again = Seq2SeqGenerator(out).generate(["一二", "三四五"])
    assert [lines[0]["output"], lines[2]["output"]] == again  # the file and the Python call agree
    # plmkit predict on a seq2seq directory generates too, reading the columns it was trained on
    assert main(["predict", "--model", str(out), "--input", str(inputs), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert (tmp_path / "p.jsonl").read_text(encoding="utf-8") == (tmp_path / "g.jsonl").read_text(encoding="utf-8")
    # a length constraint through allowed_tokens: as many characters as the source, then the end token
    gen = Seq2SeqGenerator(out)
    sources = ["一二", "三四五六", "七"]
    digits = [gen.tokenizer.token_to_id(d) for d in DIGITS]

    def same_length(i, ids):
        return [gen.pairs.end] if len(ids) >= len(sources[i]) else digits

    fixed = gen.generate(sources, allowed_tokens=same_length)
    assert [len(t.replace(" ", "")) for t in fixed] == [2, 4, 1] and all(set(t) <= set(DIGITS + " ") for t in fixed)


def test_t5_pegasus_style_recipe_and_command_with_defaults(tmp_path):
    """An encoder-decoder with a BERT vocabulary (as T5 PEGASUS ships): [CLS] starts the decoder, [SEP] ends it."""
    family = get_family("mt5.1.1")
    torch.manual_seed(0)
    model = family.build(family.tiny().replace(vocab_size=len(VOCAB))).eval()
    tokenizer = WordPieceTokenizer(VOCAB)
    plmkit.save_pretrained(model, tmp_path / "t5", tokenizer=tokenizer)
    train = _write(tmp_path / "train.jsonl", _reverse_task(32, 0))
    valid = _write(tmp_path / "valid.jsonl", _reverse_task(8, 1))
    assert main(["seq2seq", "--model", str(tmp_path / "t5"), "--train", str(train), "--valid", str(valid),
                 "--test", str(valid), "--out", str(tmp_path / "out")]) == 0
    settings = json.loads((tmp_path / "out" / "model" / "seq2seq.json").read_text())
    assert settings["mode"] == "encoder-decoder" and settings["generation"]["num_beams"] == 4
    gen = Seq2SeqGenerator(tmp_path / "out")
    assert gen.pairs.decoder_start == ID["[CLS]"] and gen.pairs.end == ID["[SEP]"]
    result = generate_file(tmp_path / "out", valid, tmp_path / "g.jsonl")
    assert result["outputs"] == 8 and set(result["scores"]) >= {"rouge-l", "bleu", "exact_match"}


# ---- bad input: a clear error, nothing written ----------------------------------------------------------------

def test_bad_inputs_fail_before_anything_is_written(tmp_path):
    rows = _reverse_task(4, 0)
    good = _write(tmp_path / "good.jsonl", rows)
    empty = _write(tmp_path / "empty.jsonl", rows[:2] + [{"source": "一二", "target": " "}])
    with pytest.raises(DataError, match=r"empty\.jsonl: line 3: field 'target' is empty"):
        seq2seq(embedded_model_dir(), empty, good, tmp_path / "o1", progress=False)
    with pytest.raises(DataError, match=r"good\.jsonl: line 1: no field 'summary'"):
        seq2seq(embedded_model_dir(), good, good, tmp_path / "o2", cfg=Seq2SeqConfig(target_col="summary"))
    with pytest.raises(ValueError, match="positions the model has learned; UniLM puts both in one sequence"):
        seq2seq(embedded_model_dir(), good, good, tmp_path / "o3", cfg=Seq2SeqConfig(max_source_length=250))
    gpt = get_family("gpt2")
    plmkit.save_pretrained(gpt.build(gpt.tiny()), tmp_path / "gpt")
    with pytest.raises(ValueError, match="decoder-only language model; seq2seq needs an encoder-decoder"):
        seq2seq(tmp_path / "gpt", good, good, tmp_path / "o4")
    electra = get_family("electra")
    plmkit.save_pretrained(electra.build(electra.tiny(), with_rtd=True), tmp_path / "electra",
                           tokenizer=WordPieceTokenizer(VOCAB))
    with pytest.raises(ValueError, match="UniLM generates with the MLM head"):
        seq2seq(tmp_path / "electra", good, good, tmp_path / "o5")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("o")) == []
    with pytest.raises(ValueError, match="monitor: expected one of rouge-l"):
        Seq2SeqConfig(monitor="accuracy")
