"""CLUE 1.1 tasks as released: file names, readers, official metrics and submission writers.

    task        files (train / dev / test)                      example                     submission
    afqmc       train / dev / test.json                         sentence1, sentence2, label afqmc_predict.json
    tnews       train / dev / test.json                         sentence, label, label_desc tnews11_predict.json
    iflytek     train / dev / test.json                         sentence, label, label_des  iflytek_predict.json
    cmnli       train / dev / test.json                         sentence1, sentence2, label cmnli_predict.json
    ocnli       train.50k / dev / test.json                     sentence1, sentence2, label ocnli_50k_predict.json
    cluewsc2020 train / dev / test.json                         text, target{span1_*, ...}  cluewsc11_predict.json
    csl         train / dev / test.json                         abst, keyword[], label      csl_predict.json
    cmrc2018    train / dev / test.json (SQuAD layout)          context, qas[question, id]  cmrc2018_predict.json
    c3          {d,m}-train / {d,m}-dev / test1.1.json          [dialogue[], qas[], id]     c311_predict.json
    chid        train(+_answer) / dev(+_answer) / test1.1.json  content[] with #idiom..#    chid11_predict.json
    cluener     train / dev / test.json                         text, label{type{span[]}}   cluener_predict.json

Classification submissions are JSON lines ``{"id": <test id>, "label": "<label>"}`` in test-file
order; C3 lines carry the index of the chosen answer; CMRC 2018 and CHID are one JSON object
(question id -> answer text, blank -> candidate index); CLUENER lines are
``{"id": ..., "label": {type: {entity: [[start, end], ...]}}}`` with ``end`` inclusive.
"""
from __future__ import annotations

import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..data import DataError, iter_rows, replace_surrogates_in
from ..files import atomic_write
from .cloze import ChidBlank
from .mrc import MrcExample
from .ner import NerExample

__all__ = ["TASKS", "TaskSpec", "ChoiceExample", "ClassificationExample", "find_task_dir", "get_task", "read_c3",
           "read_chid", "read_classification", "read_cluener", "read_cmrc2018", "read_split", "write_c3",
           "write_chid", "write_classification", "write_cluener", "write_cmrc2018", "write_submission_zip"]

logger = logging.getLogger("plmkit.clue")

TNEWS_LABELS = ("100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112", "113", "114", "115",
                "116")
IFLYTEK_LABELS = tuple(str(i) for i in range(119))
NLI_LABELS = ("entailment", "neutral", "contradiction")


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's files are, what kind of model it needs, its official metric and submission file."""

    name: str
    kind: str  # "classification" | "choice" | "cloze" | "mrc" | "ner"
    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]
    submission: str
    metric: str  # the dev metric selected on and reported: "accuracy", "em" or "f1"
    labels: tuple[str, ...] | None = None
    dirs: tuple[str, ...] = ()  # folder names the task's files may sit in under a CLUE data directory


def _spec(name: str, kind: str, submission: str, metric: str = "accuracy", *, train=("train.json",),
          dev=("dev.json",), test=("test.json",), labels=None, dirs=()) -> TaskSpec:
    return TaskSpec(name, kind, tuple(train), tuple(dev), tuple(test), submission, metric, labels,
                    (name, f"{name}_public", *dirs))


TASKS: dict[str, TaskSpec] = {s.name: s for s in (
    _spec("afqmc", "classification", "afqmc_predict.json", labels=("0", "1")),
    _spec("tnews", "classification", "tnews11_predict.json", labels=TNEWS_LABELS),
    _spec("iflytek", "classification", "iflytek_predict.json", labels=IFLYTEK_LABELS),
    _spec("cmnli", "classification", "cmnli_predict.json", labels=NLI_LABELS),
    _spec("ocnli", "classification", "ocnli_50k_predict.json", labels=NLI_LABELS, train=("train.50k.json",)),
    _spec("cluewsc2020", "classification", "cluewsc11_predict.json", labels=("false", "true"), dirs=("wsc",)),
    _spec("csl", "classification", "csl_predict.json", labels=("0", "1")),
    _spec("cmrc2018", "mrc", "cmrc2018_predict.json", "em"),
    _spec("c3", "choice", "c311_predict.json", train=("d-train.json", "m-train.json"),
          dev=("d-dev.json", "m-dev.json"), test=("test1.1.json",)),
    _spec("chid", "cloze", "chid11_predict.json", train=("train.json",), dev=("dev.json",), test=("test1.1.json",)),
    _spec("cluener", "ner", "cluener_predict.json", "f1", dirs=("cluener2020",)),
)}
ALIASES = {"wsc": "cluewsc2020", "cluewsc": "cluewsc2020", "cluener2020": "cluener", "ocnli_50k": "ocnli"}


