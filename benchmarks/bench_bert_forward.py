"""BERT-base, plmkit vs transformers on identical weights and inputs, one process, interleaved rounds.

    python benchmarks/bench_bert_forward.py [--modes fp32 bf16 int8 train] [--batch 8] [--seq 128] [--rounds 5]

Modes (plmkit runs what `precision="auto"` / its defaults choose on this machine unless named):
  fp32   forward, both fp32 (plmkit takes the oneDNN linear only where plmkit.hardware turns it on)
  bf16   forward, plmkit loaded with dtype=torch.bfloat16 vs transformers under bf16 autocast
  int8   forward, plmkit with quantize="int8" vs transformers fp32 (the issue's bar) and vs
         transformers through torch.ao.quantization.quantize_dynamic (the same kind of int8)
  train  one training step (forward, backward, AdamW) at the precision "auto" picks here, both
         under the same autocast; plmkit's optimizer is build_optimizer's (fused AdamW),
         transformers' is torch.optim.AdamW as its Trainer builds it by default

Every row carries the machine's GEMM rate: GFLOP/s of F.linear (768 -> 3072 on the same rows)
through torch's default path, through oneDNN, and in bf16, so the distance to the limit shows.
To see the AVX2 class on an AVX-512 machine run with
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import plmkit  # noqa: E402
from plmkit import hardware  # noqa: E402
from plmkit.training import build_optimizer  # noqa: E402


def flops_per_seq(cfg, T: int) -> float:
    """Multiply-adds x2 of the linear layers and attention products of one sequence (forward)."""
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    return L * (2 * T * (4 * H * H + 2 * H * I) + 2 * 2 * T * T * H)


def machine_line() -> str:
    r = hardware.report()
    return (f"{r['cpu']} ({r['vendor']}; flags: {r['isa_flags']}; oneDNN cap {r['onednn_isa_cap']}; "
            f"ATen {r['aten_capability']}), {r['threads']} threads, torch {r['torch']}")


def gemm_rates(rows: int, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a 768 -> 3072 linear on `rows` rows: torch default fp32, oneDNN fp32, bf16."""
    x, w, b = torch.randn(rows, 768), torch.randn(3072, 768) * 0.02, torch.zeros(3072)
    onednn = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    paths = {"default": lambda: F.linear(x, w, b),
             "bf16": lambda xb=x.bfloat16(), wb=w.bfloat16(), bb=b.bfloat16(): F.linear(xb, wb, bb)}
    if onednn is not None:
        paths["onednn"] = lambda: onednn(x, w, b, "none", [], "")
    out = {}
    with torch.inference_mode():
        for name, fn in paths.items():
            fn()
            best = min(_time(fn) for _ in range(3 * repeats))
            out[name] = 2 * rows * 768 * 3072 / best / 1e9
    return out


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(fns: dict[str, callable], rounds: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn each round after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(_time(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", nargs="+", default=["fp32", "bf16", "int8", "train"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import transformers

    cfg = transformers.BertConfig()  # bert-base: 12 x 768, 12 heads, 3072, vocab 30522
    torch.manual_seed(0)
    hf = transformers.BertModel(cfg).eval()
    d = tempfile.mkdtemp()
    hf.save_pretrained(d)
    B, T = args.batch, args.seq
    ids = torch.randint(1000, cfg.vocab_size, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[B // 2:, T * 3 // 4:] = 0  # some padding, as real batches have
    real = mask.bool()
    rates = gemm_rates(B * T)
    auto = hardware.resolve_precision("auto", "cpu")
    print(f"machine: {machine_line()}; transformers {transformers.__version__}; {datetime.date.today()}")
    print(f"F.linear 768->3072 on {B * T} rows: default fp32 {rates['default']:.0f}, oneDNN fp32 "
          f"{rates.get('onednn', float('nan')):.0f}, bf16 {rates['bf16']:.0f} GFLOP/s; precision auto = {auto}; "
          f"oneDNN linear {'on' if hardware.fast_linear_for('cpu') else 'off'}")
    print("| mode | shape | transformers ms | plmkit ms | ratio | plmkit GFLOP/s | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    flops = flops_per_seq(cfg, T) * B

    def row(mode: str, t_hf: float, t_ours: float, diff: float | str, train: bool = False) -> None:
        gf = (3 if train else 1) * flops / t_ours / 1e9
        d = f"{diff:.1e}" if isinstance(diff, float) else diff
        print(f"| {mode} | {B} x {T} | {t_hf * 1e3:.0f} | {t_ours * 1e3:.0f} | {t_hf / t_ours:.2f}x | {gf:.0f} | {d} |",
              flush=True)

    with torch.inference_mode():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    if "fp32" in args.modes:
        ours = plmkit.from_pretrained(d)
        with torch.inference_mode():
            diff = (ours(ids, attention_mask=mask).last_hidden_state - ref)[real].abs().max().item()
            t = interleaved({"hf": lambda: hf(input_ids=ids, attention_mask=mask),
                             "ours": lambda: ours(ids, attention_mask=mask)}, args.rounds)
        row("forward fp32", t["hf"], t["ours"], diff)
    if "bf16" in args.modes:
        ours = plmkit.from_pretrained(d, dtype=torch.bfloat16)

        def hf_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return hf(input_ids=ids, attention_mask=mask).last_hidden_state
        with torch.inference_mode():
            out = ours(ids, attention_mask=mask).last_hidden_state.float()
            diff = (out - ref)[real].abs().max().item()
            diff_hf = (hf_bf16().float() - ref)[real].abs().max().item()
            t = interleaved({"hf": hf_bf16, "ours": lambda: ours(ids, attention_mask=mask)}, args.rounds)
        row("forward bf16 (transformers: autocast)", t["hf"], t["ours"],
            f"{diff:.1e} (transformers' own: {diff_hf:.1e})")
    if "int8" in args.modes:
        ours = plmkit.from_pretrained(d, quantize="int8")
        hf_q = torch.ao.quantization.quantize_dynamic(transformers.BertModel.from_pretrained(d).eval(),
                                                      {torch.nn.Linear}, dtype=torch.qint8)
        with torch.inference_mode():
            out = ours(ids, attention_mask=mask).last_hidden_state
            diff = (out - ref)[real].abs().max().item()
            diff_q = (hf_q(input_ids=ids, attention_mask=mask).last_hidden_state - ref)[real].abs().max().item()
            t = interleaved({"hf": lambda: hf(input_ids=ids, attention_mask=mask),
                             "hf_q": lambda: hf_q(input_ids=ids, attention_mask=mask),
                             "ours": lambda: ours(ids, attention_mask=mask)}, args.rounds)
        row("forward int8 vs transformers fp32", t["hf"], t["ours"], diff)
        row("forward int8 vs transformers int8 (quantize_dynamic)", t["hf_q"], t["ours"],
            f"{diff:.1e} (transformers int8: {diff_q:.1e})")
    if "train" in args.modes:
        hf_t = transformers.BertModel.from_pretrained(d).train()
        ours_t = plmkit.from_pretrained(d).train()
        opt_hf = torch.optim.AdamW(hf_t.parameters(), lr=1e-5)
        opt_ours = build_optimizer(ours_t, lr=1e-5, weight_decay=0.0)

        def step(model, opt, call):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto == "bf16"):
                loss = call(model).float().pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        t = interleaved({
            "hf": lambda: step(hf_t, opt_hf, lambda m: m(input_ids=ids, attention_mask=mask).last_hidden_state),
            "ours": lambda: step(ours_t, opt_ours, lambda m: m(ids, attention_mask=mask).last_hidden_state),
        }, max(3, args.rounds // 2))
        row(f"train step {auto}", t["hf"], t["ours"], "-", train=True)


if __name__ == "__main__":
    main()
