"""GPT (post-norm, as CDial-GPT uses it) and GPT-2 (pre-norm): decoder-only language models.

    GPT:   ids ─► token (+ token table[speaker ids]) + position ─► L × PostNormBlock ─► tied LM head
    GPT-2: ids ─► token (+ token table[type ids])    + position ─► L × PreNormBlock ─► LayerNorm ─► tied LM head

GPT: Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training";
CDial-GPT (arXiv:2008.03946) keeps this architecture and marks speakers by passing speaker
tokens as token_type_ids, looked up in the token table. GPT-2: Radford et al. 2019,
"Language Models are Unsupervised Multitask Learners". Their checkpoints store Conv1D
weights as (in, out): the name maps below transpose them on load and back on save.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..modules.heads import TiedLMHead

from ..config import ConfigError, FamilyOptions, ModelConfig
from ..convert.namemap import Rule
from ..modules.attention import SelfAttention
from ..modules.feedforward import FeedForward
from ..modules.positions import LearnedPositions
from ..modules.blocks import PreNormBlock
from ..modules.prenorm import Decoder
from . import Family, Source, holds, model_type_is
from .bert import init_weights, post_norm_block, tf_layer_rules


class DecoderEmbeddings(nn.Module):
    """token + learned position (+ token_type_ids looked up in the token table) ─► dropout.

    GPT checkpoints have no segment table: HF's OpenAIGPTModel and GPT2Model embed
    token_type_ids with the token embeddings, which is how CDial-GPT marks its speakers.
    """

    def __init__(self, vocab_size: int, dim: int, max_position: int, dropout: float) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, dim)
        self.position = LearnedPositions(max_position, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        x = self.token(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        x = x + self.position(input_ids, position_ids)
        if token_type_ids is not None:
            x = x + self.token(token_type_ids)
        return self.dropout(x)


@dataclass(frozen=True)
class GPTOptions(FamilyOptions):
    """GPT / GPT-2 options their config files carry (transformers' GPT2Config names)."""

    embedding_dropout: float | None = None  # None: the config's dropout
    scale_attn_weights: bool = True  # scores divided by sqrt(head_size)
    scale_attn_by_inverse_layer_idx: bool = False  # and by layer index + 1
    reorder_and_upcast_attn: bool = False  # a float16 detail of transformers; same numbers in fp32


def _check_options(family: str, with_mlm: bool, with_pool: bool, with_nsp: bool, application: str) -> None:
    asked = [n for n, v in (("with_mlm", with_mlm), ("with_pool", with_pool), ("with_nsp", with_nsp)) if v]
    if asked:
        raise ValueError(f"{family} is a causal language model: it has no {', '.join(asked)} head "
                         "(its LM head is built by default; with_lm=False leaves it out)")
    # "encoder" is accepted because from_pretrained passes it by default and cannot tell a default from a
    # choice; the model is causal whatever it says
    if application not in ("lm", "encoder"):
        raise ValueError(f"{family} is a causal language model: application must be 'lm', found {application!r}")


def _attention(c: ModelConfig, layer: int) -> SelfAttention:
    """GPT-2's optional score scalings (scale_attn_weights, scale_attn_by_inverse_layer_idx) as one scale."""
    scale = c.head_size ** -0.5 if c.options.scale_attn_weights else 1.0
    if c.options.scale_attn_by_inverse_layer_idx:
        scale /= layer + 1
    return SelfAttention(c.hidden_size, c.num_heads, c.head_size, dropout=c.attention_dropout, scale=scale)


def _embedding_dropout(c: ModelConfig) -> float:
    return c.dropout if c.options.embedding_dropout is None else c.options.embedding_dropout


def _embeddings(c: ModelConfig) -> DecoderEmbeddings:
    return DecoderEmbeddings(c.vocab_size, c.hidden_size, c.max_position, _embedding_dropout(c))


def build_gpt(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
              application: str = "lm", with_lm: bool = True) -> Decoder:
    """GPT / CDial-GPT: post-norm blocks, no final norm, LM head tied to the token table."""
    _check_options("gpt", with_mlm, with_pool, with_nsp, application)
    c = config
    embeddings = _embeddings(c)
    blocks = nn.ModuleList(post_norm_block(c, _attention(c, i)) for i in range(c.num_layers))
    model = Decoder(c, embeddings, blocks, lm_head=TiedLMHead(embeddings.token) if with_lm else None)
    return init_weights(model, c.initializer_range)


def build_gpt2(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
               application: str = "lm", with_lm: bool = True) -> Decoder:
    """GPT-2: pre-norm blocks, a final LayerNorm, LM head tied to the token table."""
    _check_options("gpt2", with_mlm, with_pool, with_nsp, application)
    c = config

    def norm() -> nn.LayerNorm:
        return nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    embeddings = _embeddings(c)
    blocks = nn.ModuleList(
        PreNormBlock(_attention(c, i), FeedForward(c.hidden_size, c.intermediate_size, c.hidden_act), norm(), norm(),
                     c.dropout)
        for i in range(c.num_layers))
    model = Decoder(c, embeddings, blocks, final_norm=norm(),
                    lm_head=TiedLMHead(embeddings.token) if with_lm else None)
    init_weights(model, c.initializer_range)
    # GPT-2's scaled init: residual-branch outputs get std / sqrt(2 L), one per residual add
    for name, p in model.named_parameters():
        if name.endswith(("attn.out.weight", "ffn.down.weight")):
            nn.init.normal_(p, std=c.initializer_range / (2 * c.num_layers) ** 0.5)
    return model


# ---- Hugging Face names (data) ---------------------------------------------------------------
# Conv1D stores (in, out): every weight matrix is transposed (biases are not).

def _block_rules(p: str, norms: tuple[str, str]) -> list[Rule]:
    h = f"{p}h.{{i}}."
    rules = [
        Rule("blocks.{i}.attn.qkv.weight", f"{h}attn.c_attn.weight", transpose=True),
        Rule("blocks.{i}.attn.qkv.bias", f"{h}attn.c_attn.bias"),
        Rule("blocks.{i}.attn.out.weight", f"{h}attn.c_proj.weight", transpose=True),
        Rule("blocks.{i}.attn.out.bias", f"{h}attn.c_proj.bias"),
        Rule("blocks.{i}.ffn.up.weight", f"{h}mlp.c_fc.weight", transpose=True),
        Rule("blocks.{i}.ffn.up.bias", f"{h}mlp.c_fc.bias"),
        Rule("blocks.{i}.ffn.down.weight", f"{h}mlp.c_proj.weight", transpose=True),
        Rule("blocks.{i}.ffn.down.bias", f"{h}mlp.c_proj.bias"),
    ]
    for ours, theirs in zip(("attn_norm", "ffn_norm"), norms):
        rules += [Rule(f"blocks.{{i}}.{ours}.{n}", f"{h}{theirs}.{n}") for n in ("weight", "bias")]
    return rules


def _ignored(config: ModelConfig, p: str) -> set[str]:
    """Tensors their files may hold that we do not load: the tied head and old causal-mask buffers."""
    buffers = {f"{p}h.{i}.attn.{b}" for i in range(config.num_layers) for b in ("bias", "masked_bias")}
    return {"lm_head.weight", f"{p}position_ids"} | buffers


def gpt_hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- transformers' OpenAIGPTModel / OpenAIGPTLMHeadModel names (base model under `prefix`)."""
    p = prefix
    rules = [
        Rule("embeddings.token.weight", f"{p}tokens_embed.weight", vocab_rows=True),
        Rule("embeddings.position.weight", f"{p}positions_embed.weight"),
        *_block_rules(p, ("ln_1", "ln_2")),  # post-norm: ln_1 follows attention, ln_2 the MLP
    ]
    return [e for r in rules for e in r.expand(config.num_layers, {})], _ignored(config, p)


def gpt2_hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- transformers' GPT2Model / GPT2LMHeadModel names (base model under `prefix`)."""
    p = prefix
    rules = [
        Rule("embeddings.token.weight", f"{p}wte.weight", vocab_rows=True),
        Rule("embeddings.position.weight", f"{p}wpe.weight"),
        *_block_rules(p, ("ln_1", "ln_2")),  # pre-norm: ln_1 precedes attention, ln_2 the MLP
        Rule("final_norm.weight", f"{p}ln_f.weight"),
        Rule("final_norm.bias", f"{p}ln_f.bias"),
    ]
    return [e for r in rules for e in r.expand(config.num_layers, {})], _ignored(config, p)


# ---- original TensorFlow names: CDial-GPT as bojone/CDial-GPT-tf converted it for bert4keras --------
# (convert.py there): BERT's layer names under gpt/transformer/layer_{i}/, c_attn split into
# query/key/value, ln_1 as attention/output/LayerNorm, ln_2 as output/LayerNorm, no token-type
# table (speakers are looked up in the token table). That release also swapped rows 0 and 1 of
# the token table ([PAD] / [CLS]) to match its vocab.txt: the file is read as it is.
# OpenAI's own GPT-2 TensorFlow checkpoints (model/h{i}/..., 3-D kernels) are not mapped.

def gpt_tf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our `gpt` names <- CDial-GPT's TensorFlow variable names (kernels stored [in, out])."""
    rules = [
        Rule("embeddings.token.weight", "gpt/embeddings/word_embeddings", vocab_rows=True),
        Rule("embeddings.position.weight", "gpt/embeddings/position_embeddings"),
        *tf_layer_rules("gpt/transformer/layer_{i}/"),
    ]
    return [e for r in rules for e in r.expand(config.num_layers, {})], set()


def gpt_config_from_tf(d: dict[str, Any], source: str, names=None) -> ModelConfig:
    """gpt_config.json (BERT's keys, as bert4keras reads it; or transformers' OpenAIGPT keys) -> ModelConfig.

    CDial-GPT was trained with transformers' OpenAI GPT, whose "gelu" is the tanh approximation and
    whose LayerNorm epsilon is 1e-5; a BERT-style config names neither, so those are the defaults.
    """
    if "n_embd" in d:
        return gpt_config_from_hf(d, source)
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings"):
        _require(d, key, source)
    act = d.get("hidden_act", "gelu")
    if act not in _TF_AFN and act not in _TANH_GELU:
        raise ConfigError(f"{source}: field 'hidden_act' is {act!r}; expected one of {sorted(_TF_AFN)} or 'gelu_tanh'")
    dropout = d.get("hidden_dropout_prob", 0.1)
    return ModelConfig(
        family="gpt", source=source, vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
        num_layers=d["num_hidden_layers"], num_heads=d["num_attention_heads"],
        intermediate_size=d.get("intermediate_size") or 4 * d["hidden_size"],
        max_position=d["max_position_embeddings"], type_vocab_size=0, hidden_act=_TF_AFN.get(act, "gelu_tanh"),
        layer_norm_eps=d.get("layer_norm_eps", 1e-5), dropout=dropout,
        attention_dropout=d.get("attention_probs_dropout_prob", 0.1),
        initializer_range=d.get("initializer_range", 0.02), pad_token_id=d.get("pad_token_id", 0),
        options=GPTOptions(embedding_dropout=d.get("embedding_dropout_prob", dropout)))


def gpt_config_to_tf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> gpt_config.json in BERT's keys (bert4keras' GPT reads them)."""
    # the tanh GELU as "gelu", as gpt_config_from_tf reads it; exact GELU as "gelu_erf"
    act = "gelu" if c.hidden_act in _TANH_GELU else "gelu_erf" if c.hidden_act == "gelu" else c.hidden_act
    if act not in _TF_AFN:
        raise ConfigError(f"{c.source}: hidden_act {c.hidden_act!r} has no spelling in CDial-GPT's config")
    d = {
        "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads, "intermediate_size": c.intermediate_size, "hidden_act": act,
        "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.attention_dropout,
        "max_position_embeddings": c.max_position, "initializer_range": c.initializer_range,
        "layer_norm_eps": c.layer_norm_eps,
    }
    if c.pad_token_id is not None:
        d["pad_token_id"] = c.pad_token_id
    if _embedding_dropout(c) != c.dropout:
        d["embedding_dropout_prob"] = _embedding_dropout(c)
    return d


# ---- configs -----------------------------------------------------------------------------------

_AFN = {"gelu": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}  # OpenAI GPT's "gelu" is tanh-GELU
# gpt_config.json is read by bert4keras, whose "gelu_erf" is exact GELU: how we write it there
_TF_AFN = {**_AFN, "gelu_erf": "gelu"}
_TANH_GELU = ("gelu_tanh", "gelu_new", "gelu_fast", "gelu_pytorch_tanh")
_SPECIAL = ("bos_token_id", "eos_token_id", "pad_token_id")


def _require(d: dict[str, Any], key: str, source: str) -> Any:
    if d.get(key) is None:
        raise ConfigError(f"{source}: required field {key!r} is missing (found fields: {sorted(d)})")
    return d[key]


def _common(d: dict[str, Any], family: str, source: str, intermediate: int, act: str, **options: Any) -> ModelConfig:
    if d.get("tie_word_embeddings") is False:
        raise ConfigError(f"{source}: tie_word_embeddings is false; {family} is built with its LM head tied "
                          "to the token embeddings")
    n_embd = _require(d, "n_embd", source)
    special = {k: _first_id(d.get(k)) for k in _SPECIAL}
    return ModelConfig(
        family=family, source=source, vocab_size=_require(d, "vocab_size", source), hidden_size=n_embd,
        num_layers=_require(d, "n_layer", source), num_heads=_require(d, "n_head", source),
        intermediate_size=intermediate, max_position=_require(d, "n_positions", source), type_vocab_size=0,
        hidden_act=act, layer_norm_eps=d.get("layer_norm_epsilon", 1e-5), dropout=d.get("resid_pdrop", 0.1),
        attention_dropout=d.get("attn_pdrop", 0.1), initializer_range=d.get("initializer_range", 0.02),
        **special, options=GPTOptions(embedding_dropout=d.get("embd_pdrop", 0.1), **options))


def _first_id(value: Any) -> int | None:
    """A token id as a config file writes it: an integer, null, or a list whose first entry counts."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value


