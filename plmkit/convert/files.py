"""Reading and writing tensor files: safetensors, torch weights (never a full unpickle), atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch

from .namemap import CheckpointError

from .atomic import atomic_write  # noqa: F401  (re-exported: plmkit.convert.files.atomic_write)


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


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise CheckpointError(f"cannot read torch weights {path} with weights_only=True: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def open_hf_weights(directory: Path) -> TensorSource:
    """The weights of an HF model directory: (sharded) safetensors first, else pytorch_model.bin."""
    for index_name, single, kind in (("model.safetensors.index.json", "model.safetensors", "safetensors"),
                                     ("pytorch_model.bin.index.json", "pytorch_model.bin", "torch")):
        index, single_path = directory / index_name, directory / single
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (KeyError, json.JSONDecodeError) as e:
                raise CheckpointError(f"{index}: not a shard index with a 'weight_map' ({e})") from None
            files = {n: directory / f for n, f in weight_map.items()}
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


def save_json(obj: object, path: Path) -> None:
    """Write JSON atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))
