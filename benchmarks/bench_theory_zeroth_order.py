"""Zeroth-order optimisation used for real: tune a linear head on frozen sentence features for accuracy / F1.

    PYTHONPATH=. nice python benchmarks/bench_theory_zeroth_order.py [--data ../shared/data/sentiment]
        [--train 4000] [--steps 300] [--cache /tmp/plmkit_sentiment_tiny.pt]

Features: the embedded Chinese model (plmkit.zoo.embedded_model_dir(), frozen) mean-pooled over the first
--train reviews of ../shared/data/sentiment/train and all of test, standardised with the training
statistics. A logistic-regression head trained by cross-entropy (L-BFGS) is the baseline; then
plmkit.theory.zeroth_order.ZerothOrder (two-point estimator == REINFORCE with a Gaussian policy,
kexue.fm/archives/7737) tunes the head directly on training accuracy or on F1 of the positive class,
from the cross-entropy head and from a random start. Scores are on the test split.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import plmkit  # noqa: E402
from plmkit.data import read_examples  # noqa: E402
from plmkit.sentence import encode_sentences  # noqa: E402
from plmkit.theory.zeroth_order import ZerothOrder  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402


def metrics(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, F1 of label 1) of the head w = [weights, bias] on features x."""
    pred = (x @ w[:-1] + w[-1] > 0).long()
    tp = ((pred == 1) & (y == 1)).sum().item()
    f1 = 2 * tp / max(1, (pred == 1).sum().item() + (y == 1).sum().item())
    return (pred == y).float().mean().item(), f1


def cross_entropy_head(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-3) -> torch.Tensor:
    w = torch.zeros(x.shape[1] + 1, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w[:-1] + w[-1], y.to(x.dtype))
        loss = loss + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach()


def zeroth_order_head(x, y, start, target: str, steps: int, seed: int) -> tuple[torch.Tensor, float]:
    w = torch.nn.Parameter(start.clone())
    scale = start[:-1].norm().item() / start.numel() ** 0.5  # perturb relative to the head's own size
    opt = ZerothOrder([w], lr=0.5 * scale, sigma=0.3 * scale, num_directions=16,
                      generator=torch.Generator().manual_seed(seed))
    index = 0 if target == "accuracy" else 1
    closure = lambda: 1.0 - metrics(w.detach(), x, y)[index]
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step(closure)
    return w.detach(), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "sentiment")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    names = sorted(p.name for p in args.data.glob("*")) if args.data.is_dir() else []
    if not names:
        print(f"SKIPPED: no sentiment data under {args.data}")
        return 0
    torch.set_num_threads(args.threads)
    if args.cache is not None and args.cache.is_file():
        feats = torch.load(args.cache)
    else:
        train_file = next(args.data / n for n in names if "train" in n)
        test_file = next(args.data / n for n in names if "test" in n)
        train, test = read_examples(train_file), read_examples(test_file)
        path = embedded_model_dir()
        model, tok = plmkit.from_pretrained(path), plmkit.load_tokenizer(path)
        texts = list(train.texts[: args.train]) + list(test.texts)
        t0 = time.perf_counter()
        v = encode_sentences(model, tok, texts, pooling="mean", normalize=False, batch_size=64, max_length=128)
        print(f"encoded {len(texts)} reviews in {time.perf_counter() - t0:.0f} s")
        labels = torch.tensor([int(l) for l in list(train.labels[: args.train]) + list(test.labels)])
        feats = {"x": v.double(), "y": labels, "n_train": min(args.train, len(train.texts))}
        if args.cache is not None:
            torch.save(feats, args.cache)
    n = feats["n_train"]
    x, y = feats["x"], feats["y"]
    mu, sd = x[:n].mean(0), x[:n].std(0) + 1e-6
    x = (x - mu) / sd
    xtr, ytr, xte, yte = x[:n], y[:n], x[n:], y[n:]
    print(f"sentiment: {n} training reviews, {len(yte)} test, features {x.shape[1]}-d (embedded model, frozen)")
    print("| head | train accuracy | test accuracy | test F1 | seconds |")
    print("|---|---|---|---|---|")
    t0 = time.perf_counter()
    ce = cross_entropy_head(xtr, ytr)
    rows = [("cross-entropy (L-BFGS)", ce, time.perf_counter() - t0)]
    for target in ("accuracy", "F1"):
        w, s = zeroth_order_head(xtr, ytr, ce, target, args.steps, seed=0)
        rows.append((f"zeroth-order on train {target}, from the CE head", w, s))
    start = torch.randn(x.shape[1] + 1, generator=torch.Generator().manual_seed(1), dtype=x.dtype) * 0.1
    for target in ("accuracy",):
        w, s = zeroth_order_head(xtr, ytr, start, target, args.steps * 3, seed=0)
        rows.append((f"zeroth-order on train {target}, from random ({args.steps * 3} steps)", w, s))
    for name, w, s in rows:
        tr, te = metrics(w, xtr, ytr), metrics(w, xte, yte)
        print(f"| {name} | {tr[0]:.4f} | {te[0]:.4f} | {te[1]:.4f} | {s:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