def gpt_config_from_hf(d: dict[str, Any], source: str, names=None) -> ModelConfig:
    """An HF OpenAIGPTConfig dict -> ModelConfig (MLP width is always 4 x n_embd)."""
    afn = d.get("afn", "gelu")
    if afn not in _AFN:
        raise ConfigError(f"{source}: field 'afn' is {afn!r}; expected one of {sorted(_AFN)}")
    return _common(d, "gpt", source, 4 * _require(d, "n_embd", source), _AFN[afn])


def gpt2_config_from_hf(d: dict[str, Any], source: str, names=None) -> ModelConfig:
    """An HF GPT2Config dict -> ModelConfig."""
    if d.get("add_cross_attention"):
        raise ConfigError(f"{source}: add_cross_attention is true; GPT-2 with cross-attention is not supported")
    n_embd = _require(d, "n_embd", source)
    return _common(d, "gpt2", source, d.get("n_inner") or 4 * n_embd, d.get("activation_function", "gelu_new"),
                   scale_attn_weights=d.get("scale_attn_weights", True),
                   scale_attn_by_inverse_layer_idx=d.get("scale_attn_by_inverse_layer_idx", False),
                   reorder_and_upcast_attn=d.get("reorder_and_upcast_attn", False))  # fp32 path: same numbers


