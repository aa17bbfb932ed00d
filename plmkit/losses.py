"""Pure loss functions.

Every function here is a plain function of tensors. Those meant for exact gradient
accumulation return ``(loss_sum, count)`` so that a training loop can divide the sum over
all micro-batches (and all ranks) by the total count, instead of averaging averages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "label_smoothing_cross_entropy",
    "multilabel_categorical_crossentropy",
    "token_cross_entropy",
]


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', found {reduction!r}")


def label_smoothing_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    smoothing: float = 0.1,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Cross-entropy against (1 - smoothing) * one_hot + smoothing / num_classes.

    logits: (..., C); targets: (...) class ids, ``ignore_index`` positions contribute
    nothing (and are not counted by ``mean``). Matches ``F.cross_entropy(...,
    label_smoothing=smoothing)``; written out so the arithmetic can be read.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing: expected a value in [0, 1), found {smoothing}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"label_smoothing_cross_entropy: logits {tuple(logits.shape)} must be targets "
            f"{tuple(targets.shape)} plus a class dimension"
        )
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (..., C)
    keep = targets != ignore_index
    safe_targets = torch.where(keep, targets, torch.zeros_like(targets))
    nll = -log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)  # (...)
    uniform = -log_probs.mean(dim=-1)  # (...) cross-entropy against the uniform distribution
    loss = ((1.0 - smoothing) * nll + smoothing * uniform) * keep
    if reduction == "mean":
        return loss.sum() / keep.sum().clamp(min=1)
    return _reduce(loss, reduction)


def multilabel_categorical_crossentropy(
    y_true: Tensor, y_pred: Tensor, reduction: str = "mean"
) -> Tensor:
    """Multilabel softmax cross-entropy: log(1 + sum_neg e^s) + log(1 + sum_pos e^-s).

    Reference: https://kexue.fm/archives/7359 (the loss used by GlobalPointer heads).
    y_true: (..., C) in {0, 1}; y_pred: (..., C) raw scores, no sigmoid. The loss is taken
    over the last dimension, so flatten a GlobalPointer output (B, heads, L, L) to
    (B * heads, L * L) first. Scores where y_true is 1 should end above 0, others below.
    """
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"multilabel_categorical_crossentropy: y_true {tuple(y_true.shape)} and y_pred "
            f"{tuple(y_pred.shape)} must have the same shape"
        )
    positive = y_true.bool()
    # Flip the sign of positive scores so both terms become logsumexp over {0} U scores.
    signed = torch.where(positive, -y_pred.float(), y_pred.float())  # (..., C)
    very_negative = torch.finfo(signed.dtype).min / 2  # drops a class out of logsumexp
    neg_scores = signed.masked_fill(positive, very_negative)
    pos_scores = signed.masked_fill(~positive, very_negative)
    zeros = torch.zeros_like(signed[..., :1])  # (..., 1): the "1 +" inside each log
    neg_loss = torch.logsumexp(torch.cat([neg_scores, zeros], dim=-1), dim=-1)
    pos_loss = torch.logsumexp(torch.cat([pos_scores, zeros], dim=-1), dim=-1)
    return _reduce(neg_loss + pos_loss, reduction)


def token_cross_entropy(
    logits: Tensor, targets: Tensor, ignore_index: int = -100
) -> tuple[Tensor, Tensor]:
    """Summed token cross-entropy and the number of counted tokens: ``(loss_sum, count)``.

    logits: (..., C); targets: (...). Return it straight from a ``loss_fn`` so the
    trainer divides by the token count of the whole accumulated (and distributed) batch.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"token_cross_entropy: logits {tuple(logits.shape)} must be targets "
            f"{tuple(targets.shape)} plus a class dimension"
        )
    loss_sum = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),  # (N, C)
        targets.reshape(-1),  # (N,)
        ignore_index=ignore_index,
        reduction="sum",
    )
    count = (targets != ignore_index).sum()
    return loss_sum, count
