"""BERT-whitening: zero mean and identity covariance (numpy.cov), agreement with scikit-learn's whitened PCA,
save/load, and its use inside encode_sentences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plmkit.models import build_model
from plmkit.models.bert import tiny_config
from plmkit.sentence import encode_sentences, pool
from plmkit.similarity.whitening import Whitening, fit_whitening


def _correlated(n=400, h=12, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(h, h)) * rng.uniform(0.1, 3.0, size=h)  # anisotropic, correlated
    return rng.normal(size=(n, h)) @ mix + rng.normal(size=h) * 5


def test_whitened_vectors_have_zero_mean_and_identity_covariance():
    x = _correlated()
    w = fit_whitening(x)
    y = w(torch.from_numpy(x)).numpy()  # float64 in, float64 out
    assert np.abs(y.mean(0)).max() <= 1e-10
    assert np.abs(np.cov(y, rowvar=False) - np.eye(x.shape[1])).max() <= 1e-10
    # fp32 vectors through the same transform
    y32 = w(torch.from_numpy(x).float()).double().numpy()
    assert np.abs(np.cov(y32, rowvar=False) - np.eye(x.shape[1])).max() <= 1e-4


def test_reduced_dimension_matches_sklearn_whitened_pca():
    decomposition = pytest.importorskip("sklearn.decomposition")
    x = _correlated(seed=1)
    k = 5
    ours = fit_whitening(x, dim=k)(torch.from_numpy(x)).numpy()
    ref = decomposition.PCA(n_components=k, whiten=True, svd_solver="full").fit_transform(x)
    signs = np.sign((ours * ref).sum(0))  # each principal direction is defined up to its sign
    assert np.abs(ours - ref * signs).max() <= 1e-8
    assert np.abs(np.cov(ours, rowvar=False) - np.eye(k)).max() <= 1e-10


def test_save_load_round_trip(tmp_path):
    x = _correlated(seed=2)
    w = fit_whitening(x, dim=4)
    w.save(tmp_path / "whitening.safetensors")
    back = Whitening.load(tmp_path / "whitening.safetensors")
    assert torch.equal(back.mean, w.mean) and torch.equal(back.weight, w.weight)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        Whitening.load(tmp_path / "bad.safetensors")


def test_errors():
    with pytest.raises(ValueError, match="dim must be in 1..12"):
        fit_whitening(_correlated(), dim=13)
    with pytest.raises(ValueError, match="vary in only 4 of their 12 directions.*more than 6 vectors"):
        fit_whitening(_correlated(n=5), dim=6)  # 5 vectors span at most 4 centred directions
    with pytest.raises(ValueError, match="all equal"):
        fit_whitening(np.ones((4, 3)))


def test_vectors_on_a_hyperplane_keep_the_directions_that_vary():
    """LayerNorm-like vectors (each row's entries sum to a constant) span H - 1 centred directions."""
    x = _correlated()
    x = x - x.mean(1, keepdims=True)  # one linear constraint per row, as a LayerNorm output without affine
    w = fit_whitening(x)
    assert w.dim == x.shape[1] - 1
    y = w(torch.from_numpy(x)).numpy()
    assert np.abs(np.cov(y, rowvar=False) - np.eye(w.dim)).max() <= 1e-9
    with pytest.raises(ValueError, match=r"vary in only 11 of their 12 directions.*dim<=11"):
        fit_whitening(x, dim=12)
    with pytest.raises(ValueError, match="fitted on 12-d"):
        fit_whitening(_correlated())(torch.zeros(2, 7, dtype=torch.float64))


class CharTokenizer:
    """Enough of the tokenizer interface for encode_sentences: one id per character."""

    def __call__(self, texts, max_length=None):
        rows = [[2] + [5 + (ord(c) % 40) for c in t][: (max_length or 64) - 2] + [3] for t in texts]
        width = max(map(len, rows))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": (ids != 0).long()}


def test_encode_sentences_applies_whitening_then_normalises(tmp_path):
    model = build_model(tiny_config(), with_pool=True).eval()
    tok = CharTokenizer()
    texts = ["abc", "a much longer text here", "xyz", "hello", "qq", "another one", "z"]
    batch = tok(texts)
    with torch.no_grad():
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"])
    raw = pool(out, batch["attention_mask"], "mean")
    w = fit_whitening(raw, dim=4)
    expected = F.normalize(w(raw), dim=-1)
    got = encode_sentences(model, tok, texts, pooling="mean", batch_size=3, whitening=w, progress=False)
    assert got.shape == (7, 4)
    assert (got - expected).abs().max() <= 1e-5
    w.save(tmp_path / "w.safetensors")
    from_path = encode_sentences(model, tok, texts, pooling="mean", whitening=str(tmp_path / "w.safetensors"))
    assert (from_path - expected).abs().max() <= 1e-5
    # pooler_linear is the pooler's dense layer without tanh
    lin = encode_sentences(model, tok, texts, pooling="pooler_linear", normalize=False)
    pooled = encode_sentences(model, tok, texts, pooling="pooler", normalize=False)
    assert (torch.tanh(lin) - pooled).abs().max() <= 1e-5


def test_progress_bar_for_large_inputs(capsys):
    model = build_model(tiny_config()).eval()
    encode_sentences(model, CharTokenizer(), ["ab", "c"] * 5, batch_size=4, progress=True)
    assert "encode 3/3" in capsys.readouterr().err
