"""The encoder stack every BERT-like family shares: embeddings ─► blocks ─► heads."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import masks


@dataclass
class ModelOutput:
    """What a forward pass returns; fields for heads that were not built stay None."""

    last_hidden_state: torch.Tensor
    pooled_output: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    nsp_logits: torch.Tensor | None = None
    label_logits: torch.Tensor | None = None  # (B, num_labels) from a sequence-classification head
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings output, then each block's


class Encoder(nn.Module):
    """A stack of blocks over embeddings, with optional pooler / MLM / NSP heads.

    `application` picks the attention policy as bert4keras does: "encoder" (bidirectional),
    "lm" (causal), "unilm" (seq2seq over segments; see modules.masks).
    `position_bias` (optional) computes a score bias once per forward, shared by every block.
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
                inputs_embeds: torch.Tensor | None = None, output_hidden_states: bool = False) -> ModelOutput:
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, H)
        mask = masks.additive(masks.build(self.application, input_ids, token_type_ids, attention_mask), x.dtype)
        bias = self.position_bias(x.shape[1]) if self.position_bias is not None else None
        states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x, mask, bias)
            if states is not None:
                states.append(x)
        pooled = self.pooler(x) if self.pooler is not None else None
        return ModelOutput(
            last_hidden_state=x,
            pooled_output=pooled,
            logits=self.mlm(x) if self.mlm is not None else None,
            nsp_logits=self.nsp(pooled) if self.nsp is not None else None,
            label_logits=self.classifier(pooled) if self.classifier is not None else None,
            hidden_states=tuple(states) if states is not None else None,
        )
