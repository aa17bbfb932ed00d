"""Fine-tune a pretrained encoder for single-text or text-pair classification, and predict with it.

    train/valid/test files ─► read_examples ─► tokenizer ─► encoder + classifier on the pooled output
                          ─► Trainer (AdamW, warmup + linear decay, early stopping on valid accuracy)
                          ─► best weights ─► model directory (HF format + tokenizer + label names)

The output directory appears only when the run is complete: work happens in `<out>.partial`
(resumable: run the same command again after an interruption), renamed at the end.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..data import DataError, Examples, encode_labels, iter_rows, label_index, read_examples
from ..files import atomic_write, save_json
from ..hardware import inference_device, resolve_device, resolve_precision
from ..pretrained import from_pretrained, inference_options, save_pretrained
from ..tokenizers import load_tokenizer
from ..training import (EMA, LengthGroupedBatches, Trainer, build_optimizer, lambda_scheduler, move_to,
                        set_hidden_dropout, warmup_linear)
from ..training.checkpoint import file_digest, load_checkpoint
from .outputs import FieldCheck, claim, partial_dir, publish

logger = logging.getLogger("plmkit.finetune")


@dataclass
class FinetuneConfig:
    """Defaults that suit a small model on a few thousand examples."""

    max_length: int = 128
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    epochs: int = 3
    warmup: float = 0.1
    patience: int = 2
    group_by_length: bool = True  # batches of similar lengths (less padding; see training.LengthGroupedBatches)
    ema: float = 0.0  # > 0: validate and keep an exponential moving average of the weights with this decay
    rdrop: float = 0.0  # > 0: R-Drop with this KL weight (each batch runs twice: about twice the time per step)
    dropout: float | None = None  # hidden and classifier dropout while fine-tuning; None: the model config's
    train_seconds: float | None = None  # run as many epochs (up to `epochs`) as fit in this many seconds of
    # training on this machine, from step times measured before training (see fit_epochs); None: `epochs`
    precision: str = "auto"  # bf16 autocast where native to the device, else fp32 (plmkit.hardware)
    device: str | None = None  # default: cuda when available, else cpu
    seed: int = 0
    text_col: str = "text"
    pair_col: str | None = None
    label_col: str = "label"

    def __post_init__(self) -> None:
        """Every field checked here, so a bad value fails before any file is read or written."""
        check = FieldCheck(self)
        bad, number = check.bad, check.number

        special = 3 if self.pair_col is None else 5  # [CLS] text [SEP] (pair [SEP]): one token of each text
        if number("max_length", int) < special:
            raise bad("max_length", f">= {special}, room for [CLS] text [SEP]" + (" pair [SEP]" if self.pair_col
                                                                                    else "") + " with one token each")
        check.optimisation()
        if not 0 <= number("ema") < 1:
            raise bad("ema", "0 (off) or a decay in (0, 1)")
        if not number("rdrop") >= 0:
            raise bad("rdrop", "0 (off) or a KL weight > 0")
        if self.dropout is not None and not 0 <= number("dropout") < 1:
            raise bad("dropout", "a probability in [0, 1), or None")
        if self.train_seconds is not None and not number("train_seconds") > 0:
            raise bad("train_seconds", "> 0 seconds, or None")
        if not isinstance(self.group_by_length, bool):
            raise bad("group_by_length", "true or false")
        check.columns("text_col", "label_col", *(("pair_col",) if self.pair_col is not None else ()))


class Batches:
    """Tokenise (text[, pair], label) rows into padded tensors."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, rows: list[tuple]) -> dict[str, torch.Tensor]:
        texts = [r[0] for r in rows]
        pairs = [r[1] for r in rows] if rows[0][1] is not None else None
        batch = self.tokenizer(texts, pairs, max_length=self.max_length)
        if rows[0][2] is not None:
            batch["labels"] = torch.tensor([r[2] for r in rows])
        return batch


def _rows(data: Examples, labels: list[int] | None) -> list[tuple]:
    pairs = data.pairs or [None] * len(data)
    return list(zip(data.texts, pairs, labels if labels is not None else [None] * len(data)))


def _longest_first(rows: Sequence[tuple]) -> list[int]:
    """Row indices by decreasing text length: evaluation batches of similar lengths carry little padding."""
    return sorted(range(len(rows)), key=lambda i: -(len(rows[i][0]) + len(rows[i][1] or "")))


