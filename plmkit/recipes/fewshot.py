"""Few-shot classification with the language model's head: PET and P-tuning, from files.

    train (optional: none = zero-shot) ─► N examples sampled (--train-sample) ─► per pattern:
    base MLM ─► PromptClassifier(pattern, verbalizer[, prompt table]) ─► Trainer, fixed steps
    (MLM loss on the label word; optional MLM on unlabeled text) ─► valid / test accuracy
    ─► the patterns' probabilities averaged (the ensemble) ─► <out>/fewshot.json + members

Output directory (written as <out>.partial, renamed when complete):
    fewshot.json            kind, labels, members, results
    member0/, member1/ …    one per pattern: prompt.json (+ prompts.safetensors for P-tuning)
                            and model/ when the language model was trained (PET; P-tuning with
                            trainable_lm); a frozen-LM P-tuning member holds the prompts alone
                            and names its base model.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from ..data import Examples, encode_labels, mask_tokens, read_examples
from ..files import save_json
from ..hardware import resolve_device
from ..pretrained import load_source, open_checkpoint, save_pretrained
from ..tasks.pet import (PROMPTS_FILE, Pattern, PromptClassifier, PromptEmbeddings, Verbalizer,
                         classifier_from_config, load_prompts, prompt_config, prompt_loss, read_prompt_config,
                         save_prompts)
from ..tokenizers import load_tokenizer
from ..training import Trainer, build_optimizer, lambda_scheduler, warmup_linear
from .outputs import publish

__all__ = ["FewShotConfig", "run_fewshot", "sample_examples", "FewShotClassifier", "PET_PATTERNS", "PTUNE_PATTERN"]

# Sentiment patterns in the spirit of kexue.fm/archives/7764 (prefix and suffix)
PET_PATTERNS = ["{mask}满意。{text}", "{text}总之很{mask}满意。", "感觉{mask}好。{text}"]
PTUNE_PATTERN = "{p}{p}{p}{p}{mask}{p}{p}{p}{p}{text}"
LM_LR = 1e-4  # the language model's weights move (PET; P-tuning with trainable_lm)
PROMPT_LR = 1e-2  # a frozen LM: only the prompt vectors move, and they need a large step


@dataclass
class FewShotConfig:
    """PET / P-tuning settings; steps are optimizer steps, whatever the number of examples.

    A None is the recipe's default, which depends on other fields: run_fewshot fills it in (and records it).
    """

    patterns: list[str] | None = None  # None: PET_PATTERNS, or [PTUNE_PATTERN] with prompt_tuning
    words: dict[str, str] = field(default_factory=lambda: {"1": "很", "0": "不"})
    combine: Literal["product", "mean"] = "product"
    loss: Literal["vocab", "label"] = "vocab"
    max_length: int = 128
    batch_size: int = 16
    steps: int = 100
    lr: float | None = field(default=None, metadata={
        "help": f"default {LM_LR}; {PROMPT_LR} for P-tuning with a frozen language model"})
    weight_decay: float = 0.01
    warmup: float = 0.1
    precision: str = "auto"  # bf16 autocast where native to the device, else fp32 (plmkit.hardware)
    seed: int = 0
    train_sample: int | None = None  # sample this many training examples (seeded)
    unlabeled_weight: float = 0.0  # MLM on unlabeled texts (PET's semi-supervised variant)
    mask_prob: float = 0.15
    calibrate: bool = False  # divide out the label words' prior (mean over unlabeled / train texts, else "")
    calibration_texts: int = 512  # how many of those texts estimate the prior
    prompt_tuning: bool = False  # P-tuning: {p} slots are a trained table
    trainable_lm: bool = False  # P-tuning: train the language model too (PET always does)
    text_col: str = "text"
    pair_col: str | None = None
    label_col: str = "label"
    device: str | None = None  # default: cuda when available, else cpu

    def resolved(self) -> FewShotConfig:
        """A copy with every None default filled in: the patterns and learning rate of PET or P-tuning."""
        frozen_lm = self.prompt_tuning and not self.trainable_lm
        patterns = self.patterns if self.patterns is not None else (
            [PTUNE_PATTERN] if self.prompt_tuning else list(PET_PATTERNS))
        return replace(self, patterns=list(patterns),
                       lr=self.lr if self.lr is not None else PROMPT_LR if frozen_lm else LM_LR)


def sample_examples(data: Examples, n: int, seed: int) -> Examples:
    """n examples drawn without replacement (seeded); all of them when n >= len(data)."""
    if n <= 0:
        raise ValueError(f"train_sample: expected a positive count, found {n}")
    idx = sorted(random.Random(seed).sample(range(len(data)), min(n, len(data))))
    pick = lambda xs: [xs[i] for i in idx] if xs is not None else None  # noqa: E731
    return Examples(source=data.source, texts=pick(data.texts), pairs=pick(data.pairs), labels=pick(data.labels),
                    lines=pick(data.lines))


def _label_ids(data: Examples, labels: list[str]) -> list[int]:
    return encode_labels(data, labels, unknown="has no word in the verbalizer")


class _Collate:
    """Labelled rows -> a PromptClassifier batch, plus (optionally) masked unlabeled texts."""

    def __init__(self, clf: PromptClassifier, unlabeled: list[str], n_unlabeled: int, mask_prob: float,
                 seed: int) -> None:
        self.clf, self.unlabeled, self.n, self.mask_prob = clf, unlabeled, n_unlabeled, mask_prob
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, rows):
        texts, pairs, labels = zip(*rows)
        batch = self.clf.encode(list(texts), list(pairs) if pairs[0] is not None else None, labels=list(labels))
        if self.unlabeled and self.n:
            picked = [self.unlabeled[self.rng.randrange(len(self.unlabeled))] for _ in range(self.n)]
            g = self.clf.encode(picked, first_group_only=True)["groups"][0]
            special = ~g["text"]  # only the text's own tokens are masked; the slot stays [MASK], unscored
            ids, targets = mask_tokens(g["input_ids"], mask_id=self.clf.mask_id,
                                       vocab_size=self.clf.model.embeddings.token.num_embeddings,
                                       special=special, prob=self.mask_prob, generator=self.generator)
            batch["unlabeled"] = {**g, "input_ids": ids, "targets": targets}
        return batch


def _loss(kind: str, weight: float):
    def loss_fn(clf: PromptClassifier, batch):
        loss, count = prompt_loss(clf, batch, kind)
        if "unlabeled" not in batch:
            return loss, count
        u = batch["unlabeled"]
        embeds = None
        if clf.prompts is not None:
            embeds = clf.prompts.splice(clf.model.embeddings.token(u["input_ids"]), u["prompts"])
        logits = clf.model(u["input_ids"], attention_mask=u["attention_mask"], inputs_embeds=embeds).logits
        mlm = F.cross_entropy(logits.float().flatten(0, 1), u["targets"].flatten(), ignore_index=-100)
        mlm = torch.nan_to_num(mlm)  # a batch where nothing was picked
        return loss / count + weight * mlm
    return loss_fn


def load_language_model(path: str | Path):
    """The model with its language-model head: the MLM head of an encoder, a causal LM's own head."""
    source = open_checkpoint(path)  # opened once: its family decides the head
    return load_source(source, dict(with_mlm=not source.family.causal))


