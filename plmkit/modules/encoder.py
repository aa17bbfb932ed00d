"""The encoder stack every BERT-like family shares: embeddings ─► blocks ─► heads."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import masks
from .attention import KVCache


@dataclass
class ModelOutput:
    """What a forward pass returns; fields for heads that were not built stay None."""

    last_hidden_state: torch.Tensor
    pooled_output: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    nsp_logits: torch.Tensor | None = None
    label_logits: torch.Tensor | None = None  # (B, num_labels) from a sequence-classification head
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings output, then each block's


def head_input(x: torch.Tensor, last_only: bool = False, positions: torch.Tensor | None = None) -> torch.Tensor:
    """The hidden states an output head reads: all (B, T, H), the last (B, 1, H), or the
    (B, K) `positions` of each row (B, K, H) — scoring a few slots without a (B, T, V) tensor."""
    if positions is not None:
        return x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))
    return x[:, -1:] if last_only else x


class Encoder(nn.Module):
    """A stack of blocks over embeddings, with optional pooler / MLM / NSP heads.

    `application` picks the attention policy as bert4keras does: "encoder" (bidirectional),
    "lm" (causal), "unilm" (seq2seq over segments; see modules.masks).
    `position_bias` (optional) computes a score bias once per forward, shared by every block.

    With `cache` (attention.KVCache) only the new tokens are passed and they attend to the
    cached ones as the policy allows; `attention_mask` then covers cached + new tokens
    (B, L + T) and default positions continue from the cache. This is how UniLM seq2seq
    decodes: the source (segment 0) is encoded once, target tokens (segment 1) are appended.
    A `position_bias` module used with a cache is called as (q_len, k_len, offset).
    `last_logits_only` runs the MLM head on the last position alone, (B, 1, V);
    `logits_at` (B, K) on the given positions of each row, (B, K, V).
    """

    def __init__(self, config, embeddings: nn.Module, blocks: nn.Module, *, application: str = "encoder",
                 pooler: nn.Module | None = None, mlm: nn.Module | None = None, nsp: nn.Module | None = None,
                 position_bias: nn.Module | None = None, classifier: nn.Module | None = None) -> None:
        super().__init__()
        if application not in ("encoder", "lm", "unilm"):
            raise ValueError(f"application must be 'encoder', 'lm' or 'unilm', found {application!r}")
        if (nsp is not None or classifier is not None) and pooler is None:
            raise ValueError("the NSP and classification heads read the pooled output: build the pooler too")
        self.config = config
        self.application = application
        self.embeddings = embeddings
        self.blocks = blocks
        self.position_bias = position_bias
        self.pooler, self.mlm, self.nsp = pooler, mlm, nsp
        self.classifier = classifier

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, output_hidden_states: bool = False,
                cache: KVCache | None = None, last_logits_only: bool = False,
                logits_at: torch.Tensor | None = None) -> ModelOutput:
        if cache is None:
            x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, H)
            mask = masks.additive(masks.build(self.application, input_ids, token_type_ids, attention_mask), x.dtype)
            bias = self.position_bias(x.shape[1]) if self.position_bias is not None else None
            states, x = self._blocks(x, mask, bias, output_hidden_states)
        else:
            T, L = input_ids.shape[1], cache.length
            if position_ids is None and L:
                position_ids = torch.arange(L, L + T, device=input_ids.device)[None]  # (1, T)
            x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, H)
            mask = masks.additive(self._cached_mask(input_ids, token_type_ids, attention_mask, cache), x.dtype)
            bias = self.position_bias(T, L + T, L) if self.position_bias is not None else None
            with cache.step(self.blocks, T):
                states, x = self._blocks(x, mask, bias, output_hidden_states)
        pooled = self.pooler(x) if self.pooler is not None else None
        return ModelOutput(
            last_hidden_state=x,
            pooled_output=pooled,
            logits=None if self.mlm is None else self.mlm(head_input(x, last_logits_only, logits_at)),
            nsp_logits=self.nsp(pooled) if self.nsp is not None else None,
            label_logits=self.classifier(pooled) if self.classifier is not None else None,
            hidden_states=tuple(states) if states is not None else None,
        )

    def _blocks(self, x: torch.Tensor, mask: torch.Tensor | None, bias: torch.Tensor | None,
                output_hidden_states: bool) -> tuple[list[torch.Tensor] | None, torch.Tensor]:
        states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x, mask, bias)
            if states is not None:
                states.append(x)
        return states, x

    def _cached_mask(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                     attention_mask: torch.Tensor | None, cache: KVCache) -> torch.Tensor | None:
        """The policy's bool mask (B|1, 1, T, L + T) for T new tokens over L cached ones and themselves."""
        T, L = input_ids.shape[1], cache.length
        if attention_mask is not None and attention_mask.shape[1] != L + T:
            raise ValueError(f"attention_mask has {attention_mask.shape[1]} columns; with {L} cached and {T} new "
                             f"tokens it must cover all {L + T}")
        mask = None if attention_mask is None else masks.padding(attention_mask)
        if self.application == "lm":
            causal = masks.causal(T, L + T, device=input_ids.device)
            mask = causal if mask is None else mask & causal
        elif self.application == "unilm":
            if token_type_ids is None:
                raise ValueError("application='unilm' needs token_type_ids (segment 0 = source, 1 = target)")
            # masks.unilm's order (cumulative segment id) continued across steps: a key is visible
            # to a query whose order is at least the key's
            before = cache.state.get("unilm_order")  # (B, L)
            order = torch.cumsum(token_type_ids, dim=1)  # (B, T)
            if before is not None:
                order = order + before[:, -1:]
            keys = order if before is None else torch.cat((before, order), dim=1)  # (B, L + T)
            cache.state["unilm_order"] = keys
            visible = (keys[:, None, :] <= order[:, :, None])[:, None]  # (B, 1, T, L + T)
            mask = visible if mask is None else mask & visible
        return mask
