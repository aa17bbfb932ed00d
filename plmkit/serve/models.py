"""What a model directory is, and the batch functions the server calls on it (one copy of each model).

    fewshot.json          plmkit pet / ptune output    ─► classify (FewShotClassifier)
    seq2seq.json          plmkit seq2seq output        ─► generate (Seq2SeqGenerator; streamed greedy / sampling)
    index.json            plmkit similar index         ─► similar, embed (the index's encoder, pooling, whitening)
    config.json + labels  plmkit finetune output       ─► classify (TextClassifier)
    any other checkpoint  an encoder                   ─► embed (encode_sentences)
    onnx.json             plmkit export output         ─► classify or embed in onnxruntime (onnx_models.py)

With --runtime onnx, finetune classifiers and encoders are exported at startup and answered by onnxruntime
too (onnx_models.py); the other kinds keep torch.

Every function here runs in the server's worker thread, never on the event loop.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .config import ServeConfig

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# options a generate request may set, passed to plmkit.generate; the rest are as the directory was trained
GENERATE_OPTIONS = ("num_beams", "do_sample", "temperature", "top_k", "top_p", "seed")


@dataclass
class ServedModel:
    """One loaded model: its name, directory, kind, and a batch function per route it answers."""

    name: str
    path: Path
    kind: str
    routes: dict[str, Callable[[list], list]]
    info: dict[str, Any] = field(default_factory=dict)
    stream: Callable[[str, dict], Iterator[str]] | None = None  # generate's token-by-token text


def parse_model_specs(specs: list[str]) -> list[tuple[str, Path]]:
    """(name, directory) for each --model given as DIR or NAME=DIR; the name defaults to the folder's name."""
    out: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and NAME.match(name) and rest:
            path = Path(rest)
        else:
            path = Path(spec)
            name = path.resolve().name
            if not NAME.match(name):
                raise ValueError(f"--model {spec}: the folder name {name!r} cannot name a model in a URL; give "
                                 "NAME=DIR with a name of letters, digits, '_', '.', '-'")
        if not path.exists():
            raise FileNotFoundError(f"--model {spec}: {path} does not exist")
        if any(n == name for n, _ in out):
            raise ValueError(f"--model {spec}: the name {name!r} is taken by another --model; give NAME=DIR")
        out.append((name, path))
    return out


def kind_of(path: str | Path) -> str:
    """"fewshot", "seq2seq", "index", "classifier" or "encoder": what a directory is, read from its files."""
    from ..pretrained import open_checkpoint
    from ..recipes.seq2seq import is_seq2seq_dir

    path = Path(path)
    if (path / "fewshot.json").is_file():
        return "fewshot"
    if is_seq2seq_dir(path):
        return "seq2seq"
    if (path / "index.json").is_file():
        return "index"
    model_dir = path / "model" if (path / "model" / "config.json").is_file() else path
    return "classifier" if open_checkpoint(model_dir).config.labels else "encoder"


def load_model(name: str, path: Path, cfg: ServeConfig) -> ServedModel:
    """Load the directory once, on cfg.device at cfg.precision (or in onnxruntime), with the routes its kind
    answers; info["runtime"] says which engine runs it."""
    from .onnx_models import is_onnx_dir, load_onnx

    if is_onnx_dir(path):  # only onnxruntime can run an export (it holds no torch weights)
        return load_onnx(name, Path(path), None, cfg)
    kind = kind_of(path)
    if cfg.runtime == "onnx" and kind in ("classifier", "encoder"):
        return load_onnx(name, Path(path), kind, cfg)
    served = {"fewshot": _fewshot, "seq2seq": _seq2seq, "index": _index, "classifier": _classifier,
            "encoder": _encoder}[kind](name, Path(path), cfg)
    served.info["runtime"] = "torch"
    return served


def _classify_with(predict: Callable, labels: list[str]) -> Callable[[list], list]:
    """A batch function over (text, pair or None) items: texts with and without a pair run as two calls."""

    def run(items: list[tuple[str, str | None]]) -> list[dict]:
        out: list[dict | None] = [None] * len(items)
        for has_pair in (False, True):
            idx = [i for i, (_, pair) in enumerate(items) if (pair is not None) == has_pair]
            if not idx:
                continue
            texts = [items[i][0] for i in idx]
            pairs = [items[i][1] for i in idx] if has_pair else None
            for i, (label, probs) in zip(idx, predict(texts, pairs, batch_size=len(texts))):
                out[i] = {"label": label, "probs": dict(zip(labels, probs))}
        return out
    return run


def _classifier(name: str, path: Path, cfg: ServeConfig) -> ServedModel:
    from ..recipes.finetune import TextClassifier

    clf = TextClassifier(path, cfg.max_length, cfg.precision, cfg.device)
    return ServedModel(name, path, "classifier", {"classify": _classify_with(clf.predict, clf.labels)},
                       {"labels": clf.labels, "family": clf.model.config.family, "device": str(clf.device)})


