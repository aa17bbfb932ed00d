"""plmkit pet / ptune end to end on a tiny model: zero-shot, few-shot, unlabeled MLM, prompt-only
members, and `plmkit predict` reproducing the reported accuracy."""
import json

import pytest
import torch

import plmkit
from plmkit.cli import main
from plmkit.config import ModelConfig
from plmkit.data import DataError, build_char_vocab
from plmkit.models import build_model
from plmkit.recipes.fewshot import FewShotClassifier, FewShotConfig, run_fewshot
from plmkit.recipes.finetune import predict_file
from plmkit.tokenizers import WordPieceTokenizer

POS = ["这本书很好看", "电影真的好", "质量好很满意", "好用很喜欢", "物流快好评"]
NEG = ["质量太差了", "电影不好看", "很失望不满意", "差评不喜欢", "物流慢太差"]


@pytest.fixture
def files(tmp_path):
    rows = [(t, "1") for t in POS] + [(t, "0") for t in NEG]
    for name in ("train", "valid"):
        (tmp_path / f"{name}.tsv").write_text("".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    (tmp_path / "unlabeled.txt").write_text("\n".join(POS + NEG), encoding="utf-8")
    vocab = build_char_vocab(POS + NEG + ["满意总之感觉不很"], min_count=1)
    torch.manual_seed(0)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=48, max_position=64)
    plmkit.save_pretrained(build_model(cfg, with_mlm=True), tmp_path / "base", tokenizer=WordPieceTokenizer(vocab))
    return tmp_path


def _predict_accuracy(tmp_path, model_dir):
    assert main(["predict", "--model", str(model_dir), "--input", str(tmp_path / "valid.tsv"),
                 "--out", str(tmp_path / "pred.jsonl")]) == 0
    rows = [json.loads(l) for l in (tmp_path / "pred.jsonl").read_text(encoding="utf-8").splitlines()]
    gold = ["1"] * len(POS) + ["0"] * len(NEG)
    accuracy = sum(r["label"] == g for r, g in zip(rows, gold)) / len(gold)
    # the headerless text<TAB>label file is scored by predict itself too
    scored = predict_file(model_dir, tmp_path / "valid.tsv", tmp_path / "pred2.jsonl")
    assert scored["accuracy"] == pytest.approx(accuracy)
    return accuracy


def test_zero_shot_pet_needs_no_training_and_predict_agrees(files):
    report = run_fewshot(files / "base", files / "zs", valid=files / "valid.tsv", unlabeled=[files / "unlabeled.txt"],
                         cfg=FewShotConfig(calibrate=True), progress=False)
    assert report["train_examples"] == 0 and len(report["patterns"]) == 3
    assert _predict_accuracy(files, files / "zs") == pytest.approx(report["ensemble"]["valid_accuracy"])
    member = json.loads((files / "zs" / "member0" / "prompt.json").read_text())
    assert member["base"] == str((files / "base").resolve()) and not (files / "zs" / "member0" / "model").exists()
    assert len(member["calibration"]) == 2  # the calibration travels with the member


def test_few_shot_pet_learns_the_training_set(files):
    cfg = FewShotConfig(patterns=["{mask}满意。{text}"], steps=100, lr=5e-3, precision="fp32", batch_size=10)
    report = run_fewshot(files / "base", files / "pet", train=files / "train.tsv", valid=files / "valid.tsv",
                         cfg=cfg, progress=False)
    assert report["patterns"]["{mask}满意。{text}"]["valid_accuracy"] == 1.0  # valid == train here
    assert (files / "pet" / "member0" / "model" / "config.json").exists()
    assert (files / "pet" / "member0" / "metrics.jsonl").exists()
    assert _predict_accuracy(files, files / "pet") == 1.0


def test_ptune_frozen_saves_prompts_only_and_reloads(files):
    cfg = FewShotConfig(patterns=["{p}{p}{mask}{p}{text}"], steps=5, lr=1e-2, precision="fp32",
                        prompt_tuning=True, unlabeled_weight=0.5)
    report = run_fewshot(files / "base", files / "pt", train=files / "train.tsv", valid=files / "valid.tsv",
                         unlabeled=[files / "unlabeled.txt"], cfg=cfg, progress=False)
    member = files / "pt" / "member0"
    assert (member / "prompts.safetensors").exists() and not (member / "model").exists()
    assert _predict_accuracy(files, files / "pt") == pytest.approx(report["ensemble"]["valid_accuracy"])
    base = plmkit.from_pretrained(files / "base", with_mlm=True)
    clf = FewShotClassifier(files / "pt").members[0]
    assert all(torch.equal(a, b) for a, b in zip(clf.model.state_dict().values(), base.state_dict().values()))


def test_cli_pet_and_clear_errors(files, capsys):
    assert main(["pet", "--model", str(files / "base"), "--valid", str(files / "valid.tsv"),
                 "--out", str(files / "cli"), "--pattern", "{text}总之{mask}满意"]) == 0
    assert "valid_accuracy" in capsys.readouterr().out
    with pytest.raises(DataError, match="no word in the verbalizer"):
        run_fewshot(files / "base", files / "bad", valid=files / "valid.tsv",
                    cfg=FewShotConfig(words={"1": "很", "2": "不"}), progress=False)
    assert not (files / "bad").exists()
    assert main(["ptune", "--model", str(files / "base"), "--train", str(files / "train.tsv"),
                 "--out", str(files / "x"), "--pattern", "{mask}{text}"]) == 2
    assert "no {p} slot" in capsys.readouterr().err


def test_ptune_on_a_causal_lm_with_the_slot_at_the_end(files):
    vocab = build_char_vocab(POS + NEG + ["满意总之感觉不很"], min_count=1)
    cfg = ModelConfig(family="gpt2", vocab_size=len(vocab), hidden_size=32, num_layers=2, num_heads=2,
                      intermediate_size=48, max_position=64)
    plmkit.save_pretrained(build_model(cfg), files / "gpt", tokenizer=WordPieceTokenizer(vocab))
    fs = FewShotConfig(patterns=["{p}{p}{text}{p}{mask}"], steps=40, lr=5e-2, precision="fp32", prompt_tuning=True,
                       batch_size=10)
    report = run_fewshot(files / "gpt", files / "gpt-pt", train=files / "train.tsv", valid=files / "valid.tsv",
                         cfg=fs, progress=False)
    losses = [json.loads(l)["loss"] for l in (files / "gpt-pt" / "member0" / "metrics.jsonl").read_text().splitlines()
              if json.loads(l)["split"] == "train"]
    assert losses[-1] < losses[0]  # the prompts alone lowered the loss of a frozen GPT-2
    assert not (files / "gpt-pt" / "member0" / "model").exists()
    assert _predict_accuracy(files, files / "gpt-pt") == pytest.approx(report["ensemble"]["valid_accuracy"])


def test_few_shot_pet_with_the_default_precision(files):
    """precision left at "auto" (bf16 autocast on a CPU with native bf16): PET still fits its training set."""
    cfg = FewShotConfig(patterns=["{mask}满意。{text}"], steps=100, lr=5e-3, batch_size=10)
    report = run_fewshot(files / "base", files / "pet_auto", train=files / "train.tsv", valid=files / "valid.tsv",
                         cfg=cfg, progress=False)
    assert report["patterns"]["{mask}满意。{text}"]["valid_accuracy"] == 1.0
