"""Rotary position embedding: relative-position identities and the pair layout, checked by hand."""
import cmath
import math

import pytest
import torch

from plmkit.modules.rotary import RotaryEmbedding


def _score(rope, q, k, pos_q, pos_k):
    """q·k after rotating q to position pos_q and k to pos_k (float64 throughout)."""
    qr = rope(q[None], torch.tensor([pos_q]))[0]
    kr = rope(k[None], torch.tensor([pos_k]))[0]
    return float((qr * kr).sum())


@pytest.mark.parametrize("head_size", [2, 8, 12])
def test_1d_scores_depend_only_on_offset(head_size):
    rope = RotaryEmbedding(head_size)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, head_size, generator=g, dtype=torch.float64)
    by_offset = {}
    for offset in (-7, -1, 0, 3, 20):
        scores = [_score(rope, q, k, start + offset, start) for start in (0, 5, 31, 200)]
        assert max(scores) - min(scores) < 1e-9, (offset, scores)
        by_offset[offset] = scores[0]
    # the rotation is not the identity: different offsets give different scores
    values = sorted(by_offset.values())
    assert min(b - a for a, b in zip(values, values[1:])) > 1e-6


@pytest.mark.parametrize("head_size", [4, 8, 16])
def test_2d_scores_depend_only_on_grid_offset(head_size):
    rope = RotaryEmbedding(head_size, grid=True)
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, head_size, generator=g, dtype=torch.float64)
    seen = {}
    for dr, dc in [(0, 0), (1, 0), (0, 1), (2, -3), (-4, 5)]:
        scores = [_score(rope, q, k, (r + dr, c + dc), (r, c)) for r, c in [(0, 0), (3, 7), (10, 2), (25, 40)]]
        assert max(scores) - min(scores) < 1e-9, ((dr, dc), scores)
        seen[(dr, dc)] = scores[0]
    # both halves are used: moving only the row, or only the column, changes the score
    assert abs(seen[(1, 0)] - seen[(0, 0)]) > 1e-6
    assert abs(seen[(0, 1)] - seen[(0, 0)]) > 1e-6
    # and the two axes are not interchangeable
    assert abs(seen[(1, 0)] - seen[(0, 1)]) > 1e-6


def test_1d_matches_complex_rotation_of_adjacent_pairs():
    """Pair i = (x[2i], x[2i+1]) is the complex number x[2i] + j x[2i+1], multiplied by e^{j t θ_i}."""
    hs, T = 6, 5
    x = torch.randn(1, 2, T, hs, dtype=torch.float64)
    out = RotaryEmbedding(hs)(x)
    for h in range(2):
        for t in range(T):
            for i in range(hs // 2):
                z = complex(x[0, h, t, 2 * i], x[0, h, t, 2 * i + 1])
                z *= cmath.exp(1j * t * 10000 ** (-2 * i / hs))
                assert abs(out[0, h, t, 2 * i] - z.real) < 1e-12
                assert abs(out[0, h, t, 2 * i + 1] - z.imag) < 1e-12


def test_1d_hand_values():
    # head size 4, position 2: pair 0 turns by 2 rad, pair 1 by 2 * 10000^(-1/2) = 0.02 rad
    x = torch.tensor([[[[1.0, 0.0, 0.0, 1.0]] * 3]], dtype=torch.float64)  # (1, 1, 3, 4), same vector at t = 0, 1, 2
    out = RotaryEmbedding(4)(x)[0, 0, 2]
    expected = [math.cos(2.0), math.sin(2.0), -math.sin(0.02), math.cos(0.02)]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert torch.equal(RotaryEmbedding(4)(x)[0, 0, 0], x[0, 0, 0])  # position 0 is not rotated


def test_2d_layout_first_half_row_second_half_column():
    hs = 8
    rope = RotaryEmbedding(hs, grid=True)
    x = torch.randn(hs, dtype=torch.float64)
    row, col = 3, 5
    out = rope(x[None, None], torch.tensor([[row, col]]))[0, 0]
    half = hs // 2
    for i in range(hs // 2):
        base_index = i % (half // 2)  # frequency index inside its half
        angle = (row if i < half // 2 else col) * 10000 ** (-2 * base_index / half)
        z = complex(x[2 * i], x[2 * i + 1]) * cmath.exp(1j * angle)
        assert abs(out[2 * i] - z.real) < 1e-12 and abs(out[2 * i + 1] - z.imag) < 1e-12


def test_2d_default_grid_positions_and_batched_positions():
    rope = RotaryEmbedding(8, grid=True, grid_width=3)
    x = torch.randn(2, 4, 7, 8, dtype=torch.float64)  # (B, nh, T, hs)
    grid = torch.tensor([[t // 3, t % 3] for t in range(7)])
    assert torch.allclose(rope(x), rope(x, grid))
    per_batch = torch.stack([grid, grid.flip(0)])  # (B, T, 2): a different layout per row
    out = rope(x, per_batch)
    assert torch.allclose(out[1], rope(x[1:], grid.flip(0))[0])


def test_gradient_after_inference_mode_call():
    """A table cached under inference_mode must not break a later training step."""
    rope = RotaryEmbedding(8)
    with torch.inference_mode():
        rope(torch.randn(1, 2, 5, 8))
    x = torch.randn(1, 2, 5, 8, requires_grad=True)
    rope(x).square().sum().backward()
    assert x.grad is not None


def test_rotary_errors_name_the_problem():
    with pytest.raises(ValueError, match="divisible by 2"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="divisible by 4"):
        RotaryEmbedding(6, grid=True)
    with pytest.raises(ValueError, match="grid_width"):
        RotaryEmbedding(8, grid=True)(torch.randn(1, 1, 3, 8))
    with pytest.raises(ValueError, match="head size 8"):
        RotaryEmbedding(8)(torch.randn(1, 1, 3, 6))
    with pytest.raises(ValueError, match=r"positions must be \(T,\) or \(B, T\) for the 3 tokens"):
        RotaryEmbedding(8)(torch.randn(1, 1, 3, 8), torch.arange(4))
    with pytest.raises(ValueError, match="for the 3 tokens"):
        RotaryEmbedding(8, grid=True)(torch.randn(1, 1, 3, 8), torch.zeros(1, 4, 2))
