"""RoFormer and RoFormer-v2: BERT-shaped encoders whose positions are rotations of q and k.

RoFormer (arXiv:2104.09864, kexue.fm/archives/8265):

    ids, segments ─► Embeddings(token + segment ─► LayerNorm) [─► project to hidden]   (no absolute positions)
                 ─► L × PostNormBlock(SelfAttention(rotary on q, k), FeedForward)
                 ─► [Pooler] [MLMHead tied to token embeddings] [NSPHead]

RoFormer-v2 (kexue.fm/archives/8998, github.com/ZhuiyiTechnology/roformer-v2): the same
topology with every bias removed and every norm scale-free (x / rms(x), nothing learned):

    ids, segments ─► token + segment ─► dropout ─► ScaleFreeNorm [─► project to hidden, no bias]
                 ─► L × PostNormBlock(SelfAttention(rotary, no bias), FeedForward(no bias), ScaleFreeNorm ×2)
                 ─► [MLM: (project to embedding size, no bias) ─► dropout ─► tied token embeddingsᵀ, no bias]

Rotary on the values is an option of transformers' RoFormerConfig (rotary_value) that is off
by default and in the released checkpoints; it is not built here (config_from_hf refuses it).

2-D RoPE (kexue.fm/archives/8397), `build_roformer(..., rotary_dims=2)`: a token sits at a grid
position (row, col) given as (B, T, 2) position_ids; the first half of each head turns by the
row, the second half by the column, so attention depends only on (Δrow, Δcol). The choice is
kept in the config's options (RoFormerOptions: rotary_dims, grid_width) and in the files plmkit saves
(rotary_dims, rotary_grid_width), which transformers' RoFormer reads as 1-D: only plmkit builds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..config import ConfigError, FamilyOptions, ModelConfig, config_from_bert_dict, positive_ints
from ..convert.namemap import Rule
from ..modules.attention import SelfAttention
from ..modules.blocks import PostNormBlock
from ..modules.embeddings import Embeddings
from ..modules.encoder import Encoder
from ..modules.feedforward import FeedForward
from ..modules.heads import MLMHead, NSPHead, Pooler, TiedLMHead
from ..modules.linear import Linear
from ..modules.rotary import RotaryEmbedding
from . import Family, Source, holds, model_type_is
from . import bert

# bert4keras' LayerNormalization (which RoFormer-v2 was trained with) falls back to Keras' epsilon
KERAS_EPSILON = 1e-7


class ScaleFreeNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) over the last dim: RMS normalisation with no learned gain (RoFormer-v2)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()  # the mean of squares in fp32 even for bf16 / fp16 activations
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"


ROTARY_KEYS = ("rotary_dims", "rotary_grid_width")  # config.json fields of a 2-D RoFormer (plmkit's own)


@dataclass(frozen=True)
class RoFormerOptions(FamilyOptions):
    """RoFormer's rotary layout: 1-D along the sequence, or 2-D over (row, col) grid positions
    (kexue.fm/archives/8397); `grid_width` places tokens row-major when no position_ids are given."""

    rotary_dims: Literal[1, 2] = 1
    grid_width: int | None = None

    def check(self) -> None:
        positive_ints(self, "grid_width")
        if self.grid_width is not None and self.rotary_dims != 2:
            raise ConfigError(f"field 'grid_width' ({self.grid_width}) needs rotary_dims=2")


def rotary_positions(config: ModelConfig, rotary_dims: int | None = None,
                     grid_width: int | None = None) -> tuple[ModelConfig, RotaryEmbedding]:
    """The rotary module of a RoFormer (1-D, or 2-D over (row, col)), and the config that records it.

    Unset arguments come from the config's options (a saved 2-D model), else 1-D.
    """
    o = config.options
    dims = o.rotary_dims if rotary_dims is None else rotary_dims
    width = o.grid_width if grid_width is None else grid_width
    if isinstance(dims, bool) or dims not in (1, 2):
        raise ValueError(f"{config.source}: rotary_dims must be 1 (positions along a sequence) or 2 ((row, col) "
                         f"grid positions, kexue.fm/archives/8397), found {dims!r}")
    if width is not None and (dims != 2 or isinstance(width, bool) or not isinstance(width, int) or width <= 0):
        raise ValueError(f"{config.source}: grid_width={width!r} needs rotary_dims=2 and a positive integer")
    if dims == 2 and config.head_size % 4:
        raise ValueError(f"{config.source}: 2-D rotary turns each half of a head in pairs, so the head size must be "
                         f"divisible by 4; found {config.head_size}")
    if (dims, width) != (o.rotary_dims, o.grid_width):
        config = config.with_options(rotary_dims=dims, grid_width=width)
    return config, RotaryEmbedding(config.head_size, grid=dims == 2, grid_width=width)


def build_roformer(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
                   application: str = "encoder", rotary_dims: int | None = None,
                   grid_width: int | None = None) -> Encoder:
    """RoFormer encoder with the heads asked for (bert4keras' build_transformer_model options).

    `rotary_dims=2` builds a 2-D RoFormer (kexue.fm/archives/8397) whose forward takes (B, T, 2)
    (row, col) position_ids, or places tokens row-major on a grid `grid_width` wide.
    """
    c, rotary = rotary_positions(config, rotary_dims, grid_width)  # parameter-free: one module serves every layer
    dim = c.embedding_size or c.hidden_size
    embeddings = Embeddings(c.vocab_size, dim, type_vocab_size=c.type_vocab_size, positions=None,
                            norm=bert.layer_norm(c, dim), dropout=c.dropout,
                            project_to=c.hidden_size if c.embedding_size else None)
    blocks = nn.ModuleList(
        bert.post_norm_block(c, SelfAttention(c.hidden_size, c.num_heads, c.head_size, rotary=rotary,
                                              dropout=c.attention_dropout))
        for _ in range(c.num_layers))
    pooler = Pooler(c.hidden_size) if with_pool or with_nsp else None
    mlm = MLMHead(c.hidden_size, embeddings.token, c.hidden_act, bert.layer_norm(c, dim)) if with_mlm else None
    nsp = NSPHead(c.hidden_size) if with_nsp else None
    model = Encoder(c, embeddings, blocks, application=application, pooler=pooler, mlm=mlm, nsp=nsp)
    return bert.init_weights(model, c.initializer_range)


def build_roformer_v2(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False,
                      with_nsp: bool = False, application: str = "encoder") -> Encoder:
    """RoFormer-v2 encoder (no biases, scale-free norms), optionally with its tied MLM head."""
    c = config
    if with_pool or with_nsp:
        raise ValueError("RoFormer-v2 has no pooler or NSP head (its checkpoints hold none); "
                         "pass with_pool=False, with_nsp=False")
    dim = c.embedding_size or c.hidden_size
    rotary = RotaryEmbedding(c.head_size)
    # v2 applies dropout before its norm: the dropout lives in `norm` and Embeddings' own is off
    embeddings = Embeddings(c.vocab_size, dim, type_vocab_size=c.type_vocab_size, positions=None,
                            norm=nn.Sequential(nn.Dropout(c.dropout), ScaleFreeNorm(c.layer_norm_eps)), dropout=0.0)
    if c.embedding_size:
        embeddings.project = Linear(dim, c.hidden_size, bias=False)
    blocks = nn.ModuleList(
        PostNormBlock(SelfAttention(c.hidden_size, c.num_heads, c.head_size, bias=False, rotary=rotary,
                                    dropout=c.attention_dropout),
                      FeedForward(c.hidden_size, c.intermediate_size, c.hidden_act, bias=False),
                      ScaleFreeNorm(c.layer_norm_eps), ScaleFreeNorm(c.layer_norm_eps), c.dropout)
        for _ in range(c.num_layers))
    mlm = TiedLMHead(embeddings.token, c.dropout, in_size=c.hidden_size) if with_mlm else None
    model = Encoder(c, embeddings, blocks, application=application, mlm=mlm)
    return bert.init_weights(model, c.initializer_range)


# ---- configs -----------------------------------------------------------------------------------

def config_from_hf(d: dict[str, Any], source: str = "<dict>", names=None) -> ModelConfig:
    """RoFormerConfig / RoFormer bert_config.json -> ModelConfig."""
    if d.get("rotary_value"):
        raise ConfigError(f"{source}: rotary_value=true (rotary embedding applied to the values too) is not "
                          "supported; RoFormer checkpoints and transformers' default use rotary_value=false")
    if d.get("norm_type") == "rms_norm" or d.get("use_bias") is False:
        raise ConfigError(f"{source}: this config describes a RoFormer-v2 (norm_type/use_bias); "
                          "load it with model='roformer_v2'")
    config = config_from_bert_dict(d, "roformer", source)
    rotary = {k: d[k] for k in ROTARY_KEYS if d.get(k) is not None}
    if rotary:  # a 2-D RoFormer saved by plmkit
        try:
            config = config.replace(options=RoFormerOptions(rotary.get("rotary_dims", 1),
                                                            rotary.get("rotary_grid_width")))
            rotary_positions(config)
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None
    return config


def _rotary_fields(c: ModelConfig) -> dict[str, Any]:
    """The config.json fields of a 2-D RoFormer (none for the usual 1-D one)."""
    o = c.options
    if o.rotary_dims == 1:
        return {}
    return {"rotary_dims": 2} | ({"rotary_grid_width": o.grid_width} if o.grid_width is not None else {})


def config_from_hf_v2(d: dict[str, Any], source: str = "<dict>", names=None) -> ModelConfig:
    """RoFormer-v2 config (bert_config.json or ours) -> ModelConfig."""
    config = config_from_bert_dict(d, "roformer_v2", source)
    if d.get("layer_norm_eps") is None:  # Google-style configs carry no epsilon; bert4keras then used Keras'
        config = config.replace(layer_norm_eps=KERAS_EPSILON)
    return config


def config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> transformers' RoFormerConfig dict."""
    d = bert.hf_config_writer("roformer", ["RoFormerForMaskedLM"])(c)
    d.update(embedding_size=c.embedding_size or c.hidden_size, rotary_value=False, **_rotary_fields(c))
    return d


def config_to_hf_v2(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> our RoFormer-v2 config.json (no transformers class reads it)."""
    d = bert.hf_config_writer("roformer_v2", ["RoFormerV2ForMaskedLM"])(c)
    d.update(embedding_size=c.embedding_size or c.hidden_size)
    return d


# ---- checkpoint names (data) -------------------------------------------------------------------

def hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- transformers' RoFormerModel / RoFormerForMaskedLM names (BERT's, plus the projection).

    RoFormer-v2 files use the same names (they simply lack biases and norm weights); v2's MLM
    projection, when the embedding size differs, is stored as cls.predictions.transform.dense.
    """
    rules, tied = bert.hf_rules(config, prefix)
    rules += [
        Rule("embeddings.project.weight", f"{prefix}embeddings_project.weight"),
        Rule("embeddings.project.bias", f"{prefix}embeddings_project.bias"),
    ]
    # the sinusoid table transformers keeps as a frozen weight: derived, not loaded
    tied = tied | {f"{prefix}encoder.embed_positions.weight"}
    return rules, tied


# ---- original TensorFlow names (ZhuiyiTechnology's bert_model.ckpt, written by bert4keras) --------------
# bert4keras saves RoFormer with BERT's variable_mapping: Google BERT's names without a position table,
# the embedding projection (when embedding_size != hidden_size) as bert/encoder/embedding_hidden_mapping_in.
# RoFormer-v2 keeps the same names and drops every beta / gamma / bias (bert4keras' RoFormerV2 mapping);
# v2's MLM projection (embedding_size != hidden_size only; no release has one) has no name in bert4keras:
# we write it as cls/predictions/transform/dense/kernel, as our HF map does.

_PROJECT = "bert/encoder/embedding_hidden_mapping_in/"


def tf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our RoFormer names <- ZhuiyiTechnology/roformer TensorFlow variable names."""
    rules, ignored = bert.tf_rules(config)
    rules = [r for r in rules if r.ours != "embeddings.position.weight"]
    rules += [Rule("embeddings.project.weight", f"{_PROJECT}kernel", transpose=True),
              Rule("embeddings.project.bias", f"{_PROJECT}bias")]
    return rules, ignored


def tf_rules_v2(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our RoFormer-v2 names <- ZhuiyiTechnology/roformer-v2 TensorFlow variable names (kernels only)."""
    rules, ignored = bert.tf_rules(config)
    keep = [r for r in rules if r.ours.endswith(".weight") and r.theirs[0].endswith(("kernel", "_embeddings"))
            and not r.ours.startswith(("embeddings.position", "pooler.", "mlm.", "classifier."))]
    keep += [Rule("embeddings.project.weight", f"{_PROJECT}kernel", transpose=True),
             Rule("mlm.dense.weight", "cls/predictions/transform/dense/kernel", transpose=True)]
    return keep, ignored


# bert4keras computes "gelu" exactly (its backend maps "gelu" to gelu_erf), so ZhuiyiTechnology's
# configs mean exact GELU; it also knows "gelu_tanh", which is how we write the approximation.
_TF_ACT = {"gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def _bert4keras_config(c: ModelConfig, family: str) -> dict[str, Any]:
    d = bert.hf_config_writer(family, [])(c)
    for key in ("model_type", "architectures", "pad_token_id"):
        d.pop(key, None)
    d["hidden_act"] = _TF_ACT.get(c.hidden_act, c.hidden_act)
    if c.embedding_size:
        d["embedding_size"] = c.embedding_size
    return d


def config_to_tf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> RoFormer's bert_config.json."""
    return _bert4keras_config(c, "roformer") | _rotary_fields(c)


def config_to_tf_v2(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> RoFormer-v2's bert_config.json."""
    return _bert4keras_config(c, "roformer_v2")


def _architecture(base: str):
    def name(model: nn.Module) -> str:
        return f"{base}ForMaskedLM" if model.mlm is not None else f"{base}Model"
    return name


def tiny_config() -> ModelConfig:
    """A tiny RoFormer config for tests, with an embedding projection."""
    return ModelConfig(family="roformer", vocab_size=50, hidden_size=24, num_layers=2, num_heads=3,
                       intermediate_size=37, max_position=40, embedding_size=16)


def tiny_config_v2() -> ModelConfig:
    """A tiny RoFormer-v2 config for tests."""
    return ModelConfig(family="roformer_v2", vocab_size=50, hidden_size=24, num_layers=2, num_heads=3,
                       intermediate_size=37, max_position=40, hidden_act="relu", layer_norm_eps=KERAS_EPSILON)


# bert4keras' RoFormer checkpoints: Google BERT's layer names without a position table; v2 has no norm
# gains at all. NEZHA's share the names but its config asks for relative positions.
_TF_ROFORMER = holds(bert.TF_LAYER0, "bert/embeddings/LayerNorm/gamma", absent=("bert/embeddings/position_embeddings",))
_TF_ROFORMER_V2 = holds(bert.TF_LAYER0, absent=("bert/embeddings/position_embeddings", "bert/embeddings/LayerNorm/gamma"))


def _tf_detect(d: dict[str, Any], names) -> bool:
    return _TF_ROFORMER(d, names) and not (d.get("use_relative_position") or "max_relative_position" in d)


FAMILIES = {
    "roformer": Family(
        name="roformer", build=build_roformer, tiny=tiny_config, options=RoFormerOptions,
        sources={
            "hf": Source(read_config=config_from_hf, write_config=config_to_hf, rules=hf_rules,
                         detect=model_type_is("roformer"), prefixes=("roformer.", ""),
                         architecture=_architecture("RoFormer")),
            "tf": Source(read_config=config_from_hf, write_config=config_to_tf, rules=tf_rules, detect=_tf_detect,
                         config_file="bert_config.json", checkpoint_name="bert_model.ckpt"),
        },
    ),
    "roformer_v2": Family(
        name="roformer_v2", build=build_roformer_v2, tiny=tiny_config_v2,
        sources={
            "hf": Source(read_config=config_from_hf_v2, write_config=config_to_hf_v2, rules=hf_rules,
                         detect=model_type_is("roformer_v2"), prefixes=("roformer.", ""),
                         architecture=_architecture("RoFormerV2")),
            "tf": Source(read_config=config_from_hf_v2, write_config=config_to_tf_v2, rules=tf_rules_v2,
                         detect=_TF_ROFORMER_V2, config_file="bert_config.json", checkpoint_name="bert_model.ckpt"),
        },
    ),
}
