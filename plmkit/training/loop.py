"""The training loop: fit / evaluate / predict over any model and any loss function.

The loss function
-----------------
``loss_fn(model, batch)`` runs the model on one micro-batch and returns either

* a scalar tensor: the mean loss of the micro-batch. Micro-batches are then weighted
  equally: the update uses the mean of their means (exact for equal-sized batches), or
* ``(loss_sum, count)``: the loss summed over the micro-batch and how many examples or
  tokens it counts. The update then uses ``sum of loss_sum / sum of count`` over all
  micro-batches of the accumulation window and all processes, which is exactly the
  gradient of one large batch even when micro-batches hold different numbers of tokens.

Either way the trainer back-propagates each micro-batch's loss as returned (``loss_sum``,
or the mean with a count of 1) and, once the window is complete, multiplies the summed
gradients by ``world_size / total_count`` (DDP has already averaged over processes).
``loss_fn`` must call ``model(...)`` itself (not a submodule) so DDP sees the forward.

One optimizer step, top to bottom
---------------------------------
for each micro-batch of the window: autocast forward → backward (DDP ``no_sync`` except
on the window's last backward; FGM adds an adversarial forward/backward) → normalise the
gradients → clip (and measure the norm) → skip the step if the loss or the norm is not
finite, else optimizer.step, scheduler.step, EMA update → zero_grad → log, checkpoint.

Checkpoints are written only at window boundaries, so a resumed run re-reads the epoch
in the same order (RNG states from the epoch start), skips the micro-batches already
consumed, restores the RNG states of the moment of the save and carries on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..hardware import describe, fast_linear_for, resolve_precision
from .adversarial import FGM
from .checkpoint import ResumeError, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .distributed import (
    all_gather_object,
    all_reduce_sum,
    broadcast_object,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
)
from .ema import EMA
from .logs import MetricsLogger, ProgressBar, plot_curves, truncate_metrics

__all__ = ["Trainer", "move_to"]

logger = logging.getLogger("plmkit.training")

LossOutput = Tensor | tuple[Tensor, Tensor | int | float]
LossFn = Callable[[nn.Module, Any], LossOutput]
MetricFn = Callable[[nn.Module, Iterable], dict[str, float]]
Callback = Callable[["Trainer", dict[str, Any]], None]

CHECKPOINT_FORMAT = "plmkit.training.checkpoint/1"


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor moved to ``device`` (dicts, lists, tuples, namedtuples)."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return type(batch)((k, move_to(v, device)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Tensor):
        return batch.shape[0] if batch.dim() else 1
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for value in values:
        size = _batch_size(value)
        if size:
            return size
    return 0


def _split_loss(output: LossOutput, device: torch.device) -> tuple[Tensor, Tensor]:
    if isinstance(output, (tuple, list)):
        if len(output) != 2:
            raise ValueError(f"loss_fn returned a {len(output)}-tuple; expected (loss_sum, count)")
        loss, count = output
    else:
        loss, count = output, 1
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (or (sum, count)); found {shape}")
    if loss.dtype in (torch.float16, torch.bfloat16):
        loss = loss.float()
    # Totals in float64: token counts and sums stay exact over long windows.
    count = torch.as_tensor(count, device=device).detach().to(torch.float64)
    return loss, count


def _samplers(loader: Any) -> list[Any]:
    found, seen = [], set()
    batch_sampler = getattr(loader, "batch_sampler", None)
    for obj in (getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
        if obj is not None and id(obj) not in seen:
            seen.add(id(obj))
            found.append(obj)
    return found


def _loader_generators(loader: Any) -> list[torch.Generator]:
    gens = [getattr(loader, "generator", None)] + [getattr(s, "generator", None) for s in _samplers(loader)]
    unique, seen = [], set()
    for g in gens:
        if isinstance(g, torch.Generator) and id(g) not in seen:
            seen.add(id(g))
            unique.append(g)
    return unique


def _capture(loader: Any) -> dict[str, Any]:
    return {"rng": capture_rng(), "loader": [g.get_state() for g in _loader_generators(loader)]}


def _restore(loader: Any, state: dict[str, Any]) -> None:
    restore_rng(state["rng"])
    gens = _loader_generators(loader)
    if len(gens) != len(state["loader"]):
        raise ValueError(
            f"checkpoint holds {len(state['loader'])} data-loader generator states, "
            f"the loader has {len(gens)}: resume with the loader the run started with"
        )
    for g, s in zip(gens, state["loader"]):
        g.set_state(s)


class Trainer:
    """A plain training loop: accumulation, clipping, bf16, EMA, FGM, checkpoints, DDP."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        optimizer: torch.optim.Optimizer,
        scheduler: Any | None = None,
        *,
        accumulation: int = 1,
        max_grad_norm: float | None = None,
        precision: str = "auto",
        ema: EMA | None = None,
        fgm: FGM | None = None,
        fgm_epsilon: float = 1.0,
        out_dir: str | os.PathLike | None = None,
        log_every: int = 10,
        save_every: int | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
        tensorboard: bool = True,
        callbacks: Sequence[Callback] = (),
        ddp_options: dict[str, Any] | None = None,
    ) -> None:
        """Wrap ``model`` in DDP when a process group of 2+ is initialised (see distributed.py).

        ``scheduler`` steps once per optimizer step. ``save_every`` (optimizer steps)
        adds mid-epoch checkpoints to the end-of-epoch ones; nothing is written without
        ``out_dir``. ``callbacks`` run on every rank after each optimizer step with the
        step's record. ``device`` defaults to the model's (cuda:LOCAL_RANK under DDP on
        GPUs); build the optimizer and EMA after moving the model there.
        """
        if accumulation < 1:
            raise ValueError(f"accumulation: expected >= 1, found {accumulation}")
        if max_grad_norm is not None and max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm: expected > 0 or None, found {max_grad_norm}")
        if save_every is not None and save_every < 1:
            raise ValueError(f"save_every: expected >= 1 or None, found {save_every}")
        if device is None:
            if is_distributed() and torch.cuda.is_available():
                device = torch.device("cuda", torch.cuda.current_device())
            else:
                device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.device = torch.device(device)
        self.module = model.to(self.device)
        self.model: nn.Module = self.module
        if is_distributed():
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.module, device_ids=device_ids, **(ddp_options or {}))
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.accumulation = accumulation
        self.max_grad_norm = max_grad_norm
        # "auto": bf16 autocast only where bf16 is native to the device (plmkit.hardware)
        self.precision = resolve_precision(precision, self.device)
        self.ema = ema
        self.fgm = fgm
        self.fgm_epsilon = fgm_epsilon
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.log_every = max(1, log_every)
        self.save_every = save_every
        self.progress = progress
        self.tensorboard = tensorboard
        self.callbacks = list(callbacks)

        # Position of the run; all of it goes into the checkpoint.
        self.step = 0  # optimizer steps applied
        self.skipped_steps = 0  # windows dropped by the non-finite guard
        self.epoch = 0
        self.batch_in_epoch = 0  # micro-batches of the current epoch already consumed
        self.best: float | None = None
        self.bad_epochs = 0
        self.stopped = False
        self.monitor: str | None = None
        self.mode: str | None = None

        self._epoch_state: dict[str, Any] | None = None
        self._metrics: MetricsLogger | None = None
        self._bar: ProgressBar | None = None
        self._window_log: list[float] = []
        self._samples = 0  # examples since the last progress update (this rank)
        self._log_samples = 0  # examples since the last metrics record (all ranks)
        self._clock = time.perf_counter()

    # ------------------------------------------------------------------ helpers
    @property
    def checkpoint_path(self) -> Path | None:
        """``<out_dir>/checkpoint.pt`` (None without out_dir)."""
        return self.out_dir / "checkpoint.pt" if self.out_dir is not None else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the trainer's device when precision is 'bf16', else a no-op."""
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        )

    def _params(self) -> list[Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _no_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        if isinstance(self.model, DistributedDataParallel) and not sync:
            return self.model.no_sync()
        return contextlib.nullcontext()

    def _lr(self) -> float:
        return max(float(group["lr"]) for group in self.optimizer.param_groups)

    # ------------------------------------------------------------------ one step
    def _forward_backward(self, batch: Any, sync: bool) -> tuple[Tensor, Tensor]:
        """Forward and backward of one micro-batch; ``sync`` marks the window's last one."""
        batch = move_to(batch, self.device)
        with self._no_sync(sync and self.fgm is None):
            if self.fgm is not None:
                self.fgm.mark()
            with self.autocast():
                loss_sum, count = _split_loss(self.loss_fn(self.model, batch), self.device)
            loss_sum.backward()
        if self.fgm is not None:
            # The adversarial loss adds to the same gradients and shares the same count.
            self.fgm.attack(self.fgm_epsilon)
            with self._no_sync(sync):
                with self.autocast():
                    adv_sum, _ = _split_loss(self.loss_fn(self.model, batch), self.device)
                adv_sum.backward()
            self.fgm.restore()
        return loss_sum.detach(), count

    def _optimizer_step(self, loss_sum: Tensor, count: Tensor, synced: bool = True) -> dict[str, Any]:
        """Normalise the accumulated gradients, guard, clip, step; returns the step's record."""
        totals = all_reduce_sum(torch.stack([loss_sum, count]))  # float64 (2,)
        world = get_world_size()
        params = self._params()
        if not synced and world > 1:  # a trailing window DDP never saw: reduce by hand
            for p in params:
                if p.grad is not None:
                    all_reduce_sum(p.grad)
            world = 1
        # DDP averaged over processes; undo that and divide by the global count instead.
        loss_total, count_total = totals.tolist()
        scale = world / count_total if count_total > 0 else math.nan
        for p in params:
            if p.grad is not None:
                p.grad.mul_(scale)
        loss = loss_total / count_total if count_total > 0 else math.nan
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm or float("inf"))
        )
        record: dict[str, Any] = {
            "split": "train", "step": self.step, "epoch": self.epoch,
            "loss": loss, "lr": self._lr(), "grad_norm": grad_norm, "skipped": False,
        }
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update()
            self.step += 1
            record["step"] = self.step
        else:
            self.skipped_steps += 1
            record["skipped"] = True
            what = "loss" if not math.isfinite(loss) else "gradient norm"
            record["reason"] = f"non-finite {what}"
            if is_main_process():
                logger.warning(
                    "skipped the update after step %d (epoch %d, micro-batch %d): loss %s, "
                    "gradient norm %s", self.step, self.epoch, self.batch_in_epoch, loss, grad_norm,
                )
        self.optimizer.zero_grad(set_to_none=True)
        return record

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train_loader: Iterable,
        epochs: int = 1,
        valid_loader: Iterable | None = None,
        metric_fn: MetricFn | None = None,
        early_stopping_patience: int | None = None,
        resume: bool = True,
        max_steps: int | None = None,
        monitor: str | None = None,
        mode: str | None = None,
        valid_loss: bool = True,
    ) -> dict[str, Any]:
        """Train for ``epochs`` (or ``max_steps`` optimizer steps), validating after each epoch.

        ``metric_fn(model, valid_loader) -> {name: value}`` runs under no_grad in eval mode
        (with EMA weights when an EMA is given); rank 0's result is used everywhere.
        ``monitor`` (default: the first metric, else the validation loss) with ``mode``
        ('max' for metrics, 'min' for loss by default) drives early stopping and
        ``<out_dir>/best.pt``. With ``resume`` and an existing ``<out_dir>/checkpoint.pt``
        the run continues exactly where that checkpoint stopped. ``epochs`` and
        ``max_steps`` count from the start of the run, not from this call.
        """
        if early_stopping_patience is not None and valid_loader is None:
            raise ValueError("early_stopping_patience needs a valid_loader to measure")
        if monitor is not None:
            self.monitor = monitor
        if mode is not None:
            if mode not in ("min", "max"):
                raise ValueError(f"mode: expected 'min' or 'max', found {mode!r}")
            self.mode = mode
        resume_state = self._load_for_resume() if resume else None

        main = is_main_process()
        if main:
            logger.info("%s", describe(self.precision, self.device))
        if self.out_dir is not None and main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            metrics_path = self.out_dir / "metrics.jsonl"
            if resume:
                truncate_metrics(metrics_path, self.step)
            self._metrics = MetricsLogger(metrics_path, tensorboard=self.tensorboard)
            # what this (part of the) run ran with: a resumed run on another machine says so
            self._metrics.log({"split": "run", "step": self.step, "device": str(self.device),
                               "precision": self.precision, "fast_fp32_linear": fast_linear_for(self.device)})
        per_epoch = (
            math.ceil(len(train_loader) / self.accumulation) if hasattr(train_loader, "__len__") else None
        )
        total = per_epoch * epochs if per_epoch is not None else None
        if max_steps is not None:
            total = max_steps if total is None else min(total, max_steps)
        self._bar = ProgressBar(total, enabled=self.progress and main, every=self.log_every)
        self._bar.count = self.step + self.skipped_steps
        self._clock = time.perf_counter()

        try:
            while self.epoch < epochs and not self.stopped:
                if max_steps is not None and self.step >= max_steps:
                    break
                finished = self._train_epoch(train_loader, resume_state, max_steps)
                resume_state = None
                if finished:
                    if valid_loader is not None:
                        self._validate(valid_loader, metric_fn, early_stopping_patience, valid_loss)
                    self.epoch += 1
                    self.batch_in_epoch = 0
                self.save(train_loader)
        finally:
            self._bar.close()
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
                try:
                    plot_curves(self.out_dir / "metrics.jsonl", self.out_dir / "curves.png")
                except Exception as exc:  # noqa: BLE001 - a plot must never hide the run's own error
                    logger.warning("could not draw %s: %s", self.out_dir / "curves.png", exc)
        return {
            "step": self.step, "epoch": self.epoch, "skipped_steps": self.skipped_steps,
            "best": self.best, "monitor": self.monitor, "stopped_early": self.stopped,
        }

    def _train_epoch(self, loader: Iterable, resume_state: dict[str, Any] | None, max_steps: int | None) -> bool:
        """The epoch from ``self.batch_in_epoch`` on; False when ``max_steps`` cut it short."""
        self.model.train()
        for sampler in _samplers(loader):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
        if resume_state is not None and self.batch_in_epoch > 0:
            # Same order as the interrupted epoch: its start-of-epoch RNG, then skip ahead,
            # then the RNG as it was at the save.
            self._epoch_state = resume_state["epoch_state"]
            _restore(loader, self._epoch_state)
            batches: Iterator = iter(loader)
            for _ in range(self.batch_in_epoch):
                next(batches)
            _restore(loader, resume_state["state"])
        else:
            if resume_state is not None:
                _restore(loader, resume_state["state"])
            self._epoch_state = _capture(loader)
            batches = iter(loader)

        length = len(loader) if hasattr(loader, "__len__") else None
        window_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        window_count = torch.zeros((), dtype=torch.float64, device=self.device)
        in_window = 0
        for index, batch in enumerate(batches, start=self.batch_in_epoch):
            closes = in_window + 1 == self.accumulation or (length is not None and index + 1 == length)
            loss_sum, count = self._forward_backward(batch, sync=closes)
            window_loss += loss_sum.to(torch.float64)
            window_count += count
            in_window += 1
            self._samples += _batch_size(batch)
            if not closes:
                continue
            self.batch_in_epoch = index + 1
            if self._after_window(self._optimizer_step(window_loss, window_count), loader, max_steps):
                return length is not None and self.batch_in_epoch >= length
            window_loss.zero_()
            window_count.zero_()
            in_window = 0
        if in_window:  # an iterable without len ended mid-window
            self.batch_in_epoch += in_window
            self._after_window(self._optimizer_step(window_loss, window_count, synced=False), loader, max_steps)
        return True

    def _after_window(self, record: dict[str, Any], loader: Iterable, max_steps: int | None) -> bool:
        """Progress, logs, checkpoint and callbacks after one optimizer step; True to stop."""
        record["batch_in_epoch"] = self.batch_in_epoch
        if not record["skipped"]:
            self._window_log.append(record["loss"])
        if self._bar is not None:
            self._bar.update(1, samples=self._samples * get_world_size(), loss=record["loss"], lr=record["lr"])
        self._log_samples += self._samples * get_world_size()
        self._samples = 0
        if self._metrics is not None:
            if record["skipped"]:
                self._metrics.log({**record, "event": "skipped_step", "loss": repr(record["loss"]),
                                   "grad_norm": repr(record["grad_norm"]), "time": time.time()})
            elif self.step % self.log_every == 0:
                elapsed = time.perf_counter() - self._clock
                self._metrics.log({
                    "split": "train", "step": self.step, "epoch": self.epoch,
                    "loss": sum(self._window_log) / len(self._window_log), "lr": record["lr"],
                    "grad_norm": record["grad_norm"], "steps_per_s": len(self._window_log) / max(elapsed, 1e-9),
                    "samples_per_s": self._log_samples / max(elapsed, 1e-9), "time": time.time(),
                })
        if not record["skipped"] and self.step % self.log_every == 0:
            self._window_log = []
            self._log_samples = 0
            self._clock = time.perf_counter()
        if self.save_every is not None and not record["skipped"] and self.step % self.save_every == 0:
            self.save(loader)
        for callback in self.callbacks:
            callback(self, record)
        return max_steps is not None and self.step >= max_steps

    def _validate(self, loader: Iterable, metric_fn: MetricFn | None, patience: int | None, with_loss: bool) -> None:
        """Evaluate (EMA weights if any), log, track the best value, decide early stopping."""
        if self.ema is not None:
            self.ema.apply()
        try:
            metrics = self.evaluate(loader, metric_fn, with_loss=with_loss)
            if self.monitor is None:
                extra = [k for k in metrics if k != "loss"]
                self.monitor = extra[0] if extra else "loss"
            if self.mode is None:
                self.mode = "min" if self.monitor == "loss" else "max"
            if self.monitor not in metrics:
                raise KeyError(f"monitor {self.monitor!r} is not among the metrics {sorted(metrics)}")
            value = float(metrics[self.monitor])
            improved = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
            if improved:
                self.best = value
                self.bad_epochs = 0
                if self.out_dir is not None and is_main_process():
                    save_checkpoint(self.out_dir / "best.pt", {"model": self.module.state_dict(),
                                                               "step": self.step, self.monitor: value})
            else:
                self.bad_epochs += 1
                if patience is not None and self.bad_epochs >= patience:
                    self.stopped = True
        finally:
            if self.ema is not None:
                self.ema.restore()
        if self._metrics is not None:
            self._metrics.log({"split": "valid", "step": self.step, "epoch": self.epoch, **metrics,
                               "best": self.best, "time": time.time()})
        if is_main_process():
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            logger.info("epoch %d step %d: %s%s", self.epoch, self.step, shown,
                        " (early stop)" if self.stopped else "")

    # ------------------------------------------------------------------ evaluate / predict
    @torch.no_grad()
    def evaluate(self, loader: Iterable, metric_fn: MetricFn | None = None, with_loss: bool = True) -> dict[str, float]:
        """Mean loss over ``loader`` (count-weighted, summed over ranks) plus ``metric_fn``'s values.

        Every rank must call it (the loss is all-reduced); ``metric_fn(model, loader)``
        runs on every rank and rank 0's result is returned everywhere.
        """
        module = self.module
        was_training = module.training
        module.eval()
        metrics: dict[str, float] = {}
        try:
            if with_loss:
                total = torch.zeros(2, dtype=torch.float64, device=self.device)
                for batch in loader:
                    with self.autocast():
                        loss_sum, count = _split_loss(self.loss_fn(module, move_to(batch, self.device)), self.device)
                    total += torch.stack([loss_sum.detach().to(torch.float64), count])
                all_reduce_sum(total)
                metrics["loss"] = (total[0] / total[1]).item()
            if metric_fn is not None:
                with self.autocast():
                    extra = metric_fn(module, loader)
                metrics.update(broadcast_object({k: float(v) for k, v in extra.items()}))
        finally:
            module.train(was_training)
        return metrics

    @torch.no_grad()
    def predict(self, loader: Iterable, predict_fn: Callable[[nn.Module, Any], Any] | None = None) -> Any:
        """Model outputs over ``loader`` on this rank, on CPU: one tensor (concatenated on dim 0) or a list.

        ``predict_fn(model, batch)`` defaults to ``model(**batch)`` for dicts, ``model(*batch)``
        for tuples and lists, ``model(batch)`` for a tensor.
        """
        predict_fn = predict_fn or _default_predict
        module = self.module
        was_training = module.training
        module.eval()
        outputs = []
        try:
            for batch in loader:
                with self.autocast():
                    out = predict_fn(module, move_to(batch, self.device))
                outputs.append(_to_cpu_float(out))
        finally:
            module.train(was_training)
        if outputs and all(isinstance(o, Tensor) and o.dim() > 0 for o in outputs):
            try:
                return torch.cat(outputs)
            except RuntimeError:  # ragged shapes (e.g. sequence lengths per batch)
                return outputs
        return outputs

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything but the RNG and data-loader states: model, optimizer, scheduler, EMA, position."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.step, "skipped_steps": self.skipped_steps,
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "best": self.best, "bad_epochs": self.bad_epochs, "stopped": self.stopped,
            "monitor": self.monitor, "mode": self.mode,
            "accumulation": self.accumulation, "world_size": get_world_size(),
        }

    def save(self, loader: Iterable | None = None) -> Path | None:
        """Write ``<out_dir>/checkpoint.pt`` atomically (rank 0); every rank must call it."""
        if self.out_dir is None:
            return None
        state = self.state_dict()
        current = _capture(loader) if loader is not None else {"rng": capture_rng(), "loader": []}
        # Each rank's RNG drives its own dropout: keep them all, in rank order.
        state["rng_states"] = all_gather_object(current)
        state["epoch_states"] = all_gather_object(self._epoch_state if self.batch_in_epoch > 0 else None)
        if not is_main_process():
            return None
        return save_checkpoint(self.checkpoint_path, state)

    def _load_for_resume(self) -> dict[str, Any] | None:
        """Load ``<out_dir>/checkpoint.pt`` if present; returns this rank's RNG and epoch states."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            return None
        state = load_checkpoint(path)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ResumeError(f"checkpoint {path}: format {found!r}, expected {CHECKPOINT_FORMAT!r}")
        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:  # torch's size-mismatch / group-count messages
            detail = " ".join(str(exc).split())
            raise ResumeError(f"checkpoint {path} was written by a different model or optimizer and cannot be "
                              f"resumed here ({detail[:300]}{'...' if len(detail) > 300 else ''}); remove "
                              f"{path.parent} to start afresh") from exc
        for name, obj in (("scheduler", self.scheduler), ("ema", self.ema)):
            if (obj is None) != (state[name] is None):
                raise ResumeError(
                    f"checkpoint {path}: {name} {'present' if state[name] is not None else 'absent'}, "
                    f"but the trainer has {'none' if obj is None else 'one'}"
                )
            if obj is not None:
                obj.load_state_dict(state[name])
        for key in ("step", "skipped_steps", "epoch", "batch_in_epoch", "best", "bad_epochs", "stopped"):
            setattr(self, key, state[key])
        self.monitor = self.monitor or state["monitor"]
        self.mode = self.mode or state["mode"]
        if state["accumulation"] != self.accumulation or state["world_size"] != get_world_size():
            logger.warning(
                "checkpoint %s was written with accumulation %d on %d processes; resuming with %d on %d "
                "(the data order and RNG streams will differ from an uninterrupted run)",
                path, state["accumulation"], state["world_size"], self.accumulation, get_world_size(),
            )
        rank = get_rank() if len(state["rng_states"]) == get_world_size() else 0
        if is_main_process():
            logger.info("resumed from %s at epoch %d, step %d, micro-batch %d",
                        path, self.epoch, self.step, self.batch_in_epoch)
        return {"state": state["rng_states"][rank], "epoch_state": state["epoch_states"][rank]}


def _default_predict(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (list, tuple)):
        return model(*batch)
    return model(batch)


def _to_cpu_float(out: Any) -> Any:
    if isinstance(out, Tensor):
        out = out.detach().cpu()
        return out.float() if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: _to_cpu_float(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_to_cpu_float(v) for v in out) if not hasattr(out, "_fields") else type(out)(*map(_to_cpu_float, out))
    return out
