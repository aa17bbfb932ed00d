"""NEZHA: BERT with functional relative positions inside attention, none in the embeddings.

    ids, segments ─► Embeddings(token + segment ─► LayerNorm)            (no absolute positions)
                 ─► L × PostNormBlock(RelativeSelfAttention, FeedForward)
                         scores q·(k_j + a_ij), outputs Σ p_ij (v_j + a_ij),
                         a_ij = sinusoid of clip(j - i, ±max_relative_position)
                         (clip(p_j - p_i, ...) for position_ids p given to the forward)
                 ─► [Pooler] [MLMHead tied to token embeddings] [NSPHead]

NEZHA: arXiv:1909.00204 (Huawei); relative attention after Shaw et al., arXiv:1803.02155.
Checkpoints name tensors as BERT does (under "nezha." in transformers 4.x files), so the
BERT name map is reused as is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..config import FamilyOptions, ModelConfig, config_from_bert_dict, positive_ints
from ..modules.embeddings import Embeddings
from ..modules.encoder import Encoder
from ..modules.heads import MLMHead, NSPHead, Pooler
from ..modules.relative_position import FunctionalRelativePositions, RelativeSelfAttention
from . import Family, Source, model_type_is
from . import bert

DEFAULT_MAX_RELATIVE_POSITION = 64  # NEZHA's released configs and transformers' NezhaConfig


@dataclass(frozen=True)
class NezhaOptions(FamilyOptions):
    """NEZHA's option: the clipping distance M of the relative position table."""

    max_relative_position: int = DEFAULT_MAX_RELATIVE_POSITION

    def check(self) -> None:
        positive_ints(self, "max_relative_position")


def build_nezha(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
                application: str = "encoder") -> Encoder:
    """NEZHA encoder with the heads asked for (bert4keras' build_transformer_model options)."""
    c = config
    if c.embedding_size:
        raise ValueError(f"{c.source}: NEZHA has no embedding projection; embedding_size must equal hidden_size "
                         f"({c.hidden_size}), found {c.embedding_size}")
    relative = FunctionalRelativePositions(c.head_size, c.options.max_relative_position)  # one fixed table for all layers
    embeddings = Embeddings(c.vocab_size, c.hidden_size, type_vocab_size=c.type_vocab_size, positions=None,
                            norm=bert.layer_norm(c), dropout=c.dropout)
    blocks = nn.ModuleList(
        bert.post_norm_block(c, RelativeSelfAttention(c.hidden_size, c.num_heads, c.head_size, relative=relative,
                                                      dropout=c.attention_dropout))
        for _ in range(c.num_layers))
    pooler = Pooler(c.hidden_size) if with_pool or with_nsp else None
    mlm = MLMHead(c.hidden_size, embeddings.token, c.hidden_act, bert.layer_norm(c)) if with_mlm else None
    nsp = NSPHead(c.hidden_size) if with_nsp else None
    model = Encoder(c, embeddings, blocks, application=application, pooler=pooler, mlm=mlm, nsp=nsp)
    return bert.init_weights(model, c.initializer_range)


# ---- configs -----------------------------------------------------------------------------------

def config_from_hf(d: dict[str, Any], source: str = "<dict>", names=None) -> ModelConfig:
    """NezhaConfig / NEZHA bert_config.json -> ModelConfig."""
    config = config_from_bert_dict(d, "nezha", source)
    return config.replace(options={"max_relative_position": d.get("max_relative_position",
                                                                   DEFAULT_MAX_RELATIVE_POSITION)})


def config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> a NezhaConfig dict (transformers 4.x)."""
    d = bert.hf_config_writer("nezha", ["NezhaForPreTraining"])(c)
    d["max_relative_position"] = c.options.max_relative_position
    return d


def hf_rules(config: ModelConfig, prefix: str = "", names=None):
    """Our names <- NezhaModel / NezhaForPreTraining names: BERT's, under `prefix`."""
    return bert.hf_rules(config, prefix)


def tiny_config() -> ModelConfig:
    """A tiny NEZHA config for tests: clipping distance below the test lengths."""
    return ModelConfig(family="nezha", vocab_size=50, hidden_size=24, num_layers=2, num_heads=3, intermediate_size=37,
                       max_position=40, options=NezhaOptions(max_relative_position=5))


# ---- original TensorFlow names (huawei-noah NEZHA-TensorFlow: Google BERT's, without a position table) ----

def tf_rules(config: ModelConfig, prefix: str = "", names=None):
    """Our names <- NEZHA's TensorFlow variable names (google-research/bert's minus position_embeddings)."""
    rules, ignored = bert.tf_rules(config)
    return [r for r in rules if r.ours != "embeddings.position.weight"], ignored


def config_from_tf(d: dict[str, Any], source: str, names=None) -> ModelConfig:
    """NEZHA's bert_config.json -> ModelConfig.

    NEZHA-TensorFlow's modeling.py is BERT's: "gelu" is the tanh approximation there (transformers'
    NezhaConfig reads the same word as exact GELU, a small difference in its converted checkpoints).
    """
    if d.get("hidden_act", "gelu") == "gelu":
        d = {**d, "hidden_act": "gelu_tanh"}
    return config_from_hf(d, source)


def config_to_tf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> NEZHA's bert_config.json (relative positions switched on)."""
    d = bert.config_to_tf(c)
    d.update(max_relative_position=c.options.max_relative_position, use_relative_position=True)
    return d


def _tf_detect(d: dict[str, Any], names) -> bool:
    """Google BERT's layer names without a position table, and a config that asks for relative positions."""
    return (bert.TF_LAYER0 in names and "bert/embeddings/position_embeddings" not in names
            and bool(d.get("use_relative_position") or "max_relative_position" in d))


FAMILIES = {
    "nezha": Family(
        name="nezha", build=build_nezha, tiny=tiny_config, options=NezhaOptions,
        sources={
            "hf": Source(read_config=config_from_hf, write_config=config_to_hf, rules=hf_rules,
                         detect=model_type_is("nezha"), prefixes=("nezha.", "bert.", ""),
                         architecture=bert.hf_architecture_namer("Nezha")),
            "tf": Source(read_config=config_from_tf, write_config=config_to_tf, rules=tf_rules, detect=_tf_detect,
                         config_file="bert_config.json", checkpoint_name="model.ckpt"),
        },
    ),
}
