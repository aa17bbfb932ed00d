"""Performer attention: FAVOR+ positive orthogonal random features in place of softmax scores.

Choromanski et al. 2020, "Rethinking Attention with Performers", arXiv:2009.14794;
Su Jianlin's reading of it, kexue.fm/archives/7921.

The softmax kernel exp(q·k) is an expectation over w ~ N(0, I_d) of positive features

    φ(x) = exp(wᵀx - |x|²/2) / sqrt(m),   E_w[φ(q)·φ(k)] = exp(q·k)   (m draws of w)

so attention becomes  D⁻¹ φ(Q) (φ(K)ᵀ V)  with D = diag(φ(Q) φ(K)ᵀ 1): time and memory
O(T·m·d) instead of O(T²·d). Orthogonal draws (rows of one d×d block orthogonal, each row's
length chi-distributed as a Gaussian vector's) lower the estimator's variance at equal m.

Causal attention is the same sum taken over prefixes only. It runs in chunks: keys before a
chunk enter through a running state S = Σ φ(k) vᵀ (m × dv), keys inside it through an
explicit lower-triangular (chunk × chunk) product, so memory stays O(chunk² + m·dv) per
head instead of the O(T·m·dv) of materialised prefix sums.

How it plugs in: `SelfAttention` takes an optional score `kernel`; `use_performer(model)`
gives every SelfAttention of a built model a `PerformerAttention`, and a builder that takes
an attention module (`bert.post_norm_block(config, attn)`) takes
`SelfAttention(..., kernel=PerformerAttention(...))`. Nothing in a family file changes.

Masks: key padding is honoured exactly (a masked key's features are zero, so it adds nothing
to either sum); causal masking is the kernel's own `causal` switch, and a mask with a query
dimension is accepted only when it equals key padding (and causality, when causal). UniLM's
segment mask and score biases (T5 buckets) cannot be written as a feature product and are
refused with an error. Attention dropout has no probabilities to drop here and is not applied.
With a KV cache, each decoding step recomputes the features of every cached key (O(L·m) per
step, exact); carrying the running state S instead, as an RNN, is not implemented.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .attention import SelfAttention
from .relative_bias import RelativePositionBias


def gaussian_projection(features: int, dim: int, *, orthogonal: bool = True,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """(features, dim) random projection: iid N(0, 1) rows, or orthogonal blocks with chi(dim) row norms."""
    if features <= 0 or dim <= 0:
        raise ValueError(f"a random projection needs positive sizes, found features={features}, dim={dim}")
    if not orthogonal:
        return torch.randn(features, dim, generator=generator)
    blocks = []
    for _ in range(math.ceil(features / dim)):  # independent d×d blocks stacked, the last one cut
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        # signs of diag(R) make Q Haar-distributed (Mezzadri 2007, arXiv:math-ph/0609050)
        blocks.append((q * torch.sign(torch.diagonal(r))).T)  # rows orthonormal
    directions = torch.cat(blocks)[:features]
    # each row gets the length of a Gaussian vector, so every row alone is N(0, I) (the paper's "R" variant)
    norms = torch.randn(features, dim, generator=generator).norm(dim=1)
    return directions * norms[:, None]


def positive_features(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """φ(x) = exp(Wx - |x|²/2) / sqrt(m) over the last dim, unstabilised: E[φ(q)·φ(k)] = exp(q·k)."""
    m = projection.shape[0]
    return torch.exp(x @ projection.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(m)


def _stable_features(x: torch.Tensor, projection: torch.Tensor, *, query: bool,
                     key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """φ(x) times a positive constant that cancels in attention's normalisation, so exp never overflows.

    Queries: one constant per query row (its own numerator and denominator share it).
    Keys: one constant per (batch, head) over all its real keys; masked keys get exactly zero.
    """
    logits = x @ projection.T - (x * x).sum(-1, keepdim=True) / 2  # (B, nh, T, m)
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[..., None], float("-inf"))
    dims = (-1,) if query else (-2, -1)
    stab = logits.detach().amax(dim=dims, keepdim=True)
    stab = torch.where(torch.isfinite(stab), stab, torch.zeros_like(stab))  # an all-masked row stays zero
    return torch.exp(logits - stab)


def linear_attention(q_feat: torch.Tensor, k_feat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bidirectional D⁻¹ φ(Q)(φ(K)ᵀV) from features (B, nh, Tq, m), (B, nh, Tk, m) and values (B, nh, Tk, dv)."""
    kv = k_feat.transpose(-2, -1) @ v  # (B, nh, m, dv)
    num = q_feat @ kv  # (B, nh, Tq, dv)
    den = q_feat @ k_feat.sum(-2)[..., None]  # (B, nh, Tq, 1)
    return num / torch.where(den > 0, den, torch.ones_like(den))


