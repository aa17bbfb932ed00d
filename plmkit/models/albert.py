"""ALBERT: factorised embeddings and one Transformer block shared by every layer.

    ids, segments ─► Embeddings(token + segment + position in E dims ─► LayerNorm ─► project E → H)
                 ─► albert:          SharedBlocks(PostNormBlock) applied L times (one copy of the weights)
                    albert_unshared: L independent PostNormBlocks, each starting from the shared weights
                 ─► [Pooler] [MLMHead: H → E, LayerNorm(E), tied E-dim token table] [SOP head]

ALBERT: arXiv:1909.11942. Loading the shared block into independent layers and fine-tuning
them separately works better than keeping them tied: kexue.fm/archives/7846.

Checkpoint layout: transformers' AlbertModel groups layers (num_hidden_groups); released
checkpoints use one group, which `albert` reads as one shared block. A model whose layers are
independent (albert_unshared) is written with num_hidden_groups = num_layers, one group per
layer, which transformers' AlbertModel loads as it is: no fine-tuned layer is thrown away.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..config import ConfigError, ModelConfig, config_from_bert_dict
from ..convert.namemap import Rule
from ..modules.blocks import SharedBlocks
from ..modules.embeddings import Embeddings
from ..modules.encoder import Encoder
from ..modules.heads import MLMHead, NSPHead, Pooler
from ..modules.positions import LearnedPositions
from . import Family
from .bert import init_weights, post_norm_block


def _norm(config: ModelConfig, dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=config.layer_norm_eps)


def num_groups(config: ModelConfig) -> int:
    """How many distinct layers the checkpoint stores: 1 (shared) or num_layers (independent)."""
    groups = config.extra.get("num_hidden_groups", 1)
    if groups not in (1, config.num_layers):
        raise ConfigError(f"{config.source}: num_hidden_groups is {groups!r}; supported are 1 (one shared layer) "
                          f"and num_hidden_layers ({config.num_layers}, independent layers)")
    return groups


def _encoder(config: ModelConfig, blocks: nn.Module, *, with_mlm: bool, with_pool: bool, with_nsp: bool,
             application: str) -> Encoder:
    c = config
    dim = c.embedding_size or c.hidden_size  # ALBERT projects E -> H even when E == H
    embeddings = Embeddings(c.vocab_size, dim, type_vocab_size=c.type_vocab_size,
                            positions=LearnedPositions(c.max_position, dim), norm=_norm(c, dim), dropout=c.dropout,
                            project_to=c.hidden_size)
    pooler = Pooler(c.hidden_size) if with_pool or with_nsp else None
    mlm = MLMHead(c.hidden_size, embeddings.token, c.hidden_act, _norm(c, dim)) if with_mlm else None
    sop = NSPHead(c.hidden_size) if with_nsp else None  # sentence-order prediction: same shape as BERT's NSP
    model = Encoder(c, embeddings, blocks, application=application, pooler=pooler, mlm=mlm, nsp=sop)
    return init_weights(model, c.initializer_range)


def build_albert(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
                 application: str = "encoder") -> Encoder:
    """ALBERT as its checkpoint lays it out: one shared block, or one per layer (num_hidden_groups = L)."""
    c = config
    if num_groups(c) == 1:
        blocks = SharedBlocks(post_norm_block(c), c.num_layers)
    else:
        blocks = nn.ModuleList(post_norm_block(c) for _ in range(c.num_layers))
    return _encoder(c, blocks, with_mlm=with_mlm, with_pool=with_pool, with_nsp=with_nsp, application=application)


def build_albert_unshared(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False,
                          with_nsp: bool = False, application: str = "encoder") -> Encoder:
    """ALBERT with independent layers; loading a shared checkpoint copies its block into each layer."""
    num_groups(config)
    # the model's own config records what it now is, L independent layers, so that saving writes them all
    c = config.replace(extra={**config.extra, "num_hidden_groups": config.num_layers})
    blocks = nn.ModuleList(post_norm_block(c) for _ in range(c.num_layers))
    return _encoder(c, blocks, with_mlm=with_mlm, with_pool=with_pool, with_nsp=with_nsp, application=application)


# ---- Hugging Face names (data) ---------------------------------------------------------------
# tf_rules: Google's ALBERT TensorFlow checkpoints (bert/embeddings/..., bert/encoder/transformer/
# group_0/inner_group_0/...) will be mapped here when the TensorFlow reader lands (issue 3).
# Note for that map: Google's albert_config.json says "gelu" but its code computes the tanh
# approximation (transformers' AlbertConfig defaults to "gelu_new" for that reason).

def _rules(config: ModelConfig, prefix: str, shared: bool) -> tuple[list[Rule], set[str]]:
    p = prefix
    o = "blocks.block." if shared else "blocks.{i}."
    g = "0" if num_groups(config) == 1 else "{i}"  # one group read into every layer, or group i into layer i
    t = f"{p}encoder.albert_layer_groups.{g}.albert_layers.0."
    qkv = [f"{t}attention.{n}" for n in ("query", "key", "value")]
    pairs = [
        ("embeddings.token.weight", f"{p}embeddings.word_embeddings.weight"),
        ("embeddings.segment.weight", f"{p}embeddings.token_type_embeddings.weight"),
        ("embeddings.position.weight", f"{p}embeddings.position_embeddings.weight"),
        ("embeddings.norm.weight", f"{p}embeddings.LayerNorm.weight"),
        ("embeddings.norm.bias", f"{p}embeddings.LayerNorm.bias"),
        ("embeddings.project.weight", f"{p}encoder.embedding_hidden_mapping_in.weight"),
        ("embeddings.project.bias", f"{p}encoder.embedding_hidden_mapping_in.bias"),
        (f"{o}attn.out.weight", f"{t}attention.dense.weight"),
        (f"{o}attn.out.bias", f"{t}attention.dense.bias"),
        (f"{o}attn_norm.weight", f"{t}attention.LayerNorm.weight"),
        (f"{o}attn_norm.bias", f"{t}attention.LayerNorm.bias"),
        (f"{o}ffn.up.weight", f"{t}ffn.weight"),
        (f"{o}ffn.up.bias", f"{t}ffn.bias"),
        (f"{o}ffn.down.weight", f"{t}ffn_output.weight"),
        (f"{o}ffn.down.bias", f"{t}ffn_output.bias"),
        (f"{o}ffn_norm.weight", f"{t}full_layer_layer_norm.weight"),
        (f"{o}ffn_norm.bias", f"{t}full_layer_layer_norm.bias"),
        ("pooler.dense.weight", f"{p}pooler.weight"),
        ("pooler.dense.bias", f"{p}pooler.bias"),
        ("mlm.dense.weight", "predictions.dense.weight"),
        ("mlm.dense.bias", "predictions.dense.bias"),
        ("mlm.norm.weight", "predictions.LayerNorm.weight"),
        ("mlm.norm.bias", "predictions.LayerNorm.bias"),
        ("nsp.dense.weight", "sop_classifier.classifier.weight"),
        ("nsp.dense.bias", "sop_classifier.classifier.bias"),
    ]
    rules = [Rule(ours, theirs, vocab_rows=ours == "embeddings.token.weight") for ours, theirs in pairs]
    rules += [
        Rule(f"{o}attn.qkv.weight", [f"{n}.weight" for n in qkv]),
        Rule(f"{o}attn.qkv.bias", [f"{n}.bias" for n in qkv]),
        Rule("mlm.bias", "predictions.bias", vocab_rows=True),
    ]
    tied = {"predictions.decoder.weight", "predictions.decoder.bias", f"{p}embeddings.position_ids",
            f"{p}embeddings.token_type_ids"}
    return [e for r in rules for e in r.expand(config.num_layers, {})], tied


def hf_rules(config: ModelConfig, prefix: str) -> tuple[list[Rule], set[str]]:
    """Our `albert` names <- transformers' AlbertModel / AlbertForMaskedLM / AlbertForPreTraining names."""
    return _rules(config, prefix, shared=num_groups(config) == 1)


