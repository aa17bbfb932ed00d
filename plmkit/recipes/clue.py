"""The CLUE 1.1 benchmark from one call: train on train, select on dev, write the test submission.

    task folder ─► tasks.clue readers ─► task recipe (inputs, head, loss, decoding)
                ─► Trainer (AdamW, warmup + linear decay, best dev epoch by the official metric)
                ─► best weights ─► dev metrics + <task>_predict.json ─► results.json

    kind            tasks                                  head over the encoder            decoding
    classification  afqmc tnews iflytek cmnli ocnli        [CLS] pooled ─► dense            argmax
                    cluewsc2020 (marked spans) csl
    choice          c3                                     pooled ─► 1 score per choice     argmax over choices
    cloze           chid                                   pooled ─► 1 score per idiom      one-to-one per passage
    mrc             cmrc2018                               GlobalPointer, 1 head            best span over windows
    ner             cluener                                GlobalPointer or CRF             spans above 0 / Viterbi

Heads and decoding follow the bert4keras CLUE baselines (kexue.fm/archives/8739). Each task works
in ``<out>.partial`` (a rerun of the same call resumes there) and renames it to ``<out>`` when
done. ``run_all`` runs every task found under a CLUE data directory, zips the submission files
and writes a summary table.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import pad_rows
from ..files import atomic_write, save_json
from ..hardware import resolve_device, resolve_precision
from ..losses import multilabel_categorical_crossentropy
from ..modules.linear import Linear
from ..pretrained import from_pretrained
from ..tasks.clue import (TASKS, TaskSpec, find_task_dir, get_task, read_split, write_c3, write_chid,
                          write_classification, write_cluener, write_cmrc2018, write_submission_zip)
from ..tasks.cloze import assign_one_to_one, chid_inputs
from ..tasks.crf import CRF
from ..tasks.global_pointer import GlobalPointer, decode_spans, span_targets
from ..tasks.mrc import WindowAnswer, answer_tokens, best_span, cmrc_scores, make_windows, merge_answers
from ..tasks.ner import chars_to_tokens, decode_bio, encode_bio, entity_f1, tokens_to_chars
from ..tokenizers import load_tokenizer
from ..training import Trainer, build_optimizer, lambda_scheduler, move_to, warmup_linear
from ..training.checkpoint import load_checkpoint
from .finetune import Batches, classification_loss
from .outputs import partial_dir, publish

__all__ = ["ClueConfig", "CrfTagger", "SpanModel", "run_all", "run_clue", "summary_table"]

logger = logging.getLogger("plmkit.clue")

# (batch size, max length) per task kind, as the bert4keras baselines use them
KIND_DEFAULTS = {"classification": (32, 128), "choice": (4, 512), "cloze": (12, 64), "mrc": (16, 512),
                 "ner": (32, 256)}


@dataclass
class ClueConfig:
    """Options of one task run; None picks the task kind's default."""

    epochs: int = 3
    batch_size: int | None = None  # examples (questions for C3, blanks for CHID, windows for CMRC)
    eval_batch_size: int = 64
    max_length: int | None = None  # capped at the model's max_position
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    crf_lr_scale: float = 100.0  # CRF scores start at 0 and need a larger rate (bert4keras: crf_lr_multiplier)
    patience: int | None = None  # epochs without a better dev score before stopping
    precision: str = "auto"  # bf16 autocast where native to the device, else fp32 (plmkit.hardware)
    seed: int = 0
    max_steps: int | None = None
    train_limit: int | None = None  # first N training examples only (quick runs)
    dev_limit: int | None = None
    ner_head: str = "globalpointer"  # or "crf"
    head_size: int = 64  # GlobalPointer query/key size
    stride: int = 128  # CMRC 2018 window stride in characters
    device: str | None = None  # default: cuda when available, else cpu
    progress: bool = True
    log_every: int = 20
    keep_checkpoints: bool = False  # keep checkpoint.pt / best.pt (the trained task model) in the output


