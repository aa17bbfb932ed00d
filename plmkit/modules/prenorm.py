"""The decoder-only stack GPT-style language models share (its blocks are in modules.blocks).

    ids ─► embeddings ─► L × block (causal mask ∧ padding) ─► [final norm] ─► [LM head] ─► logits (B, T, V)

The stack takes its block, final norm and head as arguments: GPT (post-norm, no final
norm) and GPT-2 (pre-norm, final LayerNorm) differ only in what their builders pass in.
"""
from __future__ import annotations

import torch
from torch import nn

from . import masks
from .attention import KVCache
from .encoder import ModelOutput, head_input


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 1/0 mask -> (B, T) positions counting real tokens from 0; pads get 0.

    This is what transformers' generate() passes for left-padded prompts (its forward alone
    uses 0..T-1 whatever the mask); pass the result as `position_ids` so that a left-padded
    row gives the same outputs as the same row unpadded.
    """
    mask = attention_mask.long()
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


class Decoder(nn.Module):
    """A decoder-only language model: every token sees itself and the tokens before it.

    `final_norm` (GPT-2) normalises the last block's output; `lm_head` maps hidden states to
    vocabulary logits (None: features only). Position ids default to 0..T-1 as in
    transformers' forward; for left padding pass `position_ids_from_mask(attention_mask)`.

    With `cache` (attention.KVCache) only the new tokens are passed: they attend to the
    cached ones too, `attention_mask` then covers cached + new tokens (B, L + T), and default
    positions continue from the cache (L..L+T-1). `last_logits_only` computes logits for the
    last position alone, (B, 1, V): all that decoding a prompt needs; `logits_at` (B, K)
    for the given positions of each row, (B, K, V).
    """

    def __init__(self, config, embeddings: nn.Module, blocks: nn.Module, *, final_norm: nn.Module | None = None,
                 lm_head: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.application = "lm"
        self.embeddings = embeddings
        self.blocks = blocks
        self.final_norm = final_norm
        self.lm_head = lm_head

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, output_hidden_states: bool = False,
                cache: KVCache | None = None, last_logits_only: bool = False,
                logits_at: torch.Tensor | None = None) -> ModelOutput:
        if cache is None:
            x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, H)
            mask = masks.additive(masks.build("lm", x, None, attention_mask), x.dtype)  # (B|1, 1, T, T)
            states, x = self._blocks(x, mask, output_hidden_states)
        else:
            T = input_ids.shape[1] if inputs_embeds is None else inputs_embeds.shape[1]
            if position_ids is None and cache.length:
                device = (input_ids if inputs_embeds is None else inputs_embeds).device
                position_ids = torch.arange(cache.length, cache.length + T, device=device)[None]  # (1, T)
            x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, H)
            mask = masks.additive(masks.build("lm", x, None, attention_mask, past=cache.length, state=cache.state),
                                  x.dtype)  # (B|1, 1, T, L + T) or None
            with cache.step(self.blocks, T):
                states, x = self._blocks(x, mask, output_hidden_states)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return ModelOutput(
            last_hidden_state=x,
            logits=None if self.lm_head is None else self.lm_head(head_input(x, last_logits_only, logits_at)),
            hidden_states=tuple(states) if states is not None else None,
        )

    def _blocks(self, x: torch.Tensor, mask: torch.Tensor | None,
                output_hidden_states: bool) -> tuple[list[torch.Tensor] | None, torch.Tensor]:
        states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x, mask)
            if states is not None:
                states.append(x)
        return states, x
