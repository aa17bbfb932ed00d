"""Few-shot sentiment (../shared/data/sentiment) with an MLM: zero-shot PET per pattern, then with N
labelled examples (several seeds) PET, P-tuning (frozen LM) and plain fine-tuning ([CLS] head),
all on the same N examples, the same steps, batch size and test set. Prints markdown tables.

    python benchmarks/bench_fewshot.py [--model DIR] [--shots 16 64 256] [--seeds 0 1 2] [--steps 100]

Every method trains for --steps optimizer steps with no validation-based selection (a few-shot
learner has no large dev set); accuracy is on the full test file.
"""
from __future__ import annotations

import argparse
import datetime
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plmkit.data import read_examples  # noqa: E402
from plmkit.pretrained import from_pretrained  # noqa: E402
from plmkit.recipes.fewshot import FewShotConfig, run_fewshot, sample_examples  # noqa: E402
from plmkit.recipes.finetune import Batches, _rows, accuracy_metric, classification_loss  # noqa: E402
from plmkit.tokenizers import load_tokenizer  # noqa: E402
from plmkit.training import Trainer, build_optimizer, lambda_scheduler, warmup_linear  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402

PATTERNS = ["{mask}满意。{text}", "{text}总之很{mask}满意。", "感觉{mask}好。{text}", "{text}。{mask}推荐！"]
WORDS = {"1": "很", "0": "不"}
PTUNE = "{p}{p}{p}{p}{mask}{p}{p}{p}{p}{text}"


def finetune_fixed(model_path, train_ex, test_ex, steps: int, lr: float, batch_size: int, max_length: int,
                   seed: int) -> float:
    """The baseline: a new [CLS] classifier head and the whole encoder, trained for `steps`."""
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(model_path)
    model = from_pretrained(model_path, num_labels=2)
    collate = Batches(tokenizer, max_length)
    names = ["0", "1"]
    rows = _rows(train_ex, [names.index(y) for y in train_ex.labels])
    loader = torch.utils.data.DataLoader(rows, batch_size=min(batch_size, len(rows)), shuffle=True,
                                         generator=torch.Generator().manual_seed(seed), collate_fn=collate)
    optimizer = build_optimizer(model, lr=lr, weight_decay=0.01)
    scheduler = lambda_scheduler(optimizer, warmup_linear(int(0.1 * steps), steps))
    trainer = Trainer(model.train(), classification_loss, optimizer, scheduler, max_grad_norm=1.0,
                      precision="bf16", progress=False)
    trainer.fit(loader, epochs=math.ceil(steps / len(loader)), max_steps=steps, resume=False)
    model.eval()
    test_rows = _rows(test_ex, [names.index(y) for y in test_ex.labels])
    test_loader = torch.utils.data.DataLoader(test_rows, batch_size=64, collate_fn=collate)
    return accuracy_metric(model, test_loader)["accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment"))
    ap.add_argument("--model", default=None, help="an MLM directory (default: the embedded model)")
    ap.add_argument("--shots", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4, help="PET and fine-tuning (whole model)")
    ap.add_argument("--ptune-lr", type=float, default=1e-2, help="P-tuning, frozen LM (prompt vectors only)")
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = args.model or embedded_model_dir()
    data = Path(args.data)
    files = {s: data / f"sentiment.{s}.data" for s in ("train", "valid", "test")}
    train_all, test_ex = read_examples(files["train"]), read_examples(files["test"])
    started = time.time()
    out = [f"model: {model}; test: {len(test_ex)} reviews; {datetime.date.today()}; "
           f"{torch.get_num_threads()} CPU threads\n"]

    with tempfile.TemporaryDirectory() as tmp:
        base = dict(words=WORDS, max_length=args.max_length, batch_size=args.batch_size, steps=args.steps)
        zs = run_fewshot(model, Path(tmp) / "zs", test=files["test"], cfg=FewShotConfig(patterns=PATTERNS, **base),
                         progress=False)
        out.append("| zero-shot PET pattern (words 很 / 不) | test accuracy |\n|---|---|")
        out += [f"| `{p}` | {r['test_accuracy']:.4f} |" for p, r in zs["patterns"].items()]
        out.append(f"| ensemble of the {len(PATTERNS)} | {zs['ensemble']['test_accuracy']:.4f} |\n")
        print("\n".join(out), flush=True)

        table: dict[tuple[str, int], list[float]] = {}
        for n in args.shots:
            for seed in args.seeds:
                train_ex = sample_examples(train_all, n, seed)
                runs = {
                    "fine-tuning ([CLS] head)": lambda: finetune_fixed(model, train_ex, test_ex, args.steps, args.lr,
                                                                       args.batch_size, args.max_length, seed),
                    f"PET `{PATTERNS[0]}`": lambda: run_fewshot(
                        model, Path(tmp) / "pet", train=files["train"], test=files["test"], overwrite=True,
                        cfg=FewShotConfig(patterns=PATTERNS[:1], train_sample=n, seed=seed, lr=args.lr, **base),
                        progress=False)["ensemble"]["test_accuracy"],
                    "P-tuning, frozen LM (8 prompts)": lambda: run_fewshot(
                        model, Path(tmp) / "pt", train=files["train"], test=files["test"], overwrite=True,
                        cfg=FewShotConfig(patterns=[PTUNE], train_sample=n, seed=seed, lr=args.ptune_lr,
                                          prompt_tuning=True, **base), progress=False)["ensemble"]["test_accuracy"],
                }
                for name, run in runs.items():
                    t = time.time()
                    acc = run()
                    table.setdefault((name, n), []).append(acc)
                    print(f"n={n} seed={seed} {name}: {acc:.4f} ({time.time() - t:.0f} s)", flush=True)

    methods = list(dict.fromkeys(name for name, _ in table))
    out.append(f"{args.steps} steps of batch {args.batch_size}, seeds {args.seeds}: test accuracy, mean ± std\n")
    out.append("| method | " + " | ".join(f"N = {n}" for n in args.shots) + " |")
    out.append("|---|" + "---|" * len(args.shots))
    for name in methods:
        cells = []
        for n in args.shots:
            accs = table[(name, n)]
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            cells.append(f"{statistics.mean(accs):.4f} ± {spread:.4f}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append(f"\n({time.time() - started:.0f} s in all)")
    print("\n".join(out[-len(methods) - 4:]))
    Path("runs").mkdir(exist_ok=True)
    Path("runs/bench_fewshot.md").write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
