"""Transformer blocks: how attention, feed-forward, norms and residuals are arranged."""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch
from torch import nn


class PostNormBlock(nn.Module):
    """BERT's arrangement (arXiv:1706.03762):

        x ─► attn ─► dropout ─► (+x) ─► attn_norm ─► h ─► ffn ─► dropout ─► (+h) ─► ffn_norm
    """

    def __init__(self, attn: nn.Module, ffn: nn.Module, attn_norm: nn.Module, ffn_norm: nn.Module,
                 dropout: float) -> None:
        super().__init__()
        self.attn, self.attn_norm = attn, attn_norm
        self.ffn, self.ffn_norm = ffn, ffn_norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn_norm(x + self.dropout(self.attn(x, mask, position_bias)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class PreNormBlock(nn.Module):
    """GPT-2's arrangement (Radford et al. 2019; arXiv:2002.04745 on why it trains stably):

        x ─► attn_norm ─► attn ─► dropout ─► (+x) ─► h ─► ffn_norm ─► ffn ─► dropout ─► (+h)
    """

    def __init__(self, attn: nn.Module, ffn: nn.Module, attn_norm: nn.Module, ffn_norm: nn.Module,
                 dropout: float) -> None:
        super().__init__()
        self.attn_norm, self.attn = attn_norm, attn
        self.ffn_norm, self.ffn = ffn_norm, ffn
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), mask, position_bias))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


def _checked_order(order: Sequence[int], count: int) -> tuple[int, ...]:
    """`order` as a tuple, after checking that it applies each of `count` blocks at least once and nothing else."""
    order = tuple(order)
    if not order:
        raise ValueError("a block schedule needs at least one application, found an empty order")
    outside = [k for k in order if not isinstance(k, int) or not 0 <= k < count]
    if outside:
        raise ValueError(f"block order {list(order)} names block {outside[0]!r}; there are {count} blocks "
                         f"(0..{count - 1})")
    unused = sorted(set(range(count)) - set(order))
    if unused:  # its weights would be saved and loaded but never trained or run
        raise ValueError(f"block order {list(order)} never applies block {unused[0]} of {count}")
    return order


class ScheduledBlocks(nn.Module):
    """Distinct blocks applied in a fixed order, a block possibly several times (ALBERT's layer groups):

        distinct: b0 b1 b2 b3      order: (0, 1, 0, 1, 2, 3, 2, 3)
        x ─► b0 ─► b1 ─► b0 ─► b1 ─► b2 ─► b3 ─► b2 ─► b3

    Iterating yields the blocks in application order and len() counts applications, so a stack
    runs it as it runs a ModuleList (a KV cache gives each application its own slot: slots are
    taken in call order). The weights are stored once per distinct block, as `distinct.{k}.*`.
    """

    def __init__(self, blocks: Iterable[nn.Module], order: Sequence[int]) -> None:
        super().__init__()
        self.distinct = nn.ModuleList(blocks)
        self.order = _checked_order(order, len(self.distinct))

    def named_distinct(self) -> list[tuple[str, nn.Module]]:
        """(name under this module, block) for each distinct block, in index order."""
        return [(f"distinct.{k}", block) for k, block in enumerate(self.distinct)]

    def depths(self) -> dict[str, tuple[int, ...]]:
        """For each distinct block (by its name under this module), the depths 1..len(self) at which it runs."""
        return {name: tuple(a + 1 for a, j in enumerate(self.order) if j == k)
                for k, (name, _) in enumerate(self.named_distinct())}

    def __iter__(self) -> Iterator[nn.Module]:
        blocks = [block for _, block in self.named_distinct()]
        return iter([blocks[k] for k in self.order])

    def __len__(self) -> int:
        return len(self.order)


class SharedBlocks(ScheduledBlocks):
    """One block applied `times` times (ALBERT's cross-layer sharing): one copy of the weights, named `block.*`."""

    def __init__(self, block: nn.Module, times: int) -> None:
        # not ScheduledBlocks.__init__: the one block keeps the name `block`, which saved models already use
        nn.Module.__init__(self)
        self.block, self.times = block, times
        self.order = _checked_order((0,) * times, 1)

    def named_distinct(self) -> list[tuple[str, nn.Module]]:
        return [("block", self.block)]
