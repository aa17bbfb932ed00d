"""Decoding speed: plmkit.generation.generate vs transformers' generate, one process, identical weights.

GPT-2-small-size and T5-small-size models with random weights are written by transformers
(save_pretrained) and read by plmkit (from_pretrained); both then decode the same batch
greedily (and with beam search, --beams) for a fixed number of new tokens (end tokens
disabled so every row runs the full length). Runs alternate between the two libraries; the
best run of each is reported (other jobs share this machine's cores: the least disturbed run
is the most repeatable figure), with the median beside it and the load average printed.

    python benchmarks/bench_generate.py [--batch 8] [--new 64] [--prompt 32] [--rounds 3] [--beams 4]
                                        [--threads N]

plmkit's fp32 linears race oneDNN against torch's default GEMM per shape class on first use
(plmkit.modules.linear); the warm-up run before timing includes those races.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import plmkit
from plmkit.generation import generate


def _models(kind: str, path: str):
    import transformers

    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(pad_token_id=0)  # GPT-2 small: 12 x 768, 50257 tokens
        hf = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
                                       feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0)  # t5-small
        hf = transformers.T5ForConditionalGeneration(config)
    hf.eval()
    hf.generation_config.eos_token_id = None  # run every row for the full length in both libraries
    hf.generation_config.pad_token_id = 0
    hf.save_pretrained(path)
    ours = plmkit.from_pretrained(path).eval()
    return hf, ours


def _time(fn) -> tuple[float, float, torch.Tensor]:
    """Wall-clock and process CPU seconds of one call (CPU time ignores time spent descheduled)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def bench(kind: str, batch: int, new: int, prompt: int, rounds: int, beams: int) -> list[str]:
    with tempfile.TemporaryDirectory() as path:
        hf, ours = _models(kind, path)
        g = torch.Generator().manual_seed(1)
        vocab = hf.config.vocab_size
        ids = torch.randint(2, vocab, (batch, prompt), generator=g)
        mask = torch.ones_like(ids)
        rows = []
        for nb in (1, beams) if beams > 1 else (1,):
            def run_hf():
                with torch.inference_mode():
                    return hf.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                       do_sample=False, num_beams=nb)

            def run_ours():
                return generate(ours, ids, attention_mask=mask, max_new_tokens=new, num_beams=nb, eos_token_id=())

            run_hf(), run_ours()  # warm-up: allocator, oneDNN primitives
            times = {"transformers": [], "plmkit": []}
            cpu = {"transformers": [], "plmkit": []}
            outs = {}
            for _ in range(rounds):
                for name, fn in (("transformers", run_hf), ("plmkit", run_ours)):
                    t, c, outs[name] = _time(fn)
                    times[name].append(t)
                    cpu[name].append(c)
            generated = {name: out.shape[1] - (1 if kind == "t5" else prompt) for name, out in outs.items()}
            if set(generated.values()) != {new}:
                raise RuntimeError(f"{kind}: expected {new} new tokens per row, found {generated}")
            same = torch.equal(outs["transformers"], outs["plmkit"])
            best = {name: batch * new / min(ts) for name, ts in times.items()}
            med = {name: batch * new / statistics.median(ts) for name, ts in times.items()}
            rows.append(f"| {kind} | {'greedy' if nb == 1 else f'beam {nb}'} | {torch.get_num_threads()} | "
                        f"{best['transformers']:.1f} ({med['transformers']:.1f}) | {best['plmkit']:.1f} "
                        f"({med['plmkit']:.1f}) | {best['plmkit'] / best['transformers']:.2f}x "
                        f"({med['plmkit'] / med['transformers']:.2f}x) | "
                        f"{min(cpu['transformers']) / min(cpu['plmkit']):.2f}x | {'yes' if same else 'no'} |")
            print(rows[-1], flush=True)
        return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--prompt", type=int, default=32, help="prompt (GPT-2) / source (T5) length")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--beams", type=int, default=0, help="also run beam search with this many beams")
    p.add_argument("--models", default="gpt2,t5")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from plmkit.hardware import report
    r = report()
    print(f"machine: {r['cpu']} (flags {r['isa_flags']}; oneDNN cap {r['onednn_isa_cap']}; ATen {r['aten_capability']})")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, {args.new} new tokens, "
          f"prompt {args.prompt}; load average before: {os.getloadavg()}")
    print("| model | strategy | threads | transformers tokens/s best (median) | plmkit tokens/s best (median) | "
          "ratio best (median) | ratio of CPU time | same ids |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.models.split(","):
        bench(kind, args.batch, args.new, args.prompt, args.rounds, args.beams)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
