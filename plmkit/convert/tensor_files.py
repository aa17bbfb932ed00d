"""Reading and writing tensor files: safetensors, torch weights (never a full unpickle), atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch

from ..files import atomic_write
from .namemap import CheckpointError


class TensorSource:
    """A lazy name -> tensor view over one or more files (shards)."""

    def __init__(self, names: dict[str, Path], reader: Callable[[Path, str], torch.Tensor], description: str):
        self.names = names  # tensor name -> file holding it
        self._reader = reader
        self.description = description

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def get(self, name: str) -> torch.Tensor:
        """Read one tensor."""
        return self._reader(self.names[name], name)


def _safetensors_names(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as e:  # safetensors raises its own error types; name the file
        raise CheckpointError(f"cannot read safetensors file {path}: {e} (truncated or not a safetensors file?)") from None


def _safetensors_get(path: Path, name: str) -> torch.Tensor:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(name)
    except Exception as e:
        raise CheckpointError(f"cannot read tensor {name!r} from {path}: {e}") from None


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    # torch >= 1.6 writes a zip archive, which torch can memory-map; releases saved by older torch
    # (or with _use_new_zipfile_serialization=False) use the legacy stream format, which it cannot.
    legacy = path.is_file() and not _starts_with(path, b"PK\x03\x04")  # as torch.serialization tells them apart
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=not legacy)
    except Exception as e:
        raise CheckpointError(f"cannot read torch weights {path} with weights_only=True: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict), found {type(state).__name__}")
    return state


def _read_weight_map(index: Path) -> dict[str, str]:
    """The `weight_map` of a shard index: tensor name -> shard file name (a plain name in the same directory)."""
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{index}: not a shard index: invalid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{index}: a shard index is a JSON object with a 'weight_map'; found a JSON "
                              f"{type(doc).__name__}")
    weight_map = doc.get("weight_map")
    if not isinstance(weight_map, dict):
        found = f"a {type(weight_map).__name__}" if "weight_map" in doc else f"no such field (fields: {sorted(doc)})"
        raise CheckpointError(f"{index}: 'weight_map' must be an object mapping tensor names to shard files; "
                              f"found {found}")
    for name, file in weight_map.items():
        # shard files live beside the index (HF writes plain names); nothing absolute or above it
        if not isinstance(file, str) or not file or Path(file).is_absolute() or ".." in Path(file).parts:
            raise CheckpointError(f"{index}: 'weight_map' entry {name!r} must name a shard file in this "
                                  f"directory, found {file!r}")
    return weight_map


def open_hf_weights(directory: Path) -> TensorSource:
    """The weights of an HF model directory: (sharded) safetensors first, else pytorch_model.bin."""
    for index_name, single, kind in (("model.safetensors.index.json", "model.safetensors", "safetensors"),
                                     ("pytorch_model.bin.index.json", "pytorch_model.bin", "torch")):
        index, single_path = directory / index_name, directory / single
        if index.exists():
            files = {n: directory / f for n, f in _read_weight_map(index).items()}
        elif single_path.exists():
            files = None
        else:
            continue
        if kind == "safetensors":
            if files is None:
                files = {n: single_path for n in _safetensors_names(single_path)}
            return TensorSource(files, _safetensors_get, str(index if index.exists() else single_path))
        cache: dict[Path, dict[str, torch.Tensor]] = {}

        def read(path: Path, name: str) -> torch.Tensor:
            if path not in cache:
                cache[path] = _torch_load(path)
            if name not in cache[path]:
                raise CheckpointError(f"{path}: no tensor {name!r}, although the shard index names this file")
            return cache[path][name]

        if files is None:
            cache[single_path] = _torch_load(single_path)
            files = {n: single_path for n in cache[single_path]}
        return TensorSource(files, read, str(index if index.exists() else single_path))
    raise FileNotFoundError(f"{directory}: no model.safetensors, pytorch_model.bin or shard index found")


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors (made contiguous, unshared) to a safetensors file atomically."""
    from safetensors.torch import save_file

    data = {k: v.detach().contiguous().clone() if v.data_ptr() in _shared_ptrs(tensors) else v.detach().contiguous()
            for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(data, str(tmp), metadata=metadata or {"format": "pt"}))


def _shared_ptrs(tensors: Mapping[str, torch.Tensor]) -> set[int]:
    seen, shared = set(), set()
    for v in tensors.values():
        p = v.data_ptr()
        (shared if p in seen else seen).add(p)
    return shared

