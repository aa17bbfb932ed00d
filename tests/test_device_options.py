"""--device on every command that runs a model, checked in one place (plmkit.hardware.resolve_device), with CPU
stand-ins for the devices this machine lacks: a patched torch.cuda, and the meta device (a model there has
shapes but no values, so a batch left on the CPU fails against it)."""
import json

import pytest
import torch
import torch.nn.functional as F

import plmkit
import plmkit.hardware
import plmkit.recipes.fewshot
import plmkit.recipes.finetune
import plmkit.sentence
from plmkit.cli import main
from plmkit.config import ModelConfig
from plmkit.data import build_char_vocab
from plmkit.hardware import inference_device, resolve_device
from plmkit.models import build_model
from plmkit.recipes.fewshot import FewShotClassifier
from plmkit.recipes.finetune import TextClassifier, predict_file
from plmkit.similarity.retrieval import (build_sentence_index, load_encoder, load_sentence_index,
                                         query_sentence_index)
from plmkit.tasks.pet import PromptClassifier, Verbalizer
from plmkit.tokenizers import WordPieceTokenizer

TEXTS = ["今天天气很好", "我喜欢吃苹果", "电影不好看"]


def _cuda(monkeypatch, count: int) -> None:
    """This process sees `count` CUDA devices (none is used: only their presence is asked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def _tiny(path, **options):
    vocab = build_char_vocab(TEXTS + ["很不"], min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=16, num_layers=1, num_heads=2,
                      intermediate_size=24, max_position=32, labels=options.pop("labels", None))
    torch.manual_seed(0)
    plmkit.save_pretrained(build_model(cfg, **options), path, tokenizer=WordPieceTokenizer(vocab))
    return path


# ---- the rule ----------------------------------------------------------------------------------------

def test_a_missing_device_names_itself_and_what_there_is(monkeypatch):
    _cuda(monkeypatch, 0)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device 'cuda:0': this machine has 0 cuda devices \(torch .*\); "
                                         r"found: cpu$"):
        resolve_device("cuda:0")
    with pytest.raises(ValueError, match=r"^device 'bogus': .*cpu, cuda"):  # torch's list of device types
        resolve_device("bogus")
    with pytest.raises(ValueError, match=r"^device 'cuda:x': "):
        resolve_device("cuda:x", present=False)  # a malformed name is an error even about a device elsewhere
    assert resolve_device("cuda", present=False) == torch.device("cuda")  # info --hardware asks about one


def test_present_devices_pass_and_the_default_takes_cuda(monkeypatch):
    _cuda(monkeypatch, 2)
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"this machine has 2 cuda devices .*found: cpu, cuda:0, cuda:1$"):
        resolve_device("cuda:2")


def test_int8_runs_on_the_cpu_whatever_is_present(monkeypatch):
    _cuda(monkeypatch, 1)
    assert inference_device(None, "int8") == torch.device("cpu")
    assert inference_device(None, "fp32") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"^precision int8 \(dynamic quantisation\) runs on the CPU, "
                                         r"found device 'cuda:0'$"):
        inference_device("cuda:0", "int8")


@pytest.mark.parametrize("call", [
    lambda d, tmp: predict_file(tmp / "m", tmp / "in.tsv", tmp / "out.jsonl", device=d),
    lambda d, tmp: TextClassifier(tmp / "m", device=d),
    lambda d, tmp: FewShotClassifier(tmp / "m", device=d),
    lambda d, tmp: build_sentence_index(tmp / "m", ["好"], tmp / "index", device=d),
    lambda d, tmp: load_encoder(tmp / "m", "mean", device=d),
    lambda d, tmp: load_sentence_index(tmp / "index", device=d),
    lambda d, tmp: query_sentence_index(tmp / "index", ["好"], device=d),
], ids=["predict_file", "TextClassifier", "FewShotClassifier", "build_sentence_index", "load_encoder",
        "load_sentence_index", "query_sentence_index"])
def test_the_python_api_checks_the_device_before_reading_anything(monkeypatch, tmp_path, call):
    """None of the files exist: the device's ValueError comes first, as the command line's does."""
    _cuda(monkeypatch, 0)
    with pytest.raises(ValueError, match=r"^device 'cuda:0': this machine has 0 cuda devices"):
        call("cuda:0", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_absent_device_is_one_line_from_predict_and_similar(monkeypatch, tmp_path, capsys):
    _cuda(monkeypatch, 0)
    model = _tiny(tmp_path / "m", num_labels=2, labels=["neg", "pos"])
    (tmp_path / "in.tsv").write_text("好\n", encoding="utf-8")
    for command, args in (("predict", ["--model", str(model), "--input", str(tmp_path / "in.tsv"),
                                       "--out", str(tmp_path / "out.jsonl")]),
                          ("similar", ["--index", str(tmp_path / "x"), "--index-from", str(tmp_path / "in.tsv"),
                                       "--model", str(model)])):
        assert main([command, *args, "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"plmkit {command}: error: device 'cuda': this machine has "
                                                   "0 cuda devices"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tsv", "m"]


# ---- the device reaches the model ---------------------------------------------------------------------

def test_predict_runs_on_the_device_asked_for(monkeypatch, tmp_path, capsys):
    model = _tiny(tmp_path / "m", num_labels=2, labels=["neg", "pos"])
    (tmp_path / "in.tsv").write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    want = [p for _, p in TextClassifier(model).predict(TEXTS)]  # the default device, here the CPU
    asked = []
    resolve = plmkit.hardware.resolve_device
    monkeypatch.setattr(plmkit.hardware, "resolve_device", lambda d=None: asked.append(d) or resolve(d))
    out = tmp_path / "cpu.jsonl"
    assert main(["predict", "--model", str(model), "--input", str(tmp_path / "in.tsv"), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert asked == ["cpu"]
    got = [list(json.loads(line)["probs"].values()) for line in out.read_text(encoding="utf-8").splitlines()]
    assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-6)

    # on the meta device the model holds no values: the stand-in scoring records where the model is
    seen = []

    def scores_where(model, loader):
        seen.append(next(model.parameters()).device)
        return torch.full((sum(len(b["input_ids"]) for b in loader), 2), 0.5)

    monkeypatch.setattr(plmkit.recipes.finetune, "predict_probs", scores_where)
    assert main(["predict", "--model", str(model), "--input", str(tmp_path / "in.tsv"),
                 "--out", str(tmp_path / "meta.jsonl"), "--device", "meta"]) == 0
    assert seen == [torch.device("meta")] and asked == ["cpu", "meta"]


def test_predict_hands_the_device_to_a_fewshot_classifier(monkeypatch, tmp_path):
    (tmp_path / "fewshot.json").write_text("{}", encoding="utf-8")
    received = []

    class Stop(Exception):
        pass

    def stand_in(directory, base=None, device=None):
        received.append(device)
        raise Stop

    monkeypatch.setattr(plmkit.recipes.fewshot, "FewShotClassifier", stand_in)
    with pytest.raises(Stop):
        predict_file(tmp_path, tmp_path / "in.tsv", tmp_path / "out.jsonl", device="cpu")
    assert received == ["cpu"]


def test_similar_encodes_on_the_device_asked_for(monkeypatch, tmp_path, capsys):
    model = _tiny(tmp_path / "m")
    (tmp_path / "s.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    args = ["similar", "--index-from", str(tmp_path / "s.txt"), "--model", str(model), "--query", TEXTS[1]]
    assert main([*args, "--index", str(tmp_path / "cpu"), "--device", "cpu", "-k", "1"]) == 0
    # the query is an indexed sentence: its own row is nearest, at cosine 1
    assert capsys.readouterr().out.splitlines()[-1].split() == ["1.0000", "[1]", TEXTS[1]]

    places = []

    def vectors_where(model, tokenizer, texts, **options):  # the meta model holds no values to encode with
        places.append(next(model.parameters()).device)
        return F.normalize(torch.arange(1.0, 1 + 16 * len(texts)).reshape(len(texts), 16), dim=-1)

    monkeypatch.setattr(plmkit.sentence, "encode_sentences", vectors_where)
    assert main([*args, "--index", str(tmp_path / "meta"), "--device", "meta"]) == 0
    assert places == [torch.device("meta")] * 2  # the indexed sentences, then the query
    assert json.loads((tmp_path / "meta" / "index.json").read_text())["model"] == str(model.resolve())


def test_prompt_classifier_moves_a_cpu_batch_to_the_models_device(tmp_path):
    model = plmkit.from_pretrained(_tiny(tmp_path / "mlm", with_mlm=True), with_mlm=True)
    clf = PromptClassifier(model, plmkit.load_tokenizer(tmp_path / "mlm"), "{mask}{text}",
                           Verbalizer({"1": "很", "0": "不"}))
    batch = clf.encode(TEXTS, labels=[1, 0, 0])
    on_cpu = clf(batch)
    clf.to("meta")
    assert batch["groups"][0]["input_ids"].device == torch.device("cpu")
    scores, word_logp = clf(batch)  # a CPU batch against meta weights fails unless forward moves it
    assert (scores.device, word_logp.device) == (torch.device("meta"),) * 2
    assert scores.shape == word_logp.shape == on_cpu[0].shape == (3, 2)
