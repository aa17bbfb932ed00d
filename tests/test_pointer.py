"""Pointer networks and their geometry oracles.

Oracles: brute force over permutations (Held-Karp), geometric identities (a hull is counter-clockwise
and contains every point; shoelace areas of known shapes), exhaustive enumeration of every valid
output scored by teacher forcing (beam search with enough beams must find the most probable one),
and permutation equivariance of an encoder without positions.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from plmkit.models.pointer import HullConstraint, TourConstraint, build_pointer_net
from plmkit.tasks.geometry import (canonical_tour, held_karp, nearest_neighbour_tour, polygon_area, random_points,
                                   tour_length)


def brute_force_tsp(points: np.ndarray) -> float:
    """The shortest closed tour over all (n-1)! orders that start at point 0."""
    n = len(points)
    orders = np.array([(0,) + perm for perm in itertools.permutations(range(1, n))])  # ((n-1)!, n)
    p = points[orders]  # ((n-1)!, n, 2)
    return float(np.linalg.norm(p - np.roll(p, -1, axis=1), axis=-1).sum(-1).min())


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8])
def test_held_karp_matches_brute_force(n):
    pts = random_points(4, n, np.random.default_rng(n))
    lengths, tours = held_karp(pts)
    for p, length, tour in zip(pts, lengths, tours):
        assert length == pytest.approx(brute_force_tsp(p), abs=1e-12)
        assert sorted(tour.tolist()) == list(range(n))
        assert tour_length(p, tour) == pytest.approx(length, abs=1e-12)
        assert tour.tolist() == canonical_tour(tour.tolist())


def test_held_karp_on_a_known_tour_and_bad_input():
    # a square's corners listed out of order: the optimum is the perimeter, 4
    square = np.array([[[0, 0], [1, 1], [1, 0], [0, 1]]], dtype=float)
    lengths, tours = held_karp(square)
    assert lengths[0] == pytest.approx(4.0) and tours[0].tolist() == [0, 2, 1, 3]
    with pytest.raises(ValueError, match="n=14"):
        held_karp(np.zeros((1, 14, 2)))
    with pytest.raises(ValueError, match=r"points must be \(batch, n, 2\)"):
        held_karp(np.zeros((3, 2)))


def test_hull_targets_are_counter_clockwise_and_contain_every_point():
    pytest.importorskip("scipy.spatial", reason="scipy (installed with scikit-learn) gives the hull targets")
    from plmkit.tasks.geometry import hull_targets

    pts = random_points(20, 15, np.random.default_rng(0))
    for p, hull in zip(pts, hull_targets(pts)):
        assert hull[0] == min(hull) and len(set(hull)) == len(hull) >= 3
        q = p[hull]
        edges = np.roll(q, -1, axis=0) - q  # (k, 2)
        rel = p[:, None] - q[None]  # (n, k, 2): every point against every edge start
        cross = edges[None, :, 0] * rel[..., 1] - edges[None, :, 1] * rel[..., 0]
        assert (cross >= -1e-12).all()  # every point left of every counter-clockwise edge: inside or on it
        assert polygon_area(p, hull) >= polygon_area(p, list(range(len(p))))  # no polygon of the points is larger


def test_areas_lengths_and_nearest_neighbour_on_hand_cases():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    assert polygon_area(square, [0, 1, 2, 3]) == pytest.approx(1.0)
    assert polygon_area(square, [0, 2, 1, 3]) == pytest.approx(0.0)  # a bow tie: the two lobes cancel
    assert tour_length(square, [0, 1, 2, 3]) == pytest.approx(4.0)
    line = np.array([[0, 0], [5, 0], [1, 0], [3, 0]], dtype=float)
    assert nearest_neighbour_tour(line) == [0, 2, 3, 1]


def tiny(pointer: str = "additive") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_pointer_net(hidden_size=16, num_layers=1, num_heads=2, pointer=pointer).eval()


@pytest.mark.parametrize("pointer", ["additive", "dot"])
def test_decoding_is_always_valid(pointer):
    model = tiny(pointer)
    x = torch.rand(5, 9, 2)
    for decoded in (model.greedy(x, TourConstraint()), model.beam(x, TourConstraint(), 3)):
        assert all(sorted(t) == list(range(9)) for t in decoded.indices)
    for decoded in (model.greedy(x, HullConstraint()), model.beam(x, HullConstraint(), 3)):
        assert all(len(set(h)) == len(h) >= 3 for h in decoded.indices)


def all_outputs(n: int, hull: bool) -> list[list[int]]:
    """Every valid output: all orders of all points (tour), or of every subset of >= 3 points (hull)."""
    sizes = range(3, n + 1) if hull else [n]
    return [list(p) for k in sizes for p in itertools.permutations(range(n), k)]


def teacher_forced_nll(model, x: torch.Tensor, seqs: list[list[int]], constraint, hull: bool) -> torch.Tensor:
    """-log p of each sequence (for the one instance x (1, n, 2)) by the training forward."""
    width = x.shape[1] + (1 if hull else 0)
    targets = torch.zeros(len(seqs), width, dtype=torch.long)
    for r, s in enumerate(seqs):
        targets[r, :len(s)] = torch.tensor(s) + 1  # then 0: the end slot for a hull
    with torch.no_grad():
        return model(x.expand(len(seqs), -1, -1), targets, constraint)


@pytest.mark.parametrize("hull", [False, True])
def test_beam_with_room_for_every_output_finds_the_most_probable(hull):
    model = tiny()
    constraint = HullConstraint() if hull else TourConstraint()
    x = torch.rand(1, 4, 2)
    seqs = all_outputs(4, hull)
    nll = teacher_forced_nll(model, x, seqs, constraint, hull)
    assert float(torch.logsumexp(-nll, 0)) == pytest.approx(0.0, abs=1e-5)  # the valid outputs carry all the mass
    best = model.beam(x, constraint, beams=len(seqs))
    assert best.indices[0] == seqs[int(nll.argmin())]
    assert float(best.log_prob[0]) == pytest.approx(-float(nll.min()), abs=1e-5)


@pytest.mark.parametrize("hull", [False, True])
def test_greedy_log_prob_matches_teacher_forcing(hull):
    model = tiny()
    constraint = HullConstraint() if hull else TourConstraint()
    x = torch.rand(3, 7, 2)
    out = model.greedy(x, constraint)
    for b in range(3):
        nll = teacher_forced_nll(model, x[b:b + 1], [out.indices[b]], constraint, hull)
        assert float(out.log_prob[b]) == pytest.approx(-float(nll[0]), abs=1e-5)


def test_encoder_is_permutation_equivariant_so_decoding_follows_the_points():
    model = tiny()
    x = torch.rand(2, 8, 2)
    perm = torch.randperm(8)
    assert torch.allclose(model.encode(x)[:, 1:][:, perm], model.encode(x[:, perm])[:, 1:], atol=1e-5)
    a = model.greedy(x, TourConstraint()).indices
    b = model.greedy(x[:, perm], TourConstraint()).indices
    assert [[int(perm[j]) for j in t] for t in b] == a


def test_invalid_targets_and_points_are_named():
    model = tiny()
    with pytest.raises(ValueError, match=r"targets row 0 step 1: slot 1 is not allowed by TourConstraint"):
        model(torch.rand(1, 3, 2), torch.tensor([[1, 1, 2]]), TourConstraint())
    with pytest.raises(ValueError, match=r"points must be \(batch, n, 2\)"):
        model.greedy(torch.rand(3, 2), TourConstraint())
    with pytest.raises(ValueError, match="pointer must be one of"):
        build_pointer_net(pointer="cosine")
