"""Multi-head self-attention on torch's scaled_dot_product_attention, and the KV cache decoding uses.

    x ──► qkv (one fused Linear) ──► split heads ──► [position hook on q, k] ──► [append k, v to cache]
      ──► SDPA(mask) ──► out Linear

Position schemes that act on q and k (rotary) or add a score bias (T5, NEZHA) are passed in
as modules; this class knows nothing about any particular family.

KV cache (incremental decoding): a stack called with `cache=KVCache(...)` attaches the cache
to its attention modules for that one call (their `kv_cache` attribute, as torchtune's
attention modules hold theirs), so blocks pass nothing extra and post-norm, pre-norm and
shared blocks all work unchanged. Each attention call appends the keys and values of the
new tokens and attends over everything cached; the stack reads `cache.length` to place the
new tokens (positions, causal mask, relative bias).

Token positions reach the position scheme inside attention the same way: a stack given
`position_ids` attaches a `Positions` record to the modules that read them (those whose
`reads_positions` is true) for that one call, with `attach_positions`. Without one,
a position scheme uses its defaults (0..T-1, continued after the cached tokens).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear


@dataclass(frozen=True)
class Positions:
    """Where the tokens of one forward sit, for a position scheme inside attention (rotary, relative).

    `query` (B|1, T), or (B|1, T, 2) for 2-D schemes, places this forward's tokens; `key`
    (B|1, L + T[, 2]) places every key they attend to: the L cached tokens, then these
    (without a cache it is `query`).
    """

    query: torch.Tensor
    key: torch.Tensor


def position_readers(stack: nn.Module) -> list[nn.Module]:
    """The modules of `stack` whose position scheme reads token positions (`reads_positions` true)."""
    return [m for m in stack.modules() if getattr(m, "reads_positions", False)]


@contextmanager
def attach_positions(modules: list[nn.Module], positions: Positions | None) -> Iterator[None]:
    """Point `modules` (see position_readers) at `positions` for one forward; detach them afterwards."""
    for m in modules:
        m.positions = positions
    try:
        yield
    finally:
        for m in modules:
            m.positions = None


class KVCache:
    """Keys and values that one stack's attention layers keep between decoding steps.

    Slots are taken in call order during a step, so a layer applied several times in one
    forward (ALBERT's shared block) gets one slot per application. Cross-attention keys and
    values of the encoder output are computed on the first step and reused (`memory_kv`).
    `capacity` preallocates room for that many tokens per row: each step then copies only
    the new keys and values instead of concatenating the whole history again.
    `state` holds batch-first tensors a stack needs across steps (e.g. UniLM segment order);
    they are reordered with the keys and values.
    One cache serves one stack and one decoding run at a time, and while a step runs the
    stack's modules point at it: a model decodes one batch at a time (not from two threads).
    """

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and capacity <= 0:
            raise ValueError(f"KVCache capacity must be a positive number of tokens, found {capacity}")
        self.capacity = capacity
        self.length = 0  # tokens cached in every slot
        self.keys: list[torch.Tensor] = []  # per slot (B, nh, capacity or length, hs)
        self.values: list[torch.Tensor] = []
        self.memory: list[tuple[torch.Tensor, torch.Tensor]] = []  # cross-attention (k, v) per slot
        self.state: dict[str, torch.Tensor] = {}
        self._slot = self._cross_slot = 0
        self._modules: dict[int, list[nn.Module]] = {}  # id(stack) -> its cache-aware attention modules

    @contextmanager
    def step(self, stack: nn.Module, new_tokens: int) -> Iterator[KVCache]:
        """Attach to the attention modules of `stack` for one forward that appends `new_tokens` tokens."""
        modules = self._modules.get(id(stack))
        if modules is None:
            modules = self._modules[id(stack)] = [m for m in stack.modules() if hasattr(m, "kv_cache")]
        self._slot = self._cross_slot = 0
        for m in modules:
            m.kv_cache = self
        try:
            yield self
        finally:
            for m in modules:
                m.kv_cache = None
        if self._slot == 0:
            raise RuntimeError(f"{type(stack).__name__} ran with a KV cache but no attention module stored keys in "
                               "it: its attention modules do not support caching (they need a kv_cache attribute)")
        if self._slot != len(self.keys):
            raise RuntimeError(f"KV cache: this step used {self._slot} attention slots, earlier steps "
                               f"{len(self.keys)}; a cache serves one stack only")
        self.length += new_tokens

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys and values (B, nh, T, hs) in the next slot; return all of the slot's so far."""
        i, self._slot = self._slot, self._slot + 1
        end = self.length + k.shape[2]
        if i == len(self.keys):  # the first step creates the slot
            if self.length:
                raise RuntimeError(f"KV cache slot {i} is new but {self.length} tokens are cached: "
                                   "a cache serves one stack only")
            if self.capacity is None:
                self.keys.append(k)
                self.values.append(v)
                return k, v
            B, nh, _, hs = k.shape
            self.keys.append(k.new_empty(B, nh, self.capacity, hs))
            self.values.append(v.new_empty(B, nh, self.capacity, v.shape[-1]))
        if self.capacity is None:
            self.keys[i] = torch.cat((self.keys[i], k), dim=2)  # (B, nh, L, hs)
            self.values[i] = torch.cat((self.values[i], v), dim=2)
            return self.keys[i], self.values[i]
        if end > self.capacity:
            raise ValueError(f"KV cache capacity {self.capacity} exceeded: {end} tokens in slot {i}; "
                             "build the cache with a larger capacity")
        self.keys[i][:, :, self.length:end] = k
        self.values[i][:, :, self.length:end] = v
        return self.keys[i][:, :, :end], self.values[i][:, :, :end]  # (B, nh, L, hs) views

    def memory_kv(self, memory: torch.Tensor,
                  project: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        """Cross-attention keys and values of `memory` for the next cross slot, projected on the first step only."""
        i, self._cross_slot = self._cross_slot, self._cross_slot + 1
        if i == len(self.memory):
            self.memory.append(project(memory))
        return self.memory[i]

    def reorder(self, index: torch.Tensor, memory: bool = True) -> None:
        """Keep rows `index` of every cached tensor (beam reordering, or expanding a batch to beams).

        `memory=False` leaves the cross-attention keys and values alone: right when `index`
        only permutes rows that share one encoder output (the beams of one input).
        """
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self.state = {name: t.index_select(0, index) for name, t in self.state.items()}
        if memory:
            self.memory = [(k.index_select(0, index), v.index_select(0, index)) for k, v in self.memory]


class SelfAttention(nn.Module):
    """Fused-QKV self-attention; `rotary` (optional) rotates q and k before the product.

    `kernel` (optional) replaces SDPA: called as kernel(q, k, v, mask, scale=...) on the
    (B, nh, T, hs) heads after rotary and the KV cache, it returns (B, nh, Tq, hs)
    (e.g. modules.performer.PerformerAttention, a linear-attention approximation).
    """

    kv_cache: KVCache | None = None  # attached by a stack running with a cache
    positions: Positions | None = None  # attached by a stack given position ids (see attach_positions)

    def __init__(self, hidden_size: int, num_heads: int, head_size: int, *, bias: bool = True,
                 dropout: float = 0.0, rotary: nn.Module | None = None, scale: float | None = None,
                 kernel: nn.Module | None = None) -> None:
        super().__init__()
        self.num_heads, self.head_size = num_heads, head_size
        self.qkv = Linear(hidden_size, 3 * num_heads * head_size, bias=bias)
        self.out = Linear(num_heads * head_size, hidden_size, bias=bias)
        self.dropout = dropout
        self.rotary = rotary
        self.scale = scale  # None: 1/sqrt(head_size)
        self.kernel = kernel

    @property
    def reads_positions(self) -> bool:
        """True when token positions matter here: the rotary module turns q and k by them."""
        return self.rotary is not None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_size).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        cache = self.kv_cache
        if self.rotary is not None:
            if self.positions is not None:  # the new tokens' own positions (cached keys were turned by theirs)
                q, k = self.rotary(q, self.positions.query), self.rotary(k, self.positions.query)
            else:  # default positions: the new tokens sit after the cached ones
                offset = 0 if cache is None else cache.length
                q, k = self.rotary(q, offset=offset), self.rotary(k, offset=offset)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, nh, L, hs)
        if self.kernel is not None:
            if position_bias is not None:
                raise ValueError(f"{type(self.kernel).__name__} cannot add a position bias to the attention scores")
            y = self.kernel(q, k, v, mask, scale=self.scale)  # (B, nh, T, hs)
        else:
            if position_bias is not None:
                mask = position_bias if mask is None else mask + position_bias
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                               dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return self.out(y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_size))
