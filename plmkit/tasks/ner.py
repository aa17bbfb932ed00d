"""Named entities as character spans: tag schemes, token alignment, files, and entity-level F1.

An entity is ``(start, end, type)`` with ``end`` INCLUSIVE, as CLUENER writes them
(``text[start:end + 1]`` is the entity). Models see tokens; offsets from the tokenizer
(``return_offsets=True``: each token's [start, end) characters) map spans both ways.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..data import DataError

__all__ = ["NerExample", "bio_tag_names", "chars_to_tokens", "decode_bio", "encode_bio", "entity_f1",
           "read_char_tagged", "tags_to_spans", "tokens_to_chars"]

Entity = tuple[int, int, str]  # (start, end inclusive, type) in characters


@dataclass
class NerExample:
    """A text, its entities (empty for unlabelled test data) and the id a submission line needs."""

    id: int | str
    text: str
    entities: list[Entity] = field(default_factory=list)


def tags_to_spans(tags: Sequence[str]) -> list[Entity]:
    """Entities of a BIO / BMES / BIOES tag sequence ("B-PER", "I-PER"/"M-PER", "E-PER", "S-PER", "O").

    A continuation tag whose type differs from the open entity, or that follows "O", starts a
    new entity (conlleval's reading); "E-" and "S-" close the entity at that position.
    """
    spans: list[Entity] = []
    start, kind = -1, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        if prefix not in ("B", "I", "M", "E", "S", "O") or (prefix != "O" and not label):
            raise ValueError(f"tag {i}: {tag!r} is not O or B-/I-/M-/E-/S- followed by a type")
        continues = prefix in ("I", "M", "E") and kind == label
        if kind is not None and not continues:
            spans.append((start, i - 1, kind))
            kind = None
        if prefix in ("B", "S") or (prefix in ("I", "M", "E") and not continues):
            start, kind = i, label
        if prefix in ("E", "S") and kind is not None:
            spans.append((start, i, kind))
            kind = None
    return spans


def read_char_tagged(path: str | Path) -> list[NerExample]:
    """One character and its tag per line (space or tab separated), sentences split by blank lines."""
    path = Path(path)
    examples: list[NerExample] = []
    chars: list[str] = []
    tags: list[str] = []

    def flush(line_no: int) -> None:
        if chars:
            try:
                spans = tags_to_spans(tags)
            except ValueError as e:
                raise DataError(f"{path}: sentence ending before line {line_no}: {e}") from None
            examples.append(NerExample(len(examples), "".join(chars), spans))
            chars.clear()
            tags.clear()

    with path.open(encoding="utf-8-sig") as f:
        n = 0
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                flush(n)
                continue
            if len(fields) != 2 or len(fields[0]) != 1:
                raise DataError(f"{path}: line {n}: expected one character and a tag, found {line.rstrip()!r}")
            chars.append(fields[0])
            tags.append(fields[1])
        flush(n + 1)
    if not examples:
        raise DataError(f"{path}: no sentences found")
    return examples


def bio_tag_names(types: Sequence[str]) -> list[str]:
    """Tag vocabulary of the BIO scheme: "O", then B-t, I-t for each type."""
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def encode_bio(spans: Iterable[tuple[int, int, int]], length: int) -> list[int]:
    """BIO tag ids (O = 0, B-t = 1 + 2t, I-t = 2 + 2t) of token spans (type index, start, end inclusive)."""
    tags = [0] * length
    for t, s, e in sorted(spans, key=lambda x: (x[1], -x[2])):
        if any(tags[s:e + 1]):  # BIO cannot nest or overlap: the earlier, longer span wins
            continue
        tags[s] = 1 + 2 * t
        for i in range(s + 1, e + 1):
            tags[i] = 2 + 2 * t
    return tags


def decode_bio(tag_ids: Sequence[int], types: Sequence[str]) -> list[tuple[int, int, int]]:
    """(type index, start, end inclusive) token spans of BIO tag ids (the inverse of encode_bio)."""
    names = bio_tag_names(types)
    index = {t: i for i, t in enumerate(types)}
    return [(index[k], s, e) for s, e, k in tags_to_spans([names[i] for i in tag_ids])]


def chars_to_tokens(entities: Iterable[Entity], offsets: Sequence[Sequence[int]],
                    types: Sequence[str]) -> list[tuple[int, int, int]]:
    """Token spans (type index, first token, last token) of character entities.

    ``offsets[i]`` is token i's [start, end) in the text ((0, 0) for special tokens). An entity
    boundary inside a token takes that whole token; entities cut off by truncation are dropped.
    """
    index = {t: i for i, t in enumerate(types)}
    real = [(i, s, e) for i, (s, e) in enumerate(offsets) if e > s]  # in text order
    covered = real[-1][2] if real else 0  # characters past this were truncated away
    out = []
    for start, end, kind in entities:
        if kind not in index:
            raise ValueError(f"entity type {kind!r} is not among the known types {list(types)}")
        if end >= covered:
            continue
        first = next((i for i, s, e in real if e > start), None)
        last = next((i for i, s, e in reversed(real) if s <= end), None)
        if first is None or last is None or first > last:
            continue
        out.append((index[kind], first, last))
    return out


def tokens_to_chars(spans: Iterable[tuple[int, int, int]], offsets: Sequence[Sequence[int]],
                    types: Sequence[str]) -> list[Entity]:
    """Character entities (start, end inclusive, type) of token spans; spans touching special tokens are dropped."""
    out = []
    for t, s, e in spans:
        if offsets[s][1] <= offsets[s][0] or offsets[e][1] <= offsets[e][0]:
            continue
        out.append((int(offsets[s][0]), int(offsets[e][1]) - 1, types[t]))
    return out


def entity_f1(gold: Sequence[Iterable[Entity]], pred: Sequence[Iterable[Entity]]) -> dict[str, float]:
    """Micro precision, recall and F1 over exact (start, end, type) matches, summed over examples."""
    if len(gold) != len(pred):
        raise ValueError(f"entity_f1: {len(gold)} gold examples but {len(pred)} predictions")
    hit = n_gold = n_pred = 0
    for g, p in zip(gold, pred):
        g, p = set(g), set(p)
        hit += len(g & p)
        n_gold += len(g)
        n_pred += len(p)
    precision = hit / n_pred if n_pred else 0.0
    recall = hit / n_gold if n_gold else 0.0
    f1 = 2 * hit / (n_gold + n_pred) if n_gold + n_pred else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}
