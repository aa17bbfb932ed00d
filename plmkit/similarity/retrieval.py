"""Nearest-neighbour search over sentence vectors, and sentence indexes on disk (`plmkit similar`).

    VectorIndex:    exact inner-product search in torch (chunked matmul + top-k), or an approximate
                    HNSW index from faiss or usearch when installed (optional extras) for large sets
    SentenceIndex:  a directory holding the sentences, their vectors, the encoder's path and settings
                    (and a whitening transform when asked), so queries are encoded the same way

Vectors are normalised by default, so inner product is cosine similarity.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..convert.tensor_files import save_safetensors
from ..files import save_json
from ..hardware import resolve_device

logger = logging.getLogger("plmkit.similarity")

BACKENDS = ("auto", "exact", "faiss", "usearch")
# below this many vectors "auto" searches exactly: a matmul over them costs less than building a graph
EXACT_MAX = 200_000
INDEX_FORMAT = "plmkit.sentence_index/1"


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


class VectorIndex:
    """Top-k inner-product search over (N, D) vectors; `backend` picks exact torch search or an ANN library."""

    def __init__(self, vectors: torch.Tensor | np.ndarray, backend: str = "auto", *, hnsw_m: int = 32,
                 ef_search: int = 128) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, found {backend!r}")
        v = torch.as_tensor(vectors).detach().float().cpu().contiguous()
        if v.dim() != 2:
            raise ValueError(f"vectors must be (N, D), found shape {tuple(v.shape)}")
        if backend == "auto":
            backend = "exact"
            if len(v) > EXACT_MAX:
                backend = next((b for b in ("faiss", "usearch") if _installed(b)), "exact")
        self.vectors, self.backend = v, backend
        self._ann = None
        if backend == "faiss":
            self._ann = self._build_faiss(v, hnsw_m, ef_search)
        elif backend == "usearch":
            self._ann = self._build_usearch(v, hnsw_m, ef_search)

    def __len__(self) -> int:
        return len(self.vectors)

    @staticmethod
    def _build_faiss(v: torch.Tensor, m: int, ef_search: int):
        try:
            import faiss
        except ImportError:
            raise ImportError("backend='faiss' needs the faiss-cpu package (pip install faiss-cpu)") from None
        index = faiss.IndexHNSWFlat(v.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
        index.add(v.numpy())
        return index

    @staticmethod
    def _build_usearch(v: torch.Tensor, m: int, ef_search: int):
        try:
            from usearch.index import Index
        except ImportError:
            raise ImportError("backend='usearch' needs the usearch package (pip install usearch)") from None
        index = Index(ndim=v.shape[1], metric="ip", dtype="f32", connectivity=m, expansion_search=ef_search)
        index.add(np.arange(len(v), dtype=np.uint64), v.numpy())
        return index

    def search(self, queries: torch.Tensor | np.ndarray, k: int = 10,
               chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, ids), each (Q, min(k, N)), best first."""
        q = torch.as_tensor(queries).detach().float().cpu()
        if q.dim() == 1:
            q = q[None]
        if q.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"queries are {q.shape[1]}-d but the index holds {self.vectors.shape[1]}-d vectors")
        k = min(k, len(self.vectors))
        if k == 0 or len(q) == 0:
            return torch.zeros(len(q), k), torch.zeros(len(q), k, dtype=torch.long)
        if self.backend == "faiss":
            scores, ids = self._ann.search(q.numpy(), k)
            return torch.from_numpy(scores), torch.from_numpy(ids).long()
        if self.backend == "usearch":
            found = self._ann.search(q.numpy(), k)
            keys, dist = np.atleast_2d(found.keys), np.atleast_2d(found.distances)
            # usearch's "ip" distance is 1 - <q, v>
            return torch.from_numpy(1.0 - dist).float(), torch.from_numpy(keys.astype(np.int64))
        scores, ids = [], []
        for start in range(0, len(q), chunk_size):  # bounds the (chunk, N) score matrix
            s = q[start:start + chunk_size] @ self.vectors.T  # (chunk, N)
            top = s.topk(k, dim=1)
            scores.append(top.values)
            ids.append(top.indices)
        return torch.cat(scores), torch.cat(ids)


