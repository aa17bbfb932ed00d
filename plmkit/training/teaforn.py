"""TeaForN: N-step nested teacher forcing for seq2seq training (encoder-decoders and UniLM).

Goodman, Ding & Soricut 2020, "TeaForN: Teacher-Forcing with N-grams" (arXiv:2010.03494); the post
https://kexue.fm/archives/7818. Step 1 is ordinary teacher forcing. Step k + 1 runs the same decoder
(shared weights) again, its input at every target position t replaced by step k's soft prediction of that
token: the expected embedding under step k's output distribution at position t - 1,

    e_t^(k+1) = softmax(logits_{t-1}^(k)) @ E        (E: the model's own token embedding table, V x H)

so step k + 1 reads the model's own guesses, each shifted one position further from the ground truth,
and gradients flow back through the soft inputs into earlier steps (the "differentiability across
timesteps" of the paper). Every step is scored against the same labels, and the N losses are combined as

    loss = sum_k gamma^(k-1) · L_k / sum_k gamma^(k-1)          (k = 1 .. N)

The paper weighs the N step losses by per-step constants; here they are gamma^(k-1): gamma = 1 (the
default) weighs the steps equally, gamma < 1 decays the later, less reliable steps. Normalising by the
weights' sum keeps the loss on the scale of plain teacher forcing, so a learning rate tuned for N = 1
still fits (AdamW is nearly blind to a constant factor anyway).

N = 1 is plain teacher forcing, exactly (the same operations as plmkit.recipes.seq2seq.seq2seq_loss). The
cost: one encoder pass (encoder-decoders encode once; the memory is reused) and N decoder passes, plus
the (B, T, V) softmax and the (B, T, V) @ (V, H) product of each extra step; UniLM runs N full passes.
The soft inputs enter through a forward hook on the token table (`model.embeddings.token`), so position
and segment embeddings, norms and dropout apply to them as they do to real tokens.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
import torch.nn.functional as F


@contextmanager
def replaced_token_embeddings(model: torch.nn.Module, embeds: torch.Tensor, where: torch.Tensor) -> Iterator[None]:
    """While inside, the token table's output is `embeds` (B, T, H) at the positions where `where` (B, T) is True."""
    table = model.embeddings.token

    def hook(module, inputs, output):
        if output.shape[:2] != where.shape:
            raise ValueError(f"TeaForN: the token table was called on {tuple(output.shape[:2])} ids while the soft "
                             f"inputs are for {tuple(where.shape)}")
        return torch.where(where[..., None], embeds.to(output.dtype), output)

    handle = table.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def soft_inputs(logits: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Expected embeddings of the next step's inputs: position t gets softmax(logits[t - 1]) @ table; position 0
    (never a prediction) gets zeros. logits (B, T, V), table (V, H) -> (B, T, H)."""
    if logits.shape[-1] != table.shape[0]:
        raise ValueError(f"TeaForN: the head gives {logits.shape[-1]} logits per position but the token table has "
                         f"{table.shape[0]} rows; the expected embedding needs one row per output token")
    expected = logits.float().softmax(-1) @ table.float()  # (B, T, H)
    return F.pad(expected[:, :-1], (0, 0, 1, 0))  # shifted one position right


def teaforn_loss(model, batch, n: int, gamma: float = 1.0, *, return_steps: bool = False):
    """TeaForN's weighted loss (summed over target tokens, as seq2seq_loss) and the count of target tokens.

    `batch` is a plmkit.recipes.seq2seq.Pairs batch of either mode. With `return_steps`, also the list of
    (inputs replaced or None, logits) of each step, for inspection."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"teaforn: expected an integer N >= 1, found {n!r}")
    if not gamma > 0:
        raise ValueError(f"teaforn_gamma: expected > 0, found {gamma!r}")
    if "decoder_input_ids" in batch:
        memory = model.encode(batch["input_ids"], batch["attention_mask"])  # (B, S, H), once for every step
        labels = batch["labels"]
        where = batch["decoder_attention_mask"].bool().clone()
        where[:, 0] = False  # the start token is given, not predicted

        def run() -> torch.Tensor:
            return model.decode(batch["decoder_input_ids"], memory, batch["attention_mask"],
                                batch["decoder_attention_mask"]).logits  # (B, T, V)

        def loss_of(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        count = (labels != -100).sum()
    else:  # UniLM: the target (segment 1) positions read predictions; the source stays as it is
        segments, mask = batch["token_type_ids"], batch["attention_mask"]
        where = (segments * mask).bool()
        counted = where[:, 1:]
        target = batch["input_ids"][:, 1:]

        def run() -> torch.Tensor:
            return model(batch["input_ids"], token_type_ids=segments, attention_mask=mask).logits

        def loss_of(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits[:, :-1][counted].float(), target[counted], reduction="sum")
        count = counted.sum()

    table = model.embeddings.token.weight  # (V, H)
    total, weights, steps = None, 0.0, []
    embeds = None
    for k in range(n):
        with nullcontext() if embeds is None else replaced_token_embeddings(model, embeds, where):
            logits = run()
        weight = gamma ** k
        loss = weight * loss_of(logits)
        total = loss if total is None else total + loss
        weights += weight
        if return_steps:
            steps.append((embeds, logits))
        if k + 1 < n:
            embeds = soft_inputs(logits, table)
    total = total / weights
    return (total, count, steps) if return_steps else (total, count)


__all__ = ["teaforn_loss", "soft_inputs", "replaced_token_embeddings"]
