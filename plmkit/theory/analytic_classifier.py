"""Logistic regression and the softmax classifier in closed form, from class-conditional Gaussians.

kexue.fm post 概率视角下的线性模型：逻辑回归有解析解吗？ (the classical linear discriminant of
Fisher 1936; Hastie, Tibshirani & Friedman, *Elements of Statistical Learning* §4.3). If each class
is Gaussian with its own mean and one shared covariance, p(x | y) = N(mu_y, Sigma), Bayes' rule gives
exactly a softmax over linear scores:

    p(y | x) = softmax_y(w_y . x + b_y),   w_y = Sigma^-1 mu_y,
                                           b_y = log p(y) - 1/2 mu_y^T Sigma^-1 mu_y

so the weights come from class means, class counts and one covariance: no iterations. Binary is the
k = 2 case: sigmoid(w . x + b) with w = w_1 - w_0 = Sigma^-1 (mu_1 - mu_0).

The scores are invariant under any invertible affine map of the features (up to a class-independent
shift), so whitening first changes nothing; after whitening with a transform fitted on many
unlabelled vectors (plmkit.similarity.whitening) Sigma is close to the identity and `covariance=
"identity"` needs only the class means: the post's reason the closed form does well with few labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

COVARIANCES = ("within", "identity")


@dataclass(frozen=True)
class LinearClassifier:
    """scores = x @ weight.T + bias; weight (k, d), bias (k,), float64."""

    weight: torch.Tensor  # (k, d)
    bias: torch.Tensor  # (k,)

    def logits(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N, k) class scores of (N, d) features."""
        x = _as_double(x)
        if x.shape[-1] != self.weight.shape[1]:
            raise ValueError(f"classifier was fitted on {self.weight.shape[1]}-d features, found {x.shape[-1]}-d")
        return x @ self.weight.T + self.bias

    def predict_proba(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N, k) class probabilities p(y | x) under the Gaussian model."""
        return torch.softmax(self.logits(x), dim=-1)

    def predict(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N,) the most probable class of each row."""
        return self.logits(x).argmax(-1)


def _as_double(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x.detach().double() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float64)


def class_statistics(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray,
                     num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class means (k, d), class counts (k,) and the pooled within-class covariance (d, d), 1/N (maximum likelihood)."""
    x, y = _as_double(x), torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long()
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"expected features (N, d) and labels (N,), found {tuple(x.shape)} and {tuple(y.shape)}")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"labels must be 0..k-1, found {int(y.min())}")
    k = int(y.max()) + 1 if num_classes is None else num_classes
    if y.numel() and int(y.max()) >= k:
        raise ValueError(f"label {int(y.max())} is out of range for num_classes={k}")
    counts = torch.bincount(y, minlength=k).double()  # (k,)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"classes {missing} have no examples: a class mean cannot be estimated")
    means = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, y, x) / counts[:, None]  # (k, d)
    centred = x - means[y]  # (N, d)
    covariance = centred.T @ centred / x.shape[0]  # (d, d)
    return means, counts, covariance


def _resolve_covariance(covariance, within: torch.Tensor, shrinkage: float) -> torch.Tensor:
    d = within.shape[0]
    if isinstance(covariance, str):
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES} or a (d, d) matrix, found {covariance!r}")
        sigma = within if covariance == "within" else torch.eye(d, dtype=torch.float64)
    else:
        sigma = _as_double(covariance)
        if sigma.shape != (d, d):
            raise ValueError(f"covariance must be ({d}, {d}) for {d}-d features, found {tuple(sigma.shape)}")
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], found {shrinkage}")
    if shrinkage:  # towards a multiple of the identity with the same trace (Ledoit & Wolf's target)
        sigma = (1 - shrinkage) * sigma + shrinkage * torch.trace(sigma) / d * torch.eye(d, dtype=torch.float64)
    return sigma


def _solve(sigma: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Sigma^-1 rhs through a Cholesky factor; a singular Sigma is an error that says what to do."""
    factor, info = torch.linalg.cholesky_ex(sigma)
    if int(info):
        raise ValueError(f"the covariance ({sigma.shape[0]} x {sigma.shape[0]}) is not positive definite (fewer "
                         "examples than dimensions, or constant features): pass shrinkage > 0, covariance="
                         "'identity' on whitened features, or a covariance estimated from unlabelled data")
    return torch.cholesky_solve(rhs, factor)


def _log_priors(priors, counts: torch.Tensor) -> torch.Tensor:
    if isinstance(priors, str):
        if priors == "empirical":
            return torch.log(counts / counts.sum())
        if priors == "uniform":
            return torch.zeros_like(counts)
        raise ValueError(f"priors must be 'empirical', 'uniform' or k probabilities, found {priors!r}")
    p = _as_double(priors)
    if p.shape != counts.shape or (p <= 0).any():
        raise ValueError(f"priors must be {counts.numel()} positive probabilities, found {p.tolist()}")
    return torch.log(p / p.sum())


def gaussian_softmax_classifier(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray,
                                num_classes: int | None = None, *, covariance="within", shrinkage: float = 0.0,
                                priors="empirical") -> LinearClassifier:
    """The softmax classifier in closed form: w_y = Sigma^-1 mu_y, b_y = log p(y) - mu_y^T Sigma^-1 mu_y / 2.

    `covariance`: "within" (pooled within-class, estimated from these labelled rows), "identity"
    (features whitened beforehand), or a (d, d) matrix (e.g. estimated from unlabelled data);
    `shrinkage` in [0, 1] mixes it with trace/d times the identity; `priors`: "empirical" (class
    frequencies), "uniform", or k probabilities.
    """
    means, counts, within = class_statistics(x, y, num_classes)
    sigma = _resolve_covariance(covariance, within, shrinkage)
    weight = _solve(sigma, means.T).T  # (k, d): row y is Sigma^-1 mu_y
    bias = _log_priors(priors, counts) - 0.5 * (weight * means).sum(-1)  # (k,)
    return LinearClassifier(weight, bias)


def gaussian_logistic_regression(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, *,
                                 covariance="within", shrinkage: float = 0.0,
                                 priors="empirical") -> tuple[torch.Tensor, torch.Tensor]:
    """Binary logistic regression in closed form: p(1 | x) = sigmoid(w . x + b), returns (w (d,), b ()).

    w = Sigma^-1 (mu_1 - mu_0),  b = log(p_1 / p_0) - (mu_1 + mu_0)^T Sigma^-1 (mu_1 - mu_0) / 2;
    options as in gaussian_softmax_classifier.
    """
    means, counts, within = class_statistics(x, y, 2)
    sigma = _resolve_covariance(covariance, within, shrinkage)
    w = _solve(sigma, (means[1] - means[0])[:, None])[:, 0]  # (d,)
    log_p = _log_priors(priors, counts)
    b = log_p[1] - log_p[0] - 0.5 * (means[1] + means[0]) @ w
    return w, b
