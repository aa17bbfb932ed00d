"""Errors a user can cause, through the real `plmkit` command in a subprocess: exit code 2, one line on
stderr naming what to fix, no traceback, and no output appearing (or the old one byte-identical)."""
import hashlib
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import plmkit
from plmkit.cli import main
from plmkit.config import ModelConfig
from plmkit.data import build_char_vocab
from plmkit.models import build_model
from plmkit.recipes import finetune as finetune_module
from plmkit.recipes.finetune import FinetuneConfig, finetune
from plmkit.tokenizers import WordPieceTokenizer

CHARS = "好棒赞差烂坏这个东西我们的了是"


def _write(path, rows):
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_errors")
    vocab = build_char_vocab([CHARS], min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=16, num_layers=1, num_heads=2,
                      intermediate_size=24, max_position=32)
    plmkit.save_pretrained(build_model(cfg, with_pool=True), tmp / "base", tokenizer=WordPieceTokenizer(vocab))
    rows = [("这个好", "1"), ("东西棒", "1"), ("我们赞", "1"), ("这个差", "0"), ("东西烂", "0"), ("我们坏", "0")] * 4
    _write(tmp / "train.tsv", rows)
    _write(tmp / "other.tsv", [(t + "的", l) for t, l in rows])  # the same labels, other texts
    _write(tmp / "three.tsv", rows + [("是了", "2")] * 3)  # another label set
    _write(tmp / "valid.tsv", rows[:6])
    return tmp


