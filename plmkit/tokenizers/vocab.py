"""Vocabulary files and bert4keras-style vocabulary simplification (``keep_tokens``)."""

from __future__ import annotations

import io
import os
import unicodedata
from collections.abc import Iterable, Sequence

from .text import decode_utf8

#: Special tokens kept first, in this order, when a vocabulary is simplified (bert4keras's choice).
DEFAULT_KEEP_FIRST = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Ideograph blocks of the CJK Unified Ideographs and Compatibility Ideographs; the same
# ranges BERT's basic tokenizer treats as one-character words.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_cjk_char(ch: str) -> bool:
    """True if the one-character string is a CJK ideograph (BERT's definition)."""
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def is_punctuation_char(ch: str) -> bool:
    """True for Unicode punctuation (category P*) and every non-alphanumeric printable ASCII symbol."""
    code = ord(ch)
    # BERT counts ASCII symbols such as "$", "^" and "`" as punctuation although Unicode files them under S*.
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def read_vocab_file(path: str | os.PathLike) -> list[str]:
    """Read a WordPiece vocab.txt: one token per line, the line number is the id."""
    with open(path, "rb") as f:
        text = decode_utf8(f.read(), f"vocabulary file {os.fspath(path)!r}", bom=False,
                           where=lambda line: f"line {line} (token id {line - 1})",
                           hint="a vocab.txt must be UTF-8, one token per line")
    # Universal newlines, as text mode reads: files written on Windows give the same tokens.
    tokens = io.StringIO(text, newline=None).read().split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()  # the file's final line break ends the last token, it does not start one
    if not tokens:
        raise ValueError(f"vocabulary file {os.fspath(path)!r} is empty: expected one token per line")
    return tokens


def write_vocab_file(path: str | os.PathLike, tokens: Sequence[str]) -> None:
    """Write tokens one per line, atomically (temporary file, then os.replace)."""
    for i, token in enumerate(tokens):
        if "\n" in token or "\r" in token:
            raise ValueError(f"token {i} ({token!r}) contains a line break and cannot be stored in {os.fspath(path)!r}")
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(token + "\n" for token in tokens))
    os.replace(tmp, path)


def token_ids(tokens: Sequence[str]) -> dict[str, int]:
    """Map each token to its id; a token listed twice keeps its last line, as BERT's loaders do."""
    return {token: i for i, token in enumerate(tokens)}


def _is_droppable(token: str) -> bool:
    # Multi-character tokens made of CJK characters or punctuation are never produced by BERT
    # pre-tokenization (it splits those characters into one-character words), so they are dead rows.
    if len(token) <= 1:
        return False
    stem = token[2:] if token.startswith("##") else token
    return any(is_cjk_char(c) or is_punctuation_char(c) for c in stem)


def simplify_vocab(
    tokens: Sequence[str], startswith: Iterable[str] = DEFAULT_KEEP_FIRST
) -> tuple[list[str], list[int]]:
    """Drop unreachable multi-character CJK/punctuation tokens; return (new_tokens, keep_tokens).

    ``startswith`` tokens come first, in the given order. The rest keep their original order, minus
    every token longer than one character whose text (after a leading "##") holds a CJK character or
    a punctuation character. ``keep_tokens[new_id]`` is the original id of ``new_tokens[new_id]``, so
    ``embedding[keep_tokens]`` gives the rows of the simplified vocabulary.
    """
    ids = token_ids(tokens)
    new_tokens: list[str] = []
    keep_tokens: list[int] = []
    seen: set[str] = set()
    for token in startswith:
        if token not in ids:
            raise KeyError(f"simplify_vocab: token {token!r} listed in startswith is not in the vocabulary")
        if token in seen:
            raise ValueError(f"simplify_vocab: token {token!r} is listed twice in startswith")
        seen.add(token)
        new_tokens.append(token)
        keep_tokens.append(ids[token])
    # Iterate over the token->id map (last line wins) so a duplicated token is kept once, at the id
    # the tokenizer actually produces for it.
    for token, original_id in sorted(ids.items(), key=lambda item: item[1]):
        if token in seen or _is_droppable(token):
            continue
        seen.add(token)
        new_tokens.append(token)
        keep_tokens.append(original_id)
    return new_tokens, keep_tokens
