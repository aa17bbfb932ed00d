"""Multi-sample dropout classification head.

Reference: Inoue, "Multi-Sample Dropout for Accelerated Training and Better
Generalization", https://arxiv.org/abs/1905.09788

    features ──┬─ dropout_1 ─ classifier ─ loss_1 ─┐
               ├─ dropout_2 ─ classifier ─ loss_2 ─┼─ mean ─► loss
               └─ dropout_K ─ classifier ─ loss_K ─┘

The classifier weights are shared by the K samples; only the dropout masks differ.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiSampleDropout"]


class MultiSampleDropout(nn.Module):
    """K dropout masks over the features, one shared classifier, losses averaged."""

    def __init__(
        self,
        classifier: nn.Module,
        num_samples: int = 5,
        p: float = 0.5,
        dropout: nn.Module | None = None,
    ) -> None:
        """``dropout`` replaces ``nn.Dropout(p)`` (e.g. a spatial dropout); it is called K times."""
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples: expected at least 1, found {num_samples}")
        self.classifier = classifier
        self.num_samples = num_samples
        self.dropout = dropout if dropout is not None else nn.Dropout(p)

    def sample_logits(self, features: Tensor) -> Tensor:
        """Logits under each of the K dropout masks: (K, *features.shape[:-1], C)."""
        if not self.training:
            # Dropout is the identity at evaluation: the K samples would be equal.
            logits = self.classifier(self.dropout(features))
            return logits.unsqueeze(0).expand(self.num_samples, *logits.shape)
        return torch.stack(
            [self.classifier(self.dropout(features)) for _ in range(self.num_samples)]
        )  # (K, ..., C)

    def forward(self, features: Tensor) -> Tensor:
        """Logits averaged over the K samples, shaped like ``classifier(features)``."""
        if not self.training:
            return self.classifier(self.dropout(features))
        return self.sample_logits(features).mean(dim=0)

    def loss(
        self,
        features: Tensor,
        targets: Tensor,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    ) -> Tensor:
        """Mean over the K samples of ``loss_fn(logits_k, targets)``."""
        samples = self.sample_logits(features)  # (K, ..., C)
        return torch.stack([loss_fn(logits, targets) for logits in samples]).mean()
