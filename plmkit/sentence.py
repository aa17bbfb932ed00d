"""Sentence vectors from an encoder: pooling, optional whitening, normalisation; batched and length-sorted."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .similarity.whitening import Whitening

# pooler_linear: the pooler's dense layer without its tanh (bert4keras' with_pool="linear", as SimBERT
# and RoFormer-Sim were trained)
POOLINGS = ("cls", "pooler", "pooler_linear", "mean", "first_last_mean")
# inputs at least this long show a progress bar unless progress=False
PROGRESS_MIN_TEXTS = 5000


def pool(output, attention_mask: torch.Tensor, pooling: str, model: nn.Module | None = None) -> torch.Tensor:
    """(B, H) sentence vectors from a ModelOutput under one pooling rule (`model` is needed for pooler_linear)."""
    if pooling == "cls":
        return output.last_hidden_state[:, 0]
    if pooling == "pooler":
        if output.pooled_output is None:
            raise ValueError("pooling='pooler' needs a model loaded with with_pool=True")
        return output.pooled_output
    if pooling == "pooler_linear":
        pooler = getattr(model, "pooler", None)
        if pooler is None:
            raise ValueError("pooling='pooler_linear' needs the model (pass model=) loaded with with_pool=True")
        return pooler.dense(output.last_hidden_state[:, 0])
    m = attention_mask.to(output.last_hidden_state.dtype)[..., None]  # (B, T, 1)
    if pooling == "mean":
        h = output.last_hidden_state
    elif pooling == "first_last_mean":  # kexue.fm/archives/8069: mean of first and last layer outputs
        if output.hidden_states is None:
            raise ValueError("pooling='first_last_mean' needs output_hidden_states=True")
        h = (output.hidden_states[1] + output.hidden_states[-1]) / 2
    else:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def encode_sentences(model: nn.Module, tokenizer, texts: Sequence[str], *, pooling: str = "mean",
                     normalize: bool = True, batch_size: int = 32, max_length: int | None = None,
                     whitening: "Whitening | str | None" = None, progress: bool | None = None) -> torch.Tensor:
    """(N, H) vectors for `texts` (N, k with whitening), computed in length-sorted batches, in input order.

    `whitening` (a Whitening or the path of a saved one) is applied after pooling and before
    normalisation. `progress` shows a bar on stderr; None shows it for inputs of at least
    PROGRESS_MIN_TEXTS texts.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
    if isinstance(whitening, (str, bytes)) or hasattr(whitening, "__fspath__"):
        from .similarity.whitening import Whitening

        whitening = Whitening.load(whitening)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    out: list[torch.Tensor] = [None] * len(texts)  # type: ignore[list-item]
    device = _device_of(model)
    show = len(texts) >= PROGRESS_MIN_TEXTS if progress is None else progress
    bar = None
    if show:
        from .training.logs import ProgressBar

        bar = ProgressBar(total=-(-len(texts) // batch_size), desc="encode", stream=sys.stderr)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in tokenizer([texts[i] for i in idx], max_length=max_length).items()}
            output = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                           attention_mask=batch["attention_mask"], output_hidden_states=pooling == "first_last_mean")
            vectors = pool(output, batch["attention_mask"], pooling, model).float()
            if whitening is not None:
                vectors = whitening(vectors)
            if normalize:
                vectors = F.normalize(vectors, dim=-1)
            for i, v in zip(idx, vectors.cpu()):
                out[i] = v
            if bar is not None:
                bar.update(1, samples=len(idx))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    if not out:
        return torch.zeros(0, whitening.dim if whitening is not None else model.config.hidden_size)
    return torch.stack(out)
