"""The fine-tuning recipe end to end on a tiny model: output directory, predict, bad input."""
import json
import math
import random

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import plmkit
from plmkit.cli import main as cli
from plmkit.config import ModelConfig
from plmkit.data import DataError, build_char_vocab
from plmkit.models import build_model
from plmkit.recipes.finetune import FinetuneConfig, TextClassifier, finetune, predict_file
from plmkit.tokenizers import WordPieceTokenizer

POS, NEG = "好棒赞喜欢满意", "差烂坏讨厌失望"
FILLER = "这个东西我们他们的了是在有"


def _text(rng, label):
    chars = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
    chars.insert(rng.randrange(len(chars) + 1), rng.choice(POS if label == "1" else NEG))
    return "".join(chars)


@pytest.fixture
def setup(tmp_path):
    rng = random.Random(0)
    files = {}
    for split, n in (("train", 240), ("valid", 40), ("test", 40)):
        rows = [(_text(rng, l), l) for l in (rng.choice("01") for _ in range(n))]
        files[split] = tmp_path / f"{split}.tsv"
        files[split].write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows), encoding="utf-8")
    vocab = build_char_vocab([POS + NEG + FILLER], min_count=1)
    tok = WordPieceTokenizer(vocab)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=48, max_position=64)
    plmkit.save_pretrained(build_model(cfg, with_mlm=True, with_pool=True), tmp_path / "base", tokenizer=tok)
    return tmp_path, files


