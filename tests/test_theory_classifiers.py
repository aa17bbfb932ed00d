"""plmkit.theory.analytic_classifier: closed-form logistic regression / softmax from shared-covariance Gaussians."""
import math

import numpy as np
import pytest
import torch

from plmkit.similarity.whitening import fit_whitening
from plmkit.theory.analytic_classifier import (class_statistics, gaussian_logistic_regression,
                                               gaussian_softmax_classifier)


def _gaussian_classes(n_per_class, means, cov, seed=0):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, mu in enumerate(means):
        xs.append(rng.multivariate_normal(mu, cov, size=n_per_class))
        ys.append(np.full(n_per_class, label))
    return np.concatenate(xs), np.concatenate(ys)


def _random_problem(d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.3 * np.eye(d)
    means = rng.normal(size=(k, d))
    return means, cov


def test_class_statistics_match_numpy():
    means, cov = _random_problem()
    x, y = _gaussian_classes(200, means, cov)
    mu, counts, within = class_statistics(x, y)
    assert counts.tolist() == [200, 200, 200]
    for c in range(3):
        np.testing.assert_allclose(mu[c].numpy(), x[y == c].mean(0), rtol=1e-12)
    # pooled within-class covariance = weighted average of the per-class biased covariances
    expected = sum(np.cov(x[y == c], rowvar=False, bias=True) * (y == c).sum() for c in range(3)) / len(y)
    np.testing.assert_allclose(within.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance,shrinkage,priors", [("within", 0.0, "empirical"), ("within", 0.3, "uniform"),
                                                         ("identity", 0.0, "empirical")])
def test_binary_formula_is_softmax_weight_difference(covariance, shrinkage, priors):
    means, cov = _random_problem(k=2)
    x, y = _gaussian_classes(150, means, cov)
    x, y = x[:260], y[:260]  # unequal classes: 150 and 110, so the prior term is not zero
    soft = gaussian_softmax_classifier(x, y, covariance=covariance, shrinkage=shrinkage, priors=priors)
    w, b = gaussian_logistic_regression(x, y, covariance=covariance, shrinkage=shrinkage, priors=priors)
    torch.testing.assert_close(w, soft.weight[1] - soft.weight[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b, soft.bias[1] - soft.bias[0], rtol=1e-10, atol=1e-12)
    # and the probabilities agree: softmax over two scores = sigmoid of their difference
    p1 = torch.sigmoid(torch.as_tensor(x) @ w + b)
    torch.testing.assert_close(soft.predict_proba(x)[:, 1], p1, rtol=1e-10, atol=1e-12)


def test_whitened_and_raw_features_predict_the_same():
    means, cov = _random_problem(d=8, k=4, seed=1)
    x, y = _gaussian_classes(300, means * 0.5, cov, seed=1)
    rng = np.random.default_rng(2)
    x_unlabelled = np.concatenate([x, rng.multivariate_normal(means.mean(0), cov, size=500)])
    white = fit_whitening(x_unlabelled)  # fitted without labels, as a user would
    xw = white(torch.as_tensor(x)).numpy()
    raw = gaussian_softmax_classifier(x, y)
    whitened = gaussian_softmax_classifier(xw, y)
    # the scores differ by a class-independent shift only, so probabilities (not just argmax) agree
    torch.testing.assert_close(raw.predict_proba(x), whitened.predict_proba(xw), rtol=1e-8, atol=1e-10)
    assert torch.equal(raw.predict(x), whitened.predict(xw))
    assert 0.3 < (raw.predict(x).numpy() == y).mean() < 1.0  # a problem with errors, so agreement means something


def test_recovers_the_bayes_optimal_boundary():
    d = 5
    means, cov = _random_problem(d=d, k=2, seed=3)
    x, y = _gaussian_classes(100_000, means, cov, seed=3)
    w, b = gaussian_logistic_regression(x, y)
    # Bayes: equal priors, known Gaussians -> w* = Sigma^-1 (mu1 - mu0), b* = -(mu1 + mu0) . w* / 2
    w_star = np.linalg.solve(cov, means[1] - means[0])
    b_star = -0.5 * (means[1] + means[0]) @ w_star
    cosine = float(w.numpy() @ w_star / np.linalg.norm(w.numpy()) / np.linalg.norm(w_star))
    assert cosine > 0.999
    assert abs(float(b) - b_star) < 0.05 * max(1.0, abs(b_star))
    # accuracy on fresh data against the analytic Bayes accuracy Phi(Delta / 2), Delta the Mahalanobis distance
    xt, yt = _gaussian_classes(50_000, means, cov, seed=4)
    accuracy = ((torch.as_tensor(xt) @ w + b > 0).numpy() == (yt == 1)).mean()
    delta = math.sqrt((means[1] - means[0]) @ w_star)
    bayes = 0.5 * (1 + math.erf(delta / 2 / math.sqrt(2)))
    assert 0.6 < bayes < 0.95  # a problem where the boundary matters
    assert abs(accuracy - bayes) < 0.006  # 50k test rows: standard error ~0.002
    agree = ((xt @ w.numpy() + float(b) > 0) == (xt @ w_star + b_star > 0)).mean()
    assert agree > 0.995


def test_softmax_closed_form_matches_bayes_posterior_for_three_classes():
    means, cov = _random_problem(d=4, k=3, seed=5)
    x, y = _gaussian_classes(60_000, means, cov, seed=5)
    clf = gaussian_softmax_classifier(x, y, priors="uniform")
    from scipy.stats import multivariate_normal

    xt, _ = _gaussian_classes(300, means, cov, seed=6)
    density = np.stack([multivariate_normal(m, cov).pdf(xt) for m in means], axis=1)  # (N, 3)
    posterior = density / density.sum(1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(xt).numpy(), posterior, atol=0.03)


def test_singular_covariance_is_an_error_that_says_what_to_do():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 20)), np.array([0, 1] * 4)
    with pytest.raises(ValueError, match="not positive definite.*shrinkage"):
        gaussian_softmax_classifier(x, y)
    clf = gaussian_softmax_classifier(x, y, shrinkage=0.5)
    assert clf.weight.shape == (2, 20)
    with pytest.raises(ValueError, match="classes \\[2\\] have no examples"):
        gaussian_softmax_classifier(x, y, num_classes=3)
    with pytest.raises(ValueError, match="covariance must be"):
        gaussian_softmax_classifier(x, y, covariance="diagonal")
