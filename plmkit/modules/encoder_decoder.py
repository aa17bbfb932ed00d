"""Encoder-decoder Transformers (T5 and its kin): pre-norm stacks, cross-attention, LM heads.

    input_ids ─► embeddings ─► encoder Stack: L × PreNormBlock(self-attn, ffn) ─► norm ─► memory
                                                                                           │
    decoder_input_ids ─► embeddings ─► decoder Stack: L × PreNormDecoderBlock(             │
                                           causal self-attn, cross-attn over memory ◄──────┘, ffn)
                                       ─► norm ─► lm_head ─► logits

(PreNormBlock is modules.blocks', the block GPT-2 uses.)

A Stack computes its score bias (e.g. T5's relative buckets) once per forward and adds it to
the attention mask, so every layer reads the same tensor. `encode` and `decode` are separate
entry points: the encoder runs once, the decoder as often as generation needs. `decode(...,
cache=KVCache())` keeps the decoder's self-attention keys and values between calls and
projects the encoder output to cross-attention keys and values once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import masks
from .attention import KVCache
from .linear import Linear, linear


@dataclass
class Seq2SeqOutput:
    """What an encoder-decoder forward pass returns."""

    logits: torch.Tensor  # (B, T_dec, V)
    last_hidden_state: torch.Tensor  # decoder output before the head (B, T_dec, H)
    encoder_last_hidden_state: torch.Tensor  # (B, T_enc, H)


class PreNormDecoderBlock(nn.Module):
    """Pre-norm decoder block (arXiv:2002.04745): causal self-attention, cross-attention over the
    encoder output, ffn.

        x ─► attn_norm ─► attn ─► (+x) ─► cross_norm ─► cross(memory) ─► (+) ─► ffn_norm ─► ffn ─► (+)
    """

    def __init__(self, attn: nn.Module, cross: nn.Module, ffn: nn.Module, attn_norm: nn.Module,
                 cross_norm: nn.Module, ffn_norm: nn.Module, dropout: float) -> None:
        super().__init__()
        self.attn, self.attn_norm = attn, attn_norm
        self.cross, self.cross_norm = cross, cross_norm
        self.ffn, self.ffn_norm = ffn, ffn_norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, memory: torch.Tensor,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), mask))
        x = x + self.dropout(self.cross(self.cross_norm(x), memory, memory_mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class Stack(nn.Module):
    """Blocks over embedded inputs, one score bias shared by all of them, then a final norm.

    `relative_bias(q_len, k_len, offset)` (optional) gives a (1, nh, Tq, Tk) bias; it is added
    to the additive mask once, here, rather than in every layer. `context` (the encoder output
    and its mask, for a decoder) is handed to every block unchanged. With `cache`, x holds
    only the new tokens and the offset is the number already cached.
    """

    def __init__(self, blocks: nn.ModuleList, norm: nn.Module, *, relative_bias: nn.Module | None,
                 dropout: float) -> None:
        super().__init__()
        self.blocks = blocks
        self.relative_bias = relative_bias
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *context: torch.Tensor | None,
                offset: int = 0, cache: KVCache | None = None) -> torch.Tensor:
        """x (B, T, H) already embedded; `mask` additive, broadcastable to (B, nh, T, offset + T)."""
        T = x.shape[1]
        if cache is not None:
            offset = cache.length
        if self.relative_bias is not None:
            bias = self.relative_bias(T, offset + T, offset).to(x.dtype)  # (1, nh, T, offset + T)
            mask = bias if mask is None else mask + bias  # (B, nh, T, offset + T)
        if cache is None:
            for block in self.blocks:
                x = block(x, mask, *context)
        else:
            with cache.step(self.blocks, T):
                for block in self.blocks:
                    x = block(x, mask, *context)
        return self.dropout(self.norm(x))


class TokenTableHead(nn.Module):
    """Logits through the input token table: (hidden * scale) @ tokensᵀ.

    T5.1.0 scales the decoder output by d_model^-0.5 before the tied projection (mesh
    TensorFlow's convention), which keeps logits small under its unit-variance embeddings.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, hidden: torch.Tensor, embedding: nn.Embedding) -> torch.Tensor:
        return linear(hidden * self.scale, embedding.weight)  # (B, T, V)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}"


class LMHead(Linear):
    """An untied output projection (hidden * scale) -> vocabulary, without bias (T5.1.1, mT5).

    Mesh TensorFlow (Google's T5.1.1 / mT5) leaves an untied head's input unscaled; bert4keras
    scales it by d_model^-0.5 as for a tied one, and T5 PEGASUS was trained that way."""

    def __init__(self, hidden_size: int, vocab_size: int, scale: float = 1.0) -> None:
        super().__init__(hidden_size, vocab_size, bias=False)
        self.scale = scale

    def forward(self, hidden: torch.Tensor, embedding: nn.Embedding | None = None) -> torch.Tensor:
        return super().forward(hidden if self.scale == 1.0 else hidden * self.scale)  # (B, T, V)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.scale == 1.0 else f", scale={self.scale:.6g}")


class EncoderDecoder(nn.Module):
    """Shared token embeddings, an encoder Stack, a decoder Stack with cross-attention, an LM head.

    Call as `model(input_ids, decoder_input_ids=..., attention_mask=..., decoder_attention_mask=...)`;
    `encode` and `decode` run the two halves separately (generation encodes once).
    """

    is_encoder_decoder = True

    def __init__(self, config, embeddings: nn.Module, encoder: Stack, decoder: Stack, lm_head: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.embeddings = embeddings
        self.encoder, self.decoder = encoder, decoder
        self.lm_head = lm_head

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder output (B, S, H); padded positions hold values that the decoder never reads."""
        x = self.embeddings(input_ids, inputs_embeds=inputs_embeds)  # (B, S, H)
        mask = None if attention_mask is None else masks.additive(masks.padding(attention_mask), x.dtype)
        return self.encoder(x, mask)

    def decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor,
               attention_mask: torch.Tensor | None = None,
               decoder_attention_mask: torch.Tensor | None = None, cache: KVCache | None = None) -> Seq2SeqOutput:
        """Logits for every decoder position given the encoder output `memory` and its padding mask.

        With `cache`, pass only the new decoder tokens; `decoder_attention_mask` (optional)
        then covers cached + new tokens.
        """
        x = self.embeddings(decoder_input_ids)  # (B, T, H)
        past, state = (cache.length, cache.state) if cache is not None else (0, None)
        self_mask = masks.additive(masks.build("lm", x, None, decoder_attention_mask, past=past, state=state), x.dtype)
        memory_mask = None if attention_mask is None else masks.additive(masks.padding(attention_mask), x.dtype)
        h = self.decoder(x, self_mask, memory, memory_mask, cache=cache)
        return Seq2SeqOutput(logits=self.lm_head(h, self.embeddings.token), last_hidden_state=h,
                             encoder_last_hidden_state=memory)

    def forward(self, input_ids: torch.Tensor | None = None, decoder_input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, decoder_attention_mask: torch.Tensor | None = None,
                encoder_output: torch.Tensor | None = None, cache: KVCache | None = None) -> Seq2SeqOutput:
        if decoder_input_ids is None:
            raise ValueError("an encoder-decoder model needs decoder_input_ids (T5 starts them with "
                             f"decoder_start_token_id={self.config.decoder_start_token_id})")
        if encoder_output is None:
            if input_ids is None:
                raise ValueError("pass input_ids, or encoder_output from model.encode(...)")
            encoder_output = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, encoder_output, attention_mask, decoder_attention_mask, cache)
