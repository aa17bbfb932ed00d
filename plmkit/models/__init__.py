"""The family registry: every entry is a builder, its option record and the sources (checkpoint formats)
it loads and saves.

Each family module defines a `FAMILIES` dict of `Family` records. The registry below names
the module that holds each family; it is imported only when that family is asked for.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..config import ModelConfig


Rules = Callable[..., tuple[list, set[str]]]  # (config, prefix, names or None) -> (name rules, ignored names)


@dataclass(frozen=True)
class Source:
    """One checkpoint format of a family: how to recognise it, read and write its config, name its tensors.

    `detect(config dict, tensor names)` says whether a checkpoint is this family's (None: only when
    named with model=); `read_config(config dict, config path, tensor names)` -> ModelConfig;
    `write_config(ModelConfig)` -> the dict saved as `config_file`; `rules(config, prefix, names)`
    maps our tensor names to theirs (names is None when saving). `prefixes` are the base-model
    prefixes files may use ("bert.", ""), the first one written; `checkpoint_name` is the weights
    file (TensorFlow: the prefix) written; `architecture(model)` the transformers class named in a
    Hugging Face config.json.
    """

    read_config: Callable[[dict[str, Any], str, Any], ModelConfig]
    write_config: Callable[[ModelConfig], dict[str, Any]]
    rules: Rules
    detect: Callable[[dict[str, Any], Any], bool] | None = None
    config_file: str = "config.json"
    checkpoint_name: str = "model.safetensors"
    prefixes: tuple[str, ...] = ("",)
    architecture: Callable[[nn.Module], str] | None = None


@dataclass(frozen=True)
class Family:
    """How to build one family, its option record and the checkpoint formats it reads and writes."""

    name: str
    build: Callable[..., nn.Module]  # build(config, *, with_mlm, with_pool, with_nsp, application, ...) -> model
    tiny: Callable[[], ModelConfig]  # a tiny config: the registry tests build, run and save it
    sources: dict[str, Source]  # format ("hf", "tf") -> Source
    options: Callable[..., Any] | None = None  # makes the family's option record (defaults when called bare)
    causal: bool = False  # a decoder-only LM: its LM head is built by default (no with_mlm)


def model_type_is(*model_types: str) -> Callable[[dict[str, Any], Any], bool]:
    """A detector for Hugging Face config.json files of these model_type values."""
    return lambda d, names: d.get("model_type") in model_types


def holds(*required: str, absent: tuple[str, ...] = ()) -> Callable[[dict[str, Any], Any], bool]:
    """A detector on a checkpoint's tensor names: every `required` name present, no `absent` one."""
    return lambda d, names: all(n in names for n in required) and not any(n in names for n in absent)


# family name -> module defining it
REGISTRY: dict[str, str] = {
    "bert": "plmkit.models.bert",
    "roberta": "plmkit.models.bert",
    "nezha": "plmkit.models.nezha",
    "roformer": "plmkit.models.roformer",
    "roformer_v2": "plmkit.models.roformer",
    "gpt": "plmkit.models.gpt",
    "gpt2": "plmkit.models.gpt",
    "t5.1.0": "plmkit.models.t5",
    "t5.1.1": "plmkit.models.t5",
    "mt5.1.1": "plmkit.models.t5",
    "albert": "plmkit.models.albert",
    "albert_unshared": "plmkit.models.albert",
    "electra": "plmkit.models.electra",
    "transfo_xl": "plmkit.models.transfo_xl",
}


def get_family(name: str) -> Family:
    """The Family called `name` (a `model=` value)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model family {name!r}; known: {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).FAMILIES[name]


def families() -> list[Family]:
    """Every registered family, in registry order."""
    return [get_family(name) for name in REGISTRY]


def build_model(config: ModelConfig, **options: Any) -> nn.Module:
    """Build a randomly initialised model of config.family (see the family's builder for options)."""
    return get_family(config.family).build(config, **options)
