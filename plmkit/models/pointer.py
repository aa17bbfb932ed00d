"""Pointer networks (Vinyals et al. 2015, arXiv:1506.03134): the output distribution points at input positions.

    points (B, n, 2) ─► Linear ─► L × PreNormBlock (plmkit self-attention + FFN, no positions) ─► LayerNorm ─► e (B, n, H)
    slots = [end, e_1 .. e_n] (B, n+1, H)            slot 0 is a learned "end" vector (the hull's stop token)
    step t: LSTMCell(input = slot chosen at t-1, or a learned start vector) ─► d_t
            glimpse g_t = softmax(masked scores(slots, d_t)) · slots            (Bello et al. 2016, arXiv:1611.09940)
            p(y_t = j) = softmax_j(masked pointer(slots, [d_t; g_t]))          the pointer distribution

The encoder is plmkit's Transformer block stack without any position signal: the input is a set of
points, and self-attention without positions is permutation-equivariant, which the paper's LSTM
encoder (it reads the points in an arbitrary order) is not (Kool et al. 2019, arXiv:1803.08475, made
the same choice). The decoder is the paper's LSTM: decoding is inherently one step at a time, a
recurrent state carries the partial output in O(1) per step, and it is cheap on a CPU.

Validity lives in a `Constraint` (a tour visits every point once; a hull names a point at most once and
then the end slot), applied as a mask on the pointer scores both in training and in decoding, so
greedy and beam search only ever produce valid outputs. The pointer score is a module: `AdditivePointer`
(the paper's v^T tanh(W1 e_j + W2 d)) or `DotPointer` (scaled e_j . W d).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..modules.attention import SelfAttention
from ..modules.blocks import PreNormBlock
from ..modules.feedforward import FeedForward

__all__ = ["AdditivePointer", "DotPointer", "Constraint", "TourConstraint", "HullConstraint", "PointerNet", "build_pointer_net",
           "Decoded"]

NEG = -1e9  # a masked score: exp underflows to exactly 0 in float32, and never -inf (no NaN in log_softmax rows)


class AdditivePointer(nn.Module):
    """u_j = v^T tanh(W1 e_j + W2 q): Bahdanau attention used as the output distribution (Vinyals et al. eq. 3)."""

    def __init__(self, key_size: int, query_size: int, hidden_size: int) -> None:
        super().__init__()
        self.key = nn.Linear(key_size, hidden_size, bias=False)
        self.query = nn.Linear(query_size, hidden_size)
        self.v = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Scores (B, N) of keys (B, N, K) for the query (B, Q)."""
        return self.v(torch.tanh(self.key(keys) + self.query(query)[:, None])).squeeze(-1)


