"""Transformer-XL: a causal language model with segment-level recurrence and relative positional attention.

Dai et al. 2019, arXiv:1901.02860 (lonepatient's post; kexue.fm/archives/8130 on its positions).

    ids ─► token table × sqrt(d) ─► dropout ─► L × PostNormBlock(XLRelativeAttention(memory_i), ReLU FFN)
        ─► dropout ─► tied softmax head (+ bias)

    segment s:    memory_i = the last mem_len inputs of layer i from segments < s (detached)
                  layer i attends over [memory_i; its input], causally, by relative distance

Memory is carried across calls: `model(ids, mems=out.mems)` continues the previous segment, and
`out.mems` (one (B, M, D) tensor per layer, M <= mem_len) holds the new memory. Memories are
detached: no gradient flows into an earlier segment (the paper's stop-gradient, SG(·)).
`mems=None` starts from an empty memory, as the paper's released code does; transformers'
TransfoXLModel starts from mem_len zero vectors instead (pass those as `mems` to match it).

Only the plain softmax head is supported: the adaptive softmax (cutoffs, div_val > 1, projections)
is not. A Hugging Face `TransfoXLLMHeadModel` directory with cutoffs=[] and div_val=1 (d_embed ==
d_model) loads strictly; pre_lnorm=True, shared r_w_bias / r_r_bias (untie_r=False) and
sample_softmax are refused with a ConfigError. The FFN has no dropout between its two linears
(transformers' has one): the same numbers in eval mode, a slightly different regulariser in training.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from ..config import ConfigError, FamilyOptions, ModelConfig
from ..convert.namemap import Rule
from ..modules.blocks import PostNormBlock
from ..modules.feedforward import FeedForward
from ..modules.linear import linear
from ..modules.xl_attention import XLRelativeAttention, XLRelativePositions
from . import Family, Source, model_type_is


@dataclass(frozen=True)
class TransfoXLOptions(FamilyOptions):
    """Transformer-XL's memory and position options (transformers' TransfoXLConfig names and defaults)."""

    mem_len: int = 1600  # states kept per layer for the next segment; 0: no memory
    clamp_len: int = 1000  # distances beyond it share one position row; <= 0: no clamping
    same_length: bool = True  # every query sees the same number of keys (the paper's evaluation setting)

    def check(self) -> None:
        if self.mem_len < 0:
            raise ConfigError(f"field 'mem_len' must be >= 0, found {self.mem_len}")


@dataclass
class XLOutput:
    """A Transformer-XL forward: hidden states, logits when the head is built, and the memory for the next call."""

    last_hidden_state: torch.Tensor
    logits: torch.Tensor | None = None
    mems: list[torch.Tensor] | None = None  # per layer (B, M, D), detached; None when mem_len is 0
    hidden_states: tuple[torch.Tensor, ...] | None = None  # each block's input, then the output


class XLEmbeddings(nn.Module):
    """token table × sqrt(d) (the released code's emb_scale) ─► dropout; positions live in attention."""

    def __init__(self, vocab_size: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, dim)
        self.scale = math.sqrt(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.token(input_ids) * self.scale)  # (B, T, D)


class TiedBiasedLMHead(nn.Module):
    """(tied token embeddings)ᵀ + bias: Transformer-XL's plain softmax layer (its adaptive softmax with no cutoffs)."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = [embedding]  # a list hides it from the module tree: the weight is the token table's
        self.bias = nn.Parameter(torch.zeros(embedding.weight.shape[0]))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return linear(hidden, self.embedding[0].weight, self.bias)  # (B, T, V)


@contextmanager
def _attach_memory(attentions: list[XLRelativeAttention], mems: list[torch.Tensor] | None) -> Iterator[None]:
    for i, attn in enumerate(attentions):
        attn.memory = None if mems is None else mems[i]
    try:
        yield
    finally:
        for attn in attentions:
            attn.memory = None


class TransfoXL(nn.Module):
    """Embeddings ─► blocks with memory ─► dropout ─► optional LM head; see the module docstring."""

    # read by plmkit.generate, which has no KV cache for relative attention over a memory
    cannot_generate = ("plmkit.generate does not decode Transformer-XL yet: call the model segment by segment, "
                       "passing each output's mems to the next call")

    def __init__(self, config: ModelConfig, embeddings: XLEmbeddings, blocks: nn.ModuleList,
                 lm_head: nn.Module | None) -> None:
        super().__init__()
        self.config = config
        self.embeddings = embeddings
        self.blocks = blocks
        self.dropout = nn.Dropout(config.dropout)
        self.lm_head = lm_head

    def _attentions(self) -> list[XLRelativeAttention]:
        return [block.attn for block in self.blocks]

    def _check_mems(self, mems: list[torch.Tensor], batch: int) -> None:
        D = self.config.hidden_size
        if len(mems) != len(self.blocks):
            raise ValueError(f"mems holds {len(mems)} tensors; this model has {len(self.blocks)} layers (one each)")
        for i, m in enumerate(mems):
            if m.dim() != 3 or m.shape[0] != batch or m.shape[2] != D or m.shape[1] != mems[0].shape[1]:
                raise ValueError(f"mems[{i}] must be (batch {batch}, memory length {mems[0].shape[1]}, hidden {D}), "
                                 f"found {tuple(m.shape)}")

    def _mask(self, T: int, M: int, attention_mask: torch.Tensor | None, dtype: torch.dtype,
              device: torch.device) -> torch.Tensor:
        """Additive (B|1, 1, T, M + T) mask: causal over [memory; segment], same_length's window, padded keys."""
        L = M + T
        ones = torch.ones(T, L, dtype=torch.bool, device=device)
        blocked = torch.triu(ones, diagonal=1 + M)  # keys after the query
        o = self.config.options
        if o.same_length:  # the released code's window: each query sees as many keys as the last one
            excess = L - o.mem_len
            shift = T - excess if excess > 0 else T
            blocked = blocked | torch.tril(ones, -shift)
        blocked = blocked[None, None]  # (1, 1, T, L)
        if attention_mask is not None:
            if attention_mask.shape[-1] not in (T, L) or attention_mask.dim() != 2:
                raise ValueError(f"attention_mask must be (batch, {T}) for this segment or (batch, {L}) with the "
                                 f"memory, found {tuple(attention_mask.shape)}")
            keys = attention_mask.bool()
            if keys.shape[-1] == T:  # memory slots are real states
                keys = torch.cat((keys.new_ones(keys.shape[0], M), keys), dim=1)
            blocked = blocked | ~keys[:, None, None, :]  # (B, 1, T, L)
        # the dtype's lowest finite value, not -inf: a fully masked row stays finite (transformers does the same)
        return torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill(blocked, torch.finfo(dtype).min)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                mems: list[torch.Tensor] | None = None, output_hidden_states: bool = False) -> XLOutput:
        """Run one segment after the memory `mems` (None: empty); `attention_mask` (B, T) marks real tokens."""
        B, T = input_ids.shape
        M = 0 if mems is None else mems[0].shape[1]
        if mems is not None:
            self._check_mems(mems, B)
        x = self.embeddings(input_ids)  # (B, T, D)
        mask = self._mask(T, M, attention_mask, x.dtype, x.device)
        inputs = []
        with _attach_memory(self._attentions(), mems):
            for block in self.blocks:
                inputs.append(x)
                x = block(x, mask)
        x = self.dropout(x)
        return XLOutput(
            last_hidden_state=x,
            logits=None if self.lm_head is None else self.lm_head(x),
            mems=self._new_mems(inputs, mems),
            hidden_states=(*inputs, x) if output_hidden_states else None,
        )

    def _new_mems(self, inputs: list[torch.Tensor], mems: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
        """The last mem_len inputs of each layer over [memory; segment], detached (the paper's SG(·))."""
        keep = self.config.options.mem_len
        if keep == 0:
            return None
        with torch.no_grad():
            joined = inputs if mems is None else [torch.cat((m.to(h.dtype), h), dim=1) for m, h in zip(mems, inputs)]
            return [h[:, -keep:].detach() for h in joined]


def build_transfo_xl(config: ModelConfig, *, with_mlm: bool = False, with_pool: bool = False, with_nsp: bool = False,
                     application: str = "lm", with_lm: bool = True) -> TransfoXL:
    """Transformer-XL: post-norm blocks of relative attention with memory, the LM head tied to the token table."""
    asked = [n for n, v in (("with_mlm", with_mlm), ("with_pool", with_pool), ("with_nsp", with_nsp)) if v]
    if asked:
        raise ValueError(f"transfo_xl is a causal language model: it has no {', '.join(asked)} head "
                         "(its LM head is built by default; with_lm=False leaves it out)")
    if application not in ("lm", "encoder"):  # "encoder": from_pretrained's default, which cannot be told apart
        raise ValueError(f"transfo_xl is a causal language model: application must be 'lm', found {application!r}")
    c = config
    relative = XLRelativePositions(c.hidden_size, c.options.clamp_len)  # parameter-free: shared by every layer

    def block() -> PostNormBlock:
        attn = XLRelativeAttention(c.hidden_size, c.num_heads, c.head_size, relative=relative,
                                   dropout=c.attention_dropout)
        norms = [nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps) for _ in range(2)]
        return PostNormBlock(attn, FeedForward(c.hidden_size, c.intermediate_size, c.hidden_act), *norms, c.dropout)

    embeddings = XLEmbeddings(c.vocab_size, c.hidden_size, c.dropout)
    model = TransfoXL(c, embeddings, nn.ModuleList(block() for _ in range(c.num_layers)),
                      TiedBiasedLMHead(embeddings.token) if with_lm else None)
    # transformers' "normal" init: weights and u, v ~ N(0, init_std), biases zero, unit norms
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=c.initializer_range)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight, 1.0, c.initializer_range)
            nn.init.zeros_(m.bias)
        elif isinstance(m, XLRelativeAttention):
            nn.init.normal_(m.u, std=c.initializer_range)
            nn.init.normal_(m.v, std=c.initializer_range)
    return model


