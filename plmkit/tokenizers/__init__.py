"""Tokenizers: WordPiece (BERT family), jieba words + WordPiece (T5 PEGASUS, WoBERT), SentencePiece (ALBERT / T5)."""

from __future__ import annotations

import os
from typing import Any

from ..files import read_json_object
from .jieba_wordpiece import PRE_TOKENIZE_NAME, JiebaWordPieceTokenizer
from .vocab import simplify_vocab
from .wordpiece import CONFIG_FILE, VOCAB_FILE, WordPieceTokenizer

__all__ = ["JiebaWordPieceTokenizer", "WordPieceTokenizer", "load_tokenizer", "simplify_vocab"]

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


_AUTO = object()  # load_tokenizer's pre_tokenize when the caller leaves it to the files


def _is_t5_config(path: str) -> bool:
    """True if config.json describes a T5-family model: HF model_type t5 / mt5, or bert4keras T5 keys."""
    if not os.path.isfile(path):
        return False
    d = read_json_object(path)
    # bert4keras T5 configs (T5 PEGASUS) carry no model_type; only T5's relative bias has this field.
    return d.get("model_type") in ("t5", "mt5") or "relative_attention_num_buckets" in d


def _pre_tokenize_setting(vocab_path: str, config_path: str) -> str | None:
    """"jieba" or None, from tokenizer_config.json's pre_tokenize, else a T5-family config.json beside vocab.txt.

    A vocab.txt beside a T5 config is T5 PEGASUS (mT5 with a BERT vocabulary of jieba words):
    https://kexue.fm/archives/8209.
    """
    if os.path.isfile(config_path):
        value = read_json_object(config_path).get("pre_tokenize", _AUTO)
        if value is not _AUTO:
            if value not in (PRE_TOKENIZE_NAME, None):
                raise ValueError(f"{config_path}: field 'pre_tokenize' must be {PRE_TOKENIZE_NAME!r} or null, "
                                 f"found {value!r}")
            return value
    model_config = os.path.join(os.path.dirname(vocab_path), "config.json")
    return PRE_TOKENIZE_NAME if _is_t5_config(model_config) else None


def _load_wordpiece(vocab_path: str, simplified: bool = False, pre_tokenize: Any = _AUTO,
                    **overrides: Any) -> WordPieceTokenizer:
    config_path = os.path.join(os.path.dirname(vocab_path), CONFIG_FILE)
    settings = _read_config(config_path) if os.path.isfile(config_path) else {}
    settings.update(overrides)
    if pre_tokenize is _AUTO:
        pre_tokenize = _pre_tokenize_setting(vocab_path, config_path)
    if pre_tokenize is None:
        tokenizer = WordPieceTokenizer(vocab_path, **settings)
    elif pre_tokenize == PRE_TOKENIZE_NAME:
        tokenizer = JiebaWordPieceTokenizer(vocab_path, **settings)
    elif callable(pre_tokenize):
        tokenizer = JiebaWordPieceTokenizer(vocab_path, pre_tokenize=pre_tokenize, **settings)
    else:
        raise ValueError(f"pre_tokenize must be {PRE_TOKENIZE_NAME!r}, None or a function text -> words, "
                         f"found {pre_tokenize!r}")
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

    A vocab.txt gives the jieba word tokenizer (:class:`JiebaWordPieceTokenizer`, T5 PEGASUS) when
    tokenizer_config.json says ``"pre_tokenize": "jieba"`` or config.json beside it is a T5-family
    config, else BERT WordPiece; ``pre_tokenize="jieba"`` / ``None`` / a function choose explicitly.
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