class DotPointer(nn.Module):
    """u_j = e_j . W q / sqrt(H) (Luong's general score)."""

    def __init__(self, key_size: int, query_size: int, hidden_size: int | None = None) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, key_size, bias=False)
        self.scale = key_size ** -0.5

    def forward(self, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Scores (B, N) of keys (B, N, K) for the query (B, Q)."""
        return torch.einsum("bnk,bk->bn", keys, self.query(query)) * self.scale


class Constraint(Protocol):
    """Which slots (0 = end, j+1 = point j) a step may point at; the masks that keep every output valid."""

    def max_steps(self, n: int) -> int:
        """How many pointer steps an output over n points takes at most."""

    def allowed(self, chosen: torch.Tensor, step: int, done: torch.Tensor) -> torch.Tensor:
        """Allowed slots (B, n+1) given the slots chosen so far (B, n+1) and the finished rows (B,)."""


class TourConstraint:
    """A closed tour: every point exactly once, n steps, the end slot never."""

    def max_steps(self, n: int) -> int:
        """How many pointer steps an output of n points takes."""
        return n

    def allowed(self, chosen: torch.Tensor, step: int, done: torch.Tensor) -> torch.Tensor:
        """Allowed slots (B, n+1) given the chosen-slot indicator (B, n+1) before this step."""
        allowed = ~chosen
        allowed[:, 0] = False
        return allowed


class HullConstraint:
    """A polygon of input points: each point at most once, then the end slot; at least `min_points` before it."""

    def __init__(self, min_points: int = 3) -> None:
        self.min_points = min_points

    def max_steps(self, n: int) -> int:
        """Every point and the end slot."""
        return n + 1

    def allowed(self, chosen: torch.Tensor, step: int, done: torch.Tensor) -> torch.Tensor:
        """Allowed slots (B, n+1); a finished row may only repeat the end slot."""
        allowed = ~chosen
        allowed[:, 0] = step >= min(self.min_points, chosen.shape[1] - 1)
        allowed[done] = False
        allowed[done, 0] = True
        return allowed


@dataclass
class Decoded:
    """Decoded outputs: for each row the chosen point indices (0-based, end slot removed) and the log-probability."""

    indices: list[list[int]]
    log_prob: torch.Tensor  # (B,)


class PointerNet(nn.Module):
    """Encoder blocks over embedded points, an LSTM decoder, and a pointer distribution over [end] + the points."""

    def __init__(self, embed: nn.Module, blocks: nn.ModuleList, final_norm: nn.Module, cell: nn.LSTMCell,
                 glimpse: nn.Module, pointer: nn.Module) -> None:
        super().__init__()
        self.embed, self.blocks, self.final_norm = embed, blocks, final_norm
        self.cell, self.glimpse, self.pointer = cell, glimpse, pointer
        hidden = cell.hidden_size
        self.end = nn.Parameter(torch.randn(hidden) * 0.1)
        self.start = nn.Parameter(torch.randn(hidden) * 0.1)

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        """Slots (B, n+1, H): the end vector, then each point's encoding."""
        if points.dim() != 3 or points.shape[-1] != self.embed.in_features:
            raise ValueError(f"points must be (batch, n, {self.embed.in_features}), found shape {tuple(points.shape)}")
        x = self.embed(points)  # (B, n, H)
        for block in self.blocks:
            x = block(x)  # no mask: every point sees every point, no positions
        x = self.final_norm(x)
        return torch.cat((self.end.expand(x.shape[0], 1, -1), x), dim=1)  # (B, n+1, H)

    def _initial(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B = slots.shape[0]
        h = slots[:, 1:].mean(1)  # (B, H): the set's summary starts the decoder
        return self.start.expand(B, -1), h, torch.zeros_like(h)

    def _step(self, slots: torch.Tensor, inp: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
              allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder step: log-probabilities (B, n+1) over the allowed slots, and the new LSTM state."""
        h, c = self.cell(inp, (h, c))
        g = self.glimpse(slots, h).masked_fill(~allowed, NEG).softmax(-1)  # (B, n+1)
        query = torch.cat((h, torch.einsum("bn,bnh->bh", g, slots)), dim=-1)  # (B, 2H)
        scores = self.pointer(slots, query).masked_fill(~allowed, NEG)
        return scores.log_softmax(-1), h, c

    def forward(self, points: torch.Tensor, targets: torch.Tensor, constraint: Constraint) -> torch.Tensor:
        """Teacher-forced negative log-likelihood per row (B,) of `targets` (B, T) slot indices (0 = end, j+1 = point j).

        Steps after a row's first end slot are not scored (pad the targets with 0).
        """
        slots = self.encode(points)
        B, N, _ = slots.shape
        if targets.dim() != 2 or targets.shape[0] != B or int(targets.max()) >= N or int(targets.min()) < 0:
            raise ValueError(f"targets must be ({B}, T) slot indices in 0..{N - 1}, found shape "
                             f"{tuple(targets.shape)} with values {int(targets.min())}..{int(targets.max())}")
        inp, h, c = self._initial(slots)
        chosen = torch.zeros(B, N, dtype=torch.bool, device=points.device)
        done = torch.zeros(B, dtype=torch.bool, device=points.device)
        nll = torch.zeros(B, device=points.device)
        rows = torch.arange(B, device=points.device)
        for t in range(targets.shape[1]):
            allowed = constraint.allowed(chosen, t, done)
            y = targets[:, t]
            if bool((~allowed[rows, y] & ~done).any()):
                bad = int((~allowed[rows, y] & ~done).nonzero()[0])
                raise ValueError(f"targets row {bad} step {t}: slot {int(y[bad])} is not allowed by "
                                 f"{type(constraint).__name__} there (a repeated point, or an early end)")
            logp, h, c = self._step(slots, inp, h, c, allowed)
            nll = nll - torch.where(done, torch.zeros_like(nll), logp[rows, y])
            chosen = chosen | F.one_hot(y, N).bool()
            chosen[:, 0] = False  # the end slot never counts as used
            done = done | (y == 0)
            inp = slots[rows, y]
        return nll

    @torch.no_grad()
    def greedy(self, points: torch.Tensor, constraint: Constraint) -> Decoded:
        """The most probable valid slot at every step."""
        return self.beam(points, constraint, beams=1)

    @torch.no_grad()
    def beam(self, points: torch.Tensor, constraint: Constraint, beams: int = 4, all_beams: bool = False) -> Decoded:
        """Beam search over valid outputs (masks keep every hypothesis valid); the most probable beam per row,
        or with `all_beams` every beam, row-major (B * beams rows, log_prob (B, beams) flattened); when an
        instance has fewer valid outputs than beams, the surplus beams score below NEG / 2 and are not valid."""
        slots = self.encode(points)
        B, N, H = slots.shape
        K = beams
        slots_k = slots.repeat_interleave(K, 0)  # (B*K, N, H)
        inp, h, c = self._initial(slots_k)
        chosen = torch.zeros(B * K, N, dtype=torch.bool, device=points.device)
        done = torch.zeros(B * K, dtype=torch.bool, device=points.device)
        score = torch.full((B, K), NEG, device=points.device)
        score[:, 0] = 0.0  # one live hypothesis at the start, not K copies of it
        history = torch.zeros(B * K, 0, dtype=torch.long, device=points.device)
        for t in range(constraint.max_steps(N - 1)):
            allowed = constraint.allowed(chosen, t, done)
            logp, h, c = self._step(slots_k, inp, h, c, allowed)
            logp = torch.where(done[:, None], torch.where(allowed, 0.0, NEG), logp)  # a finished beam stays put
            total = (score.reshape(B * K, 1) + logp).reshape(B, K * N)
            score, flat = total.topk(K, dim=-1)  # (B, K)
            parent = (flat // N + torch.arange(B, device=points.device)[:, None] * K).reshape(-1)  # (B*K,)
            y = (flat % N).reshape(-1)
            h, c, chosen, done = h[parent], c[parent], chosen[parent].clone(), done[parent]
            history = torch.cat((history[parent], y[:, None]), dim=1)
            chosen |= F.one_hot(y, N).bool()
            chosen[:, 0] = False
            done = done | (y == 0)
            inp = slots_k[torch.arange(B * K, device=points.device), y]
            if bool(done.all()):
                break
        seqs = [[j - 1 for j in row if j > 0] for row in history.tolist()]  # slot j+1 -> point j; drop the end
        if all_beams:
            return Decoded(seqs, score.reshape(-1))
        return Decoded(seqs[::K], score[:, 0])


def build_pointer_net(*, hidden_size: int = 128, num_layers: int = 3, num_heads: int = 8, input_size: int = 2,
                      pointer: str = "additive") -> PointerNet:
    """A pointer net with a plmkit Transformer encoder (pre-norm blocks, no positions) and an LSTM decoder."""
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} must be a multiple of num_heads {num_heads}")
    scorers = {"additive": AdditivePointer, "dot": DotPointer}
    if pointer not in scorers:
        raise ValueError(f"pointer must be one of {sorted(scorers)}, found {pointer!r}")
    H = hidden_size
    blocks = nn.ModuleList(
        PreNormBlock(SelfAttention(H, num_heads, H // num_heads), FeedForward(H, 4 * H, "relu"),
                     nn.LayerNorm(H), nn.LayerNorm(H), dropout=0.0)
        for _ in range(num_layers))
    return PointerNet(nn.Linear(input_size, H), blocks, nn.LayerNorm(H), nn.LSTMCell(H, H),
                      AdditivePointer(H, H, H), scorers[pointer](H, 2 * H, H))