# ---- Hugging Face names (data) ---------------------------------------------------------------

def transfo_xl_hf_rules(config: ModelConfig, prefix: str = "", names=None) -> tuple[list[Rule], set[str]]:
    """Our names <- transformers' TransfoXLModel / TransfoXLLMHeadModel names (base model under `prefix`)."""
    p = prefix
    a, f = f"{p}layers.{{i}}.dec_attn.", f"{p}layers.{{i}}.pos_ff."
    rules = [
        Rule("embeddings.token.weight", f"{p}word_emb.emb_layers.0.weight", vocab_rows=True),
        Rule("blocks.{i}.attn.qkv.weight", f"{a}qkv_net.weight"),  # q, k, v rows in that order, as ours
        Rule("blocks.{i}.attn.r.weight", f"{a}r_net.weight"),
        Rule("blocks.{i}.attn.out.weight", f"{a}o_net.weight"),
        Rule("blocks.{i}.attn.u", f"{a}r_w_bias"),
        Rule("blocks.{i}.attn.v", f"{a}r_r_bias"),
        Rule("blocks.{i}.attn_norm.weight", f"{a}layer_norm.weight"),
        Rule("blocks.{i}.attn_norm.bias", f"{a}layer_norm.bias"),
        Rule("blocks.{i}.ffn.up.weight", f"{f}CoreNet.0.weight"),
        Rule("blocks.{i}.ffn.up.bias", f"{f}CoreNet.0.bias"),
        Rule("blocks.{i}.ffn.down.weight", f"{f}CoreNet.3.weight"),
        Rule("blocks.{i}.ffn.down.bias", f"{f}CoreNet.3.bias"),
        Rule("blocks.{i}.ffn_norm.weight", f"{f}layer_norm.weight"),
        Rule("blocks.{i}.ffn_norm.bias", f"{f}layer_norm.bias"),
        Rule("lm_head.bias", "crit.out_layers.0.bias", vocab_rows=True),
    ]
    # the head's weight is the token table (tied); inv_freq is the position sinusoid's buffer
    ignored = {"crit.out_layers.0.weight", f"{p}pos_emb.inv_freq"}
    return [e for r in rules for e in r.expand(config.num_layers, {})], ignored