def get_task(name: str) -> TaskSpec:
    """The spec of a CLUE task by name (case-insensitive; 'wsc' names CLUEWSC2020)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise KeyError(f"unknown CLUE task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[key]


def find_task_dir(spec: TaskSpec, data_dir: str | Path) -> Path:
    """The folder holding the task's training file: ``data_dir`` itself or one of its task-named subfolders."""
    root = Path(data_dir)
    for folder in [root] + [root / d for d in spec.dirs]:
        if (folder / spec.train[0]).is_file():
            return folder
    tried = ", ".join(str(root / d) for d in spec.dirs)
    raise FileNotFoundError(f"{spec.name}: no {spec.train[0]} in {root} nor in {tried}")


# ---- examples ---------------------------------------------------------------------------------

@dataclass
class ClassificationExample:
    """A text (and a second text for pair tasks) with its label name (None in test files)."""

    id: Any
    text: str
    pair: str | None
    label: str | None


@dataclass
class ChoiceExample:
    """A multiple-choice question about a passage (C3); ``label`` indexes ``choices``."""

    id: Any
    passage: str
    question: str
    choices: list[str]
    label: int | None


def _field(row: dict, key: str, path: Path, line: int) -> Any:
    if key not in row:
        raise DataError(f"{path}: line {line}: no field {key!r} (found fields {sorted(row)})")
    return row[key]


def _wsc_text(row: dict, path: Path, line: int) -> str:
    """The text with span1 (the candidate referent) in _underscores_ and span2 (the pronoun) in [brackets]."""
    text = str(_field(row, "text", path, line))
    target = _field(row, "target", path, line)
    spans = []
    for k in ("1", "2"):
        word = str(_field(target, f"span{k}_text", path, line))
        start = int(_field(target, f"span{k}_index", path, line))
        if text[start:start + len(word)] != word:
            # a few released indices are off by a character or two: take the nearest occurrence
            found = [m.start() for m in re.finditer(re.escape(word), text)]
            if not found:
                raise DataError(f"{path}: line {line}: span{k}_text {word!r} does not occur in the text")
            fixed = min(found, key=lambda s: abs(s - start))
            logger.warning("%s: line %d: span%s_index %d does not hold %r; using %d", path, line, k, start, word,
                           fixed)
            start = fixed
        spans.append((start, start + len(word), "_" if k == "1" else "["))
    out, last = [], 0
    for s, e, mark in sorted(spans):
        close = "_" if mark == "_" else "]"
        out += [text[last:s], mark, text[s:e], close]
        last = e
    return "".join(out + [text[last:]])


def read_classification(spec: TaskSpec, path: str | Path, labelled: bool = True) -> list[ClassificationExample]:
    """Examples of a classification task's JSON-lines file; ``labelled=False`` for test files.

    Labelled rows whose label is not one of the task's labels (CMNLI / OCNLI write "-" where
    annotators disagreed) are skipped, as the baselines do.
    """
    path = Path(path)
    out, skipped = [], 0
    for n, row in iter_rows(path, "jsonl"):
        rid = row.get("id", row.get("idx", len(out) + skipped))
        name = spec.name
        if name in ("afqmc", "cmnli", "ocnli"):
            text, pair = str(_field(row, "sentence1", path, n)), str(_field(row, "sentence2", path, n))
        elif name in ("tnews", "iflytek"):
            text, pair = str(_field(row, "sentence", path, n)), None
        elif name == "cluewsc2020":
            text, pair = _wsc_text(row, path, n), None
        elif name == "csl":
            keywords = _field(row, "keyword", path, n)
            if not isinstance(keywords, list):
                raise DataError(f"{path}: line {n}: field 'keyword' must be a list, found {type(keywords).__name__}")
            text, pair = "；".join(map(str, keywords)), str(_field(row, "abst", path, n))
        else:
            raise ValueError(f"{name} is not a classification task")
        label = None
        if labelled:
            label = str(_field(row, "label", path, n)).strip().lower() if name == "cluewsc2020" else \
                str(_field(row, "label", path, n)).strip()
            if label not in spec.labels:
                if name in ("cmnli", "ocnli"):
                    skipped += 1
                    continue
                raise DataError(f"{path}: line {n}: label {label!r} is not a {name} label {list(spec.labels)[:20]}")
        out.append(ClassificationExample(rid, text, pair, label))
    if skipped:
        logger.info("%s: skipped %d rows without a gold label", path, skipped)
    if not out:
        raise DataError(f"{path}: no examples found")
    return out


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    data, replaced = replace_surrogates_in(data)  # as data.iter_rows does for JSONL: half characters -> U+FFFD
    if replaced:
        logger.warning("%s: replaced %d lone UTF-16 surrogate(s) (half a character) with U+FFFD", path, replaced)
    return data


