"""T5.1.0, T5.1.1 and mT5: pre-norm encoder-decoders with bucketed relative position bias.

    input_ids ─► token table ─► dropout ─► encoder: L × PreNormBlock(RMSNorm, SelfAttention(scale=1)
                                                        + bidirectional relative bias, RMSNorm, FFN)
                                       ─► RMSNorm ─► memory
    decoder_input_ids ─► same token table ─► decoder: L' × PreNormDecoderBlock(causal SelfAttention
                                                        + causal relative bias, CrossAttention(memory), FFN)
                                       ─► RMSNorm ─► head
    head: T5.1.0  (hidden · d_model^-0.5) @ tokensᵀ         (tied, ReLU FFN)
          T5.1.1 / mT5  untied Linear                       (gated-GELU FFN)
          T5 PEGASUS    untied Linear of hidden · d_model^-0.5 (bert4keras scales before every head)

T5: arXiv:1910.10683. T5.1.1 (gated GELU, no tying, no dropout in pre-training):
github.com/google-research/text-to-text-transfer-transformer/blob/main/released_checkpoints.md.
mT5 (T5.1.1 on a 250k multilingual vocabulary): arXiv:2010.11934. Attention is not scaled by
1/sqrt(d): T5 folds it into the initialisation of q. The relative bias is computed once per
stack (bidirectional buckets in the encoder, causal ones in the decoder) and shared by all layers.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..config import ConfigError, FamilyOptions, ModelConfig, positive_ints
from ..convert.namemap import Rule
from ..modules.attention import SelfAttention
from ..modules.cross_attention import CrossAttention
from ..modules.embeddings import Embeddings
from ..modules.encoder_decoder import EncoderDecoder, LMHead, PreNormDecoderBlock, Stack, TokenTableHead
from ..modules.feedforward import FeedForward, GatedFeedForward
from ..modules.norms import RMSNorm
from ..modules.blocks import PreNormBlock
from ..modules.relative_bias import RelativePositionBias
from . import Family, Source, holds

# Family presets: what each name means where a config file does not say.
PRESETS: dict[str, dict[str, Any]] = {
    "t5.1.0": {"feed_forward_proj": "relu", "tie_word_embeddings": True, "model_type": "t5"},
    "t5.1.1": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "model_type": "t5"},
    "mt5.1.1": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "model_type": "mt5"},
}
_TANH_GELUS = ("gelu_new", "gelu_tanh", "gelu_fast", "gelu_pytorch_tanh")


@dataclass(frozen=True)
class T5Options(FamilyOptions):
    """T5's structural options; each family name presets the FFN shape and head tying (PRESETS)."""

    gated_ffn: bool = False
    tie_word_embeddings: bool = True  # the head reads the token table
    # the decoder output is scaled by d_model^-0.5 before the head; None: when the head is tied (mesh
    # TensorFlow, transformers). bert4keras scales before an untied head too (T5 PEGASUS trained so)
    scale_decoder_outputs: bool | None = None
    num_decoder_layers: int | None = None  # None: as many as the encoder
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    initializer_factor: float = 1.0

    def check(self) -> None:
        positive_ints(self, "num_decoder_layers", "relative_attention_num_buckets", "relative_attention_max_distance")

    @property
    def scaled(self) -> bool:
        """Whether the decoder output is scaled by d_model^-0.5 before the head."""
        return self.tie_word_embeddings if self.scale_decoder_outputs is None else self.scale_decoder_outputs


def decoder_layers(config: ModelConfig) -> int:
    """How many decoder blocks a T5 config asks for."""
    return config.options.num_decoder_layers or config.num_layers


def _preset_options(family: str) -> Callable[..., T5Options]:
    preset = PRESETS[family]
    return functools.partial(T5Options, gated_ffn=preset["feed_forward_proj"].startswith("gated-"),
                             tie_word_embeddings=preset["tie_word_embeddings"])


# ---- builder ---------------------------------------------------------------------------------

def _ffn(c: ModelConfig, gated: bool) -> nn.Module:
    if gated:
        return GatedFeedForward(c.hidden_size, c.intermediate_size, c.hidden_act, bias=False)
    return FeedForward(c.hidden_size, c.intermediate_size, c.hidden_act, bias=False)


