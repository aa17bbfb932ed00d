"""`plmkit simbert`: fine-tuning a SimBERT-style model on labelled pairs (kexue.fm/archives/8541): the supervised
loss by hand, the cosine metrics against scikit-learn and brute force, the command end to end, bad input."""
import json
import logging
import math

import pytest
import torch

import plmkit
from plmkit.cli import main
from plmkit.config import ModelConfig
from plmkit.data import build_char_vocab
from plmkit.models import build_model
from plmkit.pretrained import CheckpointError
from plmkit.recipes.simbert import (
    SimBertPairsConfig,
    SupervisedSimilarityHead,
    best_threshold,
    build_simbert,
    cosent_loss,
    finetune_simbert,
    load_simbert,
    load_start,
    pair_cosines,
    pair_metrics,
    read_labelled_pairs,
    roc_auc,
    supervised_loss,
)
from plmkit.sentence import encode_sentences
from plmkit.tokenizers import WordPieceTokenizer

ROWS = [("我喜欢北京", "我喜欢北京。", 1), ("我喜欢北京", "我不喜欢北京", 0),
        ("质量很好", "质量非常好", 1), ("质量很好", "质量不好", 0),
        ("服务态度不错", "服务态度不错啊", 1), ("房间很干净", "房间不干净", 0)]


def _tiny_config(vocab_size):
    return ModelConfig(family="bert", vocab_size=vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                       intermediate_size=24, max_position=64, dropout=0.0, attention_dropout=0.0,
                       initializer_range=0.2)


@pytest.fixture
def tok():
    return WordPieceTokenizer(build_char_vocab([t for r in ROWS for t in r[:2]] + ["满意差"], min_count=1))


@pytest.fixture
def tiny_dir(tmp_path, tok):
    torch.manual_seed(0)
    return plmkit.save_pretrained(build_simbert(_tiny_config(tok.vocab_size)), tmp_path / "tiny", tokenizer=tok)


def _write(path, rows, header="text_a\ttext_b\tlabel"):
    path.write_text(header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- the loss and the metrics ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["concat", "cosent"])
def test_supervised_loss_by_hand(tok, kind):
    """Each sentence alone and unpadded through the encoder and the pooler's dense layer; then either
    concat(u, v, |u - v|), the head's weights and a written-out cross-entropy (8541), or CoSENT written out as
    log(1 + sum over similar i, dissimilar j of exp(20 (cos_j - cos_i))) (8847)."""
    torch.manual_seed(0)
    model = build_simbert(_tiny_config(tok.vocab_size)).eval()
    head = SupervisedSimilarityHead(16, num_tasks=1)
    rows = [ROWS[0], ROWS[1], ("房间很干净", "满意", 1), ROWS[3]]  # lengths differ: the batch is padded
    loss = supervised_loss(model, head, tok, rows, SimBertPairsConfig(precision="fp32", supervised_loss=kind))

    @torch.no_grad()
    def vector(text):
        ids, segments = tok.encode(text)
        h = model(torch.tensor([ids]), token_type_ids=torch.tensor([segments])).last_hidden_state[0, 0]
        return model.pooler.dense.weight @ h + model.pooler.dense.bias  # pooler_linear: no tanh

    if kind == "concat":
        expected = 0.0
        for a, b, y in rows:
            u, v = vector(a), vector(b)
            logits = head.dense.weight.detach() @ torch.cat([u, v, (u - v).abs()])  # (2,)
            expected += float(torch.log(torch.exp(logits).sum()) - logits[y]) / len(rows)
    else:
        cos = [float(vector(a) @ vector(b) / (vector(a).norm() * vector(b).norm())) for a, b, _ in rows]
        total = 1.0 + sum(math.exp(20 * (cos[j] - cos[i])) for i, (*_, yi) in enumerate(rows) if yi == 1
                          for j, (*_, yj) in enumerate(rows) if yj == 0)
        expected = math.log(total)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_cosent_by_hand_and_without_a_ranked_pair():
    cos, labels = torch.tensor([0.9, 0.1, 0.5, 0.3]), torch.tensor([1, 0, 1, 0])
    expected = math.log(1 + sum(math.exp(20 * (float(cos[j]) - float(cos[i]))) for i in (0, 2) for j in (1, 3)))
    assert cosent_loss(cos, labels).item() == pytest.approx(expected, rel=1e-5)
    assert cosent_loss(cos, torch.ones(4, dtype=torch.long)).item() == 0.0  # log 1: nothing to rank


