"""Tokenizers: WordPiece (BERT family) now; SentencePiece (ALBERT / T5) plugs into ``load_tokenizer``."""

from __future__ import annotations

import os
from typing import Any

from ..files import read_json_object
from .vocab import simplify_vocab
from .wordpiece import CONFIG_FILE, VOCAB_FILE, WordPieceTokenizer

__all__ = ["WordPieceTokenizer", "load_tokenizer", "simplify_vocab"]

# tokenizer_config.json fields a WordPiece tokenizer takes, with the types they must have.
_WORDPIECE_FIELDS: dict[str, tuple[type, ...]] = {
    "do_lower_case": (bool,),
    "strip_accents": (bool, type(None)),
    "tokenize_chinese_chars": (bool,),
    "model_max_length": (int,),
    "unk_token": (str,),
    "sep_token": (str,),
    "pad_token": (str,),
    "cls_token": (str,),
    "mask_token": (str,),
}

# transformers writes "no limit" as a huge integer (int(1e30)); anything this large means none.
_NO_LIMIT = 10**12


def _read_config(path: str) -> dict[str, Any]:
    """WordPiece settings from a tokenizer_config.json; unrelated fields are ignored."""
    raw = read_json_object(path)
    out: dict[str, Any] = {}
    for field, types in _WORDPIECE_FIELDS.items():
        if field not in raw:
            continue
        value = raw[field]
        if isinstance(value, dict) and "content" in value:  # transformers' serialized AddedToken
            value = value["content"]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"{path}: field {field!r} must be {expected}, found {value!r}")
        if field == "model_max_length" and value >= _NO_LIMIT:
            continue
        out[field] = value
    return out


def _load_wordpiece(vocab_path: str, simplified: bool = False, **overrides: Any) -> WordPieceTokenizer:
    config_path = os.path.join(os.path.dirname(vocab_path), CONFIG_FILE)
    settings = _read_config(config_path) if os.path.isfile(config_path) else {}
    settings.update(overrides)
    tokenizer = WordPieceTokenizer(vocab_path, **settings)
    return tokenizer.simplified() if simplified else tokenizer


def _load_sentencepiece(model_file: str, **overrides: Any):
    from .sentencepiece import load_sentencepiece  # needs the optional `sentencepiece` package

    return load_sentencepiece(model_file, **overrides)


# What a tokenizer directory may hold, in the order tried: (file name, loader).
_LOADERS: list[tuple[str, Any]] = [
    (VOCAB_FILE, _load_wordpiece),
    ("spiece.model", _load_sentencepiece),  # ALBERT / T5 / mT5
]


def load_tokenizer(path: str | os.PathLike, **overrides: Any):
    """Load the tokenizer in a checkpoint directory, or from a vocabulary file given directly.

    Settings come from tokenizer_config.json beside the vocabulary when present (do_lower_case,
    strip_accents, tokenize_chinese_chars, model_max_length, special token names); keyword
    ``overrides`` win over it. ``simplified=True`` applies bert4keras vocabulary simplification and
    sets ``keep_tokens`` (original ids, in new-id order) for slicing embedding rows.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"tokenizer path {path!r} does not exist")
    if os.path.isdir(path):
        candidates = [(os.path.join(path, name), loader) for name, loader in _LOADERS]
    else:
        name = os.path.basename(path)
        loader = dict(_LOADERS).get("spiece.model") if name.endswith(".model") else _load_wordpiece
        candidates = [(path, loader)]
    for file_path, loader in candidates:
        if not os.path.isfile(file_path):
            continue
        return loader(file_path, **overrides)
    looked_for = ", ".join(name for name, _ in _LOADERS)
    raise FileNotFoundError(f"no tokenizer vocabulary in directory {path!r}: looked for {looked_for}")
