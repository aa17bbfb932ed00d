"""A sentence VAE (Bowman et al. 2016, arXiv:1511.06349) whose latent module is swapped, not flagged:

    ids ─► encoder (bi-GRU) ─► h (B, H) ─► latent ─► z (B, d), KL (B,) ─► decoder (GRU, teacher forcing) ─► logits

`GaussianLatent`: q(z|x) = N(mu, diag sigma^2), prior N(0, I); its KL can fall to zero when the
decoder models the text without z ("posterior collapse").
`VMFLatent`: q(z|x) = vMF(mu, kappa) on the unit sphere, prior uniform on the sphere; the KL depends
on kappa alone (plmkit.modules.vmf), so with a fixed kappa it is a constant the optimiser cannot
shrink (kexue.fm/archives/8404; Davidson et al. 2018, arXiv:1804.00891).

The encoder and decoder are GRUs as in Bowman et al.: this is the classic setting where a strong
autoregressive decoder makes the Gaussian KL collapse, and it trains in minutes on one CPU thread.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..modules.vmf import sample_vmf, vmf_kl_uniform

__all__ = ["Latent", "GaussianLatent", "VMFLatent", "GRUEncoder", "GRUDecoder", "SentenceVAE", "VAEOutput",
           "build_sentence_vae"]


@dataclass
class Latent:
    """What a latent module returns: a sample z (B, d), its KL to the prior (B,), and the posterior's centre (B, d)."""

    z: torch.Tensor
    kl: torch.Tensor
    mean: torch.Tensor


class GaussianLatent(nn.Module):
    """h ─► (mu, log sigma^2) ─► z = mu + sigma eps; KL(N(mu, sigma^2) || N(0, I)) in closed form."""

    def __init__(self, hidden_size: int, latent_size: int) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.proj = nn.Linear(hidden_size, 2 * latent_size)

    def forward(self, h: torch.Tensor, sample: bool = True) -> Latent:
        mu, logvar = self.proj(h).chunk(2, dim=-1)  # 2 x (B, d)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)  # (B,)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return Latent(z, kl, mu)


class VMFLatent(nn.Module):
    """h ─► mu on the unit sphere ─► z ~ vMF(mu, kappa) (Wood's sampler); KL to the uniform prior from kappa alone.

    `kappa` a float fixes the concentration (the post's choice: the KL is then a constant);
    None learns it per sentence as 1 + softplus(linear(h)).
    """

    def __init__(self, hidden_size: int, latent_size: int, kappa: float | None = None) -> None:
        super().__init__()
        if latent_size < 2:
            raise ValueError(f"a vMF latent needs latent_size >= 2, found {latent_size}")
        if kappa is not None and not kappa > 0:
            raise ValueError(f"kappa must be positive, found {kappa}")
        self.latent_size, self.kappa = latent_size, kappa
        self.proj = nn.Linear(hidden_size, latent_size)
        self.kappa_proj = nn.Linear(hidden_size, 1) if kappa is None else None

    def forward(self, h: torch.Tensor, sample: bool = True) -> Latent:
        mu = F.normalize(self.proj(h), dim=-1)  # (B, d)
        if self.kappa_proj is None:
            kappa = torch.full(mu.shape[:-1], float(self.kappa), dtype=mu.dtype, device=mu.device)
        else:
            kappa = 1 + F.softplus(self.kappa_proj(h).squeeze(-1))  # (B,)
        kl = vmf_kl_uniform(self.latent_size, kappa)
        z = sample_vmf(mu, kappa) if sample else mu
        return Latent(z, kl, mu)


class GRUEncoder(nn.Module):
    """ids (B, T) ─► embeddings ─► bidirectional GRU ─► both last states concatenated (B, 2 H)."""

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, pad_id: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=pad_id)
        self.rnn = nn.GRU(embed_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_size = 2 * hidden_size

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, h = self.rnn(packed)  # (2, B, H)
        return torch.cat((h[0], h[1]), dim=-1)  # (B, 2H)


class GRUDecoder(nn.Module):
    """z conditions every step twice (Bowman et al.): as the initial state tanh(W z) and concatenated to each input."""

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, latent_size: int, pad_id: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=pad_id)
        self.init = nn.Linear(latent_size, hidden_size)
        self.rnn = nn.GRU(embed_size + latent_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, inputs: torch.Tensor, z: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, V) for the next token after each input token, and the last state (1, B, H)."""
        if state is None:
            state = torch.tanh(self.init(z))[None]  # (1, B, H)
        x = torch.cat((self.embed(inputs), z[:, None].expand(-1, inputs.shape[1], -1)), dim=-1)  # (B, T, E + d)
        y, state = self.rnn(x, state)
        return self.out(y), state


@dataclass
class VAEOutput:
    """Per-sentence reconstruction loss (negative log-likelihood, nats) and KL, both (B,), and the latent."""

    reconstruction: torch.Tensor
    kl: torch.Tensor
    latent: Latent

    @property
    def loss(self) -> torch.Tensor:
        """The negative ELBO averaged over sentences."""
        return (self.reconstruction + self.kl).mean()


class SentenceVAE(nn.Module):
    """encoder ─► latent ─► decoder; sentences are `bos c1 ... cn eos` rows right-padded with `pad_id`."""

    def __init__(self, encoder: nn.Module, latent: nn.Module, decoder: nn.Module, *, pad_id: int, bos_id: int,
                 eos_id: int) -> None:
        super().__init__()
        self.encoder, self.latent, self.decoder = encoder, latent, decoder
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def encode(self, ids: torch.Tensor, sample: bool = True) -> Latent:
        """The latent of each row of `ids` (B, T)."""
        lengths = (ids != self.pad_id).sum(-1)
        if bool((lengths < 2).any()):
            raise ValueError(f"each row of ids needs at least bos and eos; row {int((lengths < 2).nonzero()[0])} "
                             f"has {int(lengths.min())} tokens")
        return self.latent(self.encoder(ids, lengths), sample=sample)

    def forward(self, ids: torch.Tensor, sample: bool = True) -> VAEOutput:
        latent = self.encode(ids, sample)
        logits, _ = self.decoder(ids[:, :-1], latent.z)  # (B, T-1, V)
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], ignore_index=self.pad_id, reduction="none")
        return VAEOutput(nll.sum(-1), latent.kl, latent)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, max_length: int = 32) -> list[list[int]]:
        """Greedy decoding from latents z (B, d): the token ids of each row, without bos and eos."""
        B = z.shape[0]
        token = torch.full((B, 1), self.bos_id, dtype=torch.long, device=z.device)
        state, out = None, torch.empty(B, 0, dtype=torch.long, device=z.device)
        for _ in range(max_length):
            logits, state = self.decoder(token, z, state)
            token = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            out = torch.cat((out, token), dim=1)
        rows = []
        for row in out.tolist():
            rows.append(row[:row.index(self.eos_id)] if self.eos_id in row else row)
        return rows


def build_sentence_vae(vocab_size: int, latent: nn.Module, *, embed_size: int = 128, hidden_size: int = 256,
                       pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> SentenceVAE:
    """A bi-GRU encoder and GRU decoder around `latent` (GaussianLatent or VMFLatent, built for 2 * hidden_size)."""
    latent_size = latent.latent_size
    return SentenceVAE(GRUEncoder(vocab_size, embed_size, hidden_size, pad_id), latent,
                       GRUDecoder(vocab_size, embed_size, hidden_size, latent_size, pad_id),
                       pad_id=pad_id, bos_id=bos_id, eos_id=eos_id)