def unshared_hf_rules(config: ModelConfig, prefix: str) -> tuple[list[Rule], set[str]]:
    """Our `albert_unshared` names <- the same files: the one shared group is read into every layer."""
    return _rules(config, prefix, shared=False)


def _config_from_hf(family: str):
    def convert(d: dict[str, Any], source: str) -> ModelConfig:
        c = config_from_bert_dict(d, family, source)
        if "hidden_act" not in d:
            c = c.replace(hidden_act="gelu_new")  # transformers' AlbertConfig default
        if d.get("inner_group_num", 1) != 1:
            raise ConfigError(f"{source}: inner_group_num is {d['inner_group_num']!r}; only 1 is supported "
                              "(every released ALBERT checkpoint uses 1)")
        if d.get("tie_word_embeddings") is False:
            raise ConfigError(f"{source}: tie_word_embeddings is false; ALBERT's MLM decoder is built tied to "
                              "the token embeddings")
        c = c.replace(extra={**c.extra, "num_hidden_groups": d.get("num_hidden_groups", 1)})
        num_groups(c)
        return c
    return convert


def config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> an HF AlbertConfig dict."""
    return {
        "model_type": "albert",
        "vocab_size": c.vocab_size,
        "embedding_size": c.embedding_size or c.hidden_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_layers,
        "num_hidden_groups": num_groups(c),
        "inner_group_num": 1,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.intermediate_size,
        "hidden_act": c.hidden_act,
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout,
        "max_position_embeddings": c.max_position,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "pad_token_id": c.pad_token_id,
        "initializer_range": c.initializer_range,
    }


def hf_architecture(model: nn.Module) -> str:
    """The transformers class that holds the heads this model has."""
    if model.mlm is not None and model.nsp is not None:
        return "AlbertForPreTraining"
    return "AlbertForMaskedLM" if model.mlm is not None else "AlbertModel"


def tiny_config(family: str = "albert") -> ModelConfig:
    """A tiny ALBERT config for tests (embedding size below the hidden size, as in every release)."""
    return ModelConfig(family=family, vocab_size=50, embedding_size=16, hidden_size=24, num_layers=3, num_heads=3,
                       intermediate_size=37, max_position=40, hidden_act="gelu_new")


FAMILIES = {
    "albert": Family(
        name="albert", build=build_albert, config_from_hf=_config_from_hf("albert"), config_to_hf=config_to_hf,
        hf_model_types=("albert",), hf_rules=hf_rules, hf_prefixes=("albert.", ""),
        hf_architecture=hf_architecture, tiny=tiny_config,
    ),
    "albert_unshared": Family(
        name="albert_unshared", build=build_albert_unshared, config_from_hf=_config_from_hf("albert_unshared"),
        config_to_hf=config_to_hf, hf_model_types=(), hf_rules=unshared_hf_rules, hf_prefixes=("albert.", ""),
        hf_architecture=hf_architecture, tiny=lambda: tiny_config("albert_unshared"),
    ),
}
