"""Sequence to sequence: fine-tune a generator on source -> target pairs, generate, and score the outputs.

Two model kinds, chosen from the checkpoint:

    encoder-decoder (T5.1.0 / T5.1.1 / mT5 / T5 PEGASUS):
        source ─► encoder;  [start] target ─► decoder (teacher forcing) ─► next tokens: target [end]
    UniLM on a BERT-like encoder with its MLM head (bert4keras' seq2seq recipe, arXiv:1905.03197):
        [CLS] source [SEP] target [SEP], source in segment 0 (attends both ways), target in segment 1
        (attends to the source and to its own past); the loss is the next-token cross-entropy on
        segment 1 only, the closing [SEP] included, so the model learns to stop.

    files ─► pairs ─► Trainer (AdamW, warmup + linear decay; after each epoch the model generates for
    the validation sources and is kept when `monitor` improves) ─► best weights ─► model directory
    (weights + tokenizer + seq2seq.json with the mode and generation settings)

Training: teacher forcing, or TeaForN (`teaforn=N`, plmkit.training.teaforn: N nested steps, each reading
the previous step's soft predictions). A model pretrained by `plmkit pretrain --objective pegasus|mass` is an
encoder-decoder checkpoint like any other here.

Tokens: a tokenizer whose encode puts a start token first (WordPiece's [CLS]: T5 PEGASUS, UniLM)
starts the decoder with it and ends targets with its [SEP]; a SentencePiece T5 tokenizer (no start
token, "</s>" last) starts the decoder from the model's decoder_start_token_id. Sources longer than
`max_source_length` tokens and targets longer than `max_target_length` are truncated (counted in
results.json); an empty target is an error naming its line.

The output directory appears only when the run is complete: work happens in `<out>.partial`
(resumable: run the same command again after an interruption), renamed at the end.
"""
from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data import DataError, pad_rows, read_examples
from ..files import atomic_write, read_json_object, save_json
from ..generation import generate
from ..hardware import inference_device, resolve_device
from ..models import get_family
from ..pretrained import CheckpointError, from_pretrained, inference_options, open_checkpoint, save_pretrained
from ..tokenizers import load_tokenizer
from ..training import LengthGroupedBatches, Trainer, build_optimizer, lambda_scheduler, move_to, warmup_linear
from ..training.checkpoint import file_digest, load_checkpoint
from .finetune import _chunks, _position_limit, _write_errors_name
from .outputs import FieldCheck, claim, partial_dir, publish

logger = logging.getLogger("plmkit.seq2seq")

METRICS = ("rouge-l", "rouge-1", "rouge-2", "bleu", "char_f1", "exact_match")
MODES = ("encoder-decoder", "unilm")
SETTINGS = "seq2seq.json"  # beside the weights: mode, lengths and generation defaults


