"""The main job: its time budget, and the command itself with no option pinned."""
import os
import re
import subprocess
import sys

import pytest
import torch

from plmkit.config import ModelConfig
from plmkit.models import build_model
from plmkit.recipes import finetune as finetune_recipe
from plmkit.recipes.finetune import classification_loss, fit_epochs


def _batch(b: int, t: int) -> dict:
    ids = torch.randint(5, 90, (b, t))
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids),
            "labels": torch.randint(0, 2, (b,))}


def test_fit_epochs_leaves_the_run_untouched_and_follows_the_budget(monkeypatch):
    torch.manual_seed(0)
    config = ModelConfig(family="bert", vocab_size=100, hidden_size=32, num_layers=2, num_heads=2,
                         intermediate_size=64, max_position=64, type_vocab_size=2)
    model = build_model(config, with_pool=True, num_labels=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [_batch(8, 8), _batch(8, 24), _batch(8, 64)]
    rng = torch.get_rng_state()
    # a machine on which a step takes 0.05 s + 1 ms per padded token
    clock = [0.0]

    def timed_loss(m, batch):
        clock[0] += 0.05 + 1e-3 * batch["input_ids"].numel()
        return classification_loss(m, batch)

    monkeypatch.setattr(finetune_recipe.time, "perf_counter", lambda: clock[0])
    epoch = (100, 100 * 8 * 24)  # 100 steps of 8 x 24 tokens: 100 x (0.05 + 0.192) s = 24.2 s, 26.62 s with 10%
    fit = lambda seconds: fit_epochs(model, timed_loss, batches, epoch, seconds, 5,  # noqa: E731
                                     precision="fp32", device=torch.device("cpu"))
    epochs, info = fit(80.0)
    assert info["epoch_seconds_estimate"] == pytest.approx(26.6, abs=0.05)
    assert epochs == 3  # 80 / 26.62
    assert [t for t, _ in info["timed_steps"]] == [64, 192, 512]
    assert fit(1e9)[0] == 5 and fit(1.0)[0] == 1  # at most `most`, at least one
    assert torch.equal(torch.get_rng_state(), rng)  # dropout draws did not move the run's random stream
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_demo_command_with_its_defaults(tmp_path):
    """`plmkit demo` as the README runs it: no option given (the output folder aside)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "plmkit.cli", "demo", "--out", str(tmp_path / "demo")],
                          capture_output=True, text=True, env=env, timeout=1200, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    accuracy = float(re.search(r"test accuracy:\s+([0-9.]+)", out).group(1))
    assert accuracy > 0.80, out  # a character TF-IDF baseline scores 0.858 here; chance is about 0.5
    shown = re.findall(r"^\s+(ok   |WRONG) (positive|negative)\s+-> (positive|negative)", out, re.M)
    assert len(shown) == 6 and all((mark == "ok   ") == (gold == pred) for mark, gold, pred in shown)
    assert (tmp_path / "demo" / "classifier" / "curves.png").stat().st_size > 1000
    assert re.search(r"precision (bf16|fp32)", done.stderr)  # the choice is printed at the start