def _self_attention(c: ModelConfig) -> SelfAttention:
    return SelfAttention(c.hidden_size, c.num_heads, c.head_size, bias=False, dropout=c.attention_dropout, scale=1.0)


def _norm(c: ModelConfig) -> RMSNorm:
    return RMSNorm(c.hidden_size, eps=c.layer_norm_eps)


def _relative_bias(c: ModelConfig, bidirectional: bool) -> RelativePositionBias:
    o = c.options
    return RelativePositionBias(o.relative_attention_num_buckets, o.relative_attention_max_distance, c.num_heads,
                                bidirectional=bidirectional)


def build_t5(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
             application: str | None = None, **unsupported: Any) -> EncoderDecoder:
    """A T5-style encoder-decoder; FFN shape and head tying come from the config (see PRESETS)."""
    if unsupported:
        raise ValueError(f"T5 builds no such option: {sorted(unsupported)} (it has an LM head only; "
                         "classification heads are not part of this family)")
    if with_pool or with_nsp:
        raise ValueError("T5 has no pooler or NSP head (with_pool / with_nsp must be False); "
                         "its LM head is always built")
    if application not in (None, "encoder", "seq2seq"):
        raise ValueError(f"T5 is an encoder-decoder: application must be 'seq2seq' (or the default), "
                         f"found {application!r}")
    c, o = config, config.options
    embeddings = Embeddings(c.vocab_size, c.hidden_size, type_vocab_size=0, positions=None, norm=None,
                            dropout=c.dropout)
    encoder = Stack(
        nn.ModuleList(PreNormBlock(_self_attention(c), _ffn(c, o.gated_ffn), _norm(c), _norm(c), c.dropout)
                      for _ in range(c.num_layers)),
        _norm(c), relative_bias=_relative_bias(c, bidirectional=True), dropout=c.dropout)
    decoder = Stack(
        nn.ModuleList(
            PreNormDecoderBlock(_self_attention(c),
                                CrossAttention(c.hidden_size, c.num_heads, c.head_size, bias=False,
                                               dropout=c.attention_dropout, scale=1.0),
                                _ffn(c, o.gated_ffn), _norm(c), _norm(c), _norm(c), c.dropout)
            for _ in range(decoder_layers(c))),
        _norm(c), relative_bias=_relative_bias(c, bidirectional=False), dropout=c.dropout)
    scale = c.hidden_size ** -0.5 if o.scaled else 1.0
    head = TokenTableHead(scale=scale) if o.tie_word_embeddings else LMHead(c.hidden_size, c.vocab_size, scale=scale)
    model = EncoderDecoder(c, embeddings, encoder, decoder, head)
    return init_weights(model, o.initializer_factor)


def init_weights(model: EncoderDecoder, factor: float = 1.0) -> EncoderDecoder:
    """Mesh TensorFlow's T5 initialisation: unit-variance embeddings, fan-in scaled projections,
    q further scaled by head_size^-0.5 (the attention scale T5 leaves out of the product)."""
    d = model.config.hidden_size
    nn.init.normal_(model.embeddings.token.weight, std=factor)
    if isinstance(model.lm_head, LMHead):
        nn.init.normal_(model.lm_head.weight, std=factor)
    for m in model.modules():
        if isinstance(m, SelfAttention):
            inner = m.num_heads * m.head_size
            nn.init.normal_(m.qkv.weight[:inner], std=factor * (d * m.head_size) ** -0.5)
            nn.init.normal_(m.qkv.weight[inner:], std=factor * d ** -0.5)
            nn.init.normal_(m.out.weight, std=factor * inner ** -0.5)
        elif isinstance(m, CrossAttention):
            nn.init.normal_(m.q.weight, std=factor * (d * m.head_size) ** -0.5)
            nn.init.normal_(m.kv.weight, std=factor * d ** -0.5)
            nn.init.normal_(m.out.weight, std=factor * (m.num_heads * m.head_size) ** -0.5)
        elif isinstance(m, (FeedForward, GatedFeedForward)):
            nn.init.normal_(m.up.weight if isinstance(m, FeedForward) else m.gate_up.weight, std=factor * d ** -0.5)
            nn.init.normal_(m.down.weight, std=factor * m.down.weight.shape[1] ** -0.5)
        elif isinstance(m, RelativePositionBias):
            nn.init.normal_(m.weight, std=factor * d ** -0.5)
        elif isinstance(m, RMSNorm):
            nn.init.ones_(m.weight)
    return model