def test_finetune_learns_saves_and_predict_reproduces(setup):
    tmp, files = setup
    cfg = FinetuneConfig(epochs=6, batch_size=16, lr=3e-3, precision="fp32", patience=6)
    report = finetune(tmp / "base", files["train"], files["valid"], tmp / "out", test=files["test"], cfg=cfg,
                      progress=False)
    assert report["test_accuracy"] >= 0.9  # the label is one keyword: learnable in a few epochs
    out = tmp / "out"
    assert not (tmp / "out.partial").exists()
    for name in ("model/config.json", "model/model.safetensors", "model/vocab.txt", "results.json",
                 "metrics.jsonl"):
        assert (out / name).exists(), name
    assert json.loads((out / "results.json").read_text())["labels"] == ["0", "1"]
    assert not (out / "checkpoint.pt").exists() and not (out / "best.pt").exists()  # only the result is kept
    # predict on the saved model reproduces the accuracy finetune reported
    res = predict_file(out, files["test"], tmp / "pred.jsonl")
    assert res["accuracy"] == pytest.approx(report["test_accuracy"])
    lines = [json.loads(l) for l in (tmp / "pred.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 40 and set(lines[0]["probs"]) == {"0", "1"}
    # the CLI gives the same
    assert cli(["predict", "--model", str(out), "--input", str(files["test"]), "--out", str(tmp / "p2.jsonl")]) == 0
    assert (tmp / "p2.jsonl").read_text() == (tmp / "pred.jsonl").read_text()
    # and transformers reads the saved classifier to the same probabilities
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertForSequenceClassification.from_pretrained(out / "model").eval()
    clf = TextClassifier(out)
    batch = clf.tokenizer(["好这个", "差他们的"])
    with torch.no_grad():
        ref = hf(**batch).logits.softmax(-1)
    ours = torch.tensor([p for _, p in clf.predict(["好这个", "差他们的"])])
    assert (ref - ours).abs().max() <= 1e-5


def test_unseen_test_label_leaves_no_output(setup):
    tmp, files = setup
    files["test"].write_text(files["test"].read_text(encoding="utf-8") + "好的\tneutral\n", encoding="utf-8")
    with pytest.raises(DataError, match="label 'neutral' never appears in the training set"):
        finetune(tmp / "base", files["train"], files["valid"], tmp / "out", test=files["test"], progress=False)
    assert not (tmp / "out").exists() and not (tmp / "out.partial").exists()


def test_cli_reports_missing_label_column(setup, capsys):
    tmp, files = setup
    bad = tmp / "bad.csv"
    bad.write_text("sentence,label\nx,1\n")
    code = cli(["finetune", "--model", str(tmp / "base"), "--train", str(bad), "--valid", str(files["valid"]),
                "--out", str(tmp / "o")])
    assert code == 2
    assert "bad.csv: line 1: header has no column 'text'" in capsys.readouterr().err
    assert not (tmp / "o").exists() and not (tmp / "o.partial").exists()


def test_ema_saves_the_moving_average_of_the_trajectory(setup, monkeypatch):
    """With --ema the saved weights are decay-weighted averages of the weights after every optimizer step,
    recomputed here from the trajectory with the textbook formula."""
    import plmkit.recipes.finetune as ft

    tmp, files = setup
    decay, seen = 0.9, {}
    original = ft.from_pretrained

    def capture(*args, **kwargs):
        model = seen["model"] = original(*args, **kwargs)
        seen["shadow"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return model

    def after_step(optimizer, args, kwargs):
        for n, p in seen["model"].named_parameters():
            seen["shadow"][n] = decay * seen["shadow"][n] + (1 - decay) * p.detach()
        seen["steps"] = seen.get("steps", 0) + 1
        seen["last"] = {n: p.detach().clone() for n, p in seen["model"].named_parameters()}

    monkeypatch.setattr(ft, "from_pretrained", capture)
    handle = register_optimizer_step_post_hook(after_step)
    try:
        cfg = FinetuneConfig(epochs=1, batch_size=16, lr=3e-3, precision="fp32", ema=decay)
        finetune(tmp / "base", files["train"], files["valid"], tmp / "out", cfg=cfg, progress=False)
    finally:
        handle.remove()
    assert seen["steps"] == 15  # 240 rows / 16
    saved = plmkit.from_pretrained(tmp / "out" / "model").state_dict()
    raw = seen["last"]
    for name, shadow in seen["shadow"].items():
        assert torch.allclose(saved[name], shadow, atol=1e-6), name
    moved = [n for n in seen["shadow"] if not torch.allclose(raw[n], seen["shadow"][n], atol=1e-4)]
    assert moved  # the average is not the last weights


class _Noisy(torch.nn.Module):
    """Label logits drawn afresh for every row on every call (like dropout, but recorded): the test can
    recompute R-Drop from what the model actually returned, however the loss batches its passes."""

    def __init__(self):
        super().__init__()
        self.seen = []  # (input row, logits row)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        logits = torch.randn(input_ids.shape[0], 3, requires_grad=True)
        self.seen += list(zip(input_ids, logits.detach()))
        return type("Out", (), {"label_logits": logits})()


def test_rdrop_loss_is_the_papers_formula_on_the_two_passes():
    """(CE1 + CE2) / 2 + alpha / 4 * (KL(p1||p2) + KL(p2||p1)) per example, from the two outputs each example got."""
    from plmkit.recipes.finetune import rdrop_loss

    torch.manual_seed(0)
    ids = torch.arange(12).view(4, 3)
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids),
             "labels": torch.tensor([0, 2, 1, 2])}
    model, alpha = _Noisy(), 4.0
    loss, count = rdrop_loss(alpha)(model, batch)
    assert int(count) == 4
    expected = 0.0
    for row, y in zip(ids, batch["labels"].tolist()):
        a, b = [lg.tolist() for r, lg in model.seen if torch.equal(r, row)]
        p = [math.exp(v) / sum(math.exp(u) for u in a) for v in a]
        q = [math.exp(v) / sum(math.exp(u) for u in b) for v in b]
        ce = (-math.log(p[y]) - math.log(q[y])) / 2
        kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) + sum(qi * math.log(qi / pi) for pi, qi in zip(p, q))
        expected += ce + alpha / 4 * kl
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_rdrop_without_dropout_is_plain_cross_entropy(setup):
    """Two passes of a deterministic model agree, so the KL term vanishes and the loss is the usual one."""
    from plmkit.recipes.finetune import Batches, classification_loss, rdrop_loss

    tmp, files = setup
    model = plmkit.from_pretrained(tmp / "base", num_labels=2).eval()
    batch = Batches(plmkit.load_tokenizer(tmp / "base"), 32)([("好棒的东西", None, 1), ("差", None, 0)])
    plain, n = classification_loss(model, batch)
    r, m = rdrop_loss(10.0)(model, batch)
    assert int(n) == int(m) == 2 and r.item() == pytest.approx(plain.item(), rel=1e-5)


