"""A tiny run with dropout, shuffled data and every RNG in play; killed and resumed by tests.

usage: python tests/scripts/train_resume.py OUT_DIR [--kill-after-step K]

With --kill-after-step the process sends itself SIGKILL right after optimizer step K
(no cleanup, no final save). Rerunning without it resumes from OUT_DIR/checkpoint.pt.
The final state goes to OUT_DIR/final.pt.
"""

import argparse
import os
import random
import signal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from plmkit.training import EMA, Lookahead, Trainer, build_optimizer, lambda_scheduler, warmup_linear


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--kill-after-step", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)

    data = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=data)
    y = (x[:, :3].sum(-1) > 0).long() + (x[:, 3] > 1).long()
    train = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)  # 10 micro-batches
    valid = DataLoader(TensorDataset(x[:12], y[:12]), batch_size=6)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = Lookahead(build_optimizer(model, lr=1e-2, weight_decay=0.01), k=3, alpha=0.5)
    scheduler = lambda_scheduler(optimizer, warmup_linear(3, 15))
    ema = EMA(model, decay=0.9)

    def loss_fn(m, batch):
        xb, yb = batch
        # Noise from all three global generators, so each must be restored on resume.
        xb = xb + 0.05 * torch.randn_like(xb) * (1 + random.random()) * (1 + float(np.random.rand()))
        return F.cross_entropy(m(xb), yb, reduction="sum"), yb.numel()

    def accuracy(m, loader):
        hits = sum((m(xb).argmax(-1) == yb).sum().item() for xb, yb in loader)
        return {"acc": hits / 12}

    def kill(trainer, record):
        if trainer.step == args.kill_after_step:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer = Trainer(model, loss_fn, optimizer, scheduler, accumulation=2, ema=ema, out_dir=args.out_dir,
                      save_every=3, log_every=1, progress=False, callbacks=[kill])
    trainer.fit(train, epochs=3, valid_loader=valid, metric_fn=accuracy)
    torch.save({"model": model.state_dict(), "ema": dict(ema.shadow), "optimizer": optimizer.state_dict(),
                "step": trainer.step}, os.path.join(args.out_dir, "final.pt"))


if __name__ == "__main__":
    main()