def _common_to_hf(c: ModelConfig, model_type: str) -> dict[str, Any]:
    if c.head_size * c.num_heads != c.hidden_size:
        raise ConfigError(f"{c.source}: head_size {c.head_size} x num_heads {c.num_heads} != hidden_size "
                          f"{c.hidden_size}; {model_type} checkpoints cannot express that")
    return {
        "model_type": model_type, "vocab_size": c.vocab_size, "n_positions": c.max_position, "n_embd": c.hidden_size,
        "n_layer": c.num_layers, "n_head": c.num_heads, "resid_pdrop": c.dropout, "attn_pdrop": c.attention_dropout,
        "embd_pdrop": _embedding_dropout(c), "layer_norm_epsilon": c.layer_norm_eps,
        "initializer_range": c.initializer_range, "tie_word_embeddings": True,
        **{k: getattr(c, k) for k in _SPECIAL if getattr(c, k) is not None},
    }


def gpt_config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> an HF OpenAIGPTConfig dict."""
    if c.intermediate_size != 4 * c.hidden_size:
        raise ConfigError(f"{c.source}: intermediate_size {c.intermediate_size} != 4 x hidden_size {c.hidden_size}; "
                          "OpenAI GPT checkpoints fix the MLP width at 4 x n_embd")
    afn = "gelu" if c.hidden_act in _TANH_GELU else {"relu": "relu", "silu": "silu", "swish": "silu"}.get(c.hidden_act)
    if afn is None:
        raise ConfigError(f"{c.source}: hidden_act {c.hidden_act!r} has no OpenAI GPT 'afn' spelling "
                          "(its 'gelu' is the tanh approximation; 'relu' and 'silu' are the others)")
    return {**_common_to_hf(c, "openai-gpt"), "afn": afn}


def gpt2_config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> an HF GPT2Config dict."""
    act = "gelu_new" if c.hidden_act == "gelu_tanh" else c.hidden_act  # transformers has no "gelu_tanh" spelling
    o = c.options
    return {**_common_to_hf(c, "gpt2"), "n_inner": c.intermediate_size, "activation_function": act,
            "scale_attn_weights": o.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx": o.scale_attn_by_inverse_layer_idx,
            "reorder_and_upcast_attn": o.reorder_and_upcast_attn}


