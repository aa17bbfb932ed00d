"""A run killed with SIGKILL mid-epoch, then resumed, ends bit-identical to an uninterrupted run."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch

from plmkit.training import load_checkpoint, read_metrics

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "train_resume.py"


def _run(out_dir, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), str(out_dir), *extra], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _in_process(out_dir):
    spec = importlib.util.spec_from_file_location("train_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        module.main([str(out_dir)])
    finally:
        torch.set_num_threads(threads)


def _assert_equal_tree(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a} != {b}"


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, monkeypatch):
    killed = _run(tmp_path / "resumed", "--kill-after-step", "8")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "resumed" / "final.pt").exists()
    # 10 micro-batches per epoch, accumulation 2, a checkpoint every 3 steps: the last one
    # before the kill is step 6, two micro-batches into the second epoch.
    state = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (6, 1, 2)
    shutil.copytree(tmp_path / "resumed", tmp_path / "control")

    resumed = _run(tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _in_process(tmp_path / "straight")

    a = torch.load(tmp_path / "straight" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "final.pt", weights_only=True)
    assert a["step"] == b["step"] == 15
    _assert_equal_tree(a, b)  # model, EMA shadow, Lookahead + AdamW state: every bit
    # The log of the resumed run reads as one run: steps 7 and 8 once, with the same losses.
    la = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if r["split"] == "train"]
    lb = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl") if r["split"] == "train"]
    assert la == lb and [s for s, _ in la] == list(range(1, 16))

    # Control: the same resume without restoring the RNG states does not end bit-identical.
    import plmkit.training.loop as loop

    monkeypatch.setattr(loop, "restore_rng", lambda state: None)
    _in_process(tmp_path / "control")
    c = torch.load(tmp_path / "control" / "final.pt", weights_only=True)
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])
