"""Planar geometry tasks for pointer networks (Vinyals et al. 2015, arXiv:1506.03134): data and exact oracles.

Convex hull targets come from scipy.spatial.ConvexHull (scipy is optional: `hull_targets` says so if it
is missing); exact planar TSP tours from Held-Karp dynamic programming (O(2^n n^2), batched over
instances in numpy, for n <= 13). Point indices are 0-based throughout.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["random_points", "hull_targets", "polygon_area", "tour_length", "held_karp", "nearest_neighbour_tour",
           "canonical_tour", "canonical_cycle"]

MAX_HELD_KARP = 13  # 2^12 subsets x 12 x 12 per instance: beyond this the tables outgrow memory and patience


def random_points(batch: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, n, 2) points uniform in the unit square, as in the paper."""
    return rng.random((batch, n, 2))


def _scipy_hull():
    try:
        from scipy.spatial import ConvexHull
    except ImportError as e:  # pragma: no cover - scipy comes with scikit-learn
        raise ImportError("convex hull targets need scipy (pip install scipy)") from e
    return ConvexHull


def canonical_cycle(cycle: Sequence[int]) -> list[int]:
    """A cycle of indices rotated to start at its smallest index (the direction is kept)."""
    cycle = list(cycle)
    if not cycle:
        return cycle
    k = cycle.index(min(cycle))
    return cycle[k:] + cycle[:k]


def hull_targets(points: np.ndarray) -> list[list[int]]:
    """For each (n, 2) instance of `points` (B, n, 2): its hull vertices counter-clockwise from the smallest index."""
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (batch, n, 2), found shape {points.shape}")
    hull = _scipy_hull()
    return [canonical_cycle(hull(p).vertices.tolist()) for p in points]  # 2-D vertices are counter-clockwise


def polygon_area(points: np.ndarray, order: Sequence[int]) -> float:
    """|signed area| of the polygon visiting `points[order]` (shoelace); 0 for fewer than 3 vertices."""
    if len(order) < 3:
        return 0.0
    p = points[list(order)]
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def tour_length(points: np.ndarray, tour: Sequence[int]) -> float:
    """Length of the closed tour visiting `points[tour]` in order and returning to the start."""
    p = points[list(tour)]
    return float(np.linalg.norm(p - np.roll(p, -1, axis=0), axis=-1).sum())


def canonical_tour(tour: Sequence[int]) -> list[int]:
    """The same closed tour starting at point 0, in the direction whose second point has the smaller index."""
    tour = canonical_cycle(tour)
    if len(tour) > 2 and tour[-1] < tour[1]:
        tour = [tour[0]] + tour[1:][::-1]
    return tour


def held_karp(points: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Optimal closed tours of each instance of `points` (B, n, 2): (lengths (B,), canonical tours (B, n)).

    Held-Karp: D[S, j] = shortest path from 0 through the set S ending at j; subsets are visited in
    increasing integer order, so every subset comes after its own subsets. Vectorised over instances
    and over the end point j of each subset.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (batch, n, 2), found shape {points.shape}")
    B, n, _ = points.shape
    if not 2 <= n <= MAX_HELD_KARP:
        raise ValueError(f"held_karp solves 2 <= n <= {MAX_HELD_KARP} points exactly, found n={n}")
    if B > chunk:
        parts = [held_karp(points[i:i + chunk], chunk) for i in range(0, B, chunk)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    dist = np.linalg.norm(points[:, :, None] - points[:, None], axis=-1)  # (B, n, n)
    m = n - 1  # cities 1..n-1 are bits 0..m-1; the tour starts and ends at city 0
    full = (1 << m) - 1
    cost = np.full((B, 1 << m, m), np.inf)
    parent = np.zeros((B, 1 << m, m), dtype=np.int8)
    inner = dist[:, 1:, 1:]  # (B, m, m): inner[b, k, j] = |city k+1 - city j+1|
    for j in range(m):
        cost[:, 1 << j, j] = dist[:, 0, j + 1]
    for mask in range(1, full + 1):
        bits = [j for j in range(m) if mask >> j & 1]
        if len(bits) < 2:
            continue
        prev = [mask ^ (1 << j) for j in bits]
        cand = cost[:, prev, :] + inner[:, :, bits].transpose(0, 2, 1)  # (B, |S|, m): via k, ending at j
        best = cand.argmin(-1)  # (B, |S|)
        cost[:, mask, bits] = np.take_along_axis(cand, best[..., None], -1)[..., 0]
        parent[:, mask, bits] = best
    total = cost[:, full, :] + dist[:, 1:, 0]  # (B, m): close the tour back to 0
    last = total.argmin(-1)
    lengths = total[np.arange(B), last]
    tours = np.zeros((B, n), dtype=np.int64)
    for b in range(B):
        mask, j, rev = full, int(last[b]), []
        while mask:
            rev.append(j + 1)
            mask, j = mask ^ (1 << j), int(parent[b, mask, j])
        tours[b] = canonical_tour([0] + rev[::-1])
    return lengths, tours


def nearest_neighbour_tour(points: np.ndarray, start: int = 0) -> list[int]:
    """The greedy tour from `start` that always moves to the closest unvisited point (an instance (n, 2))."""
    n = len(points)
    seen = np.zeros(n, dtype=bool)
    tour, here = [start], start
    seen[start] = True
    for _ in range(n - 1):
        d = np.linalg.norm(points - points[here], axis=-1)
        d[seen] = math.inf
        here = int(d.argmin())
        seen[here] = True
        tour.append(here)
    return tour
