"""Text to tensors: labelled files (CSV / TSV / JSONL), character vocabularies, MLM masking."""
from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

from .tokenizers.text import decode_utf8, replace_surrogates

logger = logging.getLogger("plmkit.data")

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class DataError(ValueError):
    """An input file cannot be read as asked: names the file, line and field."""


@dataclass
class Examples:
    """Texts (and optional pairs) with their labels as strings (None where a file has no labels)."""

    source: str
    texts: list[str] = field(default_factory=list)
    pairs: list[str] | None = None
    labels: list[str | None] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # 1-based line of each example, for messages

    def __len__(self) -> int:
        return len(self.texts)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "tsv"  # .tsv, .txt, .data (text<TAB>label, as bert4keras' sentiment files)


def iter_rows(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, dict[str, str] | list[str]]]:
    """(line number, row) pairs: dicts for JSONL, lists of fields for CSV/TSV, ``[line]`` for "text".

    Blank lines are skipped. Undecodable bytes raise a DataError naming the file and line. Lone
    UTF-16 surrogates (JSON's ``"\\ud83d"``, half an emoji) in any string of a row become U+FFFD,
    one character for one, with one warning per file giving the count and the first line; see
    plmkit.tokenizers.text for why they are replaced rather than refused.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    fmt = fmt or _format_of(path)
    if fmt not in ("jsonl", "csv", "tsv", "text"):
        raise ValueError(f"fmt must be 'jsonl', 'csv', 'tsv' or 'text', found {fmt!r}")
    text = decode_utf8(path.read_bytes(), str(path), error=DataError)
    if fmt == "text":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield n, [line]
        return
    if fmt == "jsonl":
        yield from _jsonl_rows(path, text)
        return
    csv.field_size_limit(1 << 30)  # long lines are truncated later, by tokens, not rejected here
    reader = csv.reader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t",
                        quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE)
    for row in reader:
        if row and any(f.strip() for f in row):
            yield reader.line_num, row


# Strict UTF-8 decoding refuses encoded surrogates, so only a JSON escape can bring one in.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    replaced, first = 0, 0
    try:
        # lines end at "\n" only: JSON strings may hold U+2028, U+0085 and friends raw, which
        # str.splitlines would break a row at (and line numbers would stop matching `wc -l`)
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {n}: expected a JSON object, found {type(row).__name__}")
            if _SURROGATE_ESCAPE.search(line):
                row, k = replace_surrogates_in(row)
                replaced += k
                first = first or (n if k else 0)
            yield n, row
    finally:  # also when the caller stops early or a later line fails: the rows read were changed
        if replaced:
            logger.warning("%s: replaced %d lone UTF-16 surrogate(s) (half a character, e.g. half an emoji, "
                           "a \\ud800-\\udfff escape without its pair) with U+FFFD, first on line %d",
                           path, replaced, first)


def replace_surrogates_in(value):
    """``value`` (a JSON value or a list of fields) with surrogates replaced in every string, and the count."""
    if isinstance(value, str):
        return replace_surrogates(value)
    if isinstance(value, list):
        pairs = [replace_surrogates_in(v) for v in value]
        return [v for v, _ in pairs], sum(k for _, k in pairs)
    if isinstance(value, dict):
        out, total = {}, 0
        for key, v in value.items():
            (key, k1), (v, k2) = replace_surrogates(key), replace_surrogates_in(v)
            out[key] = v
            total += k1 + k2
        return out, total
    return value, 0


def read_examples(path: str | Path, *, text_col: str = "text", pair_col: str | None = None,
                  label_col: str | None = "label", fmt: str | None = None) -> Examples:
    """Read labelled examples from CSV (header row), TSV (header row, or headerless) or JSONL.

    A TSV is headerless when its first row names neither `text_col` nor `label_col`; its
    columns are then text, label (or text, pair, label when pair_col is given).
    `label_col=None` reads unlabelled input (prediction).
    """
    path = Path(path)
    fmt = fmt or _format_of(path)
    out = Examples(source=str(path), pairs=[] if pair_col else None)
    rows = iter_rows(path, fmt)
    columns: list[str] | None = None
    for n, row in rows:
        if isinstance(row, list):
            if columns is None:
                if fmt == "csv" or (fmt == "tsv" and (text_col in row or (label_col and label_col in row))):
                    columns = row
                    missing = [c for c in (text_col, pair_col, label_col) if c and c not in columns]
                    if missing:
                        raise DataError(f"{path}: line {n}: header has no column {missing[0]!r} "
                                        f"(found columns {columns})")
                    continue
                columns = [text_col] + ([pair_col] if pair_col else []) + ([label_col] if label_col else [])
            if len(row) < len(columns):
                raise DataError(f"{path}: line {n}: expected {len(columns)} fields {columns}, found {len(row)}")
            record = dict(zip(columns, row))
        else:
            record = row
            for c in (text_col, pair_col, label_col):
                if c and c not in record:
                    raise DataError(f"{path}: line {n}: no field {c!r} (found fields {sorted(record)})")
        out.texts.append(_field(path, n, record, text_col, "text"))
        if pair_col:
            out.pairs.append(_field(path, n, record, pair_col, "text"))
        out.labels.append(_field(path, n, record, label_col, "label").strip() if label_col else None)
        out.lines.append(n)
    if not out.texts:
        raise DataError(f"{path}: no examples found (empty file?)")
    return out


def _field(path: Path, n: int, record: dict, column: str, kind: str) -> str:
    """A text or label field as a string; null, an empty label and a list / object are errors naming the line.

    A JSON null would otherwise become the text or class "None"; a missing label is an error, not
    a skip, so the number of examples trained on is the number of lines in the file.
    """
    value = record[column]
    if isinstance(value, (str, int, float)) and (kind == "label" or not isinstance(value, bool)):
        value = str(value)
        if kind == "label" and not value.strip():
            raise DataError(f"{path}: line {n}: field {column!r} is empty; every training example needs a label")
        return value
    found = "null" if value is None else f"{type(value).__name__} {json.dumps(value, ensure_ascii=False)[:60]}"
    expected = "a label (a string or a number)" if kind == "label" else "a string"
    raise DataError(f"{path}: line {n}: field {column!r} must be {expected}, found {found}")


def label_index(train: Examples) -> list[str]:
    """Sorted label names of the training set (numeric names in numeric order)."""
    names = sorted(set(train.labels), key=lambda s: (0, float(s), s) if _is_number(s) else (1, 0, s))
    if len(names) < 2:
        raise DataError(f"{train.source}: found {len(names)} distinct label(s) {names}; classification needs 2 or more")
    return names


def _is_number(s: str | None) -> bool:
    try:
        float(s)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


def encode_labels(data: Examples, names: Sequence[str], unknown: str = "never appears in the training set") -> list[int]:
    """Label ids; a label outside `names` raises, naming file and line (`unknown` says why it is unknown)."""
    index = {n: i for i, n in enumerate(names)}
    ids = []
    for label, line in zip(data.labels, data.lines):
        if label not in index:
            raise DataError(f"{data.source}: line {line}: label {label!r} {unknown} "
                            f"(known labels: {list(names)})")
        ids.append(index[label])
    return ids


def pad_rows(seqs: Sequence[Sequence[int]], value: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) right-padded ids and the 0/1 mask of real positions."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


def build_char_vocab(texts: Iterable[str], *, min_count: int = 2, max_size: int | None = None,
                     specials: Sequence[str] = SPECIALS, lowercase: bool = True) -> list[str]:
    """A character vocabulary (specials first, then characters by frequency) for a WordPiece tokenizer."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(c for c in (t.lower() if lowercase else t) if not c.isspace())
    chars = [c for c, k in counts.most_common() if k >= min_count and c not in specials]
    if max_size is not None:
        chars = chars[: max(0, max_size - len(specials))]
    return list(specials) + chars


def mask_tokens(input_ids: torch.Tensor, *, mask_id: int, vocab_size: int, special: torch.Tensor,
                prob: float = 0.15, word_ids: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's dynamic masking: pick `prob` of the (non-special) positions — whole words when
    `word_ids` groups tokens: word_ids[b, t] is the position of the first token of t's word —
    and replace 80% by [MASK], 10% by a random token, keep 10%.

    Returns (masked input ids, labels) with labels -100 at positions not picked.
    """
    shape = input_ids.shape
    if word_ids is None:
        picked = torch.rand(shape, generator=generator) < prob
    else:  # one draw per word, shared by its tokens (whole-word masking, arXiv:1906.08101)
        draws = torch.rand(shape, generator=generator)
        picked = torch.gather(draws, 1, word_ids.clamp(min=0)) < prob
    picked &= ~special
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(shape, generator=generator)
    masked = input_ids.clone()
    masked[picked & (action < 0.8)] = mask_id
    randomise = picked & (action >= 0.8) & (action < 0.9)
    masked[randomise] = torch.randint(len(SPECIALS), vocab_size, shape, generator=generator)[randomise]
    return masked, labels