@dataclass
class Seq2SeqConfig:
    """Defaults that suit a small model on a few thousand pairs."""

    max_source_length: int = 128
    max_target_length: int = 64
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    epochs: int = 5
    warmup: float = 0.1
    patience: int = 2
    monitor: str = "rouge-l"  # the validation metric that keeps the best epoch and stops early
    eval_examples: int = 200  # validation sources generated for after each epoch (0: all of them)
    num_beams: int = 4  # beam search for evaluation and generation (1: greedy)
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    precision: str = "auto"  # bf16 autocast where native to the device, else fp32 (plmkit.hardware)
    device: str | None = None  # default: cuda when available, else cpu
    seed: int = 0
    source_col: str = "source"
    target_col: str = "target"
    teaforn: int = field(default=1, metadata={"help": "TeaForN (arXiv:2010.03494): N nested teacher-forcing steps, "
                                                      "each reading the previous step's soft predictions; 1: plain"})
    teaforn_gamma: float = field(default=1.0, metadata={"help": "TeaForN: step k's loss weighs gamma^(k-1)"})

    def __post_init__(self) -> None:
        """Every field checked here, so a bad value fails before any file is read or written."""
        check = FieldCheck(self)
        bad, number = check.bad, check.number

        if number("max_source_length", int) < 3:
            raise bad("max_source_length", ">= 3, room for a start, one token and an end")
        if number("max_target_length", int) < 1:
            raise bad("max_target_length", ">= 1")
        check.optimisation()
        if number("num_beams", int) < 1:
            raise bad("num_beams", ">= 1")
        if number("eval_examples", int) < 0:
            raise bad("eval_examples", ">= 0 (0: every validation pair)")
        if number("no_repeat_ngram_size", int) < 0:
            raise bad("no_repeat_ngram_size", ">= 0 (0: off)")
        if not number("repetition_penalty") > 0:
            raise bad("repetition_penalty", "> 0 (1: off)")
        number("length_penalty")
        if self.monitor not in METRICS:
            raise bad("monitor", f"one of {', '.join(METRICS)}")
        if number("teaforn", int) < 1:
            raise bad("teaforn", ">= 1 (1: plain teacher forcing)")
        if not number("teaforn_gamma") > 0:
            raise bad("teaforn_gamma", "> 0")
        check.columns("source_col", "target_col")

    def generation(self) -> dict[str, Any]:
        """The decoding options of evaluation and generation."""
        return {"num_beams": self.num_beams, "length_penalty": self.length_penalty,
                "no_repeat_ngram_size": self.no_repeat_ngram_size, "repetition_penalty": self.repetition_penalty}


_AS_TRAINED = "as the model directory's seq2seq.json says"


@dataclass
class DecodingOverrides:
    """Decoding settings given at generation time; None keeps what the model directory was trained to use."""

    num_beams: int | None = field(default=None, metadata={"help": _AS_TRAINED})
    length_penalty: float | None = field(default=None, metadata={"help": _AS_TRAINED})
    no_repeat_ngram_size: int | None = field(default=None, metadata={"help": _AS_TRAINED})
    repetition_penalty: float | None = field(default=None, metadata={"help": _AS_TRAINED})

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# ---- the model's side: how pairs become tensors, and how it generates ----------------------------------------

def model_mode(model_path: str | Path) -> str:
    """"encoder-decoder" or "unilm" for a checkpoint; a model that can be neither is refused."""
    source = open_checkpoint(model_path)
    family = get_family(source.config.family)
    if family.causal:
        raise ValueError(f"{model_path}: family {family.name!r} is a decoder-only language model; seq2seq needs an "
                         "encoder-decoder (T5, mT5, T5 PEGASUS) or a BERT-like encoder with an MLM head (UniLM)")
    with torch.device("meta"):
        built = family.build(source.config)
    return "encoder-decoder" if getattr(built, "is_encoder_decoder", False) else "unilm"


def load_generator(model_path: str | Path, mode: str, **options: Any) -> torch.nn.Module:
    """The model for `mode`: an encoder-decoder as it is, a BERT-like encoder with its MLM head and UniLM masks."""
    if mode == "encoder-decoder":
        return from_pretrained(model_path, **options)
    try:
        return from_pretrained(model_path, with_mlm=True, application="unilm", **options)
    except (CheckpointError, ValueError) as e:
        raise ValueError(f"{model_path}: UniLM generates with the MLM head, which this checkpoint cannot give "
                         f"({e})") from None


def _special_ids(tokenizer) -> tuple[int | None, int]:
    """(start id or None, end id) of the tokenizer's encode template."""
    start = getattr(tokenizer, "cls_token_id", None)
    if start is None and getattr(tokenizer, "start_token", None) is not None:
        start = tokenizer.token_to_id(tokenizer.start_token)
    end = getattr(tokenizer, "sep_token_id", None)
    if end is None:
        end = tokenizer.token_to_id(tokenizer.end_token)
    return start, end


