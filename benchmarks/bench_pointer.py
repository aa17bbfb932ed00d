"""Pointer networks on planar convex hull and TSP: accuracy against exact oracles, at the trained n and beyond.

    OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/bench_pointer.py [--hull-minutes 7] [--tsp-minutes 8]

Points are uniform in the unit square (Vinyals et al. 2015). Training data is drawn fresh every step:
hull targets from scipy.spatial.ConvexHull (counter-clockwise from the smallest index, then the end
slot), TSP targets from exact Held-Karp tours (plmkit.tasks.geometry). One model per task
(plmkit.models.pointer.build_pointer_net: 2 pre-norm Transformer blocks, H=64, 4 heads, LSTM
decoder, additive pointer), Adam 1e-3, batch 128, trained for a fixed wall time on one thread.
Evaluation on 500 fresh instances per n: greedy and beam search (4 beams), both masked to valid
outputs. Hull: exact sequence match, exact vertex-set match, area coverage (|polygon area of the
prediction in its order| / hull area). TSP: mean tour length over the optimum (n <= 12) or over the
nearest-neighbour tour (n = 20, no exact oracle at this size), beside nearest neighbour and a
random tour; "beam, shortest" keeps the shortest of the 4 beams' tours.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plmkit.models.pointer import NEG, HullConstraint, TourConstraint, build_pointer_net  # noqa: E402
from plmkit.tasks.geometry import (canonical_cycle, held_karp, hull_targets, nearest_neighbour_tour,  # noqa: E402
                                   polygon_area, random_points, tour_length)


def hull_batch(batch: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[list[int]], torch.Tensor]:
    """Points, hull vertex lists, and slot targets (B, n+1): vertex+1 ..., then 0 (end), 0-padded."""
    pts = random_points(batch, n, rng)
    hulls = hull_targets(pts)
    targets = torch.zeros(batch, max(map(len, hulls)) + 1, dtype=torch.long)
    for b, h in enumerate(hulls):
        targets[b, :len(h)] = torch.tensor(h) + 1
    return pts, hulls, targets


def tsp_batch(batch: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Points, optimal lengths, and slot targets (B, n): the canonical optimal tour + 1."""
    pts = random_points(batch, n, rng)
    lengths, tours = held_karp(pts)
    return pts, lengths, torch.from_numpy(tours) + 1


def train(model, make_batch, sizes: list[int], constraint, minutes: float, seed: int, name: str) -> int:
    """Train on fresh batches with n drawn from `sizes` for `minutes`; returns the steps taken."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, step, running, since, last = time.time(), 0, 0.0, 0, time.time()
    model.train()
    while time.time() - start < minutes * 60:
        n = int(rng.choice(sizes))
        pts, _, targets = make_batch(128, n, rng)
        loss = model(torch.tensor(pts, dtype=torch.float32), targets, constraint).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step, since, running = step + 1, since + 1, running + float(loss.detach())
        if time.time() - last > 60:
            print(f"{name} step {step} ({(time.time() - start) / 60:.1f} min): mean NLL {running / since:.3f}",
                  flush=True)
            running, since, last = 0.0, 0, time.time()
    return step


@torch.no_grad()
def eval_hull(model, n: int, count: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Sequence / set match and area coverage for greedy and beam decoding."""
    pts, hulls, _ = hull_batch(count, n, rng)
    x = torch.tensor(pts, dtype=torch.float32)
    model.eval()
    out = {}
    for label, decoded in (("greedy", model.greedy(x, HullConstraint())), ("beam 4", model.beam(x, HullConstraint(), 4))):
        seq = set_ = area = 0.0
        for p, h, pred in zip(pts, hulls, decoded.indices):
            seq += canonical_cycle(pred) == h
            set_ += set(pred) == set(h)
            area += polygon_area(p, pred) / polygon_area(p, h)
        out[label] = {"sequence": seq / count, "set": set_ / count, "area": area / count}
    return out


@torch.no_grad()
def eval_tsp(model, n: int, count: int, rng: np.random.Generator) -> dict[str, float]:
    """Mean tour length over the reference (optimal for n <= 12, else nearest neighbour) for each method."""
    pts = random_points(count, n, rng)
    exact = n <= 12
    ref = held_karp(pts)[0] if exact else np.array([tour_length(p, nearest_neighbour_tour(p)) for p in pts])
    x = torch.tensor(pts, dtype=torch.float32)
    model.eval()
    greedy = model.greedy(x, TourConstraint()).indices
    beam = model.beam(x, TourConstraint(), 4)
    beams = model.beam(x, TourConstraint(), 4, all_beams=True)
    ratio = lambda tours: float(np.mean([tour_length(p, t) / r for p, t, r in zip(pts, tours, ref)]))  # noqa: E731
    shortest = []
    for b, p in enumerate(pts):
        cands = [beams.indices[b * 4 + k] for k in range(4) if float(beams.log_prob[b * 4 + k]) > NEG / 2]
        shortest.append(min(cands, key=lambda t: tour_length(p, t)))
    for tour in greedy + beam.indices + shortest:
        assert sorted(tour) == list(range(n)), f"invalid tour {tour}"  # the masks promise this
    return {"reference": "optimal" if exact else "nearest neighbour", "greedy": ratio(greedy),
            "beam 4": ratio(beam.indices), "beam 4, shortest": ratio(shortest),
            "nearest neighbour": ratio([nearest_neighbour_tour(p) for p in pts]),
            "random": ratio([rng.permutation(n).tolist() for _ in pts])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hull-minutes", type=float, default=7.0)
    ap.add_argument("--tsp-minutes", type=float, default=8.0)
    ap.add_argument("--eval", type=int, default=500, help="test instances per n")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} thread(s); eval {args.eval} instances per n", flush=True)

    torch.manual_seed(0)
    hull = build_pointer_net(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads)
    t0 = time.time()
    steps = train(hull, hull_batch, list(range(5, 21)), HullConstraint(), args.hull_minutes, 0, "hull")
    print(f"hull: {steps} steps of 128 (n uniform in 5..20) in {time.time() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(100)
    print("| n | decoding | sequence match | vertex-set match | area coverage |\n|---|---|---|---|---|")
    for n in (10, 20, 30, 50):
        t = time.time()
        for label, m in eval_hull(hull, n, args.eval, rng).items():
            print(f"| {n} | {label} | {m['sequence']:.3f} | {m['set']:.3f} | {m['area']:.4f} |", flush=True)
        print(f"(n={n} evaluated in {time.time() - t:.0f} s)", file=sys.stderr, flush=True)

    torch.manual_seed(0)
    tsp = build_pointer_net(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads)
    t0 = time.time()
    steps = train(tsp, tsp_batch, list(range(5, 11)), TourConstraint(), args.tsp_minutes, 1, "tsp")
    print(f"tsp: {steps} steps of 128 (n uniform in 5..10, Held-Karp targets) in {time.time() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(200)
    print("| n | reference | pointer greedy | pointer beam 4 | beam 4, shortest | nearest neighbour | random |\n"
          "|---|---|---|---|---|---|---|")
    for n in (5, 10, 12, 20):
        t = time.time()
        r = eval_tsp(tsp, n, args.eval, rng)
        print(f"| {n} | {r['reference']} | {r['greedy']:.4f} | {r['beam 4']:.4f} | {r['beam 4, shortest']:.4f} | "
              f"{r['nearest neighbour']:.4f} | {r['random']:.4f} |", flush=True)
        print(f"(n={n} evaluated in {time.time() - t:.0f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