def _require(d: dict[str, Any], key: str, source: str) -> Any:
    if d.get(key) is None:
        raise ConfigError(f"{source}: required field {key!r} is missing (found fields: {sorted(d)})")
    return d[key]


def _refuse(d: dict[str, Any], source: str) -> None:
    """The TransfoXLConfig settings this family does not build, each with the field that says so."""
    unsupported = [
        ("cutoffs", d.get("cutoffs", [20000, 40000, 200000]) not in ([], None),
         "an adaptive softmax; only the plain softmax head (cutoffs: []) is supported"),
        ("div_val", d.get("div_val", 4) != 1, "adaptive embeddings; div_val must be 1"),
        ("d_embed", d.get("d_embed", d.get("d_model")) != d.get("d_model"), "an embedding projection; "
         "d_embed must equal d_model"),
        ("pre_lnorm", bool(d.get("pre_lnorm", False)), "pre-norm layers; only pre_lnorm false is supported"),
        ("untie_r", not d.get("untie_r", True), "u, v shared across layers; only untie_r true is supported"),
        ("attn_type", d.get("attn_type", 0) != 0, "attention other than the relative one (attn_type 0)"),
        ("sample_softmax", d.get("sample_softmax", -1) > 0, "a sampled softmax"),
        ("tie_word_embeddings", d.get("tie_word_embeddings", True) is False, "an untied softmax layer"),
    ]
    for field, bad, what in unsupported:
        if bad:
            raise ConfigError(f"{source}: field {field!r} is {d.get(field)!r}, which asks for {what}")