def read_c3(path: str | Path, labelled: bool = True) -> list[ChoiceExample]:
    """C3 questions: the file is one JSON array of [dialogue/paragraph lines, questions, document id]."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of documents, found {type(data).__name__}")
    out = []
    for d, doc in enumerate(data):
        if not (isinstance(doc, list) and len(doc) >= 2 and isinstance(doc[0], list) and isinstance(doc[1], list)):
            raise DataError(f"{path}: document {d}: expected [[lines...], [questions...], id]")
        passage = "\n".join(map(str, doc[0]))
        for q, qa in enumerate(doc[1]):
            where = f"{path}: document {d} question {q}"
            if "question" not in qa or "choice" not in qa:
                raise DataError(f"{where}: needs 'question' and 'choice' (found fields {sorted(qa)})")
            choices = [str(c) for c in qa["choice"]]
            label = None
            if labelled:
                if qa.get("answer") not in choices:
                    raise DataError(f"{where}: answer {qa.get('answer')!r} is not one of the choices {choices}")
                label = choices.index(qa["answer"])
            out.append(ChoiceExample(qa.get("id", len(out)), passage, str(qa["question"]), choices, label))
    if not out:
        raise DataError(f"{path}: no questions found")
    return out


_BLANK = re.compile(r"#idiom\d+#")


def read_chid(path: str | Path, answers: str | Path | None = None) -> list[ChidBlank]:
    """CHID blanks, one per ``#idiomNNNNNN#`` of each line's paragraphs; answers from ``*_answer.json``."""
    path = Path(path)
    gold = None
    if answers is not None:
        gold = _load_json(Path(answers))
        if not isinstance(gold, dict):
            raise DataError(f"{answers}: expected one JSON object of blank -> candidate index")
    out = []
    for group, (n, row) in enumerate(iter_rows(path, "jsonl")):
        candidates = [str(c) for c in _field(row, "candidates", path, n)]
        content = _field(row, "content", path, n)
        for paragraph in content if isinstance(content, list) else [content]:
            pieces = _BLANK.split(paragraph)
            keys = _BLANK.findall(paragraph)
            for i, key in enumerate(keys):
                answer = None
                if gold is not None:
                    if key not in gold:
                        raise DataError(f"{answers}: no answer for {key} (line {n} of {path})")
                    answer = int(gold[key])
                    if not 0 <= answer < len(candidates):
                        raise DataError(f"{answers}: answer {answer} of {key} is not a candidate index "
                                        f"(0..{len(candidates) - 1})")
                out.append(ChidBlank(key, group, pieces[:i + 1], pieces[i + 1:], candidates, answer))
    if not out:
        raise DataError(f"{path}: no #idiom# blanks found")
    return out