def causal_linear_attention(q_feat: torch.Tensor, k_feat: torch.Tensor, v: torch.Tensor,
                            chunk_size: int = 128) -> torch.Tensor:
    """Causal linear attention by chunked prefix sums; the Tq queries are the last Tq of the Tk keys' positions."""
    Tq, Tk = q_feat.shape[-2], k_feat.shape[-2]
    if Tq > Tk:
        raise ValueError(f"causal attention: {Tq} queries cannot sit among {Tk} keys (queries are the last keys)")
    offset = Tk - Tq  # keys already seen by every query (a KV cache's history)
    state = k_feat[..., :offset, :].transpose(-2, -1) @ v[..., :offset, :]  # (B, nh, m, dv)
    total = k_feat[..., :offset, :].sum(-2)  # (B, nh, m)
    outs = []
    for s in range(0, Tq, chunk_size):
        e = min(s + chunk_size, Tq)
        qc, kc, vc = q_feat[..., s:e, :], k_feat[..., offset + s:offset + e, :], v[..., offset + s:offset + e, :]
        inner = (qc @ kc.transpose(-2, -1)).tril()  # (B, nh, c, c): key j <= query i within the chunk
        num = qc @ state + inner @ vc  # (B, nh, c, dv)
        den = (qc @ total[..., None]) + inner.sum(-1, keepdim=True)  # (B, nh, c, 1)
        outs.append(num / torch.where(den > 0, den, torch.ones_like(den)))
        state = state + kc.transpose(-2, -1) @ vc
        total = total + kc.sum(-2)
    return torch.cat(outs, dim=-2)


