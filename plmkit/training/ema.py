"""Exponential moving average of model weights, with apply / restore for evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """shadow = decay * shadow + (1 - decay) * weight, after every optimizer step.

    ``apply()`` swaps the averaged weights into the model (keeping the trained ones
    aside) and ``restore()`` swaps them back, so evaluation can use the average while
    training continues from the raw weights. Only floating trainable parameters are
    tracked; the shadow lives in float32 next to each parameter.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        """Start the average at the model's current weights."""
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay: expected a value in [0, 1), found {decay}")
        self.model = model
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in self._tracked()
        }
        self._backup: dict[str, torch.Tensor] | None = None

    def _tracked(self) -> list[tuple[str, nn.Parameter]]:
        return [
            (n, p) for n, p in self.model.named_parameters() if p.requires_grad and p.is_floating_point()
        ]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step toward the current weights."""
        if self._backup is not None:
            raise RuntimeError("EMA.update() while the averaged weights are applied; call restore() first")
        for name, p in self._tracked():
            shadow = self.shadow[name]
            if shadow.device != p.device:  # the model moved after the EMA was built
                shadow = self.shadow[name] = shadow.to(p.device)
            # lerp: shadow + (1 - decay) * (p - shadow) == decay * shadow + (1 - decay) * p
            shadow.lerp_(p.detach().float(), 1.0 - self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def apply(self) -> None:
        """Copy the averaged weights into the model, keeping the trained ones to restore."""
        if self._backup is not None:
            raise RuntimeError("EMA.apply() called twice without restore()")
        self._backup = {}
        for name, p in self._tracked():
            self._backup[name] = p.detach().clone()
            p.copy_(self.shadow[name].to(p.device))

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights that ``apply()`` set aside."""
        if self._backup is None:
            raise RuntimeError("EMA.restore() without a previous apply()")
        for name, p in self._tracked():
            p.copy_(self._backup[name])
        self._backup = None

    def state_dict(self) -> dict[str, Any]:
        """Decay, update count and the averaged weights."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; tensor names must match the model's."""
        shadow = state_dict["shadow"]
        if set(shadow) != set(self.shadow):
            missing = sorted(set(self.shadow) - set(shadow))
            unexpected = sorted(set(shadow) - set(self.shadow))
            raise KeyError(f"EMA.load_state_dict: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for name, value in shadow.items():
            if value.shape != self.shadow[name].shape:
                raise ValueError(
                    f"EMA.load_state_dict: {name} has shape {tuple(value.shape)}, "
                    f"expected {tuple(self.shadow[name].shape)}"
                )
            self.shadow[name].copy_(value)
        self.decay = float(state_dict["decay"])
        self.num_updates = int(state_dict["num_updates"])
