"""int8 dynamic quantisation of a model's linear layers, for CPU inference.

    Linear (fp32 weight) ─► Int8Linear: weight int8, one scale per output row (symmetric);
    each call quantises its input per tensor (dynamic), multiplies in int8 (fbgemm / x86) and
    returns fp32 with the fp32 bias added.

What it changes: the weights of the Transformer blocks, the pooler and task heads (every
`torch.nn.Linear`, plmkit's own included) and the output (LM) heads, tied ones included (an
int8 copy of the token table serves the logits; the table itself stays fp32 for the inputs).
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


class Int8Head(nn.Module):
    """An output head whose projection is int8: [dense ─► dropout ─►] (x scale) ─► `project`.

    Used for heads tied to the token table (GPT / GPT-2 / RoFormer-v2, T5.1.0), where the
    weight is the embedding's and no nn.Linear exists to swap, and for scaled heads (T5)."""

    def __init__(self, project: Int8Linear, *, scale: float = 1.0, dense: nn.Module | None = None,
                 dropout: nn.Module | None = None) -> None:
        super().__init__()
        self.project, self.scale, self.dense, self.dropout = project, scale, dense, dropout

    def forward(self, hidden: torch.Tensor, embedding: nn.Module | None = None) -> torch.Tensor:
        if self.dense is not None:
            hidden = self.dense(hidden)
        if self.dropout is not None:
            hidden = self.dropout(hidden)
        return self.project(hidden if self.scale == 1.0 else hidden * self.scale)  # (B, T, V)


def _weight_linear(weight: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    lin.weight = nn.Parameter(weight.detach(), requires_grad=False)
    return lin


def _head_converters() -> dict[type, object]:
    """Module types with their own forward around a projection: type -> module -> int8 replacement."""
    from .modules import encoder_decoder, heads
    from .modules.linear import Linear

    return {
        nn.Linear: lambda m: Int8Linear(m),
        Linear: lambda m: Int8Linear(m),
        heads.TiedLMHead: lambda m: Int8Head(Int8Linear(_weight_linear(m.embedding[0].weight)),
                                             dense=Int8Linear(m.dense) if m.dense is not None else None,
                                             dropout=m.dropout),
        encoder_decoder.TokenTableHead: lambda m: _TiedByCall(m.scale),
        encoder_decoder.LMHead: lambda m: Int8Head(Int8Linear(m), scale=m.scale),
    }


class _TiedByCall(nn.Module):
    """T5.1.0's tied head receives the token table on each call: quantised on the first call, then kept."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale, self.head = scale, None

    def forward(self, hidden: torch.Tensor, embedding: nn.Embedding) -> torch.Tensor:
        if self.head is None:
            self.head = Int8Head(Int8Linear(_weight_linear(embedding.weight)), scale=self.scale)
        return self.head(hidden)


def quantize_dynamic(model: nn.Module, *, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace the linear layers and output heads of `model` (in place, CPU) by int8 ones, except
    modules whose qualified name starts with one of `skip`; returns the model in eval mode.

    Replaced: torch.nn.Linear and plmkit's Linear (exact types), and the output heads plmkit
    builds (tied to the token table or scaled), whose logits projection is the largest product
    of a decoding step. Other subclasses of nn.Linear (a custom forward) are left in fp32."""
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    elif "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    converters = _head_converters()
    targets = []
    for name, m in model.named_modules():
        if name and type(m) in converters and not any(name == s or name.startswith(s + ".") for s in skip):
            if not any(name.startswith(t + ".") for t, _ in targets):  # inside a replaced head: done with it
                targets.append((name, m))
    if not targets:
        raise ValueError(f"quantize_dynamic: {type(model).__name__} has no nn.Linear layer to quantise")
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, converters[type(module)](module))
    model.quantized = "int8-dynamic"
    return model.eval()
