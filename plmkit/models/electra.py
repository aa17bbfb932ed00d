"""ELECTRA: a BERT encoder read as a discriminator (replaced-token detection) or a generator (MLM).

    ids, segments ─► Embeddings(token + segment + position in E dims ─► LayerNorm [─► project E → H if E ≠ H])
                 ─► L × PostNormBlock
                 ─► discriminator (with_rtd): transform H → H ─► act ─► score: one logit per token   (B, T)
                    generator     (with_mlm): dense H → E ─► GELU ─► LayerNorm(E) ─► tied token table + bias   (B, T, V)

ELECTRA: arXiv:2003.10555. Generator and discriminator are separate checkpoints of different
sizes, so a model carries one of the two heads. Either sits in the encoder's token-level head
slot (`model.mlm`), whose output is `out.logits`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..config import ConfigError, FamilyOptions, ModelConfig, config_from_bert_dict
from ..convert.namemap import Rule
from ..modules.embeddings import Embeddings
from ..modules.encoder import Encoder
from ..modules.heads import MLMHead
from ..modules.linear import Linear, canonical_activation
from ..modules.positions import LearnedPositions
from . import Family, Source, holds, model_type_is
from .bert import hf_rules as bert_hf_rules
from .bert import hf_encoder_fields, init_weights, post_norm_block, tf_layer_rules


class ReplacedTokenHead(nn.Module):
    """The discriminator's head: transform ─► act ─► score, one logit per token (> 0: replaced)."""

    def __init__(self, hidden_size: int, act: str) -> None:
        super().__init__()
        self.transform = Linear(hidden_size, hidden_size)
        self.act = canonical_activation(act)
        self.score = Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.score(self.transform.forward_act(hidden, self.act)).squeeze(-1)  # (B, T)


@dataclass(frozen=True)
class ElectraOptions(FamilyOptions):
    """Which model of an ELECTRA checkpoint the config describes (TensorFlow releases hold both)."""

    part: Literal["discriminator", "generator"] = "discriminator"


def build_electra(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
                  application: str = "encoder", with_rtd: bool = False) -> Encoder:
    """ELECTRA encoder with the discriminator's RTD head (with_rtd) or the generator's MLM head (with_mlm)."""
    if with_pool or with_nsp:
        raise ValueError("ELECTRA checkpoints have no pooler or NSP head (with_pool / with_nsp); "
                         "classify from out.last_hidden_state[:, 0] instead")
    if with_mlm and with_rtd:
        raise ValueError("with_mlm (generator) and with_rtd (discriminator) come from different ELECTRA "
                         "checkpoints; load each into its own model")
    if with_mlm or with_rtd:  # the head says which model of a checkpoint this is; its config records it
        config = config.with_options(part="generator" if with_mlm else "discriminator")
    c = config
    dim = c.embedding_size or c.hidden_size
    embeddings = Embeddings(c.vocab_size, dim, type_vocab_size=c.type_vocab_size,
                            positions=LearnedPositions(c.max_position, dim),
                            norm=nn.LayerNorm(dim, eps=c.layer_norm_eps), dropout=c.dropout,
                            project_to=c.hidden_size if c.embedding_size else None)
    blocks = nn.ModuleList(post_norm_block(c) for _ in range(c.num_layers))
    head = None
    if with_mlm:  # the generator's head uses exact GELU whatever hidden_act says
        head = MLMHead(c.hidden_size, embeddings.token, "gelu", nn.LayerNorm(dim, eps=c.layer_norm_eps))
    elif with_rtd:
        head = ReplacedTokenHead(c.hidden_size, c.hidden_act)
    model = Encoder(c, embeddings, blocks, application=application, mlm=head)
    return init_weights(model, c.initializer_range)


# ---- Hugging Face names (data) ---------------------------------------------------------------

def hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- transformers' ElectraModel / ElectraForPreTraining / ElectraForMaskedLM names."""
    p = prefix
    bert, _ = bert_hf_rules(config, prefix)  # embeddings and blocks are named as BERT's
    rules = [r for r in bert if r.ours.startswith(("embeddings.", "blocks."))]
    rules += [
        Rule("embeddings.project.weight", f"{p}embeddings_project.weight"),
        Rule("embeddings.project.bias", f"{p}embeddings_project.bias"),
        Rule("mlm.transform.weight", "discriminator_predictions.dense.weight"),
        Rule("mlm.transform.bias", "discriminator_predictions.dense.bias"),
        Rule("mlm.score.weight", "discriminator_predictions.dense_prediction.weight"),
        Rule("mlm.score.bias", "discriminator_predictions.dense_prediction.bias"),
        Rule("mlm.dense.weight", "generator_predictions.dense.weight"),
        Rule("mlm.dense.bias", "generator_predictions.dense.bias"),
        Rule("mlm.norm.weight", "generator_predictions.LayerNorm.weight"),
        Rule("mlm.norm.bias", "generator_predictions.LayerNorm.bias"),
        Rule("mlm.bias", "generator_lm_head.bias", vocab_rows=True),
    ]
    tied = {"generator_lm_head.weight", f"{p}embeddings.position_ids", f"{p}embeddings.token_type_ids"}
    return rules, tied


# ---- original TensorFlow names (google-research/electra; also ymcui/Chinese-ELECTRA) --------------
# One checkpoint holds both models: the embedding tables electra/embeddings/* are shared; the
# discriminator's encoder is electra/encoder/, its head discriminator_predictions/dense and dense_1;
# the generator's encoder is generator/encoder/ with its own generator/embeddings_project, its head
# generator_predictions/{dense, LayerNorm, output_bias}. Which model a load builds is the config's
# (ElectraOptions.part, decided on load from the checkpoint: see config_from_tf); the other one's tensors
# are left out (ignored).

_PARTS = {"discriminator": ("electra/encoder/", "electra/embeddings_project/", "discriminator_predictions/"),
          "generator": ("generator/", "generator_predictions/")}


_SCOPES = {"discriminator": "electra", "generator": "generator"}


