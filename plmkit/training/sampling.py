"""Length-grouped batches: padding is work thrown away, so put texts of similar length together.

Shuffle all indices, cut them into pools of ``pool`` batches, sort each pool by length (longest
first) and cut it into batches, then shuffle the order of the batches. Each batch is still a
random draw from a random pool, but its rows need little padding (the `group_by_length` of
Hugging Face's Trainer). The `generator` attribute is the one the Trainer saves and restores,
so a resumed epoch yields the same batches.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch


class LengthGroupedBatches(torch.utils.data.Sampler):
    """A batch sampler over rows of the given lengths; use as ``DataLoader(batch_sampler=...)``."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None,
                 pool: int = 50) -> None:
        if batch_size < 1 or pool < 1:
            raise ValueError(f"batch_size and pool must be >= 1, found {batch_size} and {pool}")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.pool = batch_size, pool
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator)
        batches = []
        for pool in order.split(self.batch_size * self.pool):
            pool = pool[torch.sort(self.lengths[pool], descending=True, stable=True).indices]
            batches.extend(b.tolist() for b in pool.split(self.batch_size))
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]
