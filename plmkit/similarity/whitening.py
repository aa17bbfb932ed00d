"""BERT-whitening: an affine map that gives sentence vectors zero mean and identity covariance.

    fit:    mu = mean(X);  Sigma = cov(X) = U diag(s) U^T  (SVD of a symmetric PSD matrix)
            W  = U diag(s)^(-1/2),  keep the first k columns (largest variances) to reduce dimension
    apply:  y = (x - mu) W[:, :k]

kexue.fm/archives/8069 (the method) and 8321 (dimension reduction with k); arXiv:2103.15316.
The covariance uses the unbiased N-1 denominator (numpy.cov's default), so the transformed
fitting set has exactly the identity as its numpy.cov.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..convert.tensor_files import save_safetensors

FORMAT = "plmkit.whitening/1"


@dataclass(frozen=True)
class Whitening:
    """A fitted whitening transform: y = (x - mean) @ weight, weight of shape (H, k)."""

    mean: torch.Tensor  # (H,)
    weight: torch.Tensor  # (H, k)

    @property
    def dim(self) -> int:
        """The output dimension k."""
        return self.weight.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten (N, H) vectors into (N, k)."""
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"whitening was fitted on {self.mean.shape[0]}-d vectors, found {x.shape[-1]}-d")
        m, w = self.mean.to(x.device, x.dtype), self.weight.to(x.device, x.dtype)
        return (x - m) @ w

    def save(self, path: str | Path) -> None:
        """Write the transform to one safetensors file (atomically)."""
        meta = {"format": FORMAT, "input_dim": str(self.mean.shape[0]), "output_dim": str(self.dim)}
        save_safetensors({"mean": self.mean, "weight": self.weight}, Path(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> "Whitening":
        """Read a transform written by `save`."""
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                names = set(f.keys())
                if meta.get("format") != FORMAT or names != {"mean", "weight"}:
                    raise ValueError(f"{path}: not a whitening file (expected format {FORMAT!r} with tensors "
                                     f"mean, weight; found format {meta.get('format')!r}, tensors {sorted(names)})")
                mean, weight = f.get_tensor("mean"), f.get_tensor("weight")
        except ValueError:
            raise
        except Exception as e:  # safetensors' own error types; name the file
            raise ValueError(f"cannot read whitening file {path}: {e}") from None
        if mean.dim() != 1 or weight.dim() != 2 or weight.shape[0] != mean.shape[0]:
            raise ValueError(f"{path}: mean must be (H,) and weight (H, k); found {tuple(mean.shape)} and "
                             f"{tuple(weight.shape)}")
        return cls(mean, weight)

    def to_json(self) -> str:
        """A small description (not the weights), for logs and index metadata."""
        return json.dumps({"input_dim": self.mean.shape[0], "output_dim": self.dim})


def fit_whitening(vectors: torch.Tensor | np.ndarray, dim: int | None = None, *, eps: float = 1e-12) -> Whitening:
    """Fit mean and W = U diag(s)^(-1/2) on (N, H) vectors, keeping the first `dim` directions (None: all that vary)."""
    x = np.asarray(vectors.detach().cpu().double() if isinstance(vectors, torch.Tensor) else vectors, np.float64)
    if x.ndim != 2:
        raise ValueError(f"vectors must be (N, H), found shape {x.shape}")
    n, h = x.shape
    if dim is not None and not 1 <= dim <= h:
        raise ValueError(f"dim must be in 1..{h} (the vector size), found {dim}")
    if n < 2:
        raise ValueError(f"whitening needs at least 2 vectors to estimate a covariance, found {n}")
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False)  # (H, H), N-1 denominator
    u, s, _ = np.linalg.svd(cov)  # s sorted descending
    rank = int((s > eps * max(s[0], eps)).sum())
    # dim=None keeps every direction that varies: vectors often span fewer than H (a LayerNorm output
    # obeys one linear constraint per token, which mean pooling keeps), and 1/sqrt(0) is no transform
    k = rank if dim is None else dim
    if k > rank:
        hint = f"fit on more than {k} vectors, or " if n <= k else ""
        raise ValueError(f"these {n} vectors vary in only {rank} of their {h} directions (covariance rank), "
                         f"fewer than dim={k}: {hint}pass dim<={rank} or dim=None")
    if k == 0:
        raise ValueError(f"these {n} vectors are all equal: there is no direction to whiten")
    w = u[:, :k] / np.sqrt(s[:k])[None, :]  # (H, k)
    # kept in float64: apply() casts to the vectors' dtype, so fp32 vectors lose nothing to the fit
    return Whitening(torch.from_numpy(mean), torch.from_numpy(np.ascontiguousarray(w)))
