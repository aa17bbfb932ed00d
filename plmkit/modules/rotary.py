"""Rotary position embedding (RoPE), 1-D and 2-D, in the interleaved pair layout.

RoPE (arXiv:2104.09864, kexue.fm/archives/8265) rotates each query and key so that their
dot product depends only on the distance between their positions:

    pair i of a head vector, (x[2i], x[2i+1]), is rotated by the angle  pos · base^(-2i/d)

The pairs are ADJACENT dimensions (0,1), (2,3), ... as RoFormer checkpoints were trained,
not the rotate-half layout of LLaMA / GPT-NeoX that pairs dimension i with i + d/2.

2-D RoPE (kexue.fm/archives/8397) gives a token a grid position (row, col): the first half
of each head is a 1-D RoPE of size d/2 driven by the row, the second half one driven by the
column, so q_(r1,c1) · k_(r2,c2) depends only on (r1 - r2, c1 - c2).
"""
from __future__ import annotations

import torch
from torch import nn


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of the last dim by angles given as cos/sin [..., d/2]."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., d/2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)


class RotaryEmbedding(nn.Module):
    """RoPE over the last dim of (B, nh, T, hs) tensors; `grid=True` selects 2-D RoPE.

    Positions default to 0..T-1 (1-D) or, for 2-D, to a row-major grid `grid_width` wide
    (token t sits at row t // grid_width, column t % grid_width). Explicit positions are
    (T,) / (B, T) integers for 1-D and (T, 2) / (B, T, 2) (row, col) pairs for 2-D.
    The module has no parameters: nothing of it is saved or loaded.
    """

    def __init__(self, head_size: int, *, base: float = 10000.0, grid: bool = False,
                 grid_width: int | None = None) -> None:
        super().__init__()
        unit = 4 if grid else 2
        if head_size % unit:
            raise ValueError(f"{'2-D' if grid else '1-D'} rotary embedding needs a head size divisible by {unit}, "
                             f"found {head_size}")
        if grid_width is not None and (not grid or grid_width <= 0):
            raise ValueError(f"grid_width={grid_width!r} needs grid=True and a positive width")
        self.head_size, self.base, self.grid, self.grid_width = head_size, float(base), grid, grid_width
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None  # (key, cos, sin) for default positions

    def inverse_frequencies(self) -> torch.Tensor:
        """base^(-2i/d) for each pair i of one rotated block (d = head size, or half of it for 2-D), float64."""
        d = self.head_size // 2 if self.grid else self.head_size
        return self.base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)

    def angles(self, positions: torch.Tensor) -> torch.Tensor:
        """Rotation angle of every pair: (..., T) or (..., T, 2) positions -> (..., T, hs/2), in float64."""
        wide = torch.float32 if positions.device.type == "mps" else torch.float64  # MPS has no float64
        inv = self.inverse_frequencies().to(positions.device, wide)
        p = positions.to(wide)
        if not self.grid:
            return p[..., None] * inv
        if p.shape[-1] != 2:
            raise ValueError(f"2-D rotary positions must end in a (row, col) pair, found shape {tuple(positions.shape)}")
        return torch.cat((p[..., 0:1] * inv, p[..., 1:2] * inv), dim=-1)

    def default_positions(self, length: int, device: torch.device | None = None) -> torch.Tensor:
        """Positions used when none are given: 0..T-1, or the row-major grid for 2-D."""
        t = torch.arange(length, device=device)
        if not self.grid:
            return t
        if self.grid_width is None:
            raise ValueError("2-D rotary embedding without explicit positions needs grid_width: pass (row, col) "
                             "positions, (B, T, 2) position_ids to a model, or build it with a grid_width")
        return torch.stack((t // self.grid_width, t % self.grid_width), dim=-1)  # (T, 2)

    def cos_sin(self, length: int, device: torch.device, dtype: torch.dtype,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles, (T, hs/2) or (B, T, hs/2), in `dtype`."""
        if positions is None:
            # inference tensors must not leak into a later autograd pass: key on the mode too. A longer
            # table serves shorter lengths (each row depends on its position only): decoding one token
            # at a time then reuses one table instead of recomputing it at every new length
            key = (device, dtype, torch.is_inference_mode_enabled())
            if self._cache is not None and self._cache[0] == key and self._cache[1].shape[-2] >= length:
                return self._cache[1][..., :length, :], self._cache[2][..., :length, :]
        # angles in float64 then rounded once: long positions keep their precision in fp32 / bf16
        rows = -(-length // 64) * 64 if positions is None else length  # headroom: a growing length rarely recomputes
        theta = self.angles(self.default_positions(rows, device) if positions is None else positions.to(device))
        cos, sin = theta.cos().to(dtype), theta.sin().to(dtype)
        if positions is None:
            self._cache = (key, cos, sin)
            cos, sin = cos[:length], sin[:length]
        return cos, sin

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None, *, offset: int = 0) -> torch.Tensor:
        """Rotate x (B, nh, T, hs) (or any (..., T, hs)) by its positions.

        Without `positions`, token t sits at default position `offset + t`: a KV cache passes
        the number of tokens already cached, so new tokens continue where the cache ends.
        """
        if x.shape[-1] != self.head_size:
            raise ValueError(f"rotary embedding built for head size {self.head_size}, got vectors of {x.shape[-1]}")
        if positions is not None and offset:
            raise ValueError(f"pass explicit positions or an offset, not both (offset={offset})")
        T = x.shape[-2]
        if positions is not None:
            found = positions.shape[-2] if self.grid and positions.dim() >= 2 else positions.shape[-1]
            if found != T:
                layout = "(T, 2) or (B, T, 2) (row, col) pairs" if self.grid else "(T,) or (B, T)"
                raise ValueError(f"rotary positions must be {layout} for the {T} tokens, "
                                 f"found shape {tuple(positions.shape)}")
        cos, sin = self.cos_sin(offset + T, x.device, x.dtype, positions)
        if offset:
            cos, sin = cos[offset:], sin[offset:]  # (T, hs/2): the rows of the new tokens
        if cos.dim() == 3 and x.dim() == 4:  # per-batch positions (B, T, hs/2) -> (B, 1, T, hs/2) over heads
            cos, sin = cos[:, None], sin[:, None]
        return rotate_pairs(x, cos, sin)

    def extra_repr(self) -> str:
        return f"head_size={self.head_size}, base={self.base:g}, grid={self.grid}, grid_width={self.grid_width}"
