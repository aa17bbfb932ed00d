"""BERT-base forward, plmkit vs transformers, identical weights and inputs, one process.

    python benchmarks/bench_bert_forward.py [--batches 8 32] [--seq 128] [--repeats 5]

Prints a markdown table row per shape: sequences/s for each, the ratio, GFLOP/s, and the
max abs difference of the outputs (must stay <= 1e-5).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import plmkit  # noqa: E402


def flops_per_seq(cfg, T: int) -> float:
    """Multiply-adds x2 of the linear layers and attention products of one sequence."""
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_layer = 2 * T * (4 * H * H + 2 * H * I) + 2 * 2 * T * T * H
    return L * per_layer


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    cfg = transformers.BertConfig()  # bert-base: 12 x 768, 12 heads, 3072, vocab 30522
    torch.manual_seed(0)
    hf = transformers.BertModel(cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = plmkit.from_pretrained(d, with_pool=True)
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {datetime.date.today()}")
    print("| shape | transformers seq/s | plmkit seq/s | ratio | plmkit GFLOP/s | max abs diff |")
    print("|---|---|---|---|---|---|")
    for B in args.batches:
        ids = torch.randint(1000, cfg.vocab_size, (B, args.seq))
        mask = torch.ones(B, args.seq, dtype=torch.long)
        mask[B // 2:, args.seq * 3 // 4:] = 0  # some padding, as real batches have
        with torch.inference_mode():
            ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
            out = ours(ids, attention_mask=mask).last_hidden_state
            diff = (ref - out).abs().max().item()
            t_hf = timed(lambda: hf(input_ids=ids, attention_mask=mask), args.repeats)
            t_ours = timed(lambda: ours(ids, attention_mask=mask), args.repeats)
        gflops = flops_per_seq(cfg, args.seq) * B / t_ours / 1e9
        print(f"| {B} x {args.seq} fp32 | {B / t_hf:.2f} | {B / t_ours:.2f} | {t_hf / t_ours:.2f}x | {gflops:.0f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