def _fewshot(name: str, path: Path, cfg: ServeConfig) -> ServedModel:
    from ..hardware import resolve_device
    from ..recipes.fewshot import FewShotClassifier

    if cfg.precision != "fp32":  # as predict_file refuses it
        raise ValueError(f"{path}: a pet / ptune classifier predicts in fp32 only, found precision {cfg.precision!r}")
    clf = FewShotClassifier(path, device=cfg.device)
    return ServedModel(name, path, "fewshot", {"classify": _classify_with(clf.predict, clf.labels)},
                       {"labels": clf.labels, "members": len(clf.members), "device": str(resolve_device(cfg.device))})


def _embed_with(model, tokenizer, **encode: Any) -> Callable[[list], list]:
    from ..sentence import encode_sentences

    def run(texts: list[str]) -> list[list[float]]:
        return encode_sentences(model, tokenizer, texts, batch_size=max(len(texts), 1), progress=False,
                                **encode).tolist()
    return run


def _load_encoder(path: Path, pooling: str, cfg: ServeConfig):
    import plmkit
    from ..hardware import inference_device
    from ..pretrained import inference_options

    device = inference_device(cfg.device, cfg.precision)
    model = plmkit.from_pretrained(path, with_pool=pooling in ("pooler", "pooler_linear"),
                                   **inference_options(cfg.precision)).eval().to(device)
    return model, plmkit.load_tokenizer(path), device


def _encoder(name: str, path: Path, cfg: ServeConfig) -> ServedModel:
    model, tok, device = _load_encoder(path, cfg.pooling, cfg)
    return ServedModel(name, path, "encoder",
                       {"embed": _embed_with(model, tok, pooling=cfg.pooling, max_length=cfg.max_length)},
                       {"pooling": cfg.pooling, "dim": model.config.hidden_size, "family": model.config.family,
                        "device": str(device)})


def _index(name: str, path: Path, cfg: ServeConfig) -> ServedModel:
    from ..similarity.retrieval import load_sentence_index

    index = load_sentence_index(path, device=cfg.device)
    s = index.settings
    # the index's encoder, loaded now at the served precision (SentenceIndex loads it at the first query)
    index.model, index.tokenizer, device = _load_encoder(Path(s.model), s.pooling, cfg)
    embed = _embed_with(index.model, index.tokenizer, pooling=s.pooling, normalize=s.normalize,
                        max_length=s.max_length, whitening=index.whitening)

    def similar(items: list[tuple[str, int]]) -> list[list[dict]]:
        k = max(k for _, k in items)
        hits = index.query([t for t, _ in items], k=min(k, len(index.sentences)), batch_size=max(len(items), 1))
        return [[{"row": r, "sentence": sent, "score": score} for r, sent, score in row[:want]]
                for row, (_, want) in zip(hits, items)]
    dim = index.whitening.dim if index.whitening is not None else index.model.config.hidden_size
    return ServedModel(name, path, "index", {"similar": similar, "embed": embed},
                       {"sentences": len(index.sentences), "encoder": s.model, "pooling": s.pooling,
                        "whitening": s.whitening, "dim": dim, "device": str(device)})


def _seq2seq(name: str, path: Path, cfg: ServeConfig) -> ServedModel:
    from ..recipes.seq2seq import Seq2SeqGenerator

    gen = Seq2SeqGenerator(path, precision=cfg.precision, device=cfg.device)

    def generate(items: list[tuple[str, tuple]]) -> list[str]:
        """Items with the same options decode together (a seeded sampling request with its own seed alone)."""
        out: list[str | None] = [None] * len(items)
        for options in dict.fromkeys(o for _, o in items):
            idx = [i for i, (_, o) in enumerate(items) if o == options]
            texts = gen.generate([items[i][0] for i in idx], batch_size=len(idx), **dict(options))
            for i, text in zip(idx, texts):
                out[i] = text
        return out

    return ServedModel(name, path, "seq2seq", {"generate": generate},
                       {"mode": gen.mode, "generation": gen.generation, "max_target_length": gen.pairs.max_target,
                        "device": str(gen.device)}, stream=lambda text, options: stream_text(gen, text, options))


def stream_text(gen, source: str, options: dict) -> Iterator[str]:
    """The generated text for one source so far, after each decoding step that changes it (greedy or sampling);
    the last equals Seq2SeqGenerator.generate([source], num_beams=1, **options)[0]."""
    from ..generation import generate_stream

    pairs = gen.pairs
    ids = torch.tensor([pairs.source_ids(source)], device=gen.device)
    extra = ({"decoder_start_token_id": pairs.decoder_start} if gen.mode == "encoder-decoder"
             else {"token_type_ids": torch.zeros_like(ids)})
    tokens = generate_stream(gen.model, ids, attention_mask=torch.ones_like(ids), max_new_tokens=pairs.max_target,
                             eos_token_id=pairs.end, pad_token_id=pairs.pad, **extra,
                             **(gen.generation | {"num_beams": 1} | options))
    body: list[int] = []
    text = ""
    for step in tokens:  # (1,) new token per step
        token = int(step[0])
        if token == pairs.end:
            break
        body.append(token)
        now = gen.tokenizer.decode(body).strip()
        if now != text:
            text = now
            yield text
