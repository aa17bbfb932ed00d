"""FGM: adversarial perturbation of the embedding weights along their gradient.

Reference: Miyato et al., "Adversarial Training Methods for Semi-Supervised Text
Classification", https://arxiv.org/abs/1605.07725 (see also kexue.fm/archives/7234).

    loss.backward()        # gradient g of the clean loss
    fgm.attack(epsilon)    # E ← E + epsilon * g / ||g||
    loss_fn(...).backward()  # adds the adversarial gradient
    fgm.restore()          # E ← E as it was
    optimizer.step()
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FGM"]


class FGM:
    """Fast Gradient Method on every parameter whose name contains ``param_name_substring``."""

    def __init__(self, model: nn.Module, param_name_substring: str = "embeddings.token") -> None:
        """Select the perturbed parameters by name; at least one must match."""
        self.model = model
        self.param_name_substring = param_name_substring
        self.params = {
            n: p for n, p in model.named_parameters() if p.requires_grad and param_name_substring in n
        }
        if not self.params:
            names = [n for n, _ in model.named_parameters()][:8]
            raise ValueError(
                f"FGM: no trainable parameter name contains {param_name_substring!r}; "
                f"first names are {names}"
            )
        self._backup: dict[str, torch.Tensor] = {}
        self._grad_before: dict[str, torch.Tensor | None] = {}

    def mark(self) -> None:
        """Remember the current gradients, so ``attack`` uses only those accumulated since.

        With gradient accumulation the ``.grad`` of the embeddings also holds earlier
        micro-batches; call ``mark()`` before the clean backward to perturb along the
        gradient of this micro-batch alone.
        """
        self._grad_before = {
            n: None if p.grad is None else p.grad.detach().clone() for n, p in self.params.items()
        }

    @torch.no_grad()
    def attack(self, epsilon: float = 1.0) -> None:
        """Add ``epsilon * g / ||g||`` to each selected parameter (g: its gradient)."""
        if self._backup:
            raise RuntimeError("FGM.attack() called twice without restore()")
        for name, p in self.params.items():
            if p.grad is None:
                continue
            grad = p.grad
            before = self._grad_before.get(name)
            if before is not None:
                grad = grad - before
            grad = grad.to(torch.promote_types(grad.dtype, torch.float32))  # no bf16 norms
            norm = torch.linalg.vector_norm(grad)
            self._backup[name] = p.detach().clone()
            if norm != 0 and torch.isfinite(norm):
                p.add_((epsilon * grad / norm).to(p.dtype))
        self._grad_before = {}

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights saved by ``attack``."""
        for name, p in self.params.items():
            if name in self._backup:
                p.copy_(self._backup[name])
        self._backup = {}
