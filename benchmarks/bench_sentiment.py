"""Sentiment (../shared/data/sentiment): the embedded model fine-tuned vs the same architecture from
random initialisation (same budget) vs character 1-3-gram TF-IDF + logistic regression.

    python benchmarks/bench_sentiment.py [--data ../shared/data/sentiment] [--epochs 3] [--max-length 256] [--lr 2e-4]
        [--ema 0] [--rdrop 0] [--dropout P] [--seed 0] [--rows embedded,random,tfidf] [--model DIR]

Both neural rows get the same budget (epochs of batch 32, the best epoch on valid kept).

Needs scikit-learn for the TF-IDF baseline (pip install scikit-learn). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import plmkit  # noqa: E402
from plmkit.data import read_examples  # noqa: E402
from plmkit.models import build_model  # noqa: E402
from plmkit.recipes.finetune import FinetuneConfig, finetune  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402


def tfidf_classifier(train, valid):
    """Char 1-3-gram TF-IDF + logistic regression, C chosen on valid; returns (predict, valid accuracy)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    x = vec.fit_transform(train.texts)
    best = None
    for c in (0.5, 1, 2, 4, 8):  # C chosen on valid, as the neural runs choose their epoch on valid
        clf = LogisticRegression(C=c, max_iter=2000).fit(x, train.labels)
        acc = (clf.predict(vec.transform(valid.texts)) == valid.labels).mean()
        if best is None or acc > best[0]:
            best = (acc, clf)
    return (lambda texts: best[1].predict(vec.transform(texts))), float(best[0])


def tfidf_baseline(train, valid, test) -> tuple[float, float]:
    predict, valid_acc = tfidf_classifier(train, valid)
    return valid_acc, float((predict(test.texts) == test.labels).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights (0: off)")
    ap.add_argument("--rdrop", type=float, default=0.0, help="R-Drop KL weight (0: off)")
    ap.add_argument("--dropout", type=float, default=None, help="hidden dropout while fine-tuning (default: the model's)")
    ap.add_argument("--seed", type=int, default=0, help="fine-tuning seed (order of batches, dropout, head init)")
    ap.add_argument("--rows", default="embedded,random,tfidf", help="which rows to run")
    ap.add_argument("--model", default=None, help="a pretrained model directory instead of the embedded one")
    ap.add_argument("--out", default="runs/bench-sentiment")
    args = ap.parse_args()
    data = Path(args.data)
    files = {s: data / f"sentiment.{s}.data" for s in ("train", "valid", "test")}
    cfg = FinetuneConfig(epochs=args.epochs, max_length=args.max_length, lr=args.lr, patience=args.epochs,
                         ema=args.ema, rdrop=args.rdrop, dropout=args.dropout, seed=args.seed)
    which = set(args.rows.split(","))
    rows = []
    model = args.model or embedded_model_dir()
    if "embedded" in which:
        t = time.time()
        r = finetune(model, files["train"], files["valid"], Path(args.out) / "embedded", test=files["test"], cfg=cfg,
                     overwrite=True)
        rows.append((f"{'plmkit embedded model' if args.model is None else model}, fine-tuned", r["valid_accuracy"],
                     r["test_accuracy"], time.time() - t, r["steps"]))
    if "random" in which:
        with tempfile.TemporaryDirectory() as d:  # same architecture and tokenizer, random weights
            config = plmkit.from_pretrained(model).config
            torch.manual_seed(0)
            plmkit.save_pretrained(build_model(config, with_mlm=True, with_pool=True), d,
                                   tokenizer=plmkit.load_tokenizer(model))
            t = time.time()
            r = finetune(d, files["train"], files["valid"], Path(args.out) / "random", test=files["test"], cfg=cfg,
                         overwrite=True)
            rows.append(("same architecture, random init", r["valid_accuracy"], r["test_accuracy"], time.time() - t,
                         r["steps"]))
    ex = {s: read_examples(p) for s, p in files.items()}
    if "tfidf" in which:
        t = time.time()
        va, te = tfidf_baseline(ex["train"], ex["valid"], ex["test"])
        rows.append(("char 1-3-gram TF-IDF + logistic regression", va, te, time.time() - t, None))
    print(f"{datetime.date.today()}, {torch.get_num_threads()} threads, epochs {args.epochs}, "
          f"max_length {args.max_length}, lr {args.lr}, ema {args.ema}, rdrop {args.rdrop}, dropout {args.dropout}, seed {args.seed}, "
          f"train/valid/test {len(ex['train'])}/{len(ex['valid'])}/{len(ex['test'])}")
    print("| model | valid acc | test acc | seconds | steps |\n|---|---|---|---|---|")
    for name, va, te, sec, steps in rows:
        print(f"| {name} | {va:.4f} | {te:.4f} | {sec:.0f} | {steps if steps is not None else '-'} |")


if __name__ == "__main__":
    main()