def test_roc_auc_and_thresholds_against_sklearn_and_brute_force():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    for n in (2, 7, 50):
        scores = torch.randint(0, 6, (n,), generator=g).float() / 5  # many ties
        labels = torch.arange(n) % 2
        labels = labels[torch.randperm(n, generator=g)]
        assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels.numpy(), scores.numpy()))
        t, acc = best_threshold(scores, labels)
        brute = max(float(((scores >= c) == labels.bool()).float().mean()) for c in [*scores.tolist(), 9.0])
        assert acc == pytest.approx(brute) == float(((scores >= t) == labels.bool()).double().mean())
    assert pair_metrics(torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1, 0, 0]), threshold=0.5) == {
        "auc": 1.0, "threshold": 0.5, "accuracy": pytest.approx(2 / 3), "best_accuracy": 1.0}
    with pytest.raises(ValueError, match="both labels"):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))


def test_pair_cosines_are_the_cosines_of_each_text_encoded(tok):
    torch.manual_seed(0)
    model = build_simbert(_tiny_config(tok.vocab_size)).eval()
    cos = pair_cosines(model, tok, ROWS)
    for (a, b, _), c in zip(ROWS, cos):
        u, v = (encode_sentences(model, tok, [t], pooling="pooler_linear")[0] for t in (a, b))
        assert float(c) == pytest.approx(float(u @ v), abs=1e-6)


# ---- the recipe and the command ------------------------------------------------------------------------