def _key_mask(mask: torch.Tensor | None, Tq: int, Tk: int, causal: bool) -> torch.Tensor | None:
    """The (B|1, nh|1, Tk) "may attend" key mask a Performer can honour, from SDPA's bool or additive mask."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        allowed = mask
    else:
        allowed = mask == 0
        blocked = mask <= -1e4  # exp(-1e4) is 0 in every float type: such a key is fully masked
        if not bool((allowed | blocked).all()):
            raise ValueError("Performer attention: the attention mask holds score biases (values other than 0 and "
                             "the dtype's minimum, e.g. T5's relative bias); a random-feature kernel cannot add a "
                             "bias to the scores")
    if allowed.dim() != 4 or allowed.shape[-1] != Tk or allowed.shape[-2] not in (1, Tq):
        raise ValueError(f"Performer attention: expected a mask (B|1, nh|1, 1 or {Tq}, {Tk}), found "
                         f"{tuple(mask.shape)}")
    keys = allowed[..., -1, :]  # the last query sees every real key, causal or not
    if allowed.shape[-2] > 1:
        expected = keys[..., None, :]
        if causal:
            q_pos = torch.arange(Tk - Tq, Tk, device=mask.device)[:, None]
            expected = expected & (torch.arange(Tk, device=mask.device)[None, :] <= q_pos)
        if not torch.equal(allowed, expected.expand_as(allowed)):
            kind = "key padding and causality" if causal else "key padding only (use causal=True for a causal mask)"
            raise ValueError(f"Performer attention (causal={causal}) can honour {kind}; this {tuple(mask.shape)} "
                             "mask is some other pattern (UniLM's segment mask cannot be linearised)")
    return keys


class PerformerAttention(nn.Module):
    """FAVOR+ score kernel for SelfAttention: `features` positive random features per head (arXiv:2009.14794).

    `orthogonal` draws orthogonal blocks (else iid). `redraw_every=k` draws new features
    before every k-th forward in training mode (None: never); evaluation always uses the
    current draw. `seed` makes the draws reproducible (each redraw continues its generator).
    The projection is a non-persistent buffer: a model's state_dict does not change.
    """

    def __init__(self, head_size: int, features: int = 256, *, orthogonal: bool = True, causal: bool = False,
                 redraw_every: int | None = None, chunk_size: int = 128, seed: int | None = None) -> None:
        super().__init__()
        if features <= 0:
            raise ValueError(f"PerformerAttention: features must be a positive count, found {features}")
        if redraw_every is not None and redraw_every <= 0:
            raise ValueError(f"PerformerAttention: redraw_every must be a positive number of steps or None, "
                             f"found {redraw_every}")
        if chunk_size <= 0:
            raise ValueError(f"PerformerAttention: chunk_size must be positive, found {chunk_size}")
        self.head_size, self.features = head_size, features
        self.orthogonal, self.causal = orthogonal, causal
        self.redraw_every, self.chunk_size = redraw_every, chunk_size
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.steps = 0  # training forwards since the last draw
        self.draws = 0
        self.register_buffer("projection", torch.empty(features, head_size), persistent=False)
        self.redraw()

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw a new random projection (kept on the buffer's device)."""
        w = gaussian_projection(self.features, self.head_size, orthogonal=self.orthogonal, generator=self.generator)
        self.projection = w.to(self.projection.device)
        self.steps, self.draws = 0, self.draws + 1

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
                scale: float | None = None) -> torch.Tensor:
        """Attention of q (B, nh, Tq, hs) over k, v (B, nh, Tk, hs) as SDPA computes it, linearised."""
        if q.shape[-1] != self.head_size:
            raise ValueError(f"PerformerAttention was built for head size {self.head_size}, found q of shape "
                             f"{tuple(q.shape)}")
        if self.training and self.redraw_every is not None:
            if self.steps >= self.redraw_every:
                self.redraw()
            self.steps += 1
        Tq, Tk = q.shape[-2], k.shape[-2]
        keys = _key_mask(mask, Tq, Tk, self.causal)
        dtype = q.dtype
        # q·k·scale = (q·√scale)·(k·√scale); float32 at least, since exp amplifies rounding
        root = math.sqrt(scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
        work = torch.promote_types(dtype, torch.float32)
        w = self.projection.to(work)
        q_feat = _stable_features(q.to(work) * root, w, query=True)
        k_feat = _stable_features(k.to(work) * root, w, query=False, key_mask=keys)
        if self.causal:
            y = causal_linear_attention(q_feat, k_feat, v.to(work), self.chunk_size)
        else:
            y = linear_attention(q_feat, k_feat, v.to(work))
        return y.to(dtype)

    def extra_repr(self) -> str:
        return (f"features={self.features}, orthogonal={self.orthogonal}, causal={self.causal}, "
                f"redraw_every={self.redraw_every}, chunk_size={self.chunk_size}")


def use_performer(model: nn.Module, features: int = 256, *, orthogonal: bool = True,
                  redraw_every: int | None = None, causal: bool | None = None, chunk_size: int = 128,
                  seed: int | None = 0) -> nn.Module:
    """Give every SelfAttention of a built `model` a PerformerAttention kernel, in place; returns `model`.

    `causal=None` follows the model's `application` ("lm" causal, "encoder" bidirectional).
    Layer i draws from seed + i. `use_softmax(model)` undoes it. No weights change.
    """
    biased = [name for name, m in model.named_modules()
              if isinstance(m, RelativePositionBias) or isinstance(getattr(m, "position_bias", None), nn.Module)]
    if biased:
        raise ValueError(f"use_performer: {biased[0] or type(model).__name__} adds a position bias to the attention "
                         "scores (T5-style), which a random-feature kernel cannot carry")
    if causal is None:
        application = getattr(model, "application", None)
        if application not in ("encoder", "lm"):
            raise ValueError(f"use_performer: cannot tell whether {type(model).__name__}'s self-attention is causal "
                             f"(application={application!r}; UniLM mixes both by segment, which a linear-attention "
                             "kernel cannot follow); pass causal=True or False for an 'encoder' or 'lm' stack")
        causal = application == "lm"
    targets = [m for m in model.modules() if isinstance(m, SelfAttention)]
    if not targets:
        kinds = sorted({type(m).__name__ for m in model.modules() if "Attention" in type(m).__name__})
        raise ValueError(f"use_performer: {type(model).__name__} has no SelfAttention module to give a kernel "
                         f"(found {', '.join(kinds) or 'no attention'}; NEZHA's relative attention adds "
                         "position terms to the scores and is not supported)")
    for i, m in enumerate(targets):
        ref = next(m.parameters())
        m.kernel = PerformerAttention(m.head_size, features, orthogonal=orthogonal, causal=causal,
                                      redraw_every=redraw_every, chunk_size=chunk_size,
                                      seed=None if seed is None else seed + i).to(ref.device)
    return model


def use_softmax(model: nn.Module) -> nn.Module:
    """Remove every SelfAttention kernel of `model` (back to exact softmax attention via SDPA); returns `model`."""
    for m in model.modules():
        if isinstance(m, SelfAttention):
            m.kernel = None
    return model
