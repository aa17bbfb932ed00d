"""Where the sentiment models err: texts of valid/test that also appear in train vs unseen ones, and by length.

    python benchmarks/sentiment_overlap.py [--data ../shared/data/sentiment] [--models DIR ...] [--max-length 256]

A text counts as seen when, whitespace-normalised, it is also a train text. Prints, for the tuned TF-IDF
baseline of bench_sentiment.py and for each fine-tuned model directory given, accuracy on all / seen /
unseen texts of valid and test, and on test by length. Needs scikit-learn.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sentiment import tfidf_classifier  # noqa: E402
from plmkit.data import read_examples  # noqa: E402
from plmkit.recipes.finetune import TextClassifier  # noqa: E402

BUCKETS = ((0, 50), (50, 100), (100, 200), (200, 255), (255, 10**9))


def norm(text: str) -> str:
    return " ".join(text.split())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"))
    ap.add_argument("--models", nargs="*", default=[], help="fine-tuned model directories (plmkit finetune --out)")
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()
    ex = {s: read_examples(Path(args.data) / f"sentiment.{s}.data") for s in ("train", "valid", "test")}
    gold = {s: np.array(ex[s].labels) for s in ex}
    train_label: dict[str, set] = {}
    for text, label in zip(ex["train"].texts, ex["train"].labels):
        train_label.setdefault(norm(text), set()).add(label)
    seen = {s: np.array([norm(t) in train_label for t in ex[s].texts]) for s in ("valid", "test")}
    for s in seen:
        agree = np.mean([gold[s][i] in train_label[norm(t)] for i, t in enumerate(ex[s].texts) if seen[s][i]])
        print(f"{s}: {seen[s].sum()} of {len(seen[s])} texts also in train; their train label agrees for {agree:.2%}")
    tfidf, _ = tfidf_classifier(ex["train"], ex["valid"])
    predictors = {"TF-IDF + LR (C on valid)": tfidf}
    for d in args.models:
        clf = TextClassifier(d, args.max_length)
        predictors[d] = lambda texts, clf=clf: np.array([label for label, _ in clf.predict(texts)])
    length = np.array([len(t) for t in ex["test"].texts])
    print("| predictor | valid all / seen / unseen | test all / seen / unseen | test by length "
          + " / ".join(f"{lo}-{hi if hi < 10**9 else ''}" for lo, hi in BUCKETS) + " |\n|---|---|---|---|")
    for name, predict in predictors.items():
        ok = {s: predict(ex[s].texts) == gold[s] for s in seen}
        cells = [" / ".join(f"{o.mean():.4f}" for o in (ok[s], ok[s][seen[s]], ok[s][~seen[s]])) for s in seen]
        by_len = " / ".join(f"{ok['test'][(length >= lo) & (length < hi)].mean():.4f}" for lo, hi in BUCKETS)
        print(f"| {name} | {cells[0]} | {cells[1]} | {by_len} |")
    print("test texts by length: " + ", ".join(f"{lo}-: {((length >= lo) & (length < hi)).sum()}" for lo, hi in BUCKETS))


if __name__ == "__main__":
    main()
