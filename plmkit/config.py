"""One typed, validated model configuration, and translators from the config files releases ship."""
from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ACTIVATIONS = ("gelu", "gelu_new", "gelu_tanh", "relu", "silu", "swish", "tanh", "gelu_fast", "gelu_pytorch_tanh",
               "softplus", "gaussian_relu")  # the last two: smooth relus, plmkit.theory.smooth_activations


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
    pad_token_id: int | None = 0  # None: the checkpoint names no pad token (GPT-2)
    bos_token_id: int | None = None
    eos_token_id: int | None = None  # where generation stops (T5: 1; GPT-2: 50256), None: no end token
    decoder_start_token_id: int | None = None  # encoder-decoders; None: start from the pad id
    initializer_range: float = 0.02
    labels: list[str] | None = None  # class names of a fine-tuned classifier (its head's rows, in order)
    options: Any = None  # the family's typed options (Family.options); None: the family's defaults
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
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"{self.source}: field {name!r} must be a token id (an integer >= 0) or null, "
                                  f"found {value!r}")
        if self.labels is not None and (not isinstance(self.labels, list) or not self.labels
                                        or not all(isinstance(n, str) for n in self.labels)):
            raise ConfigError(f"{self.source}: field 'labels' must be a non-empty list of names, found {self.labels!r}")
        self.options = _family_options(self)

    def with_options(self, **changes: Any) -> "ModelConfig":
        """A copy whose family options have some fields changed (validated again)."""
        return self.replace(options=dataclasses.replace(self.options, **changes))

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return dataclasses.asdict(self)


class FamilyOptions:
    """Base of a family's option record (a dataclass): every field is checked against its annotation
    (bool, int, float, str, None, Literal) when the record is made; `check` adds the family's own rules.
    Errors name the field; ModelConfig prefixes the config's source."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise ConfigError(f"field {f.name!r} must be {_describe(hints[f.name])}, found {value!r}")
        self.check()

    def check(self) -> None:
        """Rules across fields or on values (positive sizes, ...): raise ConfigError naming the field."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if typing.get_args(hint):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    return {type(None): "null", bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def positive_ints(options: FamilyOptions, *names: str) -> None:
    """Refuse a field of `names` that is set and not a positive integer (sizes, counts)."""
    for name in names:
        value = getattr(options, name)
        if value is not None and value <= 0:
            raise ConfigError(f"field {name!r} must be a positive integer, found {value!r}")


def _family_options(config: ModelConfig) -> Any:
    """config.options made the family's typed record: defaults for None, a record from a dict (JSON)."""
    from .models import REGISTRY, get_family  # the registry imports this module: resolved on use

    if config.family not in REGISTRY:
        return config.options  # an unknown family fails when built, with the registry's message
    make = get_family(config.family).options
    given = config.options
    if make is None:
        if given is not None:
            raise ConfigError(f"{config.source}: family {config.family!r} takes no options, found {given!r}")
        return None
    kind = type(make())
    if isinstance(given, kind):
        return given
    if given is not None and not isinstance(given, dict):
        raise ConfigError(f"{config.source}: {config.family} options must be a {kind.__name__} or a dict, "
                          f"found {type(given).__name__}")
    fields = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(given or {}) - fields)
    if unknown:
        raise ConfigError(f"{config.source}: unknown {config.family} options {unknown}; known: {sorted(fields)}")
    try:
        return make(**(given or {}))
    except ConfigError as e:
        raise ConfigError(f"{config.source}: {config.family} option {e}") from None


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
    kwargs["labels"] = labels_from_hf(d, source)
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

