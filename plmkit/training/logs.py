"""What a run shows and leaves behind: a progress bar, metrics.jsonl, TensorBoard, curves.png."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..files import atomic_write

__all__ = ["ProgressBar", "MetricsLogger", "read_metrics", "truncate_metrics", "plot_curves"]

logger = logging.getLogger("plmkit.training")


class ProgressBar:
    """One status line on stderr: step/total, loss, learning rate, steps/s and samples/s.

    On a terminal the line is redrawn in place (at most every ``min_interval`` seconds);
    elsewhere (CI logs, files) a full line is written every ``every`` updates.
    """

    def __init__(
        self,
        total: int | None,
        desc: str = "train",
        stream: TextIO | None = None,
        enabled: bool = True,
        every: int = 10,
        min_interval: float = 0.1,
    ) -> None:
        """Start timing now; ``total`` is the number of updates expected (None if unknown)."""
        self.total = total
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.every = max(1, every)
        self.min_interval = min_interval
        self.count = 0
        self.samples = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_line = ""

    def update(self, n: int = 1, samples: int = 0, **fields: float) -> None:
        """Advance by ``n`` updates (and ``samples`` examples) and show ``fields``."""
        self.count += n
        self.samples += samples
        if not self.enabled:
            return
        now = time.perf_counter()
        done = self.total is not None and self.count >= self.total
        if self._tty:
            if now - self._last_draw < self.min_interval and not done:
                return
        elif self.count % self.every != 0 and not done:
            return
        self._last_draw = now
        self.last_line = self.format(now, fields)
        self.stream.write(("\r" + self.last_line) if self._tty else self.last_line + "\n")
        self.stream.flush()

    def format(self, now: float, fields: dict[str, float]) -> str:
        """The status line for the current counts and ``fields``."""
        elapsed = max(now - self.start, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.desc} {self.count}{total}"]
        for key, value in fields.items():
            if key == "lr":
                parts.append(f"lr {value:.3e}")
            else:
                parts.append(f"{key} {value:.4f}")
        parts.append(f"{self.count / elapsed:.2f} it/s")
        if self.samples:
            parts.append(f"{self.samples / elapsed:.1f} samples/s")
        return " | ".join(parts)

    def close(self) -> None:
        """End the line on a terminal."""
        if self.enabled and self._tty and self.last_line:
            self.stream.write("\n")
            self.stream.flush()


class MetricsLogger:
    """Appends one JSON object per record to ``metrics.jsonl``; mirrors numbers to TensorBoard if installed."""

    def __init__(self, path: str | os.PathLike, tensorboard: bool = True) -> None:
        """Open (append) ``path``; a TensorBoard writer goes to ``<dir>/tensorboard``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = _ends_mid_line(self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        if torn:  # a killed writer left half a line: end it so the next record stands alone
            self._file.write("\n")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                logger.debug("tensorboard not installed; metrics go to %s only", self.path)
            else:
                self._tb = SummaryWriter(log_dir=str(self.path.parent / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        """Write ``record`` as one line (flushed); numeric fields also to TensorBoard."""
        self._file.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
        self._file.flush()
        if self._tb is not None and "step" in record:
            split = record.get("split", "train")
            for key, value in record.items():
                if key in ("step", "epoch") or isinstance(value, bool):
                    continue
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{split}/{key}", value, record["step"])

    def close(self) -> None:
        """Close the file and the TensorBoard writer."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _ends_mid_line(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl file; lines torn by a killed writer are skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s:%d: not a JSON record (torn by a killed run?), skipped: %r",
                           path, number, line[:80])
    return records


def truncate_metrics(path: str | os.PathLike, last_step: int) -> None:
    """Drop records past ``last_step`` (the work a killed run did after its checkpoint), atomically."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def plot_curves(metrics_path: str | os.PathLike, png_path: str | os.PathLike) -> bool:
    """Draw train loss and every validation metric against the step into ``png_path``.

    Needs matplotlib (the ``plot`` extra); without it, logs a note and returns False.
    """
    try:
        # Figure without pyplot: no global backend switch, no window.
        from matplotlib.figure import Figure
    except ImportError:
        logger.info("matplotlib not installed; skipping %s (pip install matplotlib)", png_path)
        return False
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    valid = [r for r in records if r.get("split") == "valid"]
    valid_keys = sorted({k for r in valid for k, v in r.items()
                         if k not in ("step", "epoch", "split", "time", "loss", "best") and isinstance(v, (int, float))})
    panels = 1 + len(valid_keys)
    fig = Figure(figsize=(4.5 * panels, 3.5))
    axes = fig.subplots(1, panels, squeeze=False)
    ax = axes[0][0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    valid_loss = [r for r in valid if "loss" in r]
    if valid_loss:
        ax.plot([r["step"] for r in valid_loss], [r["loss"] for r in valid_loss], "o-", label="valid")
    ax.set_xlabel("step")
    ax.set_title("loss")
    ax.legend()
    for ax, key in zip(axes[0][1:], valid_keys):
        points = [r for r in valid if key in r]
        ax.plot([r["step"] for r in points], [r[key] for r in points], "o-")
        ax.set_xlabel("step")
        ax.set_title(f"valid {key}")
    fig.tight_layout()
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))  # the usual mode, not mkstemp's 0600
    return True
