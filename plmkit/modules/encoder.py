"""The encoder stack every BERT-like family shares: embeddings ─► blocks ─► heads."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import masks
from .attention import KVCache, Positions, attach_positions, position_readers


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

    `position_ids` go to the embeddings' position table (BERT) and to every attention module
    whose position scheme reads them (rotary, NEZHA's relative positions): (B|1, T), or
    (B|1, T, 2) (row, col) for 2-D rotary. A model with no position signal that reads them
    refuses them. With a cache, give them at every step or at none.
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
        readers = [] if position_ids is None else self._position_readers(position_ids, input_ids.shape)
        if cache is None:
            x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, H)
            mask = masks.additive(masks.build(self.application, input_ids, token_type_ids, attention_mask), x.dtype)
            bias = self.position_bias(x.shape[1]) if self.position_bias is not None else None
            positions = Positions(position_ids, position_ids) if readers else None
            with attach_positions(readers, positions):
                states, x = self._blocks(x, mask, bias, output_hidden_states)
        else:
            T, L = input_ids.shape[1], cache.length
            positions = self._cached_positions(position_ids, readers, input_ids.shape[0], cache)
            if position_ids is None and L:
                position_ids = torch.arange(L, L + T, device=input_ids.device)[None]  # (1, T)
            x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, H)
            mask = masks.additive(masks.build(self.application, input_ids, token_type_ids, attention_mask, past=L,
                                              state=cache.state), x.dtype)
            bias = self.position_bias(T, L + T, L) if self.position_bias is not None else None
            with cache.step(self.blocks, T), attach_positions(readers, positions):
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

    def _position_readers(self, position_ids: torch.Tensor, shape: torch.Size) -> list[nn.Module]:
        """The attention modules that read `position_ids`, after checking that something reads them."""
        readers = position_readers(self.blocks)
        if not readers:
            if getattr(self.embeddings, "position", None) is None:
                raise ValueError(f"position_ids were given, but this {self.config.family} model has no position "
                                 "signal that reads them (no position table, no position scheme in attention)")
            return readers
        B, T = shape
        if position_ids.dim() not in (2, 3) or position_ids.shape[0] not in (1, B) or position_ids.shape[1] != T:
            raise ValueError(f"position_ids must be ({B} or 1, {T}), or ({B} or 1, {T}, 2) (row, col) pairs for "
                             f"2-D positions; found shape {tuple(position_ids.shape)}")
        return readers

    @staticmethod
    def _cached_positions(position_ids: torch.Tensor | None, readers: list[nn.Module], batch: int,
                          cache: KVCache) -> Positions | None:
        """Positions of the new tokens and of every key; the keys' are kept in the cache (its state is reordered
        with beams) since a position scheme may compare query and key positions (NEZHA)."""
        before = cache.state.get("position_ids")  # (B, L[, 2])
        if position_ids is None:
            if before is not None:
                raise ValueError(f"the {cache.length} cached tokens were given position_ids and these new ones "
                                 "were not: with a cache, give position_ids at every step or at none")
            return None
        if not readers:
            return None
        if before is None and cache.length:
            raise ValueError(f"position_ids are given for the new tokens but were not for the {cache.length} cached "
                             "ones: with a cache, give position_ids at every step or at none")
        new = position_ids.expand(batch, *position_ids.shape[1:])  # (B, T[, 2])
        keys = new if before is None else torch.cat((before, new.to(before.dtype)), dim=1)  # (B, L + T[, 2])
        cache.state["position_ids"] = keys
        return Positions(position_ids, keys)

    def _blocks(self, x: torch.Tensor, mask: torch.Tensor | None, bias: torch.Tensor | None,
                output_hidden_states: bool) -> tuple[list[torch.Tensor] | None, torch.Tensor]:
        states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x, mask, bias)
            if states is not None:
                states.append(x)
        return states, x
