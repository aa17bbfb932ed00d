"""T5's bucketed relative position bias: one learned scalar per (bucket, head), added to the scores.

Raffel et al., arXiv:1910.10683, section 2.1. The offset key - query is mapped to a bucket:
exact buckets for small offsets, logarithmically wider ones up to `max_distance`, one bucket
for everything beyond. Bidirectional stacks (the encoder) spend half the buckets on each sign;
causal stacks (the decoder) only see keys at or before the query and use all buckets for those.
The bias is computed once per stack and forward pass, and shared by every layer.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def relative_position_bucket(offset: torch.Tensor, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """Bucket index in [0, num_buckets) of each offset (key position - query position)."""
    buckets = torch.zeros_like(offset)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (offset > 0).long() * num_buckets  # keys after the query use the upper half
        distance = offset.abs()
    else:
        distance = (-offset).clamp(min=0)  # keys after the query are masked anyway: bucket 0
    exact = num_buckets // 2
    # log-spaced buckets for distance in [exact, max_distance); clamp keeps log() finite where unused
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """Learned (num_buckets, num_heads) table -> additive score bias (1, nh, Tq, Tk)."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, *, bidirectional: bool) -> None:
        super().__init__()
        if num_buckets < 2 or (bidirectional and num_buckets < 4):
            raise ValueError(f"relative_attention_num_buckets={num_buckets} is too small "
                             f"(need >= {4 if bidirectional else 2})")
        exact = num_buckets // (4 if bidirectional else 2)
        if max_distance <= exact:
            raise ValueError(f"relative_attention_max_distance={max_distance} must exceed the {exact} exact buckets")
        self.weight = nn.Parameter(torch.zeros(num_buckets, num_heads))
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional

    def forward(self, q_len: int, k_len: int | None = None, offset: int = 0) -> torch.Tensor:
        """Bias for queries at positions offset..offset+q_len-1 against keys 0..k_len-1."""
        k_len = q_len if k_len is None else k_len
        device = self.weight.device
        q_pos = torch.arange(offset, offset + q_len, device=device)[:, None]
        k_pos = torch.arange(k_len, device=device)[None, :]
        buckets = relative_position_bucket(k_pos - q_pos, bidirectional=self.bidirectional,
                                           num_buckets=self.num_buckets, max_distance=self.max_distance)  # (Tq, Tk)
        return self.weight[buckets].permute(2, 0, 1).unsqueeze(0)  # (1, nh, Tq, Tk)

    def extra_repr(self) -> str:
        return (f"buckets={self.num_buckets}, max_distance={self.max_distance}, heads={self.weight.shape[1]}, "
                f"bidirectional={self.bidirectional}")
