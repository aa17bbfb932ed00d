"""Token tagging on a tiny model under DDP; the same micro-batches in one process for comparison.

usage: torchrun --nproc_per_node 2 tests/scripts/train_ddp.py OUT_DIR   (writes OUT_DIR/ddp.pt)

``single_process_run(accumulation, per_rank_accumulation, out_dir)`` replays, in one process,
exactly the micro-batches the two ranks saw, with accumulation = 2 * per-rank accumulation.
"""

import gc
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from plmkit.losses import token_cross_entropy
from plmkit.training import (
    Trainer,
    build_optimizer,
    cleanup_distributed,
    distributed_loader,
    init_distributed,
    lambda_scheduler,
    warmup_linear,
)

WORLD = 2
BATCH = 2  # per rank
SEED = 7
EPOCHS = 2
N = 24  # 12 examples per rank, 6 micro-batches per rank per epoch


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = nn.ModuleDict({"token": nn.Embedding(13, 8)})
        self.blocks = nn.ModuleList([nn.Linear(8, 8)])
        self.head = nn.Linear(8, 4)

    def forward(self, tokens):
        return self.head(torch.tanh(self.blocks[0](self.embeddings["token"](tokens))))  # (B, T, 4)


def dataset():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 13, (N, 5), generator=g)
    tags = torch.randint(0, 4, (N, 5), generator=g)
    lengths = torch.randint(1, 6, (N,), generator=g)
    tags[torch.arange(5)[None, :] >= lengths[:, None]] = -100  # different token counts per example
    return [(tokens[i], tags[i]) for i in range(N)]


def loss_fn(model, batch):
    tokens, tags = batch
    return token_cross_entropy(model(tokens), tags)


def make(accumulation, out_dir=None):
    torch.manual_seed(0)
    model = Tagger()
    optimizer = build_optimizer(model, lr=5e-2, weight_decay=0.01, layerwise_decay=0.8, eps=1e-6)
    scheduler = lambda_scheduler(optimizer, warmup_linear(2, 12))
    return model, Trainer(model, loss_fn, optimizer, scheduler, accumulation=accumulation, max_grad_norm=0.5,
                          out_dir=out_dir, log_every=1, progress=False)


class ReplayRanks:
    """Batch sampler: for each window, rank 0's micro-batches then rank 1's, as DistributedSampler deals them."""

    def __init__(self, data, per_rank_accumulation):
        self.samplers = [DistributedSampler(data, num_replicas=WORLD, rank=r, shuffle=True, seed=SEED)
                         for r in range(WORLD)]
        self.per_rank = per_rank_accumulation

    def set_epoch(self, epoch):
        for s in self.samplers:
            s.set_epoch(epoch)

    def __iter__(self):
        ranks = [list(s) for s in self.samplers]
        micro = [[idx[i:i + BATCH] for i in range(0, len(idx), BATCH)] for idx in ranks]
        for w in range(0, len(micro[0]), self.per_rank):
            for r in range(WORLD):
                yield from micro[r][w:w + self.per_rank]

    def __len__(self):
        return WORLD * len(self.samplers[0]) // BATCH


def single_process_run(per_rank_accumulation, out_dir=None):
    data = dataset()
    loader = DataLoader(data, batch_sampler=ReplayRanks(data, per_rank_accumulation))
    model, trainer = make(WORLD * per_rank_accumulation, out_dir)
    trainer.fit(loader, epochs=EPOCHS, resume=False)
    return model.state_dict(), trainer.step


def main() -> None:
    out_dir = sys.argv[1]
    torch.set_num_threads(1)
    info = init_distributed()
    assert info.world_size == WORLD, f"run with torchrun --nproc_per_node {WORLD}"
    results = {}
    for per_rank in (1, 2):
        loader = distributed_loader(dataset(), batch_size=BATCH, shuffle=True, seed=SEED)
        # Only the second run writes files: rank 0 alone must write them.
        model, trainer = make(per_rank, f"{out_dir}/acc{per_rank}" if per_rank == 2 else None)
        trainer.fit(loader, epochs=EPOCHS, resume=False)
        results[per_rank] = {"model": model.state_dict(), "step": trainer.step}
    if info.rank == 0:
        torch.save(results, f"{out_dir}/ddp.pt")
    # Drop the DDP wrapper (its reducer holds the gloo group) before leaving the group: a
    # group torn down at interpreter exit can abort in gloo's threads (pytorch#179291).
    del model, trainer
    gc.collect()
    cleanup_distributed()


if __name__ == "__main__":
    main()
