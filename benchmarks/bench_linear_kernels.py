"""fp32 linear kernels per shape: torch's default (F.linear) against oneDNN's `_linear_pointwise`.

    python benchmarks/bench_linear_kernels.py

Best of 5 loops per kernel, 2 threads by default; the ratio is oneDNN's speed-up. This is the
measurement behind racing the two per shape class (plmkit.modules.linear) instead of an ISA rule.
Run with ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 to see
the AVX2 class on an AVX-512 machine.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

SHAPES = ((768, 768), (768, 3072), (3072, 768), (768, 50257))  # (in, out): BERT/GPT-2-base layers, GPT-2's head
ROWS = (1, 8, 32, 256, 1024)


def best_loop(fn, n: int) -> float:
    fn(), fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def main() -> None:
    onednn = torch.ops.mkldnn._linear_pointwise
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ATen {torch.backends.cpu.get_cpu_capability()}")
    print("| in -> out | rows | F.linear us (GFLOP/s) | oneDNN us (GFLOP/s) | oneDNN speed-up |")
    print("|---|---|---|---|---|")
    with torch.inference_mode():
        for i, o in SHAPES:
            w, b = torch.randn(o, i) * 0.02, torch.zeros(o)
            for rows in ROWS:
                if o > 10000 and rows > 32:
                    continue
                x = torch.randn(rows, i)
                n = 10 if o > 10000 else 20
                a = best_loop(lambda: F.linear(x, w, b), n)
                c = best_loop(lambda: onednn(x, w, b, "none", [], ""), n)
                rate = lambda s: 2 * rows * i * o / s / 1e9  # noqa: E731
                print(f"| {i} -> {o} | {rows} | {a * 1e6:.0f} ({rate(a):.0f}) | {c * 1e6:.0f} ({rate(c):.0f}) | "
                      f"{a / c:.2f} |", flush=True)


if __name__ == "__main__":
    main()