def plmkit_cli(*args, fsize=None):
    """Run `python -m plmkit.cli ARGS` (with RLIMIT_FSIZE `fsize` bytes: writes past it fail with EFBIG)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([sys.executable, "-m", "plmkit.cli", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limit if fsize else None, timeout=300)


def one_line_error(r, command, *words):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"plmkit {command}: error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def digests(directory):
    return {p.relative_to(directory): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def finetune_args(work, train, out, *extra):
    return [str(a) for a in ("finetune", "--model", work / "base", "--train", work / train, "--valid",
                             work / "valid.tsv", "--out", out, "--precision", "fp32", "--batch-size", "8", *extra)]


@pytest.mark.parametrize("option, value, field", [("--epochs", "0", "epochs"), ("--max-length", "1", "max_length"),
                                                  ("--lr", "0", "lr"), ("--batch-size", "0", "batch_size")])
def test_finetune_refuses_a_bad_setting_before_writing(work, tmp_path, option, value, field):
    r = plmkit_cli(*finetune_args(work, "train.tsv", tmp_path / "out"), option, value)
    one_line_error(r, "finetune", f"{field}:")
    assert list(tmp_path.iterdir()) == []  # neither out nor out.partial


def _interrupted(work, train, out):
    """A .partial as a run killed just before export leaves it (checkpoint, best, run record)."""
    class Killed(BaseException):
        pass

    def killed(*a, **k):
        raise Killed

    original = finetune_module.save_pretrained
    finetune_module.save_pretrained = killed
    try:
        with pytest.raises(Killed):
            finetune(work / "base", work / train, work / "valid.tsv", out,
                     cfg=FinetuneConfig(epochs=1, batch_size=8, precision="fp32"), progress=False)
    finally:
        finetune_module.save_pretrained = original
    partial = out.with_name(out.name + ".partial")
    assert (partial / "checkpoint.pt").exists()
    return partial


def test_a_partial_run_with_another_label_set_is_named_not_a_size_mismatch(work, tmp_path):
    partial = _interrupted(work, "three.tsv", tmp_path / "out")
    before = digests(partial)
    r = plmkit_cli(*finetune_args(work, "train.tsv", tmp_path / "out", "--epochs", "1"))
    one_line_error(r, "finetune", str(partial), "remove", "sha256.train")
    assert digests(partial) == before and not (tmp_path / "out").exists()
    # a .partial from before run records existed: the checkpoint's shapes give it away, named
    (partial / "run.json").unlink()
    checkpoint = (partial / "checkpoint.pt").read_bytes()
    r = plmkit_cli(*finetune_args(work, "train.tsv", tmp_path / "out", "--epochs", "1"))
    one_line_error(r, "finetune", str(partial / "checkpoint.pt"), "different model", f"remove {partial}")
    assert (partial / "checkpoint.pt").read_bytes() == checkpoint and not (tmp_path / "out").exists()


def test_a_partial_of_other_data_with_the_same_labels_is_refused_and_overwrite_restarts(work, tmp_path):
    partial = _interrupted(work, "other.tsv", tmp_path / "out")
    before = digests(partial)
    r = plmkit_cli(*finetune_args(work, "train.tsv", tmp_path / "out", "--epochs", "1"))
    one_line_error(r, "finetune", str(partial), "sha256.train", "--overwrite")
    assert digests(partial) == before and not (tmp_path / "out").exists()
    # the command that started it resumes it (same data, same settings)
    report = finetune(work / "base", work / "other.tsv", work / "valid.tsv", tmp_path / "out",
                      cfg=FinetuneConfig(epochs=1, batch_size=8, precision="fp32"), progress=False)
    assert report["steps"] == 3 and not partial.exists()  # 24 rows / 8: the resumed epoch was not rerun
    # overwrite discards a different run's .partial and starts afresh
    _interrupted(work, "other.tsv", tmp_path / "again")
    assert main(finetune_args(work, "train.tsv", tmp_path / "again", "--epochs", "1", "--overwrite")) == 0
    assert (tmp_path / "again" / "model" / "config.json").exists()


def test_an_unreadable_resume_checkpoint_is_one_line(work, tmp_path):
    partial = _interrupted(work, "train.tsv", tmp_path / "out")
    (partial / "checkpoint.pt").write_bytes(b"not a checkpoint")
    r = plmkit_cli(*finetune_args(work, "train.tsv", tmp_path / "out", "--epochs", "1"))
    one_line_error(r, "finetune", str(partial / "checkpoint.pt"), "cannot be read")


def test_a_full_disk_in_finetune_keeps_the_old_output_byte_identical(work, tmp_path):
    out = tmp_path / "out"
    assert main(finetune_args(work, "train.tsv", out, "--epochs", "1")) == 0
    before = digests(out)
    r = plmkit_cli(*finetune_args(work, "train.tsv", out, "--epochs", "1", "--overwrite"), fsize=4000)
    # training logs its device line first; the error is the one line after it, and no traceback
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [l for l in r.stderr.splitlines() if "error:" in l]
    assert errors == [r.stderr.strip().splitlines()[-1]]
    assert "File too large" in errors[0] and str(tmp_path / "out.partial") in errors[0]
    assert digests(out) == before


def test_a_full_disk_in_predict_keeps_the_old_predictions(work, tmp_path):
    model = tmp_path / "clf"
    assert main(finetune_args(work, "train.tsv", model, "--epochs", "1")) == 0
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(b"old predictions\n")
    r = plmkit_cli("predict", "--model", model, "--input", work / "train.tsv", "--out", pred, fsize=200)
    one_line_error(r, "predict", "File too large", str(pred))
    assert pred.read_bytes() == b"old predictions\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("pred")] == ["pred.jsonl"]  # no temp left


def test_pretrain_on_an_empty_or_undecodable_corpus_writes_nothing(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    r = plmkit_cli("pretrain", "--corpus", tmp_path / "empty.txt", "--out", tmp_path / "out")
    one_line_error(r, "pretrain", "empty.txt", "no text")
    (tmp_path / "bad.txt").write_bytes("第一行\n第二行\n".encode() + b"\xff\xfe broken\n")
    r = plmkit_cli("pretrain", "--corpus", tmp_path / "bad.txt", "--out", tmp_path / "out")
    one_line_error(r, "pretrain", "bad.txt", "line 3", "UTF-8")
    assert not (tmp_path / "out").exists()


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    """Only user errors become one line: a TypeError from our code propagates."""
    import plmkit.cli as cli

    def broken(args):
        raise TypeError("a bug")
    monkeypatch.setattr(cli, "cmd_demo_data", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["demo-data", "--out", str(tmp_path)])