def _tf_part(d: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> str:
    """The model of a TensorFlow checkpoint a config describes: the only one the file holds, else the one
    whose encoder is as wide as the config's hidden_size (the discriminator when both are)."""
    probe = "{}/encoder/layer_0/attention/output/dense/kernel"
    held = [part for part, scope in _SCOPES.items() if probe.format(scope) in shapes]
    if len(held) == 2:
        held = [part for part in held if shapes[probe.format(_SCOPES[part])][-1] == d.get("hidden_size")] or held
    return held[0] if held else "discriminator"


def tf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- ELECTRA TensorFlow variable names, for the discriminator or the generator."""
    part = config.options.part
    scope = _SCOPES[part]
    E = "electra/embeddings/"  # shared by both models
    rules = [
        Rule("embeddings.token.weight", f"{E}word_embeddings", vocab_rows=True),
        Rule("embeddings.segment.weight", f"{E}token_type_embeddings"),
        Rule("embeddings.position.weight", f"{E}position_embeddings"),
        Rule("embeddings.norm.weight", f"{E}LayerNorm/gamma"),
        Rule("embeddings.norm.bias", f"{E}LayerNorm/beta"),
        Rule("embeddings.project.weight", f"{scope}/embeddings_project/kernel", transpose=True),
        Rule("embeddings.project.bias", f"{scope}/embeddings_project/bias"),
        *tf_layer_rules(f"{scope}/encoder/layer_{{i}}/"),
    ]
    if part == "discriminator":
        rules += [Rule("mlm.transform.weight", "discriminator_predictions/dense/kernel", transpose=True),
                  Rule("mlm.transform.bias", "discriminator_predictions/dense/bias"),
                  Rule("mlm.score.weight", "discriminator_predictions/dense_1/kernel", transpose=True),
                  Rule("mlm.score.bias", "discriminator_predictions/dense_1/bias")]
    else:
        rules += [Rule("mlm.dense.weight", "generator_predictions/dense/kernel", transpose=True),
                  Rule("mlm.dense.bias", "generator_predictions/dense/bias"),
                  Rule("mlm.norm.weight", "generator_predictions/LayerNorm/gamma"),
                  Rule("mlm.norm.bias", "generator_predictions/LayerNorm/beta"),
                  Rule("mlm.bias", "generator_predictions/output_bias", vocab_rows=True)]
    other = _PARTS["generator" if part == "discriminator" else "discriminator"]
    ignored = {n for n in names or () if n.startswith(other)}  # the other model's tensors
    return [e for r in rules for e in r.expand(config.num_layers, {})], ignored


def config_from_tf(d: dict[str, Any], source: str, names=None) -> ModelConfig:
    """ELECTRA's discriminator/generator config (BERT keys + embedding_size) -> ModelConfig.

    google-research/electra's modeling.py computes "gelu" exactly (with erf), unlike BERT's, so
    the name is kept as it is. Which model the config describes is read from the checkpoint
    (see _tf_part): the generator's config has the generator's width.
    """
    c = config_from_hf(d, source)
    return c.replace(options=ElectraOptions(_tf_part(d, names or {})))


def config_to_tf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> ELECTRA's config file (BERT keys + embedding_size)."""
    d = config_to_hf(c)
    for key in ("model_type", "layer_norm_eps", "pad_token_id"):
        d.pop(key)
    if c.layer_norm_eps != 1e-12:  # ELECTRA's code has no such field (its LayerNorm uses 1e-12); ours reads it
        d["layer_norm_eps"] = c.layer_norm_eps
    return d


def config_from_hf(d: dict[str, Any], source: str, names=None) -> ModelConfig:
    """An HF ElectraConfig dict -> ModelConfig (a file with the generator's head holds a generator)."""
    if d.get("tie_word_embeddings") is False:
        raise ConfigError(f"{source}: tie_word_embeddings is false; ELECTRA's generator head is built tied to "
                          "the token embeddings")
    if "embedding_size" not in d:
        d = {**d, "embedding_size": 128}  # transformers' ElectraConfig default
    part = "generator" if names is not None and "generator_predictions.dense.weight" in names else "discriminator"
    return config_from_bert_dict(d, "electra", source).replace(options=ElectraOptions(part))


def config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> an HF ElectraConfig dict."""
    return {"model_type": "electra", "embedding_size": c.embedding_size or c.hidden_size} | hf_encoder_fields(c)


def hf_architecture(model: nn.Module) -> str:
    """The transformers class that holds the head this model has."""
    if model.mlm is None:
        return "ElectraModel"
    return "ElectraForPreTraining" if isinstance(model.mlm, ReplacedTokenHead) else "ElectraForMaskedLM"


def tiny_config() -> ModelConfig:
    """A tiny ELECTRA config for tests (embedding size below the hidden size: the projection is built)."""
    return ModelConfig(family="electra", vocab_size=50, embedding_size=16, hidden_size=24, num_layers=2, num_heads=3,
                       intermediate_size=37, max_position=40)


FAMILIES = {
    "electra": Family(
        name="electra", build=build_electra, tiny=tiny_config, options=ElectraOptions,
        sources={
            "hf": Source(read_config=config_from_hf, write_config=config_to_hf, rules=hf_rules,
                         detect=model_type_is("electra"), prefixes=("electra.", ""), architecture=hf_architecture),
            "tf": Source(read_config=config_from_tf, write_config=config_to_tf, rules=tf_rules,
                         detect=holds("electra/embeddings/word_embeddings"), config_file="discriminator_config.json",
                         checkpoint_name="model.ckpt"),
        },
    ),
}
