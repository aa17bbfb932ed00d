"""Smooth approximations by convolution (plmkit.theory.smooth_activations): closed forms against scipy quad.

For each kernel (Gaussian, logistic) and scale s, over 201 points in [-5, 5]: the largest difference
between the closed form and the numerical convolution integral f(x - t) k_s(t) dt (scipy.integrate.quad,
split at f's corners), and the largest distance from the non-smooth function it approximates.

    PYTHONPATH=. nice python benchmarks/bench_theory_smooth.py
"""
from __future__ import annotations

import math
import sys
import warnings
import time
from pathlib import Path

import torch
from scipy import integrate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plmkit.theory.smooth_activations import kernel_density, smooth_floor, smooth_relu, smooth_step  # noqa: E402


def convolve(f, x: float, scale: float, kernel: str, breaks) -> float:
    """(f * k_s)(x) by quad, split where f(x - t) has corners or jumps."""
    width = (12.0 if kernel == "gaussian" else 45.0) * scale
    points = sorted({b for b in breaks if -width < b < width} | {-width, width})

    def integrand(t: float) -> float:
        return f(x - t) * float(kernel_density(torch.tensor(t, dtype=torch.float64), scale, kernel))

    return sum(integrate.quad(integrand, lo, hi, epsabs=1e-12, epsrel=1e-12, limit=200)[0]
               for lo, hi in zip(points[:-1], points[1:]))


def main() -> None:
    # quad warns near the step's jump even when split there; the table shows the agreement it reaches
    warnings.filterwarnings("ignore", category=integrate.IntegrationWarning)
    xs = [-5 + i * 0.05 for i in range(201)]
    cases = {
        "relu": (lambda y: max(y, 0.0), smooth_relu, lambda x: [x]),
        "step": (lambda y: 1.0 if y > 0 else 0.0, smooth_step, lambda x: [x]),
        "floor": (math.floor, smooth_floor, lambda x: [x - n for n in range(-60, 60)]),
    }
    print("| function | kernel | scale s | max abs(closed form - quad) | max abs(smooth - f), points > 3s from a corner | at the corner |")
    print("|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    for name, (f, smooth, breaks) in cases.items():
        for kernel in ("gaussian", "logistic"):
            for scale in ((0.05, 0.1) if name == "floor" else (0.1, 1.0)):
                closed = smooth(torch.tensor(xs, dtype=torch.float64), scale, kernel).tolist()
                diff = max(abs(c - convolve(f, x, scale, kernel, breaks(x))) for c, x in zip(closed, xs))
                corners = [0.0] if name != "floor" else [float(n) for n in range(-6, 7)]
                far = [abs(c - f(x)) for c, x in zip(closed, xs) if min(abs(x - k) for k in corners) > 3 * scale]
                at = float(smooth(torch.tensor(0.0, dtype=torch.float64), scale, kernel)) - f(0.0)
                print(f"| {name} | {kernel} | {scale} | {diff:.1e} | {max(far):.1e} | {at:+.4f} |", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