# ---- task models -----------------------------------------------------------------------------

def _init_head(module: nn.Module, std: float) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class SpanModel(nn.Module):
    """Encoder ─► GlobalPointer: (B, heads, T, T) span scores."""

    def __init__(self, encoder: nn.Module, heads: int, head_size: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        self.pointer = _init_head(GlobalPointer(encoder.config.hidden_size, heads, head_size),
                                  encoder.config.initializer_range)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, span_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).last_hidden_state
        return self.pointer(hidden, attention_mask if span_mask is None else span_mask)


class CrfTagger(nn.Module):
    """Encoder ─► dense emissions (B, T, tags); ``crf`` holds the transition scores for loss and Viterbi."""

    def __init__(self, encoder: nn.Module, num_tags: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.emissions = _init_head(Linear(encoder.config.hidden_size, num_tags), encoder.config.initializer_range)
        self.crf = CRF(num_tags)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).last_hidden_state
        return self.emissions(hidden)


# ---- shared pieces ---------------------------------------------------------------------------

def _pack(tokenizer, parts: Sequence[list[int]], types: Sequence[int], max_length: int) -> tuple[list[int], list[int]]:
    """[CLS] part [SEP] part [SEP] ..., trimming the end of the longest part until it fits."""
    parts = [list(p) for p in parts]
    budget = max_length - 1 - len(parts)
    while sum(map(len, parts)) > budget:
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        if not parts[longest]:
            raise ValueError(f"max_length={max_length} leaves no room for {len(parts)} segments")
        parts[longest].pop()
    ids, segs = [tokenizer.cls_token_id], [types[0]]
    for part, t in zip(parts, types):
        ids += part + [tokenizer.sep_token_id]
        segs += [t] * (len(part) + 1)
    return ids, segs


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text)[0][1:-1]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _choice_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over each question's (or blank's) choices, summed, and the question count."""
    scores = _choice_scores(model, batch)
    return F.cross_entropy(scores, batch["labels"], reduction="sum"), batch["labels"].new_tensor(len(scores))


def _choice_scores(model: nn.Module, batch: dict) -> torch.Tensor:
    out = model(batch["input_ids"], token_type_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"])
    B, C = batch["choice_mask"].shape
    scores = out.label_logits.float().view(B, C)  # (B * C, 1) -> (B, C)
    return scores.masked_fill(~batch["choice_mask"].bool(), -1e4)


class _Recipe:
    """What a task kind needs: model, training batches, loss, prediction, metric, submission."""

    def __init__(self, spec: TaskSpec, tokenizer, cfg: ClueConfig, max_length: int, device: torch.device,
                 train: list, dev: list) -> None:
        self.spec, self.tokenizer, self.cfg, self.max_length, self.device = spec, tokenizer, cfg, max_length, device
        self.precision = resolve_precision(cfg.precision, device)

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @contextlib.contextmanager
    def inference(self, model: nn.Module) -> Iterator[None]:
        was = model.training
        model.eval()
        try:
            with torch.no_grad(), self.autocast():
                yield
        finally:
            model.train(was)

    def configure(self, max_length: int) -> None:
        """Use sequences of at most ``max_length`` tokens (the model's limit may be below the task's)."""
        self.max_length = max_length

    def items(self, examples: list) -> list:
        return list(examples)

    def metadata(self) -> dict:
        return {}


class _Classification(_Recipe):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.labels = list(self.spec.labels)
        self.batches = Batches(self.tokenizer, self.max_length)
        self.index = {n: i for i, n in enumerate(self.labels)}

    def configure(self, max_length: int) -> None:
        super().configure(max_length)
        self.batches = Batches(self.tokenizer, max_length)

    def build(self, path: Path) -> nn.Module:
        return from_pretrained(path, num_labels=len(self.labels))

    def items(self, examples: list) -> list:
        return [(ex.text, ex.pair, self.index[ex.label]) for ex in examples]

    def collate(self, rows: list) -> dict:
        return self.batches(rows)

    loss = staticmethod(classification_loss)

    def predict(self, model: nn.Module, examples: list) -> list[str]:
        out = []
        with self.inference(model):
            for chunk in _chunks(examples, self.cfg.eval_batch_size):
                batch = move_to(self.batches([(ex.text, ex.pair, None) for ex in chunk]), self.device)
                logits = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                               attention_mask=batch["attention_mask"]).label_logits
                out += [self.labels[i] for i in logits.float().argmax(-1).tolist()]
        return out

    def score(self, examples: list, predictions: list) -> dict:
        return {"accuracy": sum(p == ex.label for ex, p in zip(examples, predictions)) / len(examples)}

    def write(self, path: Path, examples: list, predictions: list) -> Path:
        return write_classification(path, examples, predictions)

    def metadata(self) -> dict:
        return {"labels": self.labels}


class _Choice(_Recipe):
    """C3: [CLS] passage [SEP] question [SEP] choice [SEP], one score per choice."""

    def build(self, path: Path) -> nn.Module:
        return from_pretrained(path, num_labels=1)

    def collate(self, examples: list) -> dict:
        C = max(len(ex.choices) for ex in examples)
        seqs, segs, cmask = [], [], []
        for ex in examples:
            passage, question = _ids(self.tokenizer, ex.passage), _ids(self.tokenizer, ex.question)
            for j in range(C):
                real = j < len(ex.choices)
                choice = _ids(self.tokenizer, ex.choices[j]) if real else []
                ids, seg = _pack(self.tokenizer, [passage, question, choice], [0, 1, 1], self.max_length)
                seqs.append(ids)
                segs.append(seg)
                cmask.append(real)
        input_ids, attention = pad_rows(seqs, self.tokenizer.pad_token_id)
        batch = {"input_ids": input_ids, "token_type_ids": pad_rows(segs)[0], "attention_mask": attention,
                 "choice_mask": torch.tensor(cmask).view(len(examples), C)}
        if examples[0].label is not None:
            batch["labels"] = torch.tensor([ex.label for ex in examples])
        return batch

    loss = staticmethod(_choice_loss)

    def scores(self, model: nn.Module, examples: list) -> list[list[float]]:
        out = []
        size = max(1, self.cfg.eval_batch_size // 4)
        with self.inference(model):
            for chunk in _chunks(examples, size):
                s = _choice_scores(model, move_to(self.collate(chunk), self.device))
                out += [row[:self.n_choices(ex)] for ex, row in zip(chunk, s.tolist())]
        return out

    @staticmethod
    def n_choices(example) -> int:
        return len(example.choices)

    def predict(self, model: nn.Module, examples: list) -> list[int]:
        return [max(range(len(s)), key=s.__getitem__) for s in self.scores(model, examples)]

    def score(self, examples: list, predictions: list) -> dict:
        return {"accuracy": sum(p == ex.label for ex, p in zip(examples, predictions)) / len(examples)}

    def write(self, path: Path, examples: list, predictions: list) -> Path:
        return write_c3(path, examples, predictions)


class _Cloze(_Choice):
    """CHID: [CLS] idiom [SEP] context with the blank marked [SEP]; blanks of a passage assigned jointly."""

    @staticmethod
    def n_choices(blank) -> int:
        return len(blank.candidates)

    def collate(self, blanks: list) -> dict:
        seqs, segs = [], []
        C = max(len(b.candidates) for b in blanks)
        cmask = []
        for b in blanks:
            inputs = chid_inputs(b, self.tokenizer, self.max_length)
            inputs += [inputs[0]] * (C - len(inputs))
            cmask += [j < len(b.candidates) for j in range(C)]
            seqs += [ids for ids, _ in inputs]
            segs += [seg for _, seg in inputs]
        input_ids, attention = pad_rows(seqs, self.tokenizer.pad_token_id)
        batch = {"input_ids": input_ids, "token_type_ids": pad_rows(segs)[0], "attention_mask": attention,
                 "choice_mask": torch.tensor(cmask).view(len(blanks), C)}
        if blanks[0].answer is not None:
            batch["labels"] = torch.tensor([b.answer for b in blanks])
        return batch

    def predict(self, model: nn.Module, blanks: list) -> list[int]:
        scores = self.scores(model, blanks)
        out = [0] * len(blanks)
        groups: dict[int, list[int]] = {}
        for i, b in enumerate(blanks):
            groups.setdefault(b.group, []).append(i)
        for members in groups.values():
            for i, choice in zip(members, assign_one_to_one([scores[i] for i in members])):
                out[i] = choice
        return out

    def score(self, blanks: list, predictions: list) -> dict:
        return {"accuracy": sum(p == b.answer for b, p in zip(blanks, predictions)) / len(blanks)}

    def write(self, path: Path, blanks: list, predictions: list) -> Path:
        return write_chid(path, {b.key: p for b, p in zip(blanks, predictions)})


class _Mrc(_Recipe):
    """CMRC 2018: [CLS] question [SEP] window [SEP] ─► GlobalPointer over (start, end)."""

    def build(self, path: Path) -> nn.Module:
        return SpanModel(from_pretrained(path), heads=1, head_size=self.cfg.head_size)

    def windows(self, examples: list) -> list[tuple]:
        rows = []
        for ex in examples:
            q_len = len(_ids(self.tokenizer, ex.question))
            max_chars = max(self.max_length - q_len - 3, 16)  # characters bound tokens from above for Chinese
            for w in make_windows(ex, max_chars, min(self.cfg.stride, max_chars)):
                rows.append((ex.qid, ex.question, ex.context[w.start:w.end], w.start, w.answer))
        return rows

    def items(self, examples: list) -> list:
        return self.windows(examples)

    def collate(self, rows: list) -> dict:
        enc = self.tokenizer([r[1] for r in rows], [r[2] for r in rows], max_length=self.max_length,
                             return_offsets=True)
        offsets = enc["offset_mapping"]
        context = (enc["token_type_ids"] == 1) & (offsets[..., 1] > offsets[..., 0])  # (B, T) window tokens
        allowed = context.clone()
        allowed[:, 0] = True  # [CLS]: where windows without the answer point
        targets = []
        for b, r in enumerate(rows):
            span = None
            if r[4] is not None:
                span = answer_tokens(r[4], offsets[b].tolist(), context[b].nonzero().flatten().tolist())
            targets.append(span or (0, 0))
        return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                "attention_mask": enc["attention_mask"], "span_mask": allowed, "context_mask": context,
                "offsets": offsets, "targets": torch.tensor(targets)}

    @staticmethod
    def loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        scores = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["span_mask"])
        B, _, T, _ = scores.shape
        target = batch["targets"][:, 0] * T + batch["targets"][:, 1]
        loss = F.cross_entropy(scores.view(B, T * T), target, reduction="sum")  # one softmax over all pairs
        return loss, target.new_tensor(B)

    def predict(self, model: nn.Module, examples: list) -> dict[str, str]:
        rows = self.windows(examples)
        found = []
        with self.inference(model):
            for chunk in _chunks(rows, max(1, self.cfg.eval_batch_size // 4)):
                batch = self.collate(chunk)
                scores = model(*(batch[k].to(self.device) for k in
                                 ("input_ids", "token_type_ids", "attention_mask", "span_mask")))
                for b, r in enumerate(chunk):
                    if not bool(batch["context_mask"][b].any()):
                        continue
                    s, e, score = best_span(scores[b, 0].cpu(), batch["context_mask"][b])
                    off = batch["offsets"][b]
                    found.append(WindowAnswer(r[0], score, r[3] + int(off[s, 0]), r[3] + int(off[e, 1])))
        answers = merge_answers(found, {ex.qid: ex.context for ex in examples})
        return {ex.qid: answers.get(ex.qid, "") for ex in examples}

    def score(self, examples: list, predictions: dict) -> dict:
        refs = {ex.qid: [a for a, _ in ex.answers] for ex in examples if ex.answers}
        return cmrc_scores(predictions, refs)

    def write(self, path: Path, examples: list, predictions: dict) -> Path:
        return write_cmrc2018(path, predictions)


class _SpanHead:
    """GlobalPointer: a score for every (type, start, end), trained with multilabel cross-entropy."""

    name = "globalpointer"

    def build(self, encoder: nn.Module, types: int, cfg: ClueConfig) -> nn.Module:
        return SpanModel(encoder, types, cfg.head_size)

    def targets(self, spans: list, types: int, T: int) -> dict[str, torch.Tensor]:
        return {"targets": span_targets(spans, types, T)}

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        scores = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["span_mask"])
        B, K = scores.shape[:2]
        loss = multilabel_categorical_crossentropy(batch["targets"].view(B * K, -1), scores.view(B * K, -1),
                                                   reduction="sum")
        return loss, batch["targets"].new_tensor(B * K)

    def decode(self, model: nn.Module, inputs: list, span_mask: torch.Tensor, types: list[str]) -> list[list]:
        found = decode_spans(model(*inputs, span_mask).cpu())
        return [[(h, s, e) for h, s, e, _ in items] for items in found]


class _CrfHead:
    """BIO tags under a linear-chain CRF (bert4keras' CLUENER CRF baseline)."""

    name = "crf"

    def build(self, encoder: nn.Module, types: int, cfg: ClueConfig) -> nn.Module:
        return CrfTagger(encoder, 1 + 2 * types)

    def targets(self, spans: list, types: int, T: int) -> dict[str, torch.Tensor]:
        return {"tags": torch.tensor([encode_bio(s, T) for s in spans])}

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        emissions = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        nll = _module(model).crf(emissions, batch["tags"], batch["attention_mask"])
        return nll.sum(), batch["tags"].new_tensor(len(nll))

    def decode(self, model: nn.Module, inputs: list, span_mask: torch.Tensor, types: list[str]) -> list[list]:
        paths = _module(model).crf.decode(model(*inputs), inputs[2])
        return [decode_bio(p, types) for p in paths]


NER_HEADS = {head.name: head for head in (_SpanHead(), _CrfHead())}


class _Ner(_Recipe):
    """CLUENER: token spans from a GlobalPointer (a score per type, start, end) or BIO tags under a CRF."""

    def __init__(self, spec, tokenizer, cfg, max_length, device, train, dev) -> None:
        super().__init__(spec, tokenizer, cfg, max_length, device, train, dev)
        if cfg.ner_head not in NER_HEADS:
            raise ValueError(f"ner_head must be one of {', '.join(NER_HEADS)}, found {cfg.ner_head!r}")
        self.head = NER_HEADS[cfg.ner_head]  # chosen once: build, targets, loss and decoding follow it
        self.types = sorted({k for ex in list(train) + list(dev) for _, _, k in ex.entities})
        if not self.types:
            raise ValueError(f"{spec.name}: the training data has no entities")

    def build(self, path: Path) -> nn.Module:
        return self.head.build(from_pretrained(path), len(self.types), self.cfg)

    def collate(self, examples: list) -> dict:
        enc = self.tokenizer([ex.text for ex in examples], max_length=self.max_length, return_offsets=True)
        offsets = enc["offset_mapping"]
        batch = {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"],
                 "attention_mask": enc["attention_mask"], "offsets": offsets,
                 "span_mask": offsets[..., 1] > offsets[..., 0]}
        known = set(self.types)
        spans = [chars_to_tokens([e for e in ex.entities if e[2] in known], offsets[b].tolist(), self.types)
                 for b, ex in enumerate(examples)]
        batch.update(self.head.targets(spans, len(self.types), enc["input_ids"].shape[1]))
        return batch

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.loss(model, batch)

    def predict(self, model: nn.Module, examples: list) -> list[list]:
        out = []
        with self.inference(model):
            for chunk in _chunks(examples, self.cfg.eval_batch_size):
                batch = self.collate(chunk)
                inputs = [batch[k].to(self.device) for k in ("input_ids", "token_type_ids", "attention_mask")]
                spans = self.head.decode(model, inputs, batch["span_mask"].to(self.device), self.types)
                for b, s in enumerate(spans):
                    out.append(sorted(set(tokens_to_chars(s, batch["offsets"][b].tolist(), self.types))))
        return out

    def score(self, examples: list, predictions: list) -> dict:
        return entity_f1([ex.entities for ex in examples], predictions)

    def write(self, path: Path, examples: list, predictions: list) -> Path:
        return write_cluener(path, examples, predictions)

    def metadata(self) -> dict:
        return {"types": self.types, "head": self.head.name}


def _module(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # under DDP the task model sits in .module


RECIPES = {"classification": _Classification, "choice": _Choice, "cloze": _Cloze, "mrc": _Mrc, "ner": _Ner}


def _optimizer(model: nn.Module, cfg: ClueConfig) -> torch.optim.Optimizer:
    """AdamW over the model; a CRF's scores learn ``crf_lr_scale`` times faster, without decay."""
    crf = getattr(model, "crf", None)
    if crf is None:
        return build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rest = nn.ModuleDict({name: m for name, m in model.named_children() if m is not crf})
    optimizer = build_optimizer(rest, lr=cfg.lr, weight_decay=cfg.weight_decay)
    optimizer.add_param_group({"params": list(crf.parameters()), "lr": cfg.lr * cfg.crf_lr_scale,
                               "weight_decay": 0.0, "lr_scale": cfg.crf_lr_scale, "layer": None})
    return optimizer


# ---- the runs --------------------------------------------------------------------------------

def run_clue(task: str, model: str | Path, data_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False,
             **options: Any) -> dict:
    """Train one CLUE task on train, keep the best dev epoch, write its submission file into ``out_dir``.

    ``data_dir`` is the task's folder (or a CLUE folder holding it); ``options`` are ClueConfig
    fields. Returns the dev metrics, the submission path and the run's facts (also in results.json).
    """
    known = {f.name for f in fields(ClueConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"run_clue: unknown options {unknown}; expected some of {sorted(known)}")
    cfg = ClueConfig(**options)
    spec = get_task(task)
    out = Path(out_dir)
    work = partial_dir(out, overwrite)
    started = time.time()
    folder = find_task_dir(spec, data_dir)
    train, dev, test = (read_split(spec, folder, s) for s in ("train", "dev", "test"))
    train, dev = train[:cfg.train_limit], dev[:cfg.dev_limit]

    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    tokenizer = load_tokenizer(model)
    batch_size, max_length = KIND_DEFAULTS[spec.kind]
    batch_size = cfg.batch_size or batch_size
    recipe = RECIPES[spec.kind](spec, tokenizer, cfg, cfg.max_length or max_length, device, train, dev)
    net = recipe.build(Path(model)).to(device)
    max_length = min(recipe.max_length, getattr(net, "encoder", net).config.max_position)
    recipe.configure(max_length)

    items = recipe.items(train)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=True, generator=generator,
                                         collate_fn=recipe.collate)
    steps = len(loader) * cfg.epochs
    if cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    optimizer = _optimizer(net, cfg)
    scheduler = lambda_scheduler(optimizer, warmup_linear(int(steps * cfg.warmup), max(steps, 1)))
    trainer = Trainer(net.train(), recipe.loss, optimizer, scheduler, max_grad_norm=1.0, precision=cfg.precision,
                      out_dir=work, progress=cfg.progress, log_every=cfg.log_every, device=device)

    def dev_metrics(m: nn.Module, _loader) -> dict[str, float]:
        return recipe.score(dev, recipe.predict(m, dev))

    fit = trainer.fit(loader, epochs=cfg.epochs, valid_loader=dev, metric_fn=dev_metrics,
                      early_stopping_patience=cfg.patience, monitor=spec.metric, mode="max", valid_loss=False,
                      max_steps=cfg.max_steps)
    best = work / "best.pt"
    if best.exists():
        net.load_state_dict(load_checkpoint(best, map_location=device)["model"])
    net.eval()
    dev_scores = recipe.score(dev, recipe.predict(net, dev))
    recipe.write(work / spec.submission, test, recipe.predict(net, test))
    report = {"task": spec.name, "metric": spec.metric, "dev": dev_scores, "dev_score": dev_scores[spec.metric],
              "submission": str(out / spec.submission), "train_examples": len(train), "dev_examples": len(dev),
              "test_examples": len(test), "steps": fit["step"], "epochs_run": fit["epoch"],
              "max_length": max_length, "batch_size": batch_size, "model": str(model), "data": str(folder),
              "config": asdict(cfg), "precision": trainer.precision, **recipe.metadata()}
    report["seconds"] = round(time.time() - started, 1)
    save_json(report, work / "results.json")
    publish(work, out, state=() if cfg.keep_checkpoints else ("checkpoint.pt", "best.pt"))
    report["out_dir"] = str(out)
    logger.info("%s: dev %s %.4f (%d steps, %.0f s)", spec.name, spec.metric, report["dev_score"], fit["step"],
                report["seconds"])
    return report


def summary_table(results: dict[str, dict]) -> str:
    """A Markdown table of per-task dev scores (x100), sizes, steps and time."""
    lines = ["| task | metric | dev | train | dev n | test | steps | seconds | submission |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | | {r.get('status', 'failed')}: {r['error'][:80]} | | | | | | |")
            continue
        extra = ", ".join(f"{k} {100 * v:.2f}" for k, v in r["dev"].items() if k != r["metric"])
        score = f"{100 * r['dev_score']:.2f}" + (f" ({extra})" if extra else "")
        lines.append(f"| {name} | {r['metric']} | {score} | {r['train_examples']} | {r['dev_examples']} | "
                     f"{r['test_examples']} | {r['steps']} | {r['seconds']} | {Path(r['submission']).name} |")
    return "\n".join(lines) + "\n"


def run_all(model: str | Path, data_dir: str | Path, out_dir: str | Path, tasks: Sequence[str] | None = None,
            **options: Any) -> dict:
    """Run every CLUE task found under ``data_dir`` (or those named) into ``out_dir/<task>``.

    Writes ``out_dir/clue_submission.zip`` (every submission file at its root), ``summary.md``
    and ``summary.json``. A task whose folder is missing or whose run fails is reported, not raised.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [get_task(t).name for t in tasks] if tasks else list(TASKS)
    results: dict[str, dict] = {}
    for name in names:
        spec = get_task(name)
        try:
            folder = find_task_dir(spec, data_dir)
        except FileNotFoundError as e:
            results[name] = {"status": "no data", "error": str(e)}
            logger.warning("%s: skipped: %s", name, e)
            continue
        try:
            results[name] = run_clue(name, model, folder, out / name, **options)
        except Exception as e:  # noqa: BLE001 - one task's failure is reported in the summary, the others still run
            logger.exception("%s failed", name)
            results[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    files = [r["submission"] for r in results.values() if "submission" in r]
    archive = write_submission_zip(out / "clue_submission.zip", files) if files else None
    table = summary_table(results)
    atomic_write(out / "summary.md", lambda tmp: tmp.write_text(f"# CLUE 1.1 dev results: {model}\n\n{table}",
                                                                encoding="utf-8"))
    summary = {"model": str(model), "data": str(data_dir), "tasks": results,
               "zip": str(archive) if archive else None,
               "failed": [n for n, r in results.items() if r.get("status") == "failed"],
               "missing": [n for n, r in results.items() if r.get("status") == "no data"]}
    save_json(summary, out / "summary.json")
    summary["table"] = table
    return summary
