"""Training engine: a plain loop and the classic fine-tuning tricks, each tested.

    from plmkit.training import Trainer, build_optimizer, warmup_linear, lambda_scheduler

    optimizer = build_optimizer(model, lr=2e-5, weight_decay=0.01, layerwise_decay=0.9)
    scheduler = lambda_scheduler(optimizer, warmup_linear(100, 1000))
    trainer = Trainer(model, loss_fn, optimizer, scheduler, accumulation=4, precision="auto",
                      max_grad_norm=1.0, out_dir="runs/x")
    trainer.fit(train_loader, epochs=3, valid_loader=valid_loader, metric_fn=accuracy)

Distributed: launch the same script with ``torchrun --nproc_per_node N`` and call
``init_distributed()`` first; build loaders with ``distributed_loader``.
"""

from .adversarial import FGM
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .distributed import (
    DistInfo,
    cleanup_distributed,
    distributed_loader,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
)
from .dropout import set_dropout, set_hidden_dropout
from .ema import EMA
from .logs import MetricsLogger, ProgressBar, plot_curves, read_metrics
from .loop import Trainer, move_to
from .optim import Lookahead, build_optimizer, default_layer_of, model_layer_of
from .sampling import LengthGroupedBatches
from .schedules import constant, lambda_scheduler, piecewise_linear, warmup_cosine, warmup_linear

__all__ = [
    "Trainer", "move_to", "LengthGroupedBatches",
    "build_optimizer", "default_layer_of", "model_layer_of", "Lookahead",
    "warmup_linear", "warmup_cosine", "piecewise_linear", "constant", "lambda_scheduler",
    "EMA", "FGM", "set_dropout", "set_hidden_dropout",
    "save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng",
    "DistInfo", "init_distributed", "cleanup_distributed", "distributed_loader",
    "get_rank", "get_world_size", "is_distributed", "is_main_process",
    "MetricsLogger", "ProgressBar", "plot_curves", "read_metrics",
]