def _init_prompts(model, n: int, seed: int) -> PromptEmbeddings:
    """Rows of the token table drawn at random (seeded): prompts start where real tokens live."""
    table = model.embeddings.token.weight.detach()
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(5, table.shape[0], (n,), generator=g)
    return PromptEmbeddings(n, table.shape[1], init=table[rows].float())


def _member(model_path: str | Path, tokenizer, pattern: str, cfg: FewShotConfig, seed: int) -> PromptClassifier:
    model = load_language_model(model_path)
    verbalizer = Verbalizer(cfg.words, cfg.combine)
    n = Pattern(pattern).num_prompts
    prompts = _init_prompts(model, n, seed) if n else None
    if n and not cfg.prompt_tuning:
        raise ValueError(f"pattern {pattern!r} has {{p}} slots: those are for P-tuning (plmkit ptune)")
    if cfg.prompt_tuning and not n:
        raise ValueError(f"pattern {pattern!r} has no {{p}} slot to tune")
    if cfg.prompt_tuning and not cfg.trainable_lm:
        model.requires_grad_(False)
    return PromptClassifier(model, tokenizer, pattern, verbalizer, prompts=prompts, max_length=cfg.max_length)


def _train(clf: PromptClassifier, rows: list[tuple], unlabeled: list[str], cfg: FewShotConfig, seed: int,
           work: Path, progress: bool) -> None:
    torch.manual_seed(seed)
    n_unlabeled = cfg.batch_size if cfg.unlabeled_weight > 0 and unlabeled else 0
    collate = _Collate(clf, unlabeled, n_unlabeled, cfg.mask_prob, seed)
    loader = torch.utils.data.DataLoader(rows, batch_size=min(cfg.batch_size, len(rows)), shuffle=True,
                                         generator=torch.Generator().manual_seed(seed), collate_fn=collate)
    optimizer = build_optimizer(clf, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = lambda_scheduler(optimizer, warmup_linear(int(cfg.steps * cfg.warmup), cfg.steps))
    trainer = Trainer(clf.train(), _loss(cfg.loss, cfg.unlabeled_weight), optimizer, scheduler, max_grad_norm=1.0,
                      precision=cfg.precision, out_dir=work, progress=progress, log_every=10,
                      device=next(clf.parameters()).device)
    trainer.fit(loader, epochs=math.ceil(cfg.steps / len(loader)), max_steps=cfg.steps, resume=False)
    (work / "checkpoint.pt").unlink(missing_ok=True)
    clf.eval()


def _accuracy(probs: torch.Tensor, gold: list[int]) -> float:
    return (probs.argmax(-1) == torch.tensor(gold)).float().mean().item() if gold else float("nan")


def run_fewshot(model_path: str | Path, out_dir: str | Path, *, train: str | Path | None = None,
                valid: str | Path | None = None, test: str | Path | None = None,
                unlabeled: Sequence[str | Path] = (), cfg: FewShotConfig | None = None, progress: bool = True,
                overwrite: bool = False) -> dict:
    """Zero-shot (no `train`) or few-shot PET / P-tuning over each pattern, then their ensemble.

    `cfg` None fields take the recipe's defaults (FewShotConfig.resolved), recorded in the report.
    """
    cfg = (cfg or FewShotConfig()).resolved()
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output directory {out} already exists (pass overwrite to replace it)")
    if not cfg.patterns:
        raise ValueError("give at least one pattern")
    Verbalizer(cfg.words, cfg.combine)  # a bad verbalizer fails before anything is read or written
    device = resolve_device(cfg.device)
    started = time.time()
    labels = list(cfg.words)
    read = dict(text_col=cfg.text_col, pair_col=cfg.pair_col, label_col=cfg.label_col)
    train_ex = read_examples(train, **read) if train else None
    if train_ex is not None and cfg.train_sample:
        train_ex = sample_examples(train_ex, cfg.train_sample, cfg.seed)
    evals = {name: read_examples(path, **read) for name, path in (("valid", valid), ("test", test)) if path}
    golds = {name: _label_ids(ex, labels) for name, ex in evals.items()}
    rows = None
    if train_ex is not None:
        rows = list(zip(train_ex.texts, train_ex.pairs or [None] * len(train_ex), _label_ids(train_ex, labels)))
    if train_ex is None and cfg.prompt_tuning:
        raise ValueError("P-tuning learns its prompts: give --train examples")
    texts_unlabeled = [t for f in unlabeled for t in read_examples(f, label_col=None, text_col=cfg.text_col).texts]

    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    tokenizer = load_tokenizer(model_path)
    report = {"kind": "ptune" if cfg.prompt_tuning else "pet", "labels": labels, "model": str(model_path),
              "train_examples": len(train_ex) if train_ex is not None else 0, "config": asdict(cfg),
              "device": str(device), "members": [], "patterns": {}}
    summed = {name: None for name in evals}
    zero_shot_model = None
    for i, pattern in enumerate(cfg.patterns):
        member_dir = work / f"member{i}"
        if rows is None:  # zero-shot: every pattern reads the same untouched model
            zero_shot_model = zero_shot_model or load_language_model(model_path)
            clf = PromptClassifier(zero_shot_model, tokenizer, pattern, Verbalizer(cfg.words, cfg.combine),
                                   max_length=cfg.max_length)
        else:
            clf = _member(model_path, tokenizer, pattern, cfg, cfg.seed + i)
        clf.to(device)  # PromptClassifier.forward moves each batch to it
        if rows is not None:
            _train(clf, rows, texts_unlabeled, cfg, cfg.seed + i, member_dir, progress)
        if cfg.calibrate:
            pool = texts_unlabeled or (train_ex.texts if train_ex is not None else [])
            sample = random.Random(cfg.seed).sample(pool, min(len(pool), cfg.calibration_texts)) if pool else [""]
            clf.calibrate(sample)
        result = {}
        for name, ex in evals.items():
            probs = clf.predict_proba(ex.texts, ex.pairs)
            result[f"{name}_accuracy"] = _accuracy(probs, golds[name])
            summed[name] = probs if summed[name] is None else summed[name] + probs
        report["patterns"][pattern] = result
        _save_member(clf, member_dir, model_path, trained=rows is not None)
        report["members"].append(member_dir.name)
    report["ensemble"] = {f"{name}_accuracy": _accuracy(summed[name] / len(cfg.patterns), golds[name])
                          for name in evals}
    report["seconds"] = round(time.time() - started, 1)
    save_json(report, work / "fewshot.json")
    publish(work, out, state=())
    report["out_dir"] = str(out)
    return report


def _save_member(clf: PromptClassifier, member_dir: Path, base: str | Path, trained: bool) -> None:
    member_dir.mkdir(parents=True, exist_ok=True)
    lm_trained = trained and any(p.requires_grad for p in clf.model.parameters())
    where = {"base": "model" if lm_trained else str(Path(base).resolve())}
    if clf.prompts is not None:
        save_prompts(clf, member_dir, extra=where)
    else:
        save_json({**prompt_config(clf), **where}, member_dir / "prompt.json")
    if lm_trained:
        save_pretrained(clf.model, member_dir / "model", tokenizer=clf.tokenizer)


class FewShotClassifier:
    """A `run_fewshot` output directory loaded for prediction: its members' probabilities averaged."""

    def __init__(self, directory: str | Path, base: str | Path | None = None,
                 device: str | torch.device | None = None) -> None:
        device = resolve_device(device)  # default: CUDA when present, else CPU; checked before anything loads
        directory = Path(directory)
        path = directory / "fewshot.json"
        if not path.exists():
            raise FileNotFoundError(f"{directory}: no fewshot.json (not a plmkit pet / ptune output directory)")
        meta = json.loads(path.read_text(encoding="utf-8"))
        self.labels: list[str] = meta["labels"]
        self.members: list[PromptClassifier] = []
        for name in meta["members"]:
            member = directory / name
            cfg = read_prompt_config(member)
            model_dir = member / "model" if cfg.get("base") == "model" else Path(base or cfg["base"])
            if not Path(model_dir).exists():
                raise FileNotFoundError(f"{member / 'prompt.json'}: base model {model_dir} does not exist "
                                        "(pass the base model's directory)")
            model = load_language_model(model_dir)
            tokenizer = load_tokenizer(model_dir)
            if (member / PROMPTS_FILE).exists():
                clf = load_prompts(member, model, tokenizer)
            else:
                clf = classifier_from_config(cfg, model, tokenizer)
            self.members.append(clf.to(device))

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                batch_size: int = 64) -> list[tuple[str, list[float]]]:
        """(label, probabilities) for each text, the members' probabilities averaged."""
        probs = sum(m.predict_proba(list(texts), list(pairs) if pairs else None, batch_size) for m in self.members)
        probs = probs / len(self.members)
        return [(self.labels[int(p.argmax())], p.tolist()) for p in probs]