# ---- Hugging Face configs ---------------------------------------------------------------------

def family_from_hf_config(d: dict[str, Any]) -> str:
    """The family an HF T5 / mT5 config.json describes: model_type, then feed_forward_proj."""
    if d.get("model_type") == "mt5":
        return "mt5.1.1"
    return "t5.1.1" if str(d.get("feed_forward_proj", "relu")).startswith("gated-") else "t5.1.0"


def _parse_ffn(proj: Any, source: str) -> tuple[bool, str]:
    """HF feed_forward_proj ("relu", "gated-gelu", "gated-silu", ...) -> (gated, our activation name)."""
    parts = str(proj).split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ConfigError(f"{source}: field 'feed_forward_proj' is {proj!r}; expected 'ACT' or 'gated-ACT'")
    gated, act = len(parts) == 2, parts[-1]
    if proj == "gated-gelu":
        act = "gelu_new"  # HF's "gated-gelu" is the tanh approximation, as mesh TensorFlow's gelu
    elif act == "gelu_python":
        act = "gelu"  # transformers' exact GELU under the one name "gated-..." leaves exact
    if act not in ("relu", "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "silu", "swish", "tanh"):
        raise ConfigError(f"{source}: field 'feed_forward_proj' is {proj!r}: activation {act!r} is not supported")
    return gated, act


def _hf_tied(d: dict[str, Any], default: bool) -> bool:
    """Whether the checkpoint's head is the token table (and is scaled by d_model^-0.5).

    transformers 5 writes tie_word_embeddings=true into every T5 / mT5 config and keeps the
    original setting in scale_decoder_outputs (T5) — it unties by finding lm_head.weight in
    the file — so that field, where present, is the one to believe. mT5 heads are never tied.
    """
    if d.get("model_type") == "mt5":
        return False
    if "scale_decoder_outputs" in d:
        return bool(d["scale_decoder_outputs"])
    return bool(d.get("tie_word_embeddings", default))


def _first_int(*values: Any) -> int:
    """The first value that is set (HF writes null for unset token ids; eos may be a list)."""
    for v in values:
        if isinstance(v, list) and v:
            v = v[0]
        if v is not None and not isinstance(v, list):
            return int(v)
    raise ValueError("no value set")


def config_from_hf(d: dict[str, Any], source: str = "<dict>", family: str | None = None, names=None) -> ModelConfig:
    """Translate an HF T5Config / MT5Config dict; `family=None` decides it from the file.

    A named family must agree with the file's feed_forward_proj (a ReLU checkpoint cannot be
    loaded as T5.1.1); fields the file leaves out take the family's presets.
    """
    detected = family_from_hf_config(d)
    name = family or detected
    if name not in PRESETS:
        raise ConfigError(f"{source}: unknown T5 family {name!r}; known: {sorted(PRESETS)}")
    preset = PRESETS[name]
    proj = d.get("feed_forward_proj") or preset["feed_forward_proj"]
    gated, act = _parse_ffn(proj, source)
    if family is not None and gated != _parse_ffn(preset["feed_forward_proj"], source)[0]:
        raise ConfigError(f"{source}: field 'feed_forward_proj' is {proj!r} but model={family!r} expects "
                          f"{preset['feed_forward_proj']!r}; this file holds a {detected} checkpoint")
    for field in ("vocab_size", "d_model", "d_ff", "num_heads", "num_layers"):
        if field not in d:
            raise ConfigError(f"{source}: required field {field!r} is missing (found fields: {sorted(d)})")
    d_kv = d.get("d_kv", 64)
    options = T5Options(
        gated_ffn=gated, tie_word_embeddings=_hf_tied(d, preset["tie_word_embeddings"]),
        num_decoder_layers=d.get("num_decoder_layers") or d["num_layers"],
        relative_attention_num_buckets=d.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=d.get("relative_attention_max_distance", 128),
        initializer_factor=float(d.get("initializer_factor", 1.0)))
    dropout = float(d.get("dropout_rate", 0.1))
    return ModelConfig(family=name, vocab_size=d["vocab_size"], hidden_size=d["d_model"], num_layers=d["num_layers"],
                       num_heads=d["num_heads"], head_size=d_kv, intermediate_size=d["d_ff"], type_vocab_size=0,
                       max_position=d.get("n_positions") or 512, hidden_act=act,
                       layer_norm_eps=d.get("layer_norm_epsilon", 1e-6), dropout=dropout, attention_dropout=dropout,
                       pad_token_id=_first_int(d.get("pad_token_id"), 0), eos_token_id=_first_int(d.get("eos_token_id"), 1),
                       decoder_start_token_id=_first_int(d.get("decoder_start_token_id"), d.get("pad_token_id"), 0),
                       options=options, source=source)


def config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """Our config as an HF T5Config / MT5Config dict (read back identically by config_from_hf)."""
    o = c.options
    model_type = PRESETS[c.family]["model_type"]
    if o.gated_ffn:
        if c.hidden_act == "gelu":  # "gated-gelu" means the tanh approximation to transformers
            proj = "gated-gelu_python"
        else:
            proj = "gated-gelu" if c.hidden_act in _TANH_GELUS else f"gated-{c.hidden_act}"
    else:
        proj = "gelu_new" if c.hidden_act in _TANH_GELUS else c.hidden_act
    if model_type == "mt5" and o.tie_word_embeddings:
        raise ConfigError(f"{c.source}: transformers' MT5 never scales a tied head; save this model as "
                          "family 't5.1.0' or untie it (tie_word_embeddings=False)")
    if o.tie_word_embeddings and not o.scaled:
        raise ConfigError(f"{c.source}: transformers' T5 scales a tied head by d_model^-0.5; this model's is "
                          "unscaled (scale_decoder_outputs=False), which its config cannot say")
    hf = {
        "model_type": model_type,
        "architectures": [_ARCHITECTURES[model_type]],
        "vocab_size": c.vocab_size,
        "d_model": c.hidden_size,
        "d_kv": c.head_size,
        "d_ff": c.intermediate_size,
        "num_layers": c.num_layers,
        "num_decoder_layers": decoder_layers(c),
        "num_heads": c.num_heads,
        "relative_attention_num_buckets": o.relative_attention_num_buckets,
        "relative_attention_max_distance": o.relative_attention_max_distance,
        "dropout_rate": c.dropout,
        "layer_norm_epsilon": c.layer_norm_eps,
        "initializer_factor": o.initializer_factor,
        "feed_forward_proj": proj,
        "tie_word_embeddings": o.tie_word_embeddings,
        "is_encoder_decoder": True,
        **_special_fields(c),
    }
    if model_type == "t5":
        hf["scale_decoder_outputs"] = o.tie_word_embeddings  # read by transformers >= 5
    if c.dropout != c.attention_dropout:
        raise ConfigError(f"{c.source}: T5 configs have one dropout_rate; dropout {c.dropout} and "
                          f"attention_dropout {c.attention_dropout} differ")
    return hf


def _special_fields(c: ModelConfig) -> dict[str, int]:
    """pad / eos / decoder-start ids as T5 configs write them (T5's own values where ours are unset)."""
    pad = 0 if c.pad_token_id is None else c.pad_token_id
    return {"pad_token_id": pad, "eos_token_id": 1 if c.eos_token_id is None else c.eos_token_id,
            "decoder_start_token_id": pad if c.decoder_start_token_id is None else c.decoder_start_token_id}


_ARCHITECTURES = {"t5": "T5ForConditionalGeneration", "mt5": "MT5ForConditionalGeneration"}


def hf_architecture(model: nn.Module) -> str:
    """The transformers class that reads what save_pretrained writes for this model."""
    return _ARCHITECTURES[PRESETS[model.config.family]["model_type"]]


# ---- Hugging Face names (data) ---------------------------------------------------------------

def _ffn_rules(ours: str, theirs: str, gated: bool) -> list[Rule]:
    if gated:  # wi_0 goes through the activation (our gate half), wi_1 is linear
        return [Rule(f"{ours}.gate_up.weight", [f"{theirs}.wi_0.weight", f"{theirs}.wi_1.weight"]),
                Rule(f"{ours}.down.weight", f"{theirs}.wo.weight")]
    return [Rule(f"{ours}.up.weight", f"{theirs}.wi.weight"), Rule(f"{ours}.down.weight", f"{theirs}.wo.weight")]


_BIAS = "SelfAttention.relative_attention_bias.weight"  # stored in the first layer of each stack only


def hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- transformers' T5ForConditionalGeneration / MT5ForConditionalGeneration names."""
    o, p = config.options, prefix
    E, D = f"{p}encoder.block.{{i}}.layer.", f"{p}decoder.block.{{i}}.layer."
    encoder = [
        Rule("encoder.blocks.{i}.attn.qkv.weight", [f"{E}0.SelfAttention.{n}.weight" for n in "qkv"]),
        Rule("encoder.blocks.{i}.attn.out.weight", f"{E}0.SelfAttention.o.weight"),
        Rule("encoder.blocks.{i}.attn_norm.weight", f"{E}0.layer_norm.weight"),
        *_ffn_rules("encoder.blocks.{i}.ffn", f"{E}1.DenseReluDense", o.gated_ffn),
        Rule("encoder.blocks.{i}.ffn_norm.weight", f"{E}1.layer_norm.weight"),
    ]
    decoder = [
        Rule("decoder.blocks.{i}.attn.qkv.weight", [f"{D}0.SelfAttention.{n}.weight" for n in "qkv"]),
        Rule("decoder.blocks.{i}.attn.out.weight", f"{D}0.SelfAttention.o.weight"),
        Rule("decoder.blocks.{i}.attn_norm.weight", f"{D}0.layer_norm.weight"),
        Rule("decoder.blocks.{i}.cross.q.weight", f"{D}1.EncDecAttention.q.weight"),
        Rule("decoder.blocks.{i}.cross.kv.weight", [f"{D}1.EncDecAttention.{n}.weight" for n in "kv"]),
        Rule("decoder.blocks.{i}.cross.out.weight", f"{D}1.EncDecAttention.o.weight"),
        Rule("decoder.blocks.{i}.cross_norm.weight", f"{D}1.layer_norm.weight"),
        *_ffn_rules("decoder.blocks.{i}.ffn", f"{D}2.DenseReluDense", o.gated_ffn),
        Rule("decoder.blocks.{i}.ffn_norm.weight", f"{D}2.layer_norm.weight"),
    ]
    top = [
        Rule("embeddings.token.weight", f"{p}shared.weight", vocab_rows=True),
        Rule("encoder.relative_bias.weight", f"{p}encoder.block.0.layer.0.{_BIAS}"),
        Rule("decoder.relative_bias.weight", f"{p}decoder.block.0.layer.0.{_BIAS}"),
        Rule("encoder.norm.weight", f"{p}encoder.final_layer_norm.weight"),
        Rule("decoder.norm.weight", f"{p}decoder.final_layer_norm.weight"),
    ]
    # copies of the shared table some files store, and a bias older checkpoints carry but no model reads
    tied = {f"{p}encoder.embed_tokens.weight", f"{p}decoder.embed_tokens.weight",
            f"{p}decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"}
    if o.tie_word_embeddings:
        tied.add("lm_head.weight")
    else:
        # an untied head that bert4keras scales (T5 PEGASUS): transformers' is unscaled, so the scale is
        # folded into its weight (theirs = ours * d_model^-0.5), which gives the same logits
        fold = config.hidden_size ** 0.5 if o.scaled else 1.0
        top.append(Rule("lm_head.weight", "lm_head.weight", vocab_rows=True, scale=fold))
    rules = ([e for r in encoder for e in r.expand(config.num_layers, {})]
             + [e for r in decoder for e in r.expand(decoder_layers(config), {})] + top)
    return rules, tied


# ---- original TensorFlow names (mesh TensorFlow: Google's T5 / mT5 releases, T5 PEGASUS) ---------------
# Kernels are stored [in, out] (transposed); q/k/v/o carry no /kernel suffix; the relative bias is
# stored (heads, buckets), in block 0 of each stack only. Norm scales are layer_norm/scale and
# {encoder,decoder}/final_layer_norm/scale in T5.1.0 and T5.1.1, rms_norm/scale and
# {encoder,decoder}/rms_norm/scale in mT5 and T5 PEGASUS (bert4keras' T5 variable_mapping; the
# names in the file decide on load). Adafactor slots (<var>_slot_vr/_slot_vc/_slot_v) are training state.

_TF_DEFAULT_NORMS = {"t5.1.0": "layer_norm", "t5.1.1": "layer_norm", "mt5.1.1": "rms_norm"}


def _tf_norm_names(config: ModelConfig, names) -> tuple[str, str]:
    """(per-layer norm scope, final norm scope) as this checkpoint (or the family's releases) name them."""
    style = _TF_DEFAULT_NORMS[config.family]
    if names is not None:
        if "encoder/block_000/layer_000/rms_norm/scale" in names:
            style = "rms_norm"
        elif "encoder/block_000/layer_000/layer_norm/scale" in names:
            style = "layer_norm"
    return style, "rms_norm" if style == "rms_norm" else "final_layer_norm"


def _tf_ffn(ours: str, theirs: str, gated: bool) -> list[Rule]:
    if gated:  # wi_0 goes through the activation (our gate half), wi_1 is linear
        return [Rule(f"{ours}.gate_up.weight", [f"{theirs}/wi_0/kernel", f"{theirs}/wi_1/kernel"], transpose=True),
                Rule(f"{ours}.down.weight", f"{theirs}/wo/kernel", transpose=True)]
    return [Rule(f"{ours}.up.weight", f"{theirs}/wi/kernel", transpose=True),
            Rule(f"{ours}.down.weight", f"{theirs}/wo/kernel", transpose=True)]


def tf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- mesh TensorFlow T5 / mT5 variable names."""
    o = config.options
    ln, final = _tf_norm_names(config, names)
    E, D = "encoder/block_{i:03d}/", "decoder/block_{i:03d}/"
    encoder = [
        Rule("encoder.blocks.{i}.attn.qkv.weight", [f"{E}layer_000/SelfAttention/{n}" for n in "qkv"], transpose=True),
        Rule("encoder.blocks.{i}.attn.out.weight", f"{E}layer_000/SelfAttention/o", transpose=True),
        Rule("encoder.blocks.{i}.attn_norm.weight", f"{E}layer_000/{ln}/scale"),
        *_tf_ffn("encoder.blocks.{i}.ffn", f"{E}layer_001/DenseReluDense", o.gated_ffn),
        Rule("encoder.blocks.{i}.ffn_norm.weight", f"{E}layer_001/{ln}/scale"),
    ]
    decoder = [
        Rule("decoder.blocks.{i}.attn.qkv.weight", [f"{D}layer_000/SelfAttention/{n}" for n in "qkv"], transpose=True),
        Rule("decoder.blocks.{i}.attn.out.weight", f"{D}layer_000/SelfAttention/o", transpose=True),
        Rule("decoder.blocks.{i}.attn_norm.weight", f"{D}layer_000/{ln}/scale"),
        Rule("decoder.blocks.{i}.cross.q.weight", f"{D}layer_001/EncDecAttention/q", transpose=True),
        Rule("decoder.blocks.{i}.cross.kv.weight", [f"{D}layer_001/EncDecAttention/{n}" for n in "kv"], transpose=True),
        Rule("decoder.blocks.{i}.cross.out.weight", f"{D}layer_001/EncDecAttention/o", transpose=True),
        Rule("decoder.blocks.{i}.cross_norm.weight", f"{D}layer_001/{ln}/scale"),
        *_tf_ffn("decoder.blocks.{i}.ffn", f"{D}layer_002/DenseReluDense", o.gated_ffn),
        Rule("decoder.blocks.{i}.ffn_norm.weight", f"{D}layer_002/{ln}/scale"),
    ]
    bias = "block_000/layer_000/SelfAttention/relative_attention_bias"
    top = [
        Rule("embeddings.token.weight", "shared/embedding", vocab_rows=True),
        Rule("encoder.relative_bias.weight", f"encoder/{bias}", transpose=True),  # stored (heads, buckets)
        Rule("decoder.relative_bias.weight", f"decoder/{bias}", transpose=True),
        Rule("encoder.norm.weight", f"encoder/{final}/scale"),
        Rule("decoder.norm.weight", f"decoder/{final}/scale"),
    ]
    if not o.tie_word_embeddings:
        top.append(Rule("lm_head.weight", "decoder/logits/kernel", transpose=True, vocab_rows=True))
    rules = ([e for r in encoder for e in r.expand(config.num_layers, {})]
             + [e for r in decoder for e in r.expand(decoder_layers(config), {})] + top)
    # a cross-attention bias transformers also ignores in T5 files: tolerated if a checkpoint has it, never read
    return rules, {"decoder/block_000/layer_001/EncDecAttention/relative_attention_bias"}


# bert4keras' T5 configs (ZhuiyiTechnology's t5-pegasus, bojone's mT5 templates): hidden_act is one
# activation or [activation, "linear"] for the gated FFN. bert4keras computes "gelu" exactly (its
# backend maps "gelu" to gelu_erf), and T5 PEGASUS was trained with it, so a bert4keras config's
# "gelu" stays exact GELU; mesh TensorFlow's own gelu (Google's mT5 / T5.1.1) is the tanh
# approximation: spell it "gelu_tanh", or give the config in transformers' keys ("gated-gelu").
_B4K_ACT = {"gelu": "gelu", "gelu_erf": "gelu", "gelu_tanh": "gelu_tanh", "relu": "relu", "swish": "silu",
            "silu": "silu"}


def config_from_tf(d: dict[str, Any], source: str, family: str, names=None) -> ModelConfig:
    """A T5 config beside a TensorFlow checkpoint -> ModelConfig: transformers' keys or bert4keras'."""
    if "d_model" in d:
        return config_from_hf(d, source, family)
    preset = PRESETS[family]
    for key in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "vocab_size"):
        if key not in d:
            raise ConfigError(f"{source}: required field {key!r} is missing (found fields: {sorted(d)})")
    act = d.get("hidden_act", "relu" if preset["feed_forward_proj"] == "relu" else "gelu")
    gated = preset["feed_forward_proj"].startswith("gated-")
    if isinstance(act, list):
        if len(act) != 2 or act[1] != "linear" or not gated:
            raise ConfigError(f"{source}: field 'hidden_act' is {act!r}; model={family!r} expects "
                              + ("[ACT, 'linear'] (a gated FFN)" if gated else "one activation (a plain FFN)"))
        act = act[0]
    if act not in _B4K_ACT:
        raise ConfigError(f"{source}: field 'hidden_act' is {act!r}; expected one of {sorted(_B4K_ACT)}")
    dropout = float(d.get("hidden_dropout_prob", d.get("dropout_rate", 0.1)))
    options = T5Options(
        gated_ffn=gated, tie_word_embeddings=bool(d.get("tie_word_embeddings", preset["tie_word_embeddings"])),
        # bert4keras divides the decoder output by sqrt(hidden_size) before any head (its option
        # logit_scale, default true); T5 PEGASUS learned its untied head under that scale
        scale_decoder_outputs=bool(d.get("logit_scale", True)),
        num_decoder_layers=d.get("num_decoder_layers") or d["num_hidden_layers"],
        relative_attention_num_buckets=d.get("relative_attention_num_buckets", 32),  # bert4keras fixes 32
        relative_attention_max_distance=d.get("relative_attention_max_distance", 128),
        initializer_factor=float(d.get("initializer_factor", 1.0)))
    return ModelConfig(family=family, vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
                       num_layers=d["num_hidden_layers"], num_heads=d["num_attention_heads"],
                       head_size=d.get("attention_head_size"), intermediate_size=d["intermediate_size"],
                       type_vocab_size=0, max_position=d.get("max_position_embeddings") or 512,
                       hidden_act=_B4K_ACT[act], layer_norm_eps=d.get("layer_norm_epsilon", 1e-6), dropout=dropout,
                       attention_dropout=dropout, pad_token_id=d.get("pad_token_id", 0),
                       eos_token_id=d.get("eos_token_id", 1), decoder_start_token_id=d.get("decoder_start_token_id", 0),
                       options=options, source=source)


def config_to_tf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> config.json in bert4keras' T5 keys (what T5 PEGASUS ships; read back identically)."""
    o = c.options
    act = "gelu_tanh" if c.hidden_act in _TANH_GELUS else c.hidden_act
    if c.dropout != c.attention_dropout:
        raise ConfigError(f"{c.source}: T5 configs have one dropout rate; dropout {c.dropout} and "
                          f"attention_dropout {c.attention_dropout} differ")
    d = {
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_attention_heads": c.num_heads,
        "attention_head_size": c.head_size,
        "num_hidden_layers": c.num_layers,
        "vocab_size": c.vocab_size,
        "hidden_act": [act, "linear"] if o.gated_ffn else act,
        "hidden_dropout_prob": c.dropout,
        "relative_attention_num_buckets": o.relative_attention_num_buckets,
        "relative_attention_max_distance": o.relative_attention_max_distance,
        "layer_norm_epsilon": c.layer_norm_eps,
        **_special_fields(c),
        "initializer_factor": o.initializer_factor,
    }
    if decoder_layers(c) != c.num_layers:
        d["num_decoder_layers"] = decoder_layers(c)
    if o.tie_word_embeddings != PRESETS[c.family]["tie_word_embeddings"]:
        d["tie_word_embeddings"] = o.tie_word_embeddings
    if not o.scaled:
        d["logit_scale"] = False  # bert4keras' default is to scale
    if c.max_position != 512:
        d["max_position_embeddings"] = c.max_position
    return d



def tiny_config(family: str = "t5.1.0") -> ModelConfig:
    """A tiny config of `family` for tests: odd head count, head_size not hidden/heads, 3 decoder layers."""
    preset = PRESETS[family]
    gated, act = _parse_ffn(preset["feed_forward_proj"], "tiny_config")
    return ModelConfig(family=family, vocab_size=50, hidden_size=24, num_layers=2, num_heads=3, head_size=7,
                       intermediate_size=37, type_vocab_size=0, hidden_act=act, layer_norm_eps=1e-6,
                       eos_token_id=1, decoder_start_token_id=0,
                       options=T5Options(gated_ffn=gated, tie_word_embeddings=preset["tie_word_embeddings"],
                                         num_decoder_layers=3, relative_attention_num_buckets=10,
                                         relative_attention_max_distance=20))


def _hf_detect(name: str) -> Callable[[dict[str, Any], Any], bool]:
    return lambda d, names: d.get("model_type") in ("t5", "mt5") and family_from_hf_config(d) == name


# mesh TensorFlow names: gated FFNs store wi_0 / wi_1; mT5 and T5 PEGASUS name their norms rms_norm
_TF_T5 = "encoder/block_000/layer_000/SelfAttention/q"
_TF_GATED = "encoder/block_000/layer_001/DenseReluDense/wi_0/kernel"
_TF_RMS = "encoder/block_000/layer_000/rms_norm/scale"
_TF_DETECT = {"t5.1.0": holds(_TF_T5, absent=(_TF_GATED,)), "t5.1.1": holds(_TF_T5, _TF_GATED, absent=(_TF_RMS,)),
              "mt5.1.1": holds(_TF_T5, _TF_GATED, _TF_RMS)}


def _family(name: str) -> Family:
    return Family(
        name=name, build=build_t5, tiny=lambda: tiny_config(name), options=_preset_options(name),
        sources={
            # a file loaded without model= goes to the family its model_type and feed_forward_proj say,
            # and each name insists on its own FFN shape
            "hf": Source(read_config=lambda d, src, names=None: config_from_hf(d, src, name), write_config=config_to_hf,
                         rules=hf_rules, detect=_hf_detect(name), architecture=hf_architecture),
            "tf": Source(read_config=lambda d, src, names=None: config_from_tf(d, src, name), write_config=config_to_tf,
                         rules=tf_rules, detect=_TF_DETECT[name], config_file="config.json",
                         checkpoint_name="model.ckpt"),
        },
    )


FAMILIES = {name: _family(name) for name in PRESETS}
