"""In-batch contrastive losses, and exact gradient accumulation for any loss of a whole batch's embeddings.

A contrastive loss couples every example with every other one in the batch, so summing
per-chunk losses (ordinary gradient accumulation) optimises a different, easier objective.
kexue.fm/archives/8471 computes the large batch's gradient exactly in two passes:

    pass 1 (no graph):  z_j = f(chunk_j) for every chunk;  z = concat(z_j)
                        g = dL/dz at z                      # the "surrogate target" h~ of the post
    pass 2 (per chunk): z_j = f(chunk_j) again, backward of <z_j, g_j>   # = the chain rule, one chunk at a time

Memory holds one chunk's graph plus the (N, D) embeddings. The post notes that dropout breaks
it, because pass 2 would draw new masks; here the random state (CPU, and every CUDA device
once CUDA is in use) is recorded before each chunk in pass 1 and restored before the same chunk
in pass 2, so the masks match and SimCSE-style training accumulates exactly too.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

EmbedOutput = Tensor | tuple[Tensor, Tensor]


def _rng_state() -> tuple[Tensor, list[Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, list[Tensor] | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _split(out: EmbedOutput, where: str) -> tuple[Tensor, Tensor | None]:
    if isinstance(out, Tensor):
        return out, None
    if isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out):
        if out[1].dim() != 0:
            raise ValueError(f"{where}: the second value embed() returns must be a scalar loss term, "
                             f"found shape {tuple(out[1].shape)}")
        return out
    raise TypeError(f"{where}: embed() must return a tensor of embeddings or (embeddings, scalar loss term), "
                    f"found {type(out).__name__}")


def accumulated_backward(embed: Callable[[Any], EmbedOutput], chunks: Sequence[Any],
                         loss_fn: Callable[[Tensor], Tensor], *, replay_rng: bool = True) -> Tensor:
    """Back-propagate loss_fn(concat of embed(chunk) over chunks) one chunk at a time; returns the loss value.

    `embed(chunk)` returns (n_j, ...) embeddings, or (embeddings, term) where `term` is a scalar
    loss that is additive over chunks (e.g. a language-model loss already divided by the whole
    batch's token count): its gradient is added in pass 2 and its value to the returned loss.
    Gradients accumulate into `.grad` as `loss.backward()` on the whole batch would. Every chunk
    is forwarded twice, so modules that keep running statistics (BatchNorm) update them twice.
    """
    if len(chunks) == 0:
        raise ValueError("accumulated_backward needs at least one chunk")
    states, parts, terms = [], [], []
    with torch.no_grad():
        for j, chunk in enumerate(chunks):
            states.append(_rng_state())
            z, term = _split(embed(chunk), f"chunk {j}")
            parts.append(z)
            terms.append(term)
    after = _rng_state()
    z = torch.cat(parts).detach().requires_grad_(True)  # (N, ...)
    with torch.enable_grad():
        loss = loss_fn(z)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, found shape {tuple(loss.shape)}")
        (grad,) = torch.autograd.grad(loss, z)
    grads = grad.split([p.shape[0] for p in parts])
    for j, (chunk, state, g) in enumerate(zip(chunks, states, grads)):
        if replay_rng:
            _set_rng_state(state)
        z_j, term = _split(embed(chunk), f"chunk {j}")
        if z_j.shape != g.shape:
            raise RuntimeError(f"chunk {j}: embed() gave shape {tuple(z_j.shape)} in the second pass but "
                               f"{tuple(g.shape)} in the first: it must be deterministic given the random state")
        surrogate = (z_j * g.to(z_j.dtype)).sum()  # d/dθ <z_j(θ), g_j> = g_j · dz_j/dθ
        (surrogate + term if term is not None else surrogate).backward()
    if replay_rng:
        _set_rng_state(after)  # leave the generators where one pass would have left them
    total = loss.detach()
    for term in terms:
        if term is not None:
            total = total + term.detach().to(total.dtype)
    return total


def _at_least_fp32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def paired_similarity_labels(n: int, device: torch.device | None = None) -> Tensor:
    """(n,) the partner of each row when rows come in adjacent pairs: i ^ 1 (0↔1, 2↔3, ...)."""
    if n % 2:
        raise ValueError(f"paired rows need an even batch, found {n} rows")
    return torch.arange(n, device=device) ^ 1


def paired_contrastive_loss(vectors: Tensor, scale: float = 20.0, reduction: str = "mean") -> Tensor:
    """SimBERT / RoFormer-Sim in-batch loss: cosine matrix x scale, diagonal masked, row i's target is i ^ 1."""
    z = F.normalize(_at_least_fp32(vectors), dim=-1)
    sims = z @ z.T * scale  # (N, N)
    sims = sims.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    return F.cross_entropy(sims, paired_similarity_labels(len(z), z.device), reduction=reduction)


def simcse_loss(vectors: Tensor, temperature: float = 0.05) -> Tensor:
    """Unsupervised SimCSE (arXiv:2104.08821) with the two dropout views in adjacent rows: the same loss, scale 1/τ."""
    return paired_contrastive_loss(vectors, scale=1.0 / temperature)
