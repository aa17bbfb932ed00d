"""Every CLUE task end to end on a tiny random model (2 training steps), and the exact submission shapes."""
import json
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import plmkit
from plmkit.config import ModelConfig
from plmkit.data import build_char_vocab
from plmkit.models import build_model
from plmkit.recipes.clue import RECIPES, ClueConfig, run_all, run_clue
from plmkit.tasks.clue import TASKS, get_task, read_c3, read_chid, read_cluener, read_cmrc2018
from plmkit.tasks.mrc import MrcExample
from plmkit.tokenizers import WordPieceTokenizer

FIX = Path(__file__).parent / "fixtures" / "clue"
# precision left at its default ("auto"): the recipes run as users run them
FAST = dict(max_steps=2, batch_size=2, progress=False, head_size=8, log_every=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    texts = [p.read_text(encoding="utf-8") for p in FIX.rglob("*.json")]
    vocab = build_char_vocab(texts, min_count=1) + ["[unused1]"]
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=48, max_position=64)
    path = tmp_path_factory.mktemp("clue") / "base"
    torch.manual_seed(0)
    plmkit.save_pretrained(build_model(cfg, with_mlm=True, with_pool=True), path, tokenizer=WordPieceTokenizer(vocab))
    return path


@pytest.fixture(scope="module")
def clue_run(tiny):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tiny.parent / "runs"
        return run_all(tiny, FIX, out, **FAST), out
    finally:
        torch.set_num_threads(threads)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_all_runs_every_task_and_zips_the_submissions(clue_run):
    summary, out = clue_run
    assert summary["failed"] == [] and summary["missing"] == []
    names = sorted(s.submission for s in TASKS.values())
    with zipfile.ZipFile(out / "clue_submission.zip") as z:
        assert sorted(z.namelist()) == names
    for name, spec in TASKS.items():
        result = json.loads((out / name / "results.json").read_text(encoding="utf-8"))
        assert result["steps"] == 2 and result["metric"] == spec.metric
        assert 0.0 <= result["dev_score"] <= 1.0
        assert not (out / name / "checkpoint.pt").exists()  # checkpoints go unless asked to keep them
        assert not (out / f"{name}.partial").exists()
    table = (out / "summary.md").read_text(encoding="utf-8")
    assert all(f"| {name} | {spec.metric} |" in table for name, spec in TASKS.items())


@pytest.mark.parametrize("task", ["afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl"])
def test_classification_submission_shape(clue_run, task):
    _, out = clue_run
    spec = get_task(task)
    test_rows = _lines(FIX / task / spec.test[0])
    rows = _lines(out / task / spec.submission)
    assert [r["id"] for r in rows] == [t["id"] for t in test_rows]  # one line per test line, in order
    for r in rows:
        assert set(r) == {"id", "label"} and isinstance(r["label"], str) and r["label"] in spec.labels


def test_c3_submission_shape(clue_run):
    _, out = clue_run
    questions = read_c3(FIX / "c3" / "test1.1.json", labelled=False)
    rows = _lines(out / "c3" / "c311_predict.json")
    assert [r["id"] for r in rows] == [0, 1, 2]
    for r, q in zip(rows, questions):
        assert set(r) == {"id", "label"} and isinstance(r["label"], int) and 0 <= r["label"] < len(q.choices)


def test_chid_submission_assigns_each_idiom_once_per_passage(clue_run):
    _, out = clue_run
    answers = json.loads((out / "chid" / "chid11_predict.json").read_text())
    blanks = read_chid(FIX / "chid" / "test1.1.json")
    assert set(answers) == {b.key for b in blanks}
    assert all(isinstance(v, int) and 0 <= v < 10 for v in answers.values())
    assert len(set(answers.values())) == len(answers)  # the three blanks of the passage share candidates


def test_cmrc2018_submission_shape(clue_run):
    _, out = clue_run
    answers = json.loads((out / "cmrc2018" / "cmrc2018_predict.json").read_text(encoding="utf-8"))
    questions = read_cmrc2018(FIX / "cmrc2018" / "test.json")
    assert set(answers) == {q.qid for q in questions}
    for q in questions:
        assert isinstance(answers[q.qid], str) and answers[q.qid] and answers[q.qid] in q.context


def test_cluener_submission_shape(clue_run):
    _, out = clue_run
    texts = {e.id: e.text for e in read_cluener(FIX / "cluener" / "test.json", labelled=False)}
    types = {k for e in read_cluener(FIX / "cluener" / "train.json") + read_cluener(FIX / "cluener" / "dev.json")
             for _, _, k in e.entities}
    rows = _lines(out / "cluener" / "cluener_predict.json")
    assert [r["id"] for r in rows] == [0, 1]
    for r in rows:
        assert set(r) == {"id", "label"} and set(r["label"]) <= types
        for found in r["label"].values():
            for word, spans in found.items():
                assert all(texts[r["id"]][s:e + 1] == word for s, e in spans)