def retrieval_metrics(queries: torch.Tensor, corpus: torch.Tensor, gold: Sequence[int] | torch.Tensor,
                      chunk_size: int = 1024) -> dict[str, float]:
    """Exact top-1, top-5 accuracy and MRR of retrieving corpus[gold[i]] for queries[i] by inner product.

    Ties with the gold item count against it (its rank is 1 + the number of items scoring at least as high).
    """
    gold_t = torch.as_tensor(gold, dtype=torch.long)
    if len(gold_t) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(gold_t)} gold indices")
    ranks = []
    for start in range(0, len(queries), chunk_size):
        s = queries[start:start + chunk_size].float() @ corpus.float().T  # (chunk, N)
        g = gold_t[start:start + chunk_size]
        gold_score = s.gather(1, g[:, None])  # (chunk, 1)
        ranks.append((s >= gold_score).sum(1))  # includes the gold itself
    r = torch.cat(ranks).double()
    return {"top1": (r == 1).double().mean().item(), "top5": (r <= 5).double().mean().item(),
            "mrr": (1.0 / r).mean().item(), "n": float(len(r))}


# ---- sentence indexes on disk -----------------------------------------------------------------

@dataclass
class IndexSettings:
    """How the indexed vectors were made; queries are encoded the same way."""

    model: str
    pooling: str = "mean"
    max_length: int | None = None
    normalize: bool = True
    whitening: bool = False
    backend: str = "auto"
    format: str = INDEX_FORMAT


class SentenceIndex:
    """Sentences, their vectors and the encoder that made them; `query` finds the nearest sentences."""

    def __init__(self, sentences: list[str], vectors: torch.Tensor, settings: IndexSettings, model=None,
                 tokenizer=None, whitening=None, device: str | torch.device | None = None) -> None:
        self.sentences, self.settings = sentences, settings
        self.index = VectorIndex(vectors, settings.backend)
        self.model, self.tokenizer, self.whitening = model, tokenizer, whitening
        # where the encoder loads on the first query (a model passed in stays where it is)
        self.device = resolve_device(device) if model is None else None

    def _encoder(self):
        if self.model is None:
            self.model, self.tokenizer = load_encoder(self.settings.model, self.settings.pooling, device=self.device)
        return self.model, self.tokenizer

    def query(self, texts: Sequence[str], k: int = 10, batch_size: int = 32) -> list[list[tuple[int, str, float]]]:
        """For each text, the k nearest indexed sentences as (row, sentence, score).

        `row` counts the indexed sentences (the file's non-empty lines) from 0.
        """
        from ..sentence import encode_sentences

        model, tok = self._encoder()
        s = self.settings
        q = encode_sentences(model, tok, list(texts), pooling=s.pooling, normalize=s.normalize,
                             batch_size=batch_size, max_length=s.max_length, whitening=self.whitening)
        scores, ids = self.index.search(q, k)
        return [[(int(i), self.sentences[int(i)], float(v)) for v, i in zip(row_s, row_i)]
                for row_s, row_i in zip(scores, ids)]


def load_encoder(model_path: str | Path, pooling: str, device: str | torch.device | None = None):
    """(model, tokenizer) from a model directory, with the pooler when the pooling reads it, the model on
    `device` (default: CUDA when present, else CPU); encode_sentences runs where the model is."""
    from ..pretrained import from_pretrained
    from ..tokenizers import load_tokenizer

    device = resolve_device(device)  # checked before the model loads
    model = from_pretrained(model_path, with_pool=pooling in ("pooler", "pooler_linear")).eval().to(device)
    return model, load_tokenizer(model_path)


