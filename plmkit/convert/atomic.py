"""Atomic file writes: a temp file beside the target, flushed to disk, then renamed over it.

A process killed mid-write leaves the previous file intact (rename is atomic on POSIX within
one file system) and at worst a stray `.tmp-*` file. The one copy every writer uses: model
files, TensorFlow bundles, training checkpoints, prediction files.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "temp_beside"]


def temp_beside(path: str | os.PathLike) -> Path:
    """A new empty file next to `path`, mode 0666 minus umask like any file the user writes."""
    while True:
        tmp = f"{os.fspath(path)}.tmp-{secrets.token_hex(6)}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return Path(tmp)
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Run write(tmp) on a temp file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    mode = tmp.stat().st_mode & 0o777  # 0666 minus umask
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer that recreates the file (safetensors writes it 0600) keeps the usual mode
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