def transfo_xl_config_from_hf(d: dict[str, Any], source: str, names=None) -> ModelConfig:
    """An HF TransfoXLConfig dict (plain softmax: cutoffs [], div_val 1) -> ModelConfig."""
    _refuse(d, source)
    return ModelConfig(
        family="transfo_xl", source=source, vocab_size=_require(d, "vocab_size", source),
        hidden_size=_require(d, "d_model", source), num_layers=_require(d, "n_layer", source),
        num_heads=_require(d, "n_head", source), head_size=_require(d, "d_head", source),
        intermediate_size=_require(d, "d_inner", source), max_position=512,  # unused: positions are relative
        type_vocab_size=0, hidden_act="relu", layer_norm_eps=d.get("layer_norm_epsilon", 1e-5),
        dropout=d.get("dropout", 0.1), attention_dropout=d.get("dropatt", 0.0),
        initializer_range=d.get("init_std", 0.02), pad_token_id=d.get("pad_token_id"),
        eos_token_id=d.get("eos_token_id", 0),
        options=TransfoXLOptions(mem_len=d.get("mem_len", 1600), clamp_len=d.get("clamp_len", 1000),
                                 same_length=d.get("same_length", True)))


def transfo_xl_config_to_hf(c: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> an HF TransfoXLConfig dict with the plain softmax (cutoffs [], div_val 1)."""
    if c.hidden_act != "relu":
        raise ConfigError(f"{c.source}: hidden_act {c.hidden_act!r}; Transformer-XL checkpoints fix ReLU")
    o = c.options
    d = {
        "model_type": "transfo-xl", "vocab_size": c.vocab_size, "cutoffs": [], "div_val": 1, "adaptive": True,
        "d_model": c.hidden_size, "d_embed": c.hidden_size, "n_head": c.num_heads, "d_head": c.head_size,
        "d_inner": c.intermediate_size, "n_layer": c.num_layers, "pre_lnorm": False, "untie_r": True,
        "attn_type": 0, "sample_softmax": -1, "mem_len": o.mem_len, "clamp_len": o.clamp_len,
        "same_length": o.same_length, "dropout": c.dropout, "dropatt": c.attention_dropout,
        "layer_norm_epsilon": c.layer_norm_eps, "init_std": c.initializer_range, "tie_word_embeddings": True,
        "eos_token_id": c.eos_token_id,
    }
    if c.pad_token_id is not None:
        d["pad_token_id"] = c.pad_token_id
    return d


def _architecture(model: nn.Module) -> str:
    return "TransfoXLLMHeadModel" if model.lm_head is not None else "TransfoXLModel"


def tiny_config() -> ModelConfig:
    """A tiny Transformer-XL config for tests: 2 layers, 3 heads of 8 over width 24, memory of 6."""
    return ModelConfig(family="transfo_xl", vocab_size=50, hidden_size=24, num_layers=2, num_heads=3, head_size=8,
                       intermediate_size=40, type_vocab_size=0, hidden_act="relu", layer_norm_eps=1e-5,
                       pad_token_id=None, eos_token_id=0,
                       options=TransfoXLOptions(mem_len=6, clamp_len=20, same_length=False))


FAMILIES = {
    "transfo_xl": Family(
        name="transfo_xl", build=build_transfo_xl, tiny=tiny_config, options=TransfoXLOptions, causal=True,
        sources={
            "hf": Source(read_config=transfo_xl_config_from_hf, write_config=transfo_xl_config_to_hf,
                         rules=transfo_xl_hf_rules, detect=model_type_is("transfo-xl"),
                         prefixes=("transformer.", ""), architecture=_architecture),
        },
    ),
}
