"""What every recipe does with its output directory, and with the fields of its config.

    partial_dir(out, overwrite)      refuse an existing <out> (unless overwrite); work happens in <out>.partial
    claim(work, identity, ...)       the run's identity (run.json): the same call resumes, another is refused
    publish(work, out, state=...)    drop resume state, then rename <out>.partial to <out>: it appears whole

    FieldCheck(config)               number(name, int) / bad(name, expected): one message format for configs;
                                     optimisation() and columns(...) check the fields recipes share
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Iterable

from ..hardware import PRECISIONS
from ..training.checkpoint import ResumeError, check_run_identity

logger = logging.getLogger("plmkit.recipes")


def partial_dir(out: Path, overwrite: bool) -> Path:
    """`<out>.partial`, after refusing an `out` that exists unless `overwrite`."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"output directory {out} already exists (pass overwrite to replace it)")
    return out.with_name(out.name + ".partial")


def claim(work: Path, identity: dict[str, Any], *, overwrite: bool) -> None:
    """Record (or check) the run's identity in `work`: the same inputs and settings resume the run there; a
    different run is refused, or discarded when `overwrite`. The first file a run writes."""
    fresh = f"remove {work} (or pass --overwrite) to start afresh"
    if work.exists() and overwrite:
        try:
            check_run_identity(work, identity, fresh=fresh)
        except ResumeError as e:
            logger.warning("%s; overwrite: discarding it", e)
            shutil.rmtree(work)
    check_run_identity(work, identity, fresh=fresh)


def publish(work: Path, out: Path, state: Iterable[str] = ("checkpoint.pt", "best.pt", "run.json")) -> None:
    """Remove the resume `state` files from `work`, then put `work` in the place of `out` at once."""
    for name in state:
        (work / name).unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)  # the complete directory appears at once


class FieldCheck:
    """Checks of a config's fields with messages that name the field, what was expected and what was found."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def bad(self, name: str, expected: str) -> ValueError:
        return ValueError(f"{name}: expected {expected}, found {getattr(self.config, name)!r}")

    def number(self, name: str, kind: type = float) -> float:
        """The field's value, refused unless an integer (kind=int) or a number (bools are neither)."""
        value = getattr(self.config, name)
        ok = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok):
            raise self.bad(name, "an integer" if kind is int else "a number")
        return value

    def optimisation(self) -> None:
        """The fields every fine-tuning recipe has: batch_size, epochs, patience, lr, weight_decay, warmup,
        precision and seed."""
        for name in ("batch_size", "epochs", "patience"):
            if self.number(name, int) < 1:
                raise self.bad(name, ">= 1")
        if not self.number("lr") > 0:
            raise self.bad("lr", "> 0")
        if not self.number("weight_decay") >= 0:
            raise self.bad("weight_decay", ">= 0")
        if not 0 <= self.number("warmup") <= 1:
            raise self.bad("warmup", "a fraction of the steps in [0, 1]")
        if self.config.precision not in PRECISIONS:
            raise self.bad("precision", f"one of {', '.join(PRECISIONS)}")
        self.number("seed", int)

    def columns(self, *names: str) -> None:
        """Fields naming input columns: each a non-empty string."""
        for name in names:
            if not isinstance(getattr(self.config, name), str) or not getattr(self.config, name):
                raise self.bad(name, "a column name")
