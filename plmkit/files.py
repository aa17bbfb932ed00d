"""General file I/O: atomic writes and JSON files.

Atomic writes go to a temp file beside the target, flushed to disk, then renamed over it: a
process killed mid-write leaves the previous file intact (rename is atomic on POSIX within
one file system) and at worst a stray `.tmp-*` file. The one copy every writer uses: model
files, TensorFlow bundles, training checkpoints, prediction files.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "read_json_object", "save_json", "temp_beside"]


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


def save_json(obj: object, path: Path) -> None:
    """Write JSON atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))


def read_json_object(path: str) -> dict[str, Any]:
    """A JSON file that must hold an object (tokenizer and model configs); errors name the file."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: bytes that are not UTF-8 at byte offset {e.start} "
                         f"({raw[e.start:e.start + 4]!r}); a JSON config must be UTF-8") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data