def _architecture(base: str):
    def name(model: nn.Module) -> str:
        return f"{base}LMHeadModel" if model.lm_head is not None else f"{base}Model"
    return name


def tiny_config(family: str = "gpt") -> ModelConfig:
    """A tiny GPT / GPT-2 config for tests."""
    return ModelConfig(family=family, vocab_size=50, hidden_size=24, num_layers=2, num_heads=3,
                       intermediate_size=96 if family == "gpt" else 40, max_position=40, type_vocab_size=0,
                       hidden_act="gelu_tanh", layer_norm_eps=1e-5)


FAMILIES = {
    "gpt": Family(
        name="gpt", build=build_gpt, tiny=tiny_config, options=GPTOptions, causal=True,
        sources={
            "hf": Source(read_config=gpt_config_from_hf, write_config=gpt_config_to_hf, rules=gpt_hf_rules,
                         detect=model_type_is("openai-gpt"), prefixes=("transformer.", ""),
                         architecture=_architecture("OpenAIGPT")),
            "tf": Source(read_config=gpt_config_from_tf, write_config=gpt_config_to_tf, rules=gpt_tf_rules,
                         detect=holds("gpt/embeddings/word_embeddings"), config_file="gpt_config.json",
                         checkpoint_name="gpt_model.ckpt"),
        },
    ),
    "gpt2": Family(
        name="gpt2", build=build_gpt2, tiny=lambda: tiny_config("gpt2"), options=GPTOptions, causal=True,
        sources={
            "hf": Source(read_config=gpt2_config_from_hf, write_config=gpt2_config_to_hf, rules=gpt2_hf_rules,
                         detect=model_type_is("gpt2"), prefixes=("transformer.", ""), architecture=_architecture("GPT2")),
        },
    ),
}
