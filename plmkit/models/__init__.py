"""The family registry: every entry is a builder plus the maps that load and save it.

Each family module defines a `FAMILIES` dict of `Family` records. The registry below names
the module that holds each family; it is imported only when that family is asked for.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..config import ModelConfig


@dataclass(frozen=True)
class Family:
    """How to build one family and how its checkpoints are named."""

    name: str
    build: Callable[..., nn.Module]  # build(config, *, with_mlm, with_pool, with_nsp, application, ...) -> model
    config_from_hf: Callable[[dict[str, Any], str], ModelConfig] | None = None
    config_to_hf: Callable[[ModelConfig], dict[str, Any]] | None = None
    hf_model_types: tuple[str, ...] = ()
    hf_rules: Callable[..., tuple[list, set[str]]] | None = None  # (config, prefix, model) -> (rules, tied names)
    hf_prefixes: tuple[str, ...] = ("",)  # base-model prefixes their files may use ("bert.", "roberta."); first = written
    hf_architecture: Callable[[nn.Module], str] | None = None  # the transformers class name to write in config.json
    tiny: Callable[[], ModelConfig] | None = None  # a tiny config: the registry test builds, runs and saves it
    # original TensorFlow checkpoints: (config, names in the file) -> (rules, ignored names); config translators
    tf_rules: Callable[..., tuple[list, set[str]]] | None = None
    config_from_tf: Callable[[dict[str, Any], str], ModelConfig] | None = None
    config_to_tf: Callable[[ModelConfig], dict[str, Any]] | None = None
    tf_config_file: str = "bert_config.json"  # the config file name releases of this family ship
    tf_checkpoint_name: str = "bert_model.ckpt"  # the prefix save_pretrained(format="tf") writes
    causal: bool = False  # a decoder-only LM: its LM head is built by default (no with_mlm)
    extras: dict[str, Any] = field(default_factory=dict)


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
}


def get_family(name: str) -> Family:
    """The Family called `name` (a `model=` value)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model family {name!r}; known: {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).FAMILIES[name]


def family_for_hf_type(model_type: str) -> Family:
    """The family that reads HF config.json files of this model_type."""
    for name in REGISTRY:
        family = get_family(name)
        if model_type in family.hf_model_types:
            return family
    raise KeyError(f"HF model_type {model_type!r} is not supported; pass model=... to name a family "
                   f"(known: {sorted(REGISTRY)})")


def build_model(config: ModelConfig, **options: Any) -> nn.Module:
    """Build a randomly initialised model of config.family (see the family's builder for options)."""
    return get_family(config.family).build(config, **options)
