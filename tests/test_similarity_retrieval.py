"""Retrieval: exact search against numpy's argsort, ANN backends' recall against exact search, metrics by hand,
and a sentence index written and queried through the functions `plmkit similar` calls."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plmkit import save_pretrained
from plmkit.models import build_model
from plmkit.models.bert import tiny_config
from plmkit.sentence import encode_sentences
from plmkit.similarity.retrieval import (
    VectorIndex,
    build_sentence_index,
    load_sentence_index,
    query_sentence_index,
    retrieval_metrics,
)
from plmkit.tokenizers import WordPieceTokenizer


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_exact_search_matches_numpy_argsort():
    corpus, queries = _unit(500, 16, 0), _unit(37, 16, 1)
    scores, ids = VectorIndex(corpus, "exact").search(queries, k=7, chunk_size=10)
    s = queries.numpy() @ corpus.numpy().T
    ref = np.argsort(-s, axis=1, kind="stable")[:, :7]
    assert np.array_equal(ids.numpy(), ref)
    assert np.allclose(scores.numpy(), np.take_along_axis(s, ref, 1), atol=1e-6)
    assert VectorIndex(corpus).search(queries[0], k=1000)[1].shape == (1, 500)  # k capped at N
    with pytest.raises(ValueError, match="queries are 8-d"):
        VectorIndex(corpus).search(torch.zeros(2, 8))


ANN_INSTALL = {"faiss": "pip install faiss-cpu (plmkit's ann extra)", "usearch": "pip install usearch"}


@pytest.mark.parametrize("backend", ["faiss", "usearch"])
def test_approximate_backends_recall(backend):
    pytest.importorskip(backend, reason=f"{backend} (an optional ANN backend) not installed: {ANN_INSTALL[backend]}")
    corpus, queries = _unit(3000, 32, 2), _unit(50, 32, 3)
    exact = VectorIndex(corpus, "exact").search(queries, k=10)[1]
    scores, ids = VectorIndex(corpus, backend).search(queries, k=10)
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(exact, ids)])
    assert recall >= 0.9
    s = (queries @ corpus.T).gather(1, ids)  # the reported scores are inner products
    assert (scores - s).abs().max() <= 1e-4


def test_retrieval_metrics_by_hand():
    corpus = torch.eye(4)
    queries = torch.tensor([[1.0, 0, 0, 0],     # gold 0 at rank 1
                            [0.9, 0.5, 0, 0],   # gold 1 at rank 2
                            [0.1, 0.2, 0.3, 0.4]])  # gold 0 at rank 4
    m = retrieval_metrics(queries, corpus, [0, 1, 0])
    assert m["top1"] == pytest.approx(1 / 3)
    assert m["top5"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)


@pytest.fixture
def tiny_model_dir(tmp_path):
    chars = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars) + [f"##{c}" for c in chars]
    cfg = tiny_config().replace(vocab_size=len(vocab))
    model = build_model(cfg, with_pool=True)
    save_pretrained(model, tmp_path / "model")
    WordPieceTokenizer(vocab).save(tmp_path / "model")
    return tmp_path / "model"


def test_sentence_index_round_trip(tmp_path, tiny_model_dir):
    lines = ["the cat sat", "", "a dog ran far", "fish swim", "birds fly high", "the cat sat down"]
    (tmp_path / "s.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = build_sentence_index(tiny_model_dir, tmp_path / "s.txt", tmp_path / "idx", pooling="cls")
    assert not (tmp_path / "idx.partial").exists()
    hits = query_sentence_index(out, ["the cat sat", "fish swim"], k=3)
    assert [h[0][1] for h in hits] == ["the cat sat", "fish swim"]  # a sentence finds itself first
    assert hits[0][0][2] == pytest.approx(1.0, abs=1e-5)
    # scores are the cosines of independently encoded vectors
    from plmkit import from_pretrained, load_tokenizer
    model, tok = from_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir)
    indexed = [s for s in lines if s]
    v = encode_sentences(model, tok, indexed + ["fish swim"], pooling="cls")
    cos = v[-1] @ v[:-1].T
    # (a random tiny model puts all sentences close together: compare scores, not tie-prone orders)
    assert np.allclose([cos[h[0]].item() for h in hits[1]], [h[2] for h in hits[1]], atol=1e-5)
    assert np.allclose([h[2] for h in hits[1]], cos.sort(descending=True).values[:3].numpy(), atol=1e-5)

    # whitening fitted on the indexed sentences and applied to queries
    out_w = build_sentence_index(tiny_model_dir, indexed, tmp_path / "idx_w", pooling="mean", whiten_dim=3)
    index = load_sentence_index(out_w)
    assert index.index.vectors.shape == (5, 3)
    assert index.query(["birds fly high"], k=1)[0][0][1] == "birds fly high"


def test_index_errors(tmp_path, tiny_model_dir):
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.txt holds no non-empty line"):
        build_sentence_index(tiny_model_dir, tmp_path / "empty.txt", tmp_path / "idx")
    with pytest.raises(FileNotFoundError, match="index.json is missing"):
        load_sentence_index(tmp_path)
    with pytest.raises(ValueError, match="backend must be"):
        VectorIndex(torch.zeros(2, 2), "annoy")
