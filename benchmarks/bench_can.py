"""CAN (kexue.fm/archives/8728) on a fine-tuned classifier's test probabilities: accuracy before and after.

    python benchmarks/bench_can.py --model runs/demo/classifier --train runs/demo/data/train.tsv --test runs/demo/data/test.tsv

The prior is the training set's label frequencies, as in the post; k=3 (capped at the class
count), threshold 0.9, alpha 1, one iteration.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plmkit.data import read_examples  # noqa: E402
from plmkit.recipes.finetune import TextClassifier  # noqa: E402
from plmkit.similarity.can import can_correct, topk_uncertainty  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="runs/demo/classifier")
    ap.add_argument("--train", default="runs/demo/data/train.tsv")
    ap.add_argument("--test", default="runs/demo/data/test.tsv")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threshold", type=float, default=0.9)
    args = ap.parse_args()
    clf = TextClassifier(args.model, max_length=args.max_length)
    train, test = read_examples(args.train), read_examples(args.test)
    counts = Counter(train.labels)
    prior = np.array([counts[name] for name in clf.labels], dtype=float)
    prior /= prior.sum()
    probs = np.array([p for _, p in clf.predict(test.texts)])
    gold = np.array([clf.labels.index(label) for label in test.labels])
    fixed = can_correct(probs, prior, k=3, threshold=args.threshold, alpha=1.0, iterations=1)
    uncertain = topk_uncertainty(probs, min(3, probs.shape[1])) >= args.threshold
    before, after = (probs.argmax(1) == gold).mean(), (fixed.argmax(1) == gold).mean()
    print(f"| classifier | test | uncertain rows (threshold {args.threshold}) | accuracy before | after CAN |")
    print("|---|---|---|---|---|")
    print(f"| {args.model} | {len(gold)} | {int(uncertain.sum())} | {before:.4f} | {after:.4f} |")


if __name__ == "__main__":
    main()
