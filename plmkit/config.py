"""One typed, validated model configuration, and translators from the config files releases ship."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACTIVATIONS = ("gelu", "gelu_new", "gelu_tanh", "relu", "silu", "swish", "tanh", "gelu_fast", "gelu_pytorch_tanh")


class ConfigError(ValueError):
    """A configuration field is missing or has a value we cannot build."""


@dataclass
class ModelConfig:
    """Sizes and numeric choices of a Transformer; structure is chosen by `family`'s builder."""

    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int = 512
    type_vocab_size: int = 2
    embedding_size: int | None = None  # factorised / projected embeddings (ALBERT, ELECTRA)
    head_size: int | None = None  # defaults to hidden_size // num_heads
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    initializer_range: float = 0.02
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific numeric options
    source: str = "<in memory>"  # where this config came from, for error messages

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{self.source}: field {name!r} must be a positive integer, found {value!r}")
        if not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            raise ConfigError(f"{self.source}: field 'type_vocab_size' must be an integer >= 0, found {self.type_vocab_size!r}")
        if self.head_size is None:
            if self.hidden_size % self.num_heads:
                raise ConfigError(
                    f"{self.source}: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; "
                    "set head_size explicitly if that is intended")
            self.head_size = self.hidden_size // self.num_heads
        elif self.head_size <= 0:
            raise ConfigError(f"{self.source}: field 'head_size' must be positive, found {self.head_size!r}")
        if self.embedding_size is not None and self.embedding_size <= 0:
            raise ConfigError(f"{self.source}: field 'embedding_size' must be positive, found {self.embedding_size!r}")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"{self.source}: field 'hidden_act' is {self.hidden_act!r}; expected one of {ACTIVATIONS}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ConfigError(f"{self.source}: field {name!r} must lie in [0, 1), found {value!r}")
        if not float(self.layer_norm_eps) > 0:
            raise ConfigError(f"{self.source}: field 'layer_norm_eps' must be > 0, found {self.layer_norm_eps!r}")

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return dataclasses.asdict(self)


# Field names of Google's bert_config.json, also used by HF config.json for BERT-like models.
_BERT_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
}
_BERT_OPTIONAL = {
    "max_position": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "hidden_act": "hidden_act",
    "layer_norm_eps": "layer_norm_eps",
    "dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
    "pad_token_id": "pad_token_id",
    "initializer_range": "initializer_range",
    "embedding_size": "embedding_size",
}


def config_from_bert_dict(d: dict[str, Any], family: str, source: str = "<dict>") -> ModelConfig:
    """Translate a bert_config.json / HF BERT-like config.json into a ModelConfig."""
    kwargs: dict[str, Any] = {"family": family, "source": source}
    for ours, theirs in _BERT_KEYS.items():
        if theirs not in d:
            raise ConfigError(f"{source}: required field {theirs!r} is missing (found fields: {sorted(d)})")
        kwargs[ours] = d[theirs]
    for ours, theirs in _BERT_OPTIONAL.items():
        if d.get(theirs) is not None:
            kwargs[ours] = d[theirs]
    if kwargs.get("hidden_act") == "gelu_erf":
        kwargs["hidden_act"] = "gelu"  # bert4keras' unambiguous name for exact GELU (what our TF export writes)
    if kwargs.get("embedding_size") == kwargs["hidden_size"]:
        kwargs["embedding_size"] = None
    labels = labels_from_hf(d, source)
    if labels:
        kwargs["extra"] = {"labels": labels}
    return ModelConfig(**kwargs)


def labels_from_hf(d: dict[str, Any], source: str) -> list[str] | None:
    """Label names of a fine-tuned classifier (id2label), only when its architecture is one."""
    if not any(a.endswith("ForSequenceClassification") for a in d.get("architectures") or []):
        return None
    id2label = d.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ConfigError(f"{source}: a sequence-classification config needs an 'id2label' mapping")
    try:
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    except KeyError as e:
        raise ConfigError(f"{source}: 'id2label' must cover ids 0..{len(id2label) - 1}; missing {e}") from None


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object, with errors that name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data

