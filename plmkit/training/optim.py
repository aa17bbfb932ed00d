"""Optimizers: AdamW parameter groups, layer-wise learning-rate decay, Lookahead."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.optim import Optimizer

from ..modules.blocks import ScheduledBlocks

__all__ = ["build_optimizer", "default_layer_of", "model_layer_of", "Lookahead"]

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_EMBEDDINGS = re.compile(r"(?:^|\.)embeddings\.")


def default_layer_of(name: str) -> int | None:
    """Depth of a parameter from its name: embeddings → 0, ``blocks.{i}.`` → i + 1, else None (top)."""
    match = _BLOCK.search(name)
    if match:
        return int(match.group(1)) + 1
    if _EMBEDDINGS.search(name):
        return 0
    return None


def model_layer_of(model: nn.Module) -> Callable[[str], int | tuple[int, ...] | None]:
    """``default_layer_of`` that also knows the model's shared blocks: a parameter of a block applied at
    several depths (ALBERT's ``SharedBlocks`` / ``ScheduledBlocks``: layer groups) sits at each of them."""
    shared = {f"{name}.{child}.": depths for name, m in model.named_modules() if isinstance(m, ScheduledBlocks)
              for child, depths in m.depths().items()}

    def layer_of(name: str) -> int | tuple[int, ...] | None:
        for prefix, depths in shared.items():
            if name.startswith(prefix):
                return depths
        return default_layer_of(name)
    return layer_of


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.01,
    layerwise_decay: float | None = None,
    layer_of: Callable[[str], int | Sequence[int] | None] | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    **adamw_options: Any,
) -> torch.optim.AdamW:
    """AdamW with weight decay only on tensors of 2+ dimensions, and optional layer-wise lr decay.

    With ``layerwise_decay=d`` a parameter at depth ``l`` (from ``layer_of(name)``; None
    means above the last block) learns at ``lr * d ** (top - l)``, where ``top`` is one
    more than the deepest layer found: heads keep ``lr``, the last block gets ``lr * d``,
    the embeddings the smallest rate. A parameter used at several depths (``layer_of``
    returns a sequence: by default, a ``ScheduledBlocks`` block applied at depths 1..L, see
    ``model_layer_of``) learns at the mean of their rates, the single rate closest to
    giving each application its own. Each group records its ``layer`` (an int, or a tuple
    of depths) and ``lr_scale``.
    """
    if lr <= 0:
        raise ValueError(f"lr: expected > 0, found {lr}")
    if layerwise_decay is not None and not 0.0 < layerwise_decay <= 1.0:
        raise ValueError(f"layerwise_decay: expected a value in (0, 1], found {layerwise_decay}")
    layer_of = layer_of or model_layer_of(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"build_optimizer: {type(model).__name__} has no trainable parameters")
    layers: dict[str, tuple[int, ...] | None] = {}
    for n, _ in named:
        layer = layer_of(n)
        depths = None if layer is None else (layer,) if isinstance(layer, int) else tuple(layer)
        if depths is not None and (not depths or not all(isinstance(d, int) for d in depths)):
            raise ValueError(f"layer_of({n!r}) = {layer!r}: expected a depth, a non-empty sequence of depths, or None")
        layers[n] = depths
    known = [d for depths in layers.values() if depths is not None for d in depths]
    top = max(known) + 1 if known else 0

    groups: dict[tuple[tuple[int, ...], bool], dict[str, Any]] = {}
    for name, param in named:
        depths = (top,) if layers[name] is None else layers[name]
        if max(depths) > top or min(depths) < 0:
            shown = depths[0] if len(depths) == 1 else depths
            raise ValueError(f"layer_of({name!r}) = {shown}: expected a depth in [0, {top}]")
        decay = param.dim() >= 2
        key = (depths if layerwise_decay is not None else (0,), decay)
        if key not in groups:
            scale = (sum(layerwise_decay ** (top - d) for d in depths) / len(depths)
                     if layerwise_decay is not None else 1.0)
            groups[key] = {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr": lr * scale,
                "lr_scale": scale,
                "layer": (depths[0] if len(depths) == 1 else depths) if layerwise_decay is not None else None,
            }
        groups[key]["params"].append(param)
    ordered = [groups[k] for k in sorted(groups)]
    if "fused" not in adamw_options and "foreach" not in adamw_options:
        adamw_options["fused"] = _fused_ok([p for _, p in named])
    return torch.optim.AdamW(ordered, lr=lr, betas=betas, eps=eps, **adamw_options)


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """torch's fused AdamW (one kernel over all tensors; the default on CPU is a per-tensor Python loop)
    where every parameter is a floating tensor on one CPU or CUDA device."""
    devices = {p.device for p in params}
    return len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda") and all(
        p.is_floating_point() for p in params)


class Lookahead(Optimizer):
    """Lookahead around any optimizer: every ``k`` steps, slow += alpha * (fast - slow); fast = slow.

    Reference: Zhang et al., "Lookahead Optimizer: k steps forward, 1 step back",
    https://arxiv.org/abs/1907.08610. The wrapper shares the inner optimizer's parameter
    groups, so learning-rate schedulers and ``zero_grad`` act on the inner optimizer.
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        """Wrap ``optimizer``; slow weights start from the parameters at the first step."""
        if k < 1:
            raise ValueError(f"Lookahead k: expected >= 1, found {k}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead alpha: expected a value in (0, 1], found {alpha}")
        self.optimizer = optimizer
        self.k = k
        self.alpha = alpha
        self.fast_steps = 0
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups

    def _params(self) -> Iterable[torch.Tensor]:
        for group in self.optimizer.param_groups:
            yield from group["params"]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """One inner step; every k-th also pulls the slow weights toward the fast ones."""
        for p in self._params():
            if "slow" not in self.state[p]:
                self.state[p]["slow"] = p.detach().clone()
        loss = self.optimizer.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            for p in self._params():
                slow = self.state[p]["slow"]
                slow.add_(p - slow, alpha=self.alpha)
                p.copy_(slow)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Delegates to the inner optimizer."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """Inner state plus slow weights (in parameter order) and the step counter."""
        slow = [self.state[p].get("slow") for p in self._params()]
        return {
            "inner": self.optimizer.state_dict(),
            "k": self.k,
            "alpha": self.alpha,
            "fast_steps": self.fast_steps,
            "slow": slow,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        missing = {"inner", "fast_steps", "slow"} - set(state_dict)
        if missing:
            raise KeyError(f"Lookahead.load_state_dict: missing {sorted(missing)}")
        self.optimizer.load_state_dict(state_dict["inner"])
        # load_state_dict replaced the inner groups; share the new ones again.
        self.param_groups = self.optimizer.param_groups
        params = list(self._params())
        if len(params) != len(state_dict["slow"]):
            raise ValueError(
                f"Lookahead.load_state_dict: {len(state_dict['slow'])} slow tensors "
                f"for {len(params)} parameters"
            )
        self.fast_steps = int(state_dict["fast_steps"])
        self.state.clear()
        for p, slow in zip(params, state_dict["slow"]):
            if slow is not None:
                self.state[p]["slow"] = slow.detach().to(device=p.device, dtype=p.dtype).clone()

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, {self.optimizer!r})"
