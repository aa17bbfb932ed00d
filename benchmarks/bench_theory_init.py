"""Monte-Carlo second moments through deep stacks of m x n / n x m linear layers, per averaging mean.

    PYTHONPATH=. nice python benchmarks/bench_theory_init.py [--depth 24] [--trials 8]

For each (m, n) and each variance rule of plmkit.theory.init_scaling (kexue.fm/archives/8725), the
forward ratio E[h_L^2]/E[x^2] at the top of a depth-L alternating stack and the backward ratio
E[g_0^2]/E[g_L^2] at its input, measured with fresh Gaussian weights (mean of --trials) beside the
recursion's prediction (m n s^2 per pair), and the widest swing of any intermediate layer's ratio
(max of r and 1/r): fan_in keeps the forward pass at 1 but the backward one swings by n/m inside a pair.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plmkit.theory.init_scaling import (alternating_widths, init_variance, monte_carlo_second_moments,  # noqa: E402
                                        predicted_second_moments)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="256x1024,128x1024,768x3072")
    ap.add_argument("--depth", type=int, default=24)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"linear stacks of {args.depth} layers alternating m x n and n x m; {args.trials} weight draws x "
          f"{args.batch} Gaussian inputs")
    print("| m x n | rule | variance x sqrt(mn) | forward measured (predicted) | backward measured (predicted) | widest swing inside the stack, fwd / bwd |")
    print("|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        m, n = (int(v) for v in shape.split("x"))
        widths = alternating_widths(m, n, args.depth)
        for mean in ("arithmetic", "geometric", "quadratic", "fan_in", "fan_out"):
            fwd, bwd = predicted_second_moments(widths, mean)
            mf, mb = monte_carlo_second_moments(widths, mean, batch=args.batch, trials=args.trials,
                                                generator=torch.Generator().manual_seed(0))
            s = init_variance(m, n, mean) * (m * n) ** 0.5
            swing = lambda v: max(max(r, 1 / r) for r in v)  # the largest factor any layer sits away from 1
            print(f"| {m} x {n} | {mean} | {s:.3f} | {mf[-1]:.3g} ({fwd[-1]:.3g}) | {mb[0]:.3g} ({bwd[0]:.3g}) | "
                  f"{swing(mf):.3g} / {swing(mb):.3g} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