def test_finetune_with_rdrop_learns_the_toy_task(setup):
    tmp, files = setup
    cfg = FinetuneConfig(epochs=6, batch_size=16, lr=3e-3, precision="fp32", patience=6, rdrop=1.0)
    report = finetune(tmp / "base", files["train"], files["valid"], tmp / "out", test=files["test"], cfg=cfg,
                      progress=False)
    assert report["config"]["rdrop"] == 1.0 and report["test_accuracy"] >= 0.9


def test_dropout_option_sets_hidden_dropout_only_and_is_saved(setup):
    from plmkit.recipes.finetune import Batches
    from plmkit.training import set_hidden_dropout

    tmp, files = setup
    model = plmkit.from_pretrained(tmp / "base", num_labels=2).train()
    batch = Batches(plmkit.load_tokenizer(tmp / "base"), 32)([("好棒的东西我们", None, 1), ("差劲的他们", None, 0)])
    run = lambda: model(batch["input_ids"], attention_mask=batch["attention_mask"]).label_logits  # noqa: E731
    torch.manual_seed(0)
    assert not torch.equal(run(), run())  # the config's 0.1: two training-mode passes differ
    set_hidden_dropout(model, 0.0)
    assert model.config.dropout == 0.0
    attention = [m for m in model.modules() if isinstance(getattr(m, "dropout", None), float)]
    assert attention and all(m.dropout == model.config.attention_dropout == 0.1 for m in attention)  # left alone
    for m in attention:
        m.dropout = 0.0
    assert torch.equal(run(), run())  # no hidden dropout was missed
    with pytest.raises(ValueError, match="dropout"):
        set_hidden_dropout(model, 1.0)
    assert cli(["finetune", "--model", str(tmp / "base"), "--train", str(files["train"]), "--valid", str(files["valid"]),
                "--test", str(files["test"]), "--out", str(tmp / "out"), "--epochs", "6", "--batch-size", "16",
                "--lr", "3e-3", "--precision", "fp32", "--patience", "6", "--dropout", "0"]) == 0
    report = json.loads((tmp / "out" / "results.json").read_text())
    assert report["config"]["dropout"] == 0.0 and report["test_accuracy"] >= 0.9
    assert json.loads((tmp / "out" / "model" / "config.json").read_text())["hidden_dropout_prob"] == 0.0


def test_cli_reads_finetune_options_by_their_annotated_types(monkeypatch, tmp_path):
    """`X | None` fields parse as X; booleans parse false as False (bool("false") would be True)."""
    import plmkit.recipes.finetune as ft

    seen = {}

    def fake(model, train, valid, out, test=None, cfg=None, overwrite=False):
        seen["cfg"] = cfg
        return {"valid_accuracy": 1.0, "out_dir": str(out), "curves": f"{out}/curves.png"}

    monkeypatch.setattr(ft, "finetune", fake)
    assert cli(["finetune", "--model", "m", "--train", "t", "--valid", "v", "--out", str(tmp_path / "o"),
                "--dropout", "0.05", "--group-by-length", "false", "--pair-col", "q", "--lr", "3e-4"]) == 0
    cfg = seen["cfg"]
    assert (cfg.dropout, cfg.group_by_length, cfg.pair_col, cfg.lr) == (0.05, False, "q", 3e-4)
    assert cli(["finetune", "--model", "m", "--train", "t", "--valid", "v", "--out", str(tmp_path / "o"),
                "--group-by-length", "true"]) == 0
    assert seen["cfg"].group_by_length is True and seen["cfg"].dropout is None


def test_finetune_with_the_default_precision_learns_and_records_it(setup):
    """precision left at its default ("auto"): bf16 autocast where the CPU has native bf16, else fp32."""
    from plmkit.hardware import resolve_precision

    tmp, files = setup
    cfg = FinetuneConfig(epochs=6, batch_size=16, lr=3e-3, patience=6)
    report = finetune(tmp / "base", files["train"], files["valid"], tmp / "auto", test=files["test"], cfg=cfg,
                      progress=False)
    assert report["test_accuracy"] >= 0.9
    saved = json.loads((tmp / "auto" / "results.json").read_text())
    assert saved["precision"] == resolve_precision("auto") and saved["config"]["precision"] == "auto"
    runs = [json.loads(l) for l in (tmp / "auto" / "metrics.jsonl").read_text().splitlines() if '"run"' in l]
    assert runs and runs[0]["precision"] == resolve_precision("auto")
