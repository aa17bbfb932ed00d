"""Atomic checkpoint files and the random-number states that make a resume exact."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_write

__all__ = ["ResumeError", "file_digest", "check_run_identity", "save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng"]


class ResumeError(ValueError):
    """A training checkpoint that cannot be read or does not belong to this run: names the file and why."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` to a temp file beside ``path``, then rename it over ``path``.

    A run killed mid-write leaves the previous checkpoint intact (rename is atomic on
    POSIX within one file system) and at worst a stray ``.tmp`` file.
    """
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)

    return atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (tensors and plain Python only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ResumeError(f"checkpoint {path}: cannot be read ({first})") from exc


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.hexdigest()


def check_run_identity(directory: str | os.PathLike, identity: dict[str, Any], *, fresh: str) -> None:
    """Refuse to resume `directory` unless it was started with the same `identity` (inputs' digests and
    settings, JSON-able); a directory without a record is given one (``run.json``), and so becomes this run's.

    `fresh` says how to start afresh instead (e.g. "remove it, or pass --overwrite"); a mismatch names the
    directory, the first keys that differ and that remedy. Checkpoints written before this record existed
    have none; they are then checked by shape only, on load."""
    directory = Path(directory)
    record = directory / "run.json"
    identity = json.loads(json.dumps(identity))  # tuples as lists, as they come back from the file
    if record.is_file():
        try:
            previous = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResumeError(f"{record}: unreadable run record ({exc}); {fresh}") from None
        if previous != identity:
            was, now = _flat(previous), _flat(identity)
            differ = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
            shown = ", ".join(f"{k} (was {_short(was.get(k))}, now {_short(now.get(k))})" for k in differ[:3])
            raise ResumeError(f"{directory} holds an interrupted run with different inputs or settings: {shown}"
                              f"{' and more' if len(differ) > 3 else ''}; run the command that started it to "
                              f"resume, or {fresh}")
        return
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(identity, indent=1, ensure_ascii=False)
    atomic_write(record, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"config": {"lr": 1}} as {"config.lr": 1}: a difference is named by its leaf."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def capture_rng() -> dict[str, Any]:
    """The state of every global generator: Python, NumPy, torch CPU and CUDA."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        # Kept as a tensor so the checkpoint loads with weights_only=True.
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set every global generator back to ``capture_rng``'s snapshot."""
    random.setstate(_as_tuple(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    # torch.save keeps tuples, but be lenient with lists from other writers.
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_as_tuple(v) for v in value)
    return value
