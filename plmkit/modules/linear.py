"""A drop-in nn.Linear whose CPU fp32 inference runs through oneDNN where that is faster.

Which fp32 GEMM is faster depends on the CPU and the shape: on AMD Zen 5 torch's default (MKL)
reaches about 40% of oneDNN's rate on every shape; on Zen 4, and on AVX2-only machines, the
two run large products at the same rate while oneDNN reads a weight up to 2.5x faster for a
few rows (a decoding step). So each shape class, (rows rounded to a power of two, weight
shape, fused activation), is raced once per process on its first use: both kernels run the
real input, the faster one is kept for that class (plmkit.hardware turns the race on for CPUs
whose oneDNN has x86 kernels; `set_fast_cpu_linear` overrides it). Both kernels compute the
same product (differences ~1e-6). Training (autograd on) always takes F.linear.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ..theory.smooth_activations import gaussian_relu

_ONEDNN = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
# below this many multiply-adds (rows x weight elements) neither kernel's lead pays for the dispatch
_MIN_WORK = 2**21
# activations oneDNN can fuse into the GEMM epilogue: name -> (attr, algorithm)
_FUSABLE = {"gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "relu": ("relu", "")}
_enabled: bool | None = None  # None: ask plmkit.hardware on first use
_winners: dict[tuple, bool] = {}  # shape class -> oneDNN won the race


def set_fast_cpu_linear(enabled: bool | None) -> None:
    """True: race oneDNN against F.linear per shape class (the default where plmkit.hardware allows it);
    False: always F.linear; None: back to plmkit.hardware's choice. Forgets earlier races."""
    global _enabled
    _enabled = enabled
    _winners.clear()


def fast_cpu_linear_enabled() -> bool:
    """Whether CPU fp32 inference may take the oneDNN path in this process."""
    global _enabled
    if _enabled is None:
        from .. import hardware
        _enabled = _ONEDNN is not None and hardware.choose(hardware.detect(), "cpu").fast_linear
    return _enabled


def race_results() -> dict[tuple, bool]:
    """The shape classes raced so far: (rows bucket, out, in, activation) -> oneDNN was faster."""
    return dict(_winners)


def _best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _onednn_wins(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: str) -> bool:
    rows = x.numel() // x.shape[-1]
    key = (rows.bit_length(), *weight.shape, act)
    won = _winners.get(key)
    if won is None:
        attr, algorithm = _FUSABLE.get(act, ("none", ""))

        def fast() -> torch.Tensor:
            return _ONEDNN(x, weight, bias, attr, [], algorithm)

        def plain() -> torch.Tensor:
            y = F.linear(x, weight, bias)
            return y if act == "none" else activation(act)(y)

        with torch.no_grad():
            fast(), plain()  # first calls pay oneDNN's primitive creation and cache warm-up
            won = _winners[key] = _best_of(fast) < _best_of(plain)
    return won


def _onednn_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        _ONEDNN is not None
        and (_enabled if _enabled is not None else fast_cpu_linear_enabled())
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")  # F.linear autocasts to bf16; the oneDNN op would stay fp32
        and (x.numel() // x.shape[-1]) * weight.numel() >= _MIN_WORK
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, through oneDNN for CPU fp32 inference where that is faster (tied LM heads call this
    with the embedding table)."""
    if _onednn_ok(x, weight) and _onednn_wins(x, weight, bias, "none"):
        return _ONEDNN(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear with the same parameters and results; faster CPU fp32 inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

    def forward_act(self, x: torch.Tensor, act: str) -> torch.Tensor:
        """act(self(x)), fused into one kernel where oneDNN can and that is faster."""
        if act in _FUSABLE and _onednn_ok(x, self.weight) and _onednn_wins(x, self.weight, self.bias, act):
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
    # relu convolved with the logistic / standard normal density (plmkit.theory.smooth_activations)
    "softplus": F.softplus,
    "gaussian_relu": gaussian_relu,
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
