"""A drop-in nn.Linear whose CPU fp32 inference runs through oneDNN.

On AMD CPUs torch's default fp32 GEMM (MKL) reaches about 40% of what oneDNN does on the
same shapes, so inference routes large fp32 matmuls to oneDNN's linear kernel, fused with
the activation when there is one. Training (autograd on) always takes F.linear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ONEDNN = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
# below this many multiply-adds (rows x weight elements) the dispatch overhead outweighs the faster
# kernel; a decoding step (8 rows against a large weight) is above it and reads weights 2x faster
_MIN_WORK = 2**21
# activations oneDNN can fuse into the GEMM epilogue: name -> (attr, algorithm)
_FUSABLE = {"gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "relu": ("relu", "")}
_enabled = True


def set_fast_cpu_linear(enabled: bool) -> None:
    """Turn the oneDNN inference path on or off (it is on by default)."""
    global _enabled
    _enabled = enabled


def _onednn_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        _enabled
        and _ONEDNN is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and (x.numel() // x.shape[-1]) * weight.numel() >= _MIN_WORK
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, through oneDNN for CPU fp32 inference (tied LM heads call this with the embedding table)."""
    if _onednn_ok(x, weight):
        return _ONEDNN(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear with the same parameters and results; faster CPU fp32 inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

    def forward_act(self, x: torch.Tensor, act: str) -> torch.Tensor:
        """act(self(x)), fused into one kernel where oneDNN can."""
        if act in _FUSABLE and _onednn_ok(x, self.weight):
            attr, algorithm = _FUSABLE[act]
            return _ONEDNN(x, self.weight, self.bias, attr, [], algorithm)
        return activation(act)(F.linear(x, self.weight, self.bias))


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": _gelu_tanh,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}
# names that mean the tanh approximation, normalised so the fused path sees one spelling
_CANONICAL = {"gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"}


def canonical_activation(name: str) -> str:
    """The one spelling we use for an activation name."""
    return _CANONICAL.get(name, name)


def activation(name: str):
    """The activation function called `name`."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(_ACTIVATIONS)}") from None
