"""int8 dynamic quantisation of a model's linear layers, for CPU inference.

    Linear (fp32 weight) ─► Int8Linear: weight int8, one scale per output row (symmetric);
    each call quantises its input per tensor (dynamic), multiplies in int8 (fbgemm / x86) and
    returns fp32 with the fp32 bias added.

What it changes: the weights of the Transformer blocks, the pooler and task heads (every
`torch.nn.Linear`, plmkit's own included); token embeddings and tied output heads stay fp32.
On CPUs without VNNI instructions the activations use 7 bits (`reduce_range`) so fbgemm's
16-bit intermediate sums cannot saturate; with VNNI all 8. The model is for inference: it
cannot be trained or saved (save the float model and quantise again after loading).
Accuracy and speed against fp32 are in benchmarks/README.md.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .modules.linear import activation

__all__ = ["Int8Linear", "quantize_dynamic"]


def _vnni() -> bool:
    from .hardware import detect
    return bool(detect().flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


class Int8Linear(nn.Module):
    """A Linear whose weight is int8 (per output row) and whose input is quantised on each call."""

    def __init__(self, linear: nn.Linear, reduce_range: bool | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float().cpu()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()  # (out,) symmetric per row
        zero = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # torch 2.10+ marks quantized tensors deprecated; fbgemm's packing
            warnings.simplefilter("ignore", UserWarning)  # still takes one (torchao's CPU int8 needs compile)
            qweight = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
        bias = linear.bias.detach().float().cpu() if linear.bias is not None else None
        self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self.reduce_range = (not _vnni()) if reduce_range is None else reduce_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.quantized.linear_dynamic(x.float().reshape(-1, shape[-1]), self._packed, self.reduce_range)
        return y.reshape(*shape[:-1], self.out_features)

    def forward_act(self, x: torch.Tensor, act: str) -> torch.Tensor:
        """act(self(x)) (the fp32 path fuses the two; here the activation runs after the int8 product)."""
        return activation(act)(self(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, " \
               f"reduce_range={self.reduce_range}"


def quantize_dynamic(model: nn.Module, *, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace every nn.Linear of `model` (in place, CPU) by Int8Linear, except modules whose
    qualified name starts with one of `skip`; returns the model in eval mode."""
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    elif "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not any(name.startswith(s) for s in skip)]
    if not targets:
        raise ValueError(f"quantize_dynamic: {type(model).__name__} has no nn.Linear layer to quantise")
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear(linear))
    model.quantized = "int8-dynamic"
    return model.eval()
