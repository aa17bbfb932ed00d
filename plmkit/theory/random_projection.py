"""Johnson-Lindenstrauss random projection and the n > 8.33 log N dimension rule.

kexue.fm/archives/8679 (JL lemma: theory), 8706 (applications) and 8711 (the n > 8.33 log N formula,
first derived in 7695 for word-vector sizes); Dasgupta & Gupta (2003) for the constant used here;
Achlioptas (2003) for the sparse matrix.

A random matrix R of shape (d, n) with i.i.d. zero-mean entries of variance 1/n maps x to x R and keeps
E||x R||^2 = ||x||^2; ||x R||^2 / ||x||^2 is chi-square(n)/n for Gaussian entries (variance 2/n), and
the same holds to fourth moment for Achlioptas' {+1, 0, -1} entries with density 1/3. With
n >= 4 ln N / (eps^2/2 - eps^3/3), every squared distance among N points stays within (1 +- eps)
with probability at least 1 - 1/N (the JL bound). The post's rule n > 8.33 ln N asks for far fewer
dimensions than the bound allows for any eps < 1 (the bound needs n >= 24 ln N even at eps = 1):
it is a statement about typical pairs, not the worst one, which benchmarks/bench_theory_projection.py
measures. scikit-learn's random_projection module draws the same matrices for numpy arrays; these
take and return torch tensors.
"""
from __future__ import annotations

import math

import torch


def gaussian_projection(in_dim: int, out_dim: int, *, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A (in_dim, out_dim) matrix of i.i.d. N(0, 1/out_dim) entries: x @ R keeps squared norms on average."""
    _check_dims(in_dim, out_dim)
    return torch.randn(in_dim, out_dim, generator=generator, dtype=dtype) / math.sqrt(out_dim)


def sparse_projection(in_dim: int, out_dim: int, *, density: float = 1 / 3,
                      generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Achlioptas' matrix: +-1/sqrt(density * out_dim) with probability density/2 each, else 0 (density 1/3: his s = 3)."""
    _check_dims(in_dim, out_dim)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], found {density}")
    u = torch.rand(in_dim, out_dim, generator=generator, dtype=torch.float64)
    signs = (u < density / 2).to(dtype) - ((u >= density / 2) & (u < density)).to(dtype)  # (d, n) in {-1, 0, 1}
    return signs / math.sqrt(density * out_dim)


def _check_dims(in_dim: int, out_dim: int) -> None:
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"projection sizes must be positive, found in_dim={in_dim}, out_dim={out_dim}")


def jl_min_dim(num_points: int, eps: float) -> int:
    """The JL bound: n >= 4 ln N / (eps^2/2 - eps^3/3) keeps all N(N-1)/2 squared distances within 1 +- eps."""
    if num_points < 2:
        raise ValueError(f"the bound concerns pairs: num_points must be >= 2, found {num_points}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), found {eps}")
    return math.ceil(4 * math.log(num_points) / (eps ** 2 / 2 - eps ** 3 / 3))


def jl_eps(num_points: int, dim: int) -> float:
    """The smallest eps the JL bound guarantees at dimension `dim` for N points; inf when dim < 24 ln N."""
    need = 4 * math.log(num_points) / dim  # solve eps^2/2 - eps^3/3 = need on (0, 1]; the left side rises to 1/6
    if need > 1 / 6:
        return math.inf
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid ** 2 / 2 - mid ** 3 / 3 < need else (lo, mid)
    return hi


def log_rule_dim(num_points: int, constant: float = 8.33) -> int:
    """The post's dimension formula n > 8.33 ln N, rounded up."""
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2, found {num_points}")
    return math.ceil(constant * math.log(num_points))


def pairwise_distortion(original: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
    """||y_i - y_j||^2 / ||x_i - x_j||^2 for every pair i < j of (N, d) originals and (N, n) projections."""
    if original.shape[0] != projected.shape[0]:
        raise ValueError(f"original holds {original.shape[0]} points, projected {projected.shape[0]}")
    i, j = torch.triu_indices(original.shape[0], original.shape[0], offset=1)
    return _squared_distances(projected)[i, j] / _nonzero(_squared_distances(original)[i, j])


def _squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(N, N) squared distances from the Gram matrix: no (pairs, d) difference tensor."""
    x = x.double()
    sq = x.pow(2).sum(-1)  # (N,)
    return (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)


def _nonzero(d: torch.Tensor) -> torch.Tensor:
    if (d == 0).any():
        raise ValueError("original holds duplicate points: their distance ratio is undefined")
    return d