def read_cmrc2018(path: str | Path) -> list[MrcExample]:
    """CMRC 2018 questions from its SQuAD-layout JSON (data[].paragraphs[].qas[])."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{path}: expected an object with a 'data' list (SQuAD layout)")
    out = []
    for article in data["data"]:
        for p in article.get("paragraphs", []):
            context = p.get("context")
            if not isinstance(context, str):
                raise DataError(f"{path}: paragraph {p.get('id')!r} has no 'context' text")
            for qa in p.get("qas", []):
                if "id" not in qa or "question" not in qa:
                    raise DataError(f"{path}: paragraph {p.get('id')!r}: a question needs 'id' and 'question'")
                answers = []
                for a in qa.get("answers") or []:
                    text, start = str(a["text"]), int(a.get("answer_start", -1))
                    if start >= 0 and context[start:start + len(text)] != text:
                        found = context.find(text)
                        if found < 0:
                            raise DataError(f"{path}: question {qa['id']}: answer {text!r} is not in the context")
                        start = found
                    answers.append((text, start))
                out.append(MrcExample(str(qa["id"]), str(qa["question"]), context, answers))
    if not out:
        raise DataError(f"{path}: no questions found")
    return out


def read_cluener(path: str | Path, labelled: bool = True) -> list[NerExample]:
    """CLUENER lines: text and label {type: {entity text: [[start, end], ...]}} (end inclusive)."""
    path = Path(path)
    out = []
    for n, row in iter_rows(path, "jsonl"):
        text = str(_field(row, "text", path, n))
        entities = []
        if labelled:
            for kind, found in (row.get("label") or {}).items():
                for word, spans in found.items():
                    for start, end in spans:
                        if text[start:end + 1] != word:
                            raise DataError(f"{path}: line {n}: {kind} {word!r} at [{start}, {end}] reads "
                                            f"{text[start:end + 1]!r} in the text")
                        entities.append((int(start), int(end), str(kind)))
        out.append(NerExample(row.get("id", len(out)), text, sorted(entities)))
    if not out:
        raise DataError(f"{path}: no examples found")
    return out


def read_split(spec: TaskSpec, folder: str | Path, split: str) -> list:
    """Examples of one split ("train", "dev" or "test") of a task folder; test files are read unlabelled."""
    folder = Path(folder)
    if split not in ("train", "dev", "test"):
        raise ValueError(f"split must be 'train', 'dev' or 'test', found {split!r}")
    names = getattr(spec, split)
    labelled = split != "test"
    out: list = []
    for name in names:
        path = folder / name
        if spec.kind == "classification":
            out += read_classification(spec, path, labelled)
        elif spec.kind == "choice":
            out += read_c3(path, labelled)
        elif spec.kind == "cloze":
            answer = folder / name.replace(".json", "_answer.json") if labelled else None
            out += read_chid(path, answer)
        elif spec.kind == "mrc":
            out += read_cmrc2018(path)
        elif spec.kind == "ner":
            out += read_cluener(path, labelled)
        else:
            raise ValueError(f"unknown task kind {spec.kind!r}")
    return out


# ---- submission writers ----------------------------------------------------------------------

def _write_lines(path: Path, rows: Iterable[dict]) -> Path:
    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write(Path(path), write)
    return Path(path)


def _write_object(path: Path, obj: dict) -> Path:
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n",
                                                         encoding="utf-8"))
    return Path(path)


def write_classification(path: str | Path, examples: Sequence[ClassificationExample], labels: Sequence[str]) -> Path:
    """``{"id": <test id>, "label": "<label>"}`` per line, in test-file order."""
    if len(examples) != len(labels):
        raise ValueError(f"write_classification: {len(examples)} examples but {len(labels)} labels")
    return _write_lines(Path(path), ({"id": ex.id, "label": str(lab)} for ex, lab in zip(examples, labels)))


def write_c3(path: str | Path, examples: Sequence[ChoiceExample], choices: Sequence[int]) -> Path:
    """``{"id": <question id>, "label": <index of the chosen answer>}`` per line, in test-file order."""
    if len(examples) != len(choices):
        raise ValueError(f"write_c3: {len(examples)} questions but {len(choices)} predictions")
    return _write_lines(Path(path), ({"id": ex.id, "label": int(c)} for ex, c in zip(examples, choices)))


def write_chid(path: str | Path, answers: dict[str, int]) -> Path:
    """One JSON object: blank key ("#idiom000123#") -> index of the chosen candidate."""
    return _write_object(Path(path), {k: int(v) for k, v in answers.items()})


def write_cmrc2018(path: str | Path, answers: dict[str, str]) -> Path:
    """One JSON object: question id -> answer text."""
    return _write_object(Path(path), {k: str(v) for k, v in answers.items()})


def write_cluener(path: str | Path, examples: Sequence[NerExample], entities: Sequence[Iterable]) -> Path:
    """``{"id": ..., "label": {type: {entity text: [[start, end], ...]}}}`` per line (end inclusive)."""
    if len(examples) != len(entities):
        raise ValueError(f"write_cluener: {len(examples)} examples but {len(entities)} predictions")

    def rows():
        for ex, found in zip(examples, entities):
            label: dict[str, dict[str, list[list[int]]]] = {}
            for start, end, kind in sorted(found):
                label.setdefault(kind, {}).setdefault(ex.text[start:end + 1], []).append([start, end])
            yield {"id": ex.id, "label": label}
    return _write_lines(Path(path), rows())


def write_submission_zip(path: str | Path, files: Iterable[str | Path]) -> Path:
    """A zip of the prediction files at its root, as the CLUE site takes them."""
    files = [Path(f) for f in files]
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"write_submission_zip: duplicate file names {names}")

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, arcname=f.name)
    atomic_write(Path(path), write)
    return Path(path)