def classification_loss(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of the label logits, and the example count."""
    out = model(batch["input_ids"], token_type_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"])
    return F.cross_entropy(out.label_logits.float(), batch["labels"], reduction="sum"), batch["labels"].new_tensor(
        batch["labels"].numel())


def rdrop_loss(alpha: float):
    """R-Drop (Liang et al., 2021): every example goes through the model twice, under two dropout
    masks, and the two predictions are pulled together. Per example, as in bert4keras's example:

        (CE(p1, y) + CE(p2, y)) / 2  +  alpha / 4 * (KL(p1 || p2) + KL(p2 || p1))

    returned summed over the batch with the example count, like `classification_loss`."""
    def loss_fn(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        twice = lambda t: torch.cat([t, t])  # noqa: E731  one forward pass of both copies
        out = model(twice(batch["input_ids"]), token_type_ids=twice(batch["token_type_ids"]),
                    attention_mask=twice(batch["attention_mask"]))
        logp = out.label_logits.float().log_softmax(-1)
        n = batch["labels"].numel()
        ce = F.nll_loss(logp, twice(batch["labels"]), reduction="sum") / 2
        p1, p2 = logp[:n], logp[n:]
        kl = (p1.exp() * (p1 - p2)).sum() + (p2.exp() * (p2 - p1)).sum()
        return ce + alpha / 4 * kl, batch["labels"].new_tensor(n)
    return loss_fn


def _budgeted_epochs(cfg: FinetuneConfig, model, loss_fn, rows: list[tuple], collate, device: torch.device,
                     work: Path) -> tuple[int, dict]:
    """fit_epochs on this run's batches; the answer is kept in `work` so a resumed run keeps its schedule."""
    plan = work / "budget.json"
    if plan.exists():
        budget = json.loads(plan.read_text(encoding="utf-8"))
        return budget["epochs"], budget
    # padded tokens of each batch of one epoch, as the loader will form them ([CLS] text [SEP] [pair [SEP]])
    lengths = [min(len(t) + 2 + (len(p) + 1 if p else 0), cfg.max_length) for t, p, _ in rows]
    if cfg.group_by_length:
        order = list(LengthGroupedBatches(lengths, cfg.batch_size, torch.Generator().manual_seed(cfg.seed + 1)))
    else:
        perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed + 1)).tolist()
        order = [perm[i:i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)]
    order.sort(key=lambda b: len(b) * max(lengths[i] for i in b))
    tokens = sum(len(b) * max(lengths[i] for i in b) for b in order)
    timed = [order[len(order) // 2], order[int(len(order) * 0.9)], order[-1]]  # typical, long, longest
    precision = resolve_precision(cfg.precision, device)
    epochs, budget = fit_epochs(model, loss_fn, [collate([rows[i] for i in b]) for b in timed],
                                (len(order), tokens), cfg.train_seconds, cfg.epochs, precision, device)
    budget["train_seconds"] = cfg.train_seconds
    logger.info("time budget %.0f s: one epoch estimated at %.0f s on this machine -> %d epoch%s",
                cfg.train_seconds, budget["epoch_seconds_estimate"], epochs, "s" * (epochs > 1))
    work.mkdir(parents=True, exist_ok=True)
    save_json(budget, plan)
    return epochs, budget


def fit_epochs(model, loss_fn, batches: Sequence[dict], epoch: tuple[int, int], seconds: float, most: int,
               precision: str, device: torch.device) -> tuple[int, dict]:
    """How many epochs (1..most) of training fit in `seconds`, from steps timed on this machine.

    A step's time is close to affine in its padded tokens (B x T): the forward and backward of
    each of `batches` (e.g. a typical one, a long one, the longest) is timed on its second run
    (the first pays one-off set-up for its shape), a line is fitted through (tokens, seconds),
    and one epoch, `epoch` = (steps, padded tokens),
    known in advance from the batch sampler, is priced on it, plus 10% for the optimizer,
    validation and checkpoints. Weights, gradients and random states are left as they were.
    Returns the epochs and what was measured."""
    model.train()
    points = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for batch in batches:
            batch = move_to(batch, device)
            for attempt in range(2):
                start = time.perf_counter()
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss, _ = loss_fn(model, batch)
                loss.backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if attempt:
                    points.append((batch["input_ids"].numel(), time.perf_counter() - start))
    model.zero_grad(set_to_none=True)
    x = torch.tensor([p[0] for p in points], dtype=torch.float64)
    y = torch.tensor([p[1] for p in points], dtype=torch.float64)
    if len(points) > 1 and x.max() > x.min():
        slope = max(float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()), 0.0)
        intercept = max(float(y.mean()) - slope * float(x.mean()), 0.0)
    else:
        slope, intercept = float(y.sum() / x.sum()), 0.0
    steps, tokens = epoch
    epoch_seconds = 1.1 * (intercept * steps + slope * tokens)
    epochs = max(1, min(most, int(seconds // max(epoch_seconds, 1e-9))))
    return epochs, {"epoch_seconds_estimate": round(epoch_seconds, 1), "epochs": epochs,
                    "timed_steps": [(t, round(sec, 4)) for t, sec in points]}


@torch.no_grad()
def predict_probs(model, loader) -> torch.Tensor:
    """(N, num_labels) probabilities over a loader of tokenised batches."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for batch in loader:
        batch = move_to(batch, device)
        logits = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                       attention_mask=batch["attention_mask"]).label_logits
        out.append(logits.float().softmax(-1).cpu())
    return torch.cat(out)


def accuracy_metric(model, loader) -> dict[str, float]:
    """Accuracy of argmax predictions against the batches' labels."""
    probs = predict_probs(model, loader)
    labels = torch.cat([b["labels"] for b in loader])
    return {"accuracy": (probs.argmax(-1) == labels).float().mean().item()}


def finetune(model_path: str | Path, train: str | Path, valid: str | Path, out_dir: str | Path,
             test: str | Path | None = None, cfg: FinetuneConfig | None = None, *, progress: bool = True,
             overwrite: bool = False) -> dict:
    """Train a classifier, keep the best epoch on valid, write the model directory; returns the results.

    Every input is checked (files, labels, that each row tokenises, max_length against the model's
    positions) before anything is written. The run works in `<out>.partial`, whose `run.json`
    records the inputs' digests and the settings: the same call resumes it, a different one is
    refused (`overwrite` discards it instead)."""
    cfg = cfg or FinetuneConfig()
    out = Path(out_dir)
    work = partial_dir(out, overwrite)
    started = time.time()
    read = dict(text_col=cfg.text_col, pair_col=cfg.pair_col, label_col=cfg.label_col)
    train_ex, valid_ex = read_examples(train, **read), read_examples(valid, **read)
    names = label_index(train_ex)
    train_y, valid_y = encode_labels(train_ex, names), encode_labels(valid_ex, names)
    test_ex = read_examples(test, **read) if test else None
    test_y = encode_labels(test_ex, names) if test_ex is not None else None

    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(model_path)
    model = from_pretrained(model_path, num_labels=len(names))
    model.config.labels = list(names)
    if cfg.dropout is not None:
        set_hidden_dropout(model, cfg.dropout)
    device = resolve_device(cfg.device)
    collate = Batches(tokenizer, cfg.max_length)
    for ex, y in ((train_ex, train_y), (valid_ex, valid_y), (test_ex, test_y)):
        if ex is not None:
            _check_rows_encode(collate, ex, _rows(ex, y), _position_limit(model), model_path)
    identity = {"recipe": "plmkit finetune", "model": str(Path(model_path).resolve()),
                "sha256": {"train": file_digest(train), "valid": file_digest(valid),
                           "test": file_digest(test) if test else None},
                # device and precision may change when a run resumes on another machine
                "config": {k: v for k, v in asdict(cfg).items() if k not in ("device", "precision")}}
    claim(work, identity, overwrite=overwrite)  # the first file written

    model.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_rows = _rows(train_ex, train_y)
    if cfg.group_by_length:
        lengths = [len(t) + len(p or "") for t, p, _ in train_rows]
        train_loader = torch.utils.data.DataLoader(train_rows, collate_fn=collate, batch_sampler=LengthGroupedBatches(
            lengths, cfg.batch_size, generator))
    else:
        train_loader = torch.utils.data.DataLoader(train_rows, batch_size=cfg.batch_size, shuffle=True,
                                                   generator=generator, collate_fn=collate)
    def eval_loader(ex: Examples, y: list[int]) -> torch.utils.data.DataLoader:
        rows = _rows(ex, y)  # accuracy does not depend on the order: longest first, little padding
        return torch.utils.data.DataLoader([rows[i] for i in _longest_first(rows)], batch_size=64, collate_fn=collate)

    valid_loader = eval_loader(valid_ex, valid_y)
    loss_fn = rdrop_loss(cfg.rdrop) if cfg.rdrop else classification_loss
    with _write_errors_name(work):
        epochs, budget = cfg.epochs, None
        if cfg.train_seconds:
            epochs, budget = _budgeted_epochs(cfg, model, loss_fn, train_rows, collate, device, work)
        steps = len(train_loader) * epochs
        optimizer = build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = lambda_scheduler(optimizer, warmup_linear(int(steps * cfg.warmup), steps))
        ema = EMA(model, cfg.ema) if cfg.ema else None  # best.pt then holds the averaged weights
        trainer = Trainer(model.train(), loss_fn, optimizer, scheduler, max_grad_norm=1.0, ema=ema,
                          precision=cfg.precision, out_dir=work, progress=progress, log_every=20)
        result = trainer.fit(train_loader, epochs=epochs, valid_loader=valid_loader, metric_fn=accuracy_metric,
                             early_stopping_patience=cfg.patience, monitor="accuracy", mode="max", valid_loss=False)
        best = work / "best.pt"
        if best.exists():
            model.load_state_dict(load_checkpoint(best)["model"])
        model.eval()
        report = {"labels": names, "train_examples": len(train_ex), "valid_examples": len(valid_ex),
                  "valid_accuracy": accuracy_metric(model, valid_loader)["accuracy"], "epochs_run": result["epoch"],
                  "steps": result["step"], "config": asdict(cfg), "precision": trainer.precision,
                  "device": str(trainer.device), "model": str(model_path), "seconds": None}
        if budget is not None:
            report["budget"] = budget
        if test_ex is not None:
            report["test_examples"] = len(test_ex)
            report["test_accuracy"] = accuracy_metric(model, eval_loader(test_ex, test_y))["accuracy"]
        model_dir = work / "model"
        save_pretrained(model, model_dir, tokenizer=tokenizer)
        report["seconds"] = round(time.time() - started, 1)
        save_json(report, work / "results.json")
    publish(work, out, state=("checkpoint.pt", "best.pt", "budget.json", "run.json"))  # the model is the result
    report["out_dir"] = str(out)
    report["curves"] = str(out / "curves.png")
    return report


def _position_limit(model: torch.nn.Module) -> int | None:
    """The longest sequence the model's learned position table covers (None: no table, e.g. rotary)."""
    from ..modules.positions import LearnedPositions, PaddingAwarePositions

    limits = [m.weight.shape[0] - (m.pad_token_id + 1 if isinstance(m, PaddingAwarePositions) else 0)
              for m in model.modules() if isinstance(m, LearnedPositions)]
    return min(limits) if limits else None


def _check_rows_encode(collate: Batches, data: Examples, rows: list[tuple], limit: int | None,
                       model_path: str | Path, chunk: int = 512) -> None:
    """Tokenise every row once before training, so a row that cannot be encoded, or that is longer than
    the model's positions, fails before any output exists, named by file and line instead of mid-run."""
    for at in range(0, len(rows), chunk):
        try:
            longest = collate(rows[at:at + chunk])["input_ids"].shape[1]
        except ValueError:
            longest = None
        if longest is not None and (limit is None or longest <= limit):
            continue
        for i in range(at, min(at + chunk, len(rows))):  # find the row
            try:
                length = collate([rows[i]])["input_ids"].shape[1]
            except ValueError as e:
                raise DataError(f"{data.source}: line {data.lines[i]}: {e}") from None
            if limit is not None and length > limit:
                raise DataError(f"{data.source}: line {data.lines[i]}: {length} tokens, more than the {limit} "
                                f"positions {model_path} has learned; pass max_length (--max-length) {limit} "
                                "or less to truncate")


_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@contextlib.contextmanager
def _write_errors_name(work: Path) -> Iterator[None]:
    """An OSError that names no file (a full disk: ENOSPC, or EFBIG past a size limit) re-raised naming
    the run directory, and saying that the run so far is kept there for a resume."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        hint = (": free space, then run the same command again to resume from its last checkpoint"
                if e.errno in _DISK_FULL else "")
        raise OSError(e.errno, f"{e.strerror} while writing to {work} (the run so far is kept there{hint})") from e


class TextClassifier:
    """A fine-tuned classifier directory, loaded for prediction on `device` (default: CUDA when present, else
    CPU; the CPU for int8)."""

    def __init__(self, model_dir: str | Path, max_length: int = 128, precision: str = "fp32",
                 device: str | torch.device | None = None) -> None:
        self.device = inference_device(device, precision)  # checked before the model loads
        model_dir = Path(model_dir)
        if (model_dir / "model" / "config.json").exists():  # a finetune output directory
            model_dir = model_dir / "model"
        self.model = from_pretrained(model_dir, **inference_options(precision)).to(self.device)
        self.labels: list[str] = self.model.config.labels or []
        if not self.labels:
            raise ValueError(f"{model_dir}: not a fine-tuned classifier (config.json has no id2label)")
        self.tokenizer = load_tokenizer(model_dir)
        self.batches = Batches(self.tokenizer, max_length)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                batch_size: int = 64) -> list[tuple[str, list[float]]]:
        """(label, probabilities) for each text."""
        rows = list(zip(texts, pairs or [None] * len(texts), [None] * len(texts)))
        order = _longest_first(rows)
        loader = torch.utils.data.DataLoader([rows[i] for i in order], batch_size=batch_size, collate_fn=self.batches)
        probs = torch.empty(len(rows), len(self.labels))
        probs[order] = predict_probs(self.model, loader) if rows else probs
        return [(self.labels[int(p.argmax())], p.tolist()) for p in probs]


def _chunks(path: Path, text_col: str, pair_col: str | None, label_col: str | None,
            size: int) -> Iterator[list[tuple[str, str | None, str | None] | None]]:
    """Rows of a CSV/TSV/JSONL file in chunks, without holding all predictions in memory; None for each
    blank line between rows, so that the n-th item is the n-th line after the header (or record, in a CSV
    with line breaks inside quoted fields)."""
    chunk: list[tuple[str, str | None, str | None] | None] = []
    columns, last = None, 0
    for n, row in iter_rows(path):
        # first line of this row: a CSV record spans one line more per line break inside its fields
        first = n - sum(f.count("\n") for f in row) if isinstance(row, list) else n
        chunk.extend([None] * max(first - last - 1, 0))  # blank lines skipped by iter_rows
        last = n
        if isinstance(row, list):
            if columns is None:
                if text_col in row:
                    columns = row
                    continue
                columns = [text_col] + ([pair_col] if pair_col else [])
                if label_col and len(row) > len(columns):  # headerless text<TAB>label, as read_examples reads it
                    columns.append(label_col)
            row = dict(zip(columns, row))
        if text_col not in row:
            raise DataError(f"{path}: line {n}: no field {text_col!r}")
        chunk.append((str(row[text_col]), str(row[pair_col]) if pair_col else None,
                      str(row[label_col]).strip() if label_col and label_col in row else None))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_file(model_dir: str | Path, input_path: str | Path, out_path: str | Path, *, text_col: str = "text",
                 pair_col: str | None = None, label_col: str | None = "label", batch_size: int = 64,
                 max_length: int = 128, precision: str = "fp32", device: str | torch.device | None = None) -> dict:
    """Write one JSON line per input row (text, label, probabilities); returns counts and accuracy when labels exist.

    Output line n answers input row n: a blank line between rows gets an empty record
    ({"text": "", "label": null, "probs": null}) instead of being dropped, so the two files stay
    aligned; `blank` in the result counts them. `device`: default CUDA when present, else CPU (CPU for int8).
    """
    if (Path(model_dir) / "fewshot.json").exists():  # a plmkit pet / ptune output directory
        from .fewshot import FewShotClassifier
        if precision != "fp32":
            raise ValueError(f"{model_dir}: a pet / ptune classifier predicts in fp32 only, found precision {precision!r}")
        clf = FewShotClassifier(model_dir, device=device)
    else:
        clf = TextClassifier(model_dir, max_length, precision, device)
    out_path = Path(out_path)
    correct = labelled = total = blank = 0

    def write(tmp: Path) -> None:
        nonlocal correct, labelled, total, blank
        with tmp.open("w", encoding="utf-8") as f:
            for chunk in _chunks(Path(input_path), text_col, pair_col, label_col, batch_size * 16):
                rows = [c for c in chunk if c is not None]
                texts = [c[0] for c in rows]
                pairs = [c[1] for c in rows] if pair_col else None
                predicted = iter(clf.predict(texts, pairs, batch_size) if rows else [])
                for row in chunk:
                    if row is None:
                        f.write(json.dumps({"text": "", "label": None, "probs": None}) + "\n")
                        blank += 1
                        continue
                    (text, _, gold), (label, probs) = row, next(predicted)
                    f.write(json.dumps({"text": text, "label": label,
                                        "probs": dict(zip(clf.labels, [round(p, 6) for p in probs]))},
                                       ensure_ascii=False) + "\n")
                    total += 1
                    if gold is not None:
                        labelled += 1
                        correct += gold == label
    atomic_write(out_path, write)
    result = {"predictions": total, "blank": blank, "out": str(out_path)}
    if labelled:
        result["accuracy"] = correct / labelled
    return result
