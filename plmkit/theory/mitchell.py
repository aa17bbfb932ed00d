"""Mitchell's approximate multiplication: add the float32 bit patterns as integers.

kexue.fm post 乘法变为加法，误差不超过1/9; J. N. Mitchell, "Computer multiplication and division using
binary logarithms", IRE Trans. Electronic Computers, 1962; the same trick drives L-Mul (Luo & Sun
2024, "Addition is All You Need for Energy-efficient Language Models", arXiv:2410.00907).

A positive float32 x = 2^e (1 + m), m in [0, 1), has the bit pattern I(x) = 2^23 (e + 127 + m): a
scaled, shifted piecewise-linear log2 (log2(1 + m) ~ m). So

    I(a) + I(b) - I(1)  is the pattern of  2^(ea+eb) (1 + ma + mb)          if ma + mb < 1
                                           2^(ea+eb+1) (ma + mb)            otherwise (carry into the exponent)

against the exact 2^(ea+eb) (1 + ma)(1 + mb). The result is never too large; the ratio is smallest,
8/9, at ma = mb = 1/2 (1.5 x 1.5 -> 2, not 2.25), so the relative error is at most 1/9, and it is
exact when either mantissa is 0 (powers of two). Example: 12.3 x 4.56 = 56.088, approximately 53.68.

Signs are handled apart (the sign bits XOR), zeros give zero, an exponent underflow gives 0 and an
overflow inf. A Mitchell linear layer multiplies every (input, weight) pair this way and sums the
products with ordinary float additions; its backward pass is the exact linear layer's (a straight-
through estimator), so a model can be trained with approximate forward passes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ONE = 0x3F800000  # the float32 bit pattern of 1.0: 127 << 23
_INF = 0x7F800000  # the float32 bit pattern of +inf
_MAGNITUDE = 0x7FFFFFFF  # every bit but the sign


def mitchell_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a * b approximately (relative error <= 1/9, never too large in magnitude), elementwise with broadcasting, float32."""
    a, b = torch.broadcast_tensors(a.float(), b.float())
    ia = (a.contiguous().view(torch.int32) & _MAGNITUDE).long()  # |a| as bits, in int64 so the sum cannot overflow
    ib = (b.contiguous().view(torch.int32) & _MAGNITUDE).long()
    bits = (ia + ib - _ONE).clamp(0, _INF)  # below 0: exponent underflow -> +0.0; above: overflow -> inf
    magnitude = bits.to(torch.int32).view(torch.float32)
    magnitude = torch.where((ia == 0) | (ib == 0), torch.zeros_like(magnitude), magnitude)
    negative = torch.signbit(a) ^ torch.signbit(b)
    return torch.where(negative, -magnitude, magnitude)


def mitchell_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    chunk_elements: int = 1 << 24) -> torch.Tensor:
    """x @ weight.T + bias with every product Mitchell-approximated; x (..., I), weight (O, I) -> (..., O)."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"input has {x.shape[-1]} features, the weight expects {weight.shape[1]} (weight {tuple(weight.shape)})")
    rows = x.reshape(-1, x.shape[-1]).float()  # (N, I)
    w = weight.float()
    # the (rows, O, I) products are materialised: chunk the rows to bound memory
    step = max(1, chunk_elements // max(1, w.numel()))
    out = torch.cat([mitchell_multiply(rows[i:i + step, None, :], w[None]).sum(-1)  # (n, O, I) -> (n, O)
                     for i in range(0, rows.shape[0], step)]) if rows.shape[0] else rows.new_zeros(0, w.shape[0])
    if bias is not None:
        out = out + bias.float()
    return out.reshape(*x.shape[:-1], w.shape[0])


class _MitchellLinearFunction(torch.autograd.Function):
    """Forward: Mitchell products; backward: the exact linear layer's gradients (straight-through)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        with torch.no_grad():
            return mitchell_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight  # (..., I)
        grad_w = grad.reshape(-1, grad.shape[-1]).T @ x.reshape(-1, x.shape[-1])  # (O, I)
        grad_b = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b


class MitchellLinear(nn.Linear):
    """nn.Linear whose forward multiplies with Mitchell's approximation (exact gradients through it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _MitchellLinearFunction.apply(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "MitchellLinear":
        """A MitchellLinear sharing `linear`'s parameters (no copy)."""
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.in_features, out.out_features = linear.in_features, linear.out_features
        out.weight, out.bias = linear.weight, linear.bias
        return out


def exact_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The exact float32 counterpart of mitchell_linear, for comparisons."""
    return F.linear(x.float(), weight.float(), None if bias is None else bias.float())