def read_sentences(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped; an empty file is an error that names it."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}): {e.reason}") from None
    sentences = [line for line in lines if line]
    if not sentences:
        raise ValueError(f"{path} holds no non-empty line to index")
    return sentences


def build_sentence_index(model_path: str | Path, sentences: str | Path | Sequence[str], out_dir: str | Path, *,
                         pooling: str = "mean", max_length: int | None = None, batch_size: int = 32,
                         whiten_dim: int | None = None, backend: str = "auto",
                         progress: bool | None = None, device: str | torch.device | None = None) -> Path:
    """Encode a file (one sentence a line) or list of sentences and write an index directory; returns it.

    `whiten_dim` fits BERT-whitening on the indexed sentences, keeping that many dimensions
    (0: all), and applies it to queries too. The directory appears only when complete. The sentences are
    encoded on `device` (default: CUDA when present, else CPU).
    """
    from ..sentence import encode_sentences
    from .whitening import fit_whitening

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, found {backend!r}")
    device = resolve_device(device)
    texts = read_sentences(sentences) if isinstance(sentences, (str, Path)) else list(sentences)
    if not texts:
        raise ValueError("no sentences to index")
    if any("\n" in t for t in texts):
        raise ValueError("sentences must not contain line breaks (the index stores one a line)")
    model, tok = load_encoder(model_path, pooling, device)
    out = Path(out_dir)
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    whitening = None
    if whiten_dim is not None:
        raw = encode_sentences(model, tok, texts, pooling=pooling, normalize=False, batch_size=batch_size,
                               max_length=max_length, progress=progress)
        whitening = fit_whitening(raw, dim=whiten_dim or None)
        whitening.save(work / "whitening.safetensors")
    vectors = encode_sentences(model, tok, texts, pooling=pooling, normalize=True, batch_size=batch_size,
                               max_length=max_length, whitening=whitening, progress=progress)
    settings = IndexSettings(model=str(Path(model_path).resolve()), pooling=pooling, max_length=max_length,
                             whitening=whitening is not None, backend=backend)
    (work / "sentences.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    save_safetensors({"vectors": vectors}, work / "vectors.safetensors")
    save_json(asdict(settings), work / "index.json")
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    logger.info("indexed %d sentences (%d-d) into %s", len(texts), vectors.shape[1], out)
    return out


def load_sentence_index(index_dir: str | Path, *, backend: str | None = None,
                        device: str | torch.device | None = None) -> SentenceIndex:
    """Open an index directory written by build_sentence_index (the encoder loads on `device` on the first
    query; default: CUDA when present, else CPU)."""
    from safetensors.torch import load_file

    from .whitening import Whitening

    device = resolve_device(device)  # a device this machine lacks fails now, not at the first query
    d = Path(index_dir)
    meta_path = d / "index.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{d} is not a sentence index: {meta_path.name} is missing")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != INDEX_FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {INDEX_FORMAT!r}")
    settings = IndexSettings(**meta)
    if backend is not None:
        settings.backend = backend
    sentences = (d / "sentences.txt").read_text(encoding="utf-8").split("\n")[:-1]
    vectors = load_file(str(d / "vectors.safetensors"))["vectors"]
    if len(sentences) != len(vectors):
        raise ValueError(f"{d}: sentences.txt has {len(sentences)} lines but vectors.safetensors "
                         f"{len(vectors)} rows")
    whitening = Whitening.load(d / "whitening.safetensors") if settings.whitening else None
    return SentenceIndex(sentences, vectors, settings, whitening=whitening, device=device)


def query_sentence_index(index_dir: str | Path, queries: Sequence[str], k: int = 10, backend: str | None = None,
                         device: str | torch.device | None = None) -> list[list[tuple[int, str, float]]]:
    """The k nearest indexed sentences for each query (encoded on `device`): (row, sentence, cosine score)."""
    return load_sentence_index(index_dir, backend=backend, device=device).query(queries, k)