def test_cluener_with_a_crf_head(tiny, tmp_path):
    result = run_clue("cluener", tiny, FIX, tmp_path / "crf", ner_head="crf", **FAST)
    assert result["head"] == "crf" and result["steps"] == 2
    rows = _lines(tmp_path / "crf" / "cluener_predict.json")
    assert [r["id"] for r in rows] == [0, 1] and all(set(r) == {"id", "label"} for r in rows)


def test_run_clue_refuses_an_existing_output_and_unknown_options(tiny, tmp_path):
    (tmp_path / "afqmc").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        run_clue("afqmc", tiny, FIX, tmp_path / "afqmc", **FAST)
    with pytest.raises(TypeError, match=r"unknown options \['epochz'\]"):
        run_clue("afqmc", tiny, FIX, tmp_path / "x", epochz=3)


class _PointAt(nn.Module):
    """A stand-in span model: scores each window's occurrences of target token runs by hand."""

    def __init__(self, targets: dict[tuple[int, ...], float]) -> None:
        super().__init__()
        self.targets = targets
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, span_mask=None):
        B, T = input_ids.shape
        scores = torch.zeros(B, 1, T, T)
        for b in range(B):
            ids = input_ids[b].tolist()
            for run, score in self.targets.items():
                for s in range(T - len(run) + 1):
                    if tuple(ids[s:s + len(run)]) == run and token_type_ids[b, s] == 1:
                        scores[b, 0, s, s + len(run) - 1] = score
        return scores


def test_cmrc_sliding_windows_merge_to_the_best_window():
    context = "2013年是1995年以来美国股市表现最好的一年，这一年里投资美国股市的明智做法是追着傻钱跑，长城西起嘉峪关。"
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + sorted(set(context + "问")))
    cfg = ClueConfig(stride=8, eval_batch_size=4, precision="fp32")
    recipe = RECIPES["mrc"](get_task("cmrc2018"), tok, cfg, 20, torch.device("cpu"), [], [])
    ex = MrcExample("q", "问", context)
    windows = recipe.windows([ex])
    assert len(windows) > 4 and [w[3] for w in windows[:3]] == [0, 8, 16]  # 16 characters every 8
    ids = lambda s: tuple(tok.tokens_to_ids(list(s)))  # noqa: E731
    # "美国股市" twice (windows 0-1 and 3-4), "嘉峪关" in the last windows: the best score wins anywhere
    model = _PointAt({ids("美国股市"): 3.0, ids("嘉峪关"): 7.0, ids("傻钱"): 5.0})
    assert recipe.predict(model, [ex]) == {"q": "嘉峪关"}
    model = _PointAt({ids("美国股市"): 3.0, ids("傻钱"): 1.0})
    assert recipe.predict(model, [ex]) == {"q": "美国股市"}
    # the [UNK] over "2013" and "1995" shifts tokens against characters: answers are cut from the context
    assert recipe.predict(_PointAt({ids("年以来"): 9.0}), [ex]) == {"q": "年以来"}


NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄涛"]
PLACES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京"]
FILLERS = ["昨天", "今年", "一直", "已经", "听说"]


def _ner_rows(rng, n):
    """Two templates; a name and a place each, at positions that differ between them."""
    rows = []
    for i in range(n):
        name, place, fill = rng.choice(NAMES), rng.choice(PLACES), rng.choice(FILLERS)
        text = f"{fill}{name}在{place}工作。" if rng.random() < 0.5 else f"{place}的{name}{fill}来了。"
        s, p = text.index(name), text.index(place)
        rows.append({"id": i, "text": text, "label": {"name": {name: [[s, s + 1]]}, "address": {place: [[p, p + 1]]}}})
    return rows


@pytest.mark.parametrize("head", ["globalpointer", "crf"])
def test_ner_recipe_learns_names_and_places(tmp_path, head):
    import random
    rng = random.Random(0)
    data = tmp_path / "cluener"
    data.mkdir()
    splits = {"train": _ner_rows(rng, 64), "dev": _ner_rows(rng, 16), "test": _ner_rows(rng, 8)}
    for split, rows in splits.items():
        keep = ("id", "text") if split == "test" else ("id", "text", "label")
        (data / f"{split}.json").write_text("".join(json.dumps({k: r[k] for k in keep}, ensure_ascii=False) + "\n"
                                                    for r in rows), encoding="utf-8")
    vocab = build_char_vocab(["".join(NAMES + PLACES + FILLERS) + "在工作。的来了"], min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=64, max_position=32)
    torch.manual_seed(0)
    plmkit.save_pretrained(build_model(cfg), tmp_path / "m", tokenizer=WordPieceTokenizer(vocab))
    result = run_clue("cluener", tmp_path / "m", data, tmp_path / "out", ner_head=head, epochs=4, batch_size=8,
                      lr=5e-3, precision="fp32", progress=False, head_size=16)
    assert result["dev"]["f1"] >= 0.9
    predicted = {r["id"]: r["label"] for r in _lines(tmp_path / "out" / "cluener_predict.json")}
    correct = sum(predicted[r["id"]] == r["label"] for r in splits["test"])
    assert correct >= 7  # the character spans written out are the gold ones