class Pairs:
    """Source / target pairs -> padded batches for one mode (a DataLoader collate function)."""

    def __init__(self, tokenizer, mode: str, max_source_length: int, max_target_length: int,
                 decoder_start: int | None, pad: int) -> None:
        self.tokenizer, self.mode = tokenizer, mode
        self.max_source, self.max_target = max_source_length, max_target_length
        self.start, self.end = _special_ids(tokenizer)
        self.decoder_start = self.start if self.start is not None else (decoder_start if decoder_start is not None
                                                                        else pad)
        self.pad = pad

    def source_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, maxlen=self.max_source)[0]

    def target_body(self, text: str) -> list[int]:
        """The target's tokens without start and end (at most max_target_length - 1: the end token is one)."""
        ids = self.tokenizer.encode(text)[0]
        body = ids[1:-1] if self.start is not None else ids[:-1]
        return body[:self.max_target - 1]

    def __call__(self, rows: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
        sources = [self.source_ids(s) for s, _ in rows]
        bodies = [self.target_body(t) for _, t in rows]
        if self.mode == "encoder-decoder":
            input_ids, attention_mask = pad_rows(sources, self.pad)
            decoder_input_ids, decoder_attention_mask = pad_rows([[self.decoder_start] + b for b in bodies], self.pad)
            return {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids,
                    "decoder_attention_mask": decoder_attention_mask,
                    "labels": pad_rows([b + [self.end] for b in bodies], -100)[0]}
        input_ids, attention_mask = pad_rows([s + b + [self.end] for s, b in zip(sources, bodies)], self.pad)
        segments = [[0] * len(s) + [1] * (len(b) + 1) for s, b in zip(sources, bodies)]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": pad_rows(segments)[0]}


def seq2seq_loss(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over the target tokens, and their count.

    Encoder-decoder: the decoder's logits against `labels` (-100: padding). UniLM: the logits at
    position t predict token t + 1, counted where token t + 1 is in segment 1 (the target and its end)."""
    if "decoder_input_ids" in batch:
        out = model(batch["input_ids"], decoder_input_ids=batch["decoder_input_ids"],
                    attention_mask=batch["attention_mask"], decoder_attention_mask=batch["decoder_attention_mask"])
        labels = batch["labels"]
        loss = F.cross_entropy(out.logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        return loss, (labels != -100).sum()
    out = model(batch["input_ids"], token_type_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"])
    target = batch["input_ids"][:, 1:]
    counted = (batch["token_type_ids"][:, 1:] * batch["attention_mask"][:, 1:]).bool()
    logits = out.logits[:, :-1][counted].float()
    return F.cross_entropy(logits, target[counted], reduction="sum"), counted.sum()


def generate_texts(model, pairs: Pairs, sources: Sequence[str], *, batch_size: int = 32,
                   with_ids: bool = False, **options: Any) -> list[str] | tuple[list[str], list[list[int]]]:
    """Generated text for each source (longest first in batches, returned in input order); `options` go to
    plmkit.generate (num_beams, length_penalty, no_repeat_ngram_size, repetition_penalty, ...).
    `allowed_tokens(i, ids so far)` constrains source i's output (i indexes `sources`; the ids are the
    target's: decoder ids after the start token, or UniLM's target tokens)."""
    allowed = options.pop("allowed_tokens", None)
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    texts: list[str] = [""] * len(sources)
    ids: list[list[int]] = [[] for _ in sources]
    model.eval()
    for at in range(0, len(order), batch_size):
        chunk = order[at:at + batch_size]
        input_ids, attention_mask = pad_rows([pairs.source_ids(sources[i]) for i in chunk], pairs.pad)
        batch = move_to({"input_ids": input_ids, "attention_mask": attention_mask}, device)
        extra = {"decoder_start_token_id": pairs.decoder_start} if pairs.mode == "encoder-decoder" else \
            {"token_type_ids": torch.zeros_like(batch["input_ids"])}
        if allowed is not None:
            skip = 1 if pairs.mode == "encoder-decoder" else 0  # the decoder's start token is not the target's
            extra["allowed_tokens"] = lambda b, row, chunk=chunk: allowed(chunk[b], row[skip:])
        with torch.no_grad():
            out = generate(model, batch["input_ids"], attention_mask=batch["attention_mask"],
                           max_new_tokens=pairs.max_target, eos_token_id=pairs.end, pad_token_id=pairs.pad,
                           **extra, **options)
        if pairs.mode == "encoder-decoder":
            out = out[:, 1:]  # the decoder's start token
        for row, i in zip(out.tolist(), chunk):
            body = row[:row.index(pairs.end)] if pairs.end in row else row
            ids[i] = row
            texts[i] = pairs.tokenizer.decode(body).strip()
    return (texts, ids) if with_ids else texts


def evaluate(model, pairs: Pairs, sources: Sequence[str], references: Sequence[str],
             **options: Any) -> dict[str, float]:
    """Generation metrics (plmkit.generation.metrics.score) and decoding diagnostics for these sources."""
    from ..generation.metrics import diagnostics, score

    texts, ids = generate_texts(model, pairs, sources, with_ids=True, **options)
    return score(texts, list(references)) | diagnostics(ids, eos_token_id=pairs.end, max_new_tokens=pairs.max_target,
                                                        texts=texts)


# ---- the recipe ------------------------------------------------------------------------------------------------

def _loss_fn(cfg: Seq2SeqConfig):
    """Plain teacher forcing, or TeaForN with N = cfg.teaforn nested steps."""
    if cfg.teaforn == 1:
        return seq2seq_loss
    from ..training.teaforn import teaforn_loss

    return functools.partial(teaforn_loss, n=cfg.teaforn, gamma=cfg.teaforn_gamma)


def _read_pairs(path: str | Path, cfg: Seq2SeqConfig) -> tuple[list[tuple[str, str]], list[int]]:
    data = read_examples(path, text_col=cfg.source_col, label_col=cfg.target_col)
    return list(zip(data.texts, data.labels)), data.lines


def _check_lengths(rows: list[tuple[str, str]], lines: list[int], path: str | Path, pairs: Pairs,
                   limit: int | None) -> dict[str, int]:
    """Tokenise every pair once before training: a pair that cannot be encoded, or longer than the model's
    positions, fails naming its line; truncations are counted."""
    truncated = {"sources": 0, "targets": 0}
    for (source, target), n in zip(rows, lines):
        try:
            s = pairs.tokenizer.encode(source)[0]
            t = pairs.tokenizer.encode(target)[0]
        except ValueError as e:
            raise DataError(f"{path}: line {n}: {e}") from None
        truncated["sources"] += len(s) > pairs.max_source
        truncated["targets"] += len(t) - (pairs.start is not None) > pairs.max_target
    if limit is not None and pairs.mode == "unilm" and pairs.max_source + pairs.max_target > limit:
        raise ValueError(f"max_source_length {pairs.max_source} + max_target_length {pairs.max_target} is more than "
                         f"the {limit} positions the model has learned; UniLM puts both in one sequence")
    return truncated


def seq2seq(model_path: str | Path, train: str | Path, valid: str | Path, out_dir: str | Path,
            test: str | Path | None = None, cfg: Seq2SeqConfig | None = None, *, progress: bool = True,
            overwrite: bool = False) -> dict:
    """Fine-tune a generator, keep the best epoch by `cfg.monitor` on valid, write the model directory.

    Every input is checked before anything is written. The run works in `<out>.partial`, whose
    `run.json` records the inputs' digests and the settings: the same call resumes it, a different
    one is refused (`overwrite` discards it instead). Returns the results (also in results.json)."""
    cfg = cfg or Seq2SeqConfig()
    out = Path(out_dir)
    work = partial_dir(out, overwrite)
    started = time.time()
    train_rows, train_lines = _read_pairs(train, cfg)
    valid_rows, valid_lines = _read_pairs(valid, cfg)
    test_rows, test_lines = _read_pairs(test, cfg) if test else ([], [])

    mode = model_mode(model_path)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(model_path)
    model = load_generator(model_path, mode)
    pairs = Pairs(tokenizer, mode, cfg.max_source_length, cfg.max_target_length,
                  model.config.decoder_start_token_id, model.config.pad_token_id or 0)
    truncated = {}
    for name, rows, lines, path in (("train", train_rows, train_lines, train), ("valid", valid_rows, valid_lines, valid),
                                    ("test", test_rows, test_lines, test)):
        if rows:
            truncated[name] = _check_lengths(rows, lines, path, pairs, _position_limit(model))
    device = resolve_device(cfg.device)
    identity = {"recipe": "plmkit seq2seq", "model": str(Path(model_path).resolve()), "mode": mode,
                "sha256": {"train": file_digest(train), "valid": file_digest(valid),
                           "test": file_digest(test) if test else None},
                "config": {k: v for k, v in asdict(cfg).items() if k not in ("device", "precision")}}
    claim(work, identity, overwrite=overwrite)  # the first file written

    model.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    lengths = [len(s) + len(t) for s, t in train_rows]
    train_loader = torch.utils.data.DataLoader(train_rows, collate_fn=pairs, batch_sampler=LengthGroupedBatches(
        lengths, cfg.batch_size, generator))
    chosen = valid_rows[:cfg.eval_examples] if cfg.eval_examples else valid_rows
    options = cfg.generation()

    def metric_fn(model, loader) -> dict[str, float]:
        return evaluate(model, pairs, [s for s, _ in chosen], [t for _, t in chosen], **options)

    with _write_errors_name(work):
        steps = len(train_loader) * cfg.epochs
        optimizer = build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = lambda_scheduler(optimizer, warmup_linear(int(steps * cfg.warmup), steps))
        trainer = Trainer(model.train(), _loss_fn(cfg), optimizer, scheduler, max_grad_norm=1.0,
                          precision=cfg.precision, out_dir=work, progress=progress, log_every=20)
        result = trainer.fit(train_loader, epochs=cfg.epochs, valid_loader=chosen, metric_fn=metric_fn,
                             early_stopping_patience=cfg.patience, monitor=cfg.monitor, mode="max", valid_loss=False)
        best = work / "best.pt"
        if best.exists():
            model.load_state_dict(load_checkpoint(best)["model"])
        model.eval()
        report = {"mode": mode, "train_examples": len(train_rows), "valid_examples": len(valid_rows),
                  "valid": evaluate(model, pairs, [s for s, _ in valid_rows], [t for _, t in valid_rows], **options),
                  "truncated": truncated, "epochs_run": result["epoch"], "steps": result["step"],
                  "config": asdict(cfg), "precision": trainer.precision, "device": str(trainer.device),
                  "model": str(model_path), "seconds": None}
        if test_rows:
            report["test_examples"] = len(test_rows)
            report["test"] = evaluate(model, pairs, [s for s, _ in test_rows], [t for _, t in test_rows], **options)
        save_pretrained(model, work / "model", tokenizer=tokenizer)
        save_json({"mode": mode, "max_source_length": cfg.max_source_length,
                   "max_target_length": cfg.max_target_length, "generation": options,
                   "source_col": cfg.source_col, "target_col": cfg.target_col}, work / "model" / SETTINGS)
        report["seconds"] = round(time.time() - started, 1)
        save_json(report, work / "results.json")
    publish(work, out)  # resume state dropped; the model is the result
    report["out_dir"] = str(out)
    report["curves"] = str(out / "curves.png")
    return report


# ---- generation from a trained directory ---------------------------------------------------------------------

def _settings_dir(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    return model_dir / "model" if (model_dir / "model" / SETTINGS).exists() else model_dir


def is_seq2seq_dir(model_dir: str | Path) -> bool:
    """Whether `model_dir` is a plmkit seq2seq output (or its model/ folder)."""
    return (_settings_dir(model_dir) / SETTINGS).exists()


def settings_of(model_dir: str | Path) -> dict[str, Any]:
    """The seq2seq.json a trained directory carries ({} for a plain checkpoint)."""
    path = _settings_dir(model_dir) / SETTINGS
    return read_json_object(path) if path.exists() else {}


class Seq2SeqGenerator:
    """A seq2seq output directory (or its model/ folder, or any checkpoint with settings given), loaded to
    generate on `device` (default: CUDA when present, else CPU; the CPU for int8)."""

    def __init__(self, model_dir: str | Path, *, precision: str = "fp32", device: str | torch.device | None = None,
                 max_source_length: int | None = None, max_target_length: int | None = None) -> None:
        self.device = inference_device(device, precision)  # checked before the model loads
        model_dir = _settings_dir(model_dir)
        settings = settings_of(model_dir)
        mode = settings.get("mode") or model_mode(model_dir)
        if mode not in MODES:
            raise ValueError(f"{model_dir / SETTINGS}: field 'mode' must be one of {', '.join(MODES)}, found {mode!r}")
        self.mode, self.settings = mode, settings
        self.generation = dict(settings.get("generation") or {"num_beams": 4})
        self.model = load_generator(model_dir, mode, **inference_options(precision)).to(self.device)
        self.tokenizer = load_tokenizer(model_dir)
        config = self.model.config
        self.pairs = Pairs(self.tokenizer, mode, max_source_length or settings.get("max_source_length", 128),
                           max_target_length or settings.get("max_target_length", 64),
                           config.decoder_start_token_id, config.pad_token_id or 0)

    def generate(self, sources: Sequence[str], batch_size: int = 32, **options: Any) -> list[str]:
        """Generated text for each source; `options` override the saved decoding settings."""
        return generate_texts(self.model, self.pairs, sources, batch_size=batch_size, **(self.generation | options))


def generate_file(model_dir: str | Path, input_path: str | Path, out_path: str | Path, *, source_col: str = "source",
                  target_col: str | None = "target", batch_size: int = 32, precision: str = "fp32",
                  device: str | torch.device | None = None, **options: Any) -> dict:
    """Write one JSON line per input row ({"source", "output"}), generated chunk by chunk, so large files need
    little memory; the file appears complete or not at all. Rows with a `target_col` value are scored
    (plmkit.generation.metrics) and the scores returned. A blank line gets {"source": "", "output": null}."""
    gen = Seq2SeqGenerator(model_dir, precision=precision, device=device)
    out_path = Path(out_path)
    produced: list[str] = []
    references: list[str] = []
    counts = {"outputs": 0, "blank": 0}

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for chunk in _chunks(Path(input_path), source_col, None, target_col, batch_size * 16):
                rows = [c for c in chunk if c is not None]
                outputs = iter(gen.generate([r[0] for r in rows], batch_size, **options) if rows else [])
                for row in chunk:
                    if row is None:
                        f.write(json.dumps({"source": "", "output": None}) + "\n")
                        counts["blank"] += 1
                        continue
                    text = next(outputs)
                    f.write(json.dumps({"source": row[0], "output": text}, ensure_ascii=False) + "\n")
                    counts["outputs"] += 1
                    if row[2]:
                        produced.append(text)
                        references.append(row[2])
    atomic_write(out_path, write)
    result: dict[str, Any] = {**counts, "out": str(out_path)}
    if references:
        from ..generation.metrics import score
        result["scores"] = score(produced, references)
    return result


__all__ = ["Seq2SeqConfig", "seq2seq", "Seq2SeqGenerator", "generate_file", "seq2seq_loss", "Pairs", "evaluate"]