def test_command_with_its_defaults_writes_a_loadable_trained_model(tmp_path, capsys):
    """No option given: the embedded model, the supervised objective, the config's epochs and batch size."""
    train = _write(tmp_path / "train.tsv", ROWS)
    assert main(["simbert", "--train", str(train), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip() == f"model: {tmp_path / 'out'}/model"
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert results["config"] == json.loads(json.dumps(vars(SimBertPairsConfig())))
    assert results["steps"] == SimBertPairsConfig().epochs  # six pairs: one batch an epoch
    assert all(r["supervised"] > 0 for r in results["history"])
    model = load_simbert(tmp_path / "out" / "model", device="cpu")
    start = load_simbert(plmkit.zoo.embedded_model_dir(), device="cpu")
    assert not torch.equal(model.pooler.dense.weight, start.pooler.dense.weight)  # trained
    tok = plmkit.load_tokenizer(tmp_path / "out" / "model")
    vectors = encode_sentences(model, tok, ["我喜欢北京", "我不喜欢北京"], pooling="pooler_linear")
    assert vectors.shape == (2, model.config.hidden_size) and torch.isfinite(vectors).all()
    settings = json.loads((tmp_path / "out" / "model" / "simbert.json").read_text(encoding="utf-8"))
    assert settings == {"pooling": "pooler_linear", "max_length": 64, "objective": "supervised"}
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("objective, loss", [("supervised", "cosent"), ("supervised", "concat"),
                                             ("unsupervised", "cosent"), ("both", "concat")])
def test_each_objective_trains_and_scores_valid_and_test(tmp_path, tiny_dir, objective, loss):
    train = _write(tmp_path / "train.tsv", ROWS * 2)
    valid = _write(tmp_path / "valid.tsv", ROWS)
    cfg = SimBertPairsConfig(objective=objective, supervised_loss=loss, epochs=2, batch_size=4, lr=1e-3,
                             precision="fp32")
    report = finetune_simbert(tiny_dir, train, tmp_path / "out", valid=valid, test=valid, cfg=cfg)
    keys = set().union(*report["history"])
    assert ("supervised" in keys) == (objective != "unsupervised")
    assert ("seq2seq" in keys) == (objective != "supervised")
    steps_per_epoch = 3 if objective == "supervised" or objective == "both" else 2  # 12 pairs, or 6 positives
    assert report["steps"] == 2 * steps_per_epoch and report["best_epoch"] in (1, 2)
    for when in ("before", "after"):
        assert set(report[when]) == {"valid", "test"}
        assert report[when]["test"]["threshold"] == report[when]["valid"]["threshold"]  # chosen on valid
    model = load_simbert(tmp_path / "out" / "model")
    tok = plmkit.load_tokenizer(tmp_path / "out" / "model")
    scores = pair_cosines(model, tok, read_labelled_pairs(valid))
    assert report["after"]["valid"]["auc"] == pytest.approx(roc_auc(scores, torch.tensor([r[2] for r in ROWS])))
    with pytest.raises(FileExistsError, match="already exists"):
        finetune_simbert(tiny_dir, train, tmp_path / "out", cfg=cfg)


def test_a_checkpoint_without_a_pooler_gets_a_fresh_one(tmp_path, tok, caplog):
    torch.manual_seed(0)
    mlm_only = plmkit.save_pretrained(build_model(_tiny_config(tok.vocab_size), with_mlm=True), tmp_path / "mlm",
                                      tokenizer=tok)
    with caplog.at_level(logging.WARNING, logger="plmkit.simbert"):
        model = load_start(mlm_only)
    assert model.pooler is not None and "pooler.dense.weight" in caplog.text
    no_mlm = plmkit.save_pretrained(build_model(_tiny_config(tok.vocab_size), with_pool=True), tmp_path / "enc")
    with pytest.raises(CheckpointError, match="only the pooler may be missing"):
        load_start(no_mlm)


# ---- bad input: one line naming the file, line and field ---------------------------------------------------

@pytest.mark.parametrize("name, body, message", [
    ("no_b.tsv", "text_a\tlabel\n好\t1\n",
     "line 1: header has no column 'text_b' (found columns ['text_a', 'label'])"),
    ("no_label.tsv", "text_a\ttext_b\n好\t好的\n", "line 1: header has no column 'label'"),
    ("two.tsv", "text_a\ttext_b\tlabel\n好\t好的\t1\n好\t不好\t2\n",
     "line 3: field 'label' must be 0 or 1, found '2'"),
    ("yes.tsv", "text_a\ttext_b\tlabel\n好\t好的\tyes\n", "line 2: field 'label' must be 0 or 1, found 'yes'"),
    ("x.jsonl", '{"text_a": "好", "label": 1}\n', "line 1: no field 'text_b'"),
    ("one_label.tsv", "text_a\ttext_b\tlabel\n好\t好的\t1\n行\t行的\t1\n", "needs pairs of both labels"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, name, body, message):
    (tmp_path / name).write_text(body, encoding="utf-8")
    assert main(["simbert", "--train", str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plmkit simbert: error: ") and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_valid_file_of_one_label_cannot_be_scored(tmp_path, capsys):
    train = _write(tmp_path / "train.tsv", ROWS)
    valid = _write(tmp_path / "valid.tsv", ROWS[:1])
    assert main(["simbert", "--train", str(train), "--valid", str(valid), "--out", str(tmp_path / "o")]) == 2
    assert "valid pairs need both labels (0 and 1)" in capsys.readouterr().err


def test_a_bad_config_value_is_refused_before_reading():
    with pytest.raises(ValueError, match="pooling: expected one of"):
        SimBertPairsConfig(pooling="max")
    with pytest.raises(ValueError, match="epochs: expected an integer >= 1"):
        SimBertPairsConfig(epochs=0)
