"""The training loop: exact accumulation, clipping, bf16, the non-finite guard, evaluation, logs."""

import io
import logging
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from plmkit.losses import token_cross_entropy
from plmkit.training import (
    EMA,
    MetricsLogger,
    ProgressBar,
    Trainer,
    distributed_loader,
    load_checkpoint,
    plot_curves,
    read_metrics,
    save_checkpoint,
)


class TokenTagger(nn.Module):
    def __init__(self, vocab=11, dim=6, tags=5):
        super().__init__()
        self.embeddings = nn.ModuleDict({"token": nn.Embedding(vocab, dim)})
        self.mix = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, tags)

    def forward(self, tokens):
        return self.out(torch.tanh(self.mix(self.embeddings["token"](tokens))))  # (B, T, tags)


def _token_data(n=12, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 11, (n, length), generator=g)
    tags = torch.randint(0, 5, (n, length), generator=g)
    lengths = torch.tensor([1, 6, 2, 5, 3, 4, 6, 1, 2, 6, 3, 5])[:n]
    tags[torch.arange(length)[None, :] >= lengths[:, None]] = -100  # padding
    return tokens, tags


def token_loss(model, batch):
    tokens, tags = batch
    return token_cross_entropy(model(tokens), tags)


class RecordingSGD(torch.optim.SGD):
    """SGD that keeps a copy of the gradients it was asked to apply."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.seen = []

    def step(self, closure=None):
        self.seen.append([p.grad.detach().clone() for g in self.param_groups for p in g["params"]])
        return super().step(closure)


def _reference_grads(model, tokens, tags):
    """Plain autograd on the whole batch: mean over every counted token."""
    model.zero_grad()
    logits = model(tokens)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tags.reshape(-1), ignore_index=-100)
    loss.backward()
    grads = [p.grad.detach().clone() for p in model.parameters()]
    model.zero_grad()
    return grads


def test_accumulation_equals_one_large_batch_with_uneven_micro_batches():
    tokens, tags = _token_data()
    torch.manual_seed(0)
    model = TokenTagger()
    big = TokenTagger()
    big.load_state_dict(model.state_dict())
    # Two windows of three micro-batches of 3/2/1 examples with different token counts.
    splits = [(0, 3), (3, 5), (5, 6), (6, 9), (9, 11), (11, 12)]
    micro = [(tokens[a:b], tags[a:b]) for a, b in splits]
    opt = RecordingSGD(model.parameters(), lr=0.5)
    Trainer(model, token_loss, opt, accumulation=3, precision="fp32", progress=False).fit(micro, epochs=1, resume=False)

    ref_opt = RecordingSGD(big.parameters(), lr=0.5)
    expected = []
    for half in (slice(0, 6), slice(6, 12)):
        expected.append(_reference_grads(big, tokens[half], tags[half]))
        for p, g in zip(big.parameters(), expected[-1]):
            p.grad = g.clone()
        ref_opt.step()
    assert len(opt.seen) == 2
    for got_step, ref_step in zip(opt.seen, expected):
        for got, ref in zip(got_step, ref_step):
            assert (got - ref).abs().max().item() <= 1e-6
    for p, q in zip(model.parameters(), big.parameters()):
        assert (p - q).abs().max().item() <= 1e-6

    # Control: averaging per-micro-batch means is not the large-batch gradient here.
    def mean_loss(m, batch):
        loss_sum, count = token_loss(m, batch)
        return loss_sum / count

    other = TokenTagger()
    other.load_state_dict(big.state_dict())
    fresh = TokenTagger()
    fresh.load_state_dict(other.state_dict())
    opt2 = RecordingSGD(other.parameters(), lr=0.5)
    Trainer(other, mean_loss, opt2, accumulation=3, precision="fp32", progress=False).fit(micro[:3], epochs=1, resume=False)
    exact = _reference_grads(fresh, tokens[:6], tags[:6])
    assert max((a - b).abs().max().item() for a, b in zip(opt2.seen[0], exact)) > 1e-3


def test_trailing_window_and_clipping_by_hand():
    tokens, tags = _token_data()
    torch.manual_seed(0)
    model = TokenTagger()
    ref = TokenTagger()
    ref.load_state_dict(model.state_dict())
    # Five micro-batches with accumulation 2: windows {0,1}, {2,3} and the trailing {4}.
    micro = [(tokens[i : i + 2], tags[i : i + 2]) for i in range(0, 10, 2)]
    opt = RecordingSGD(model.parameters(), lr=1.0)
    Trainer(model, token_loss, opt, accumulation=2, max_grad_norm=0.05, precision="fp32", progress=False).fit(micro, resume=False)
    assert len(opt.seen) == 3
    for window, rows in enumerate((slice(0, 4), slice(4, 8), slice(8, 10))):
        g = _reference_grads(ref, tokens[rows], tags[rows])
        norm = math.sqrt(sum((x.double() ** 2).sum().item() for x in g))
        assert norm > 0.05  # so clipping really acts
        with torch.no_grad():
            for p, x in zip(ref.parameters(), g):
                p -= x * (0.05 / norm)  # clip_grad_norm_: scale by max_norm / norm
        for got, x in zip(opt.seen[window], g):
            assert torch.allclose(got, x * (0.05 / norm), atol=1e-7)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert (p - q).abs().max().item() <= 1e-6


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 4)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


def _classification_batches(n_batches=50, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(16, 4, generator=g)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(size, 16, generator=g)
        batches.append((x, (x @ w).argmax(-1)))
    return batches


def test_bf16_loss_tracks_fp32_over_50_steps():
    batches = _classification_batches()
    runs = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = MLP()
        dtypes = set()

        def loss_fn(m, batch, dtypes=dtypes):
            logits = m(batch[0])
            dtypes.add(logits.dtype)
            return F.cross_entropy(logits.float(), batch[1])

        losses = []
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        trainer = Trainer(model, loss_fn, opt, precision=precision, progress=False,
                          callbacks=[lambda t, r: losses.append(r["loss"])])
        trainer.fit(batches, epochs=1, resume=False)
        runs[precision] = (losses, dtypes)
    fp32, bf16 = runs["fp32"][0], runs["bf16"][0]
    assert runs["fp32"][1] == {torch.float32} and runs["bf16"][1] == {torch.bfloat16}
    assert len(fp32) == len(bf16) == 50
    assert fp32[-1] < 0.5 * fp32[0]  # it learned
    diffs = [abs(a - b) for a, b in zip(fp32, bf16)]
    assert max(diffs) < 0.05, diffs
    assert fp32 != bf16  # bf16 really ran


def test_guard_skips_non_finite_loss_and_gradients(tmp_path, caplog):
    batches = _classification_batches(n_batches=8)
    torch.manual_seed(0)
    model = MLP()

    def loss_fn(m, batch):
        x, y, index = batch
        h = m.up(x)
        if index == 5:  # finite loss, infinite gradients
            h.register_hook(lambda g: g * float("inf"))
        loss = F.cross_entropy(m.down(F.gelu(h)).float(), y)
        return loss * float("inf") if index == 2 else loss

    snapshots = []
    trainer = Trainer(
        model, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1), precision="bf16",
        ema=EMA(model, 0.5), out_dir=tmp_path, log_every=1, progress=False,
        callbacks=[lambda t, r: snapshots.append((r["skipped"], model.up.weight.detach().clone()))],
    )
    with caplog.at_level(logging.WARNING, logger="plmkit.training"):
        summary = trainer.fit([(x, y, i) for i, (x, y) in enumerate(batches)], epochs=1, resume=False)
    assert summary["skipped_steps"] == 2 and summary["step"] == 6
    assert [s for s, _ in snapshots] == [False, False, True, False, False, True, False, False]
    assert torch.equal(snapshots[2][1], snapshots[1][1])  # the skipped update left the weights
    assert torch.equal(snapshots[5][1], snapshots[4][1])
    assert not torch.equal(snapshots[6][1], snapshots[5][1])  # and training went on
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.ema.num_updates == 6
    events = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r.get("event") == "skipped_step"]
    assert [e["reason"] for e in events] == ["non-finite loss", "non-finite gradient norm"]
    assert sum("skipped the update" in r.message for r in caplog.records) == 2


def test_evaluate_predict_and_early_stopping(tmp_path):
    tokens, tags = _token_data()
    torch.manual_seed(0)
    model = TokenTagger()
    loader = [(tokens[:5], tags[:5]), (tokens[5:], tags[5:])]
    trainer = Trainer(model, token_loss, torch.optim.SGD(model.parameters(), lr=0.0), precision="fp32", progress=False,
                      out_dir=tmp_path)
    # The loss is weighted by token counts, not averaged per batch.
    with torch.no_grad():
        logits = model(tokens)
        expected = F.cross_entropy(logits.reshape(-1, 5), tags.reshape(-1), ignore_index=-100).item()
    assert trainer.evaluate(loader)["loss"] == pytest.approx(expected, rel=1e-6)
    preds = trainer.predict([tokens[:5], tokens[5:]])
    assert torch.allclose(preds, logits)

    scores = iter([0.5, 0.6, 0.55, 0.54, 0.9])

    def metric_fn(m, data):
        assert not m.training
        return {"acc": next(scores)}

    summary = trainer.fit(loader, epochs=5, valid_loader=loader, metric_fn=metric_fn,
                          early_stopping_patience=2, resume=False)
    assert summary["stopped_early"] and summary["epoch"] == 4
    assert summary["monitor"] == "acc" and summary["best"] == 0.6
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 4 and best["acc"] == 0.6  # end of the second epoch
    valid = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "valid"]
    assert [r["acc"] for r in valid] == [0.5, 0.6, 0.55, 0.54]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_progress_bar_line():
    stream = io.StringIO()
    bar = ProgressBar(total=4, stream=stream, every=2)
    for _ in range(4):
        bar.update(1, samples=8, loss=0.25, lr=1e-3)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("train 4/4 | loss 0.2500 | lr 1.000e-03 |")
    assert "it/s" in lines[-1] and "samples/s" in lines[-1]


def test_metrics_log_and_curves(tmp_path, monkeypatch, caplog):
    batches = _classification_batches(n_batches=6)
    torch.manual_seed(0)
    model = MLP()
    trainer = Trainer(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), torch.optim.SGD(model.parameters(), lr=0.1),
                      out_dir=tmp_path, log_every=2, progress=False)
    trainer.fit(batches, epochs=2, valid_loader=batches[:2], resume=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
    assert all({"loss", "lr", "grad_norm", "steps_per_s"} <= set(r) for r in train)
    assert [r["step"] for r in records if r["split"] == "valid"] == [6, 12]
    # matplotlib absent: the PNG is skipped with a note, nothing raised.
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with caplog.at_level(logging.INFO, logger="plmkit.training"):
        assert plot_curves(tmp_path / "metrics.jsonl", tmp_path / "none.png") is False
    assert "matplotlib not installed" in caplog.text and not (tmp_path / "none.png").exists()
    monkeypatch.undo()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all("samples_per_s" in r for r in train)
    # A torn last line (a run killed mid-write) is skipped, and the next writer starts a fresh line.
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "ste')
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == len(records)
    log = MetricsLogger(tmp_path / "metrics.jsonl", tensorboard=False)
    log.log({"split": "train", "step": 13, "loss": 0.5})
    log.close()
    assert read_metrics(tmp_path / "metrics.jsonl")[-1] == {"split": "train", "step": 13, "loss": 0.5}
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == len(records) + 1


def test_tensorboard_receives_numbers_when_installed(tmp_path, monkeypatch):
    scalars = []

    class FakeWriter:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def close(self):
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    log = MetricsLogger(tmp_path / "metrics.jsonl")
    log.log({"split": "valid", "step": 4, "epoch": 0, "loss": 0.25, "acc": 0.5, "note": "x"})
    log.close()
    assert scalars == [("valid/loss", 0.25, 4), ("valid/acc", 0.5, 4)]


def test_max_steps_then_resume_in_process_matches_one_run(tmp_path):
    """Dropout and a loader shuffled by its own seeded generator: both restored on resume."""
    x = torch.cat([b[0] for b in _classification_batches(n_batches=5)])  # (80, 16)
    y = torch.cat([b[1] for b in _classification_batches(n_batches=5)])

    def run(out_dir, **fit_options):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.Dropout(0.2), nn.Linear(32, 4))
        loader = distributed_loader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=3)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        trainer = Trainer(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), opt, accumulation=2,
                          out_dir=out_dir, progress=False)
        return model, trainer.fit(loader, epochs=2, **fit_options)

    straight, _ = run(tmp_path / "a", resume=False)
    # Stop in the second epoch, so the loader's generator must be where epoch 1 began.
    _, first = run(tmp_path / "b", max_steps=7)
    assert first["step"] == 7
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (7, 1, 4)
    resumed, second = run(tmp_path / "b")
    assert second["step"] == 10
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="valid_loader"):
        run(tmp_path / "c", early_stopping_patience=1)
