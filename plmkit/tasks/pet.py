"""Classification by the language model's own head: PET patterns and P-tuning prompts.

    pattern "{mask}满意。{text}"  +  verbalizer {"1": "很", "0": "不"}
    ─► [CLS] [MASK] 满 意 。 text… [SEP]              (P-tuning: {p} slots become trained vectors)
    ─► MLM head at the slot ─► log p(word token) per label ─► product or mean ─► label scores

PET (kexue.fm/archives/7764; Schick & Schütze 2021) reads a label off the masked-LM head:
each label is a word, the pattern leaves a slot for it, and the label whose word the model
finds likeliest wins, with no new parameters, so it works with no labels at all and learns
from few. A word of k tokens fills k [MASK]s, scored in one pass by the product (sum of
log-probabilities) or the mean of its tokens' probabilities. Labels whose words have
different lengths are scored in one pass per length (the product favours shorter words).

P-tuning (kexue.fm/archives/8295; Liu et al. 2021) replaces the pattern's words by `{p}`
slots whose input embeddings are a small trained table (`PromptEmbeddings`), spliced into
the token embeddings; the language model itself may stay frozen, and then the table alone
is the fine-tuned model (`save_prompts` / `load_prompts`).

Causal LMs (GPT, GPT-2) work the same way with the slot at the end of the pattern: each
label's word is appended and scored token by token, log p(w_i | pattern, w_<i).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from ..files import atomic_write, save_json
from ..training.loop import move_to

__all__ = ["Pattern", "Verbalizer", "PromptEmbeddings", "PromptClassifier", "prompt_loss", "save_prompts",
           "load_prompts", "prompt_config", "classifier_from_config", "PROMPTS_FILE", "PROMPT_CONFIG"]

PROMPTS_FILE = "prompts.safetensors"
PROMPT_CONFIG = "prompt.json"
_SLOT = re.compile(r"\{(text|pair|mask|p)\}")
_BRACED = re.compile(r"\{[A-Za-z_0-9*]*\}")


@dataclass(frozen=True)
class Pattern:
    """A template with a `{text}` slot (and `{pair}` for text pairs), one `{mask}` slot for the
    label word, `{p}` slots for trained prompt vectors, and literal text anywhere else.

    "{mask}满意。{text}" is a prefix pattern, "{text}总之很{mask}。" a suffix one. Long texts are
    truncated so that the whole pattern and the slot always fit.
    """

    template: str

    def __post_init__(self) -> None:
        names = _SLOT.findall(self.template)
        stray = [m for m in _BRACED.findall(_SLOT.sub("", self.template))]
        if stray:
            raise ValueError(f"pattern {self.template!r}: unknown slot {stray[0]}; slots are "
                             "{text}, {pair}, {mask} and {p}")
        for name, want in (("text", (1,)), ("mask", (1,)), ("pair", (0, 1))):
            if names.count(name) not in want:
                raise ValueError(f"pattern {self.template!r}: expected {' or '.join(map(str, want))} "
                                 f"{{{name}}} slot(s), found {names.count(name)}")

    @property
    def parts(self) -> list[tuple[str, str]]:
        """(kind, literal) in order; kind is 'lit', 'text', 'pair', 'mask' or 'p'."""
        out, at = [], 0
        for m in _SLOT.finditer(self.template):
            if m.start() > at:
                out.append(("lit", self.template[at:m.start()]))
            out.append((m.group(1), ""))
            at = m.end()
        if at < len(self.template):
            out.append(("lit", self.template[at:]))
        return out

    @property
    def num_prompts(self) -> int:
        return sum(kind == "p" for kind, _ in self.parts)

    @property
    def has_pair(self) -> bool:
        return any(kind == "pair" for kind, _ in self.parts)


@dataclass(frozen=True)
class Verbalizer:
    """Label name -> the word that stands for it; `combine` scores a word of several tokens
    by the product ('product': sum of log-probabilities) or 'mean' of their probabilities."""

    words: Mapping[str, str]
    combine: str = "product"

    def __post_init__(self) -> None:
        if len(self.words) < 2:
            raise ValueError(f"a verbalizer needs at least 2 labels, found {dict(self.words)}")
        if self.combine not in ("product", "mean"):
            raise ValueError(f"combine: expected 'product' or 'mean', found {self.combine!r}")
        empty = [k for k, w in self.words.items() if not str(w).strip()]
        if empty:
            raise ValueError(f"verbalizer: label {empty[0]!r} has an empty word")

    @property
    def labels(self) -> list[str]:
        return list(self.words)

    @classmethod
    def parse(cls, items: Sequence[str], combine: str = "product") -> Verbalizer:
        """From command-line items 'label=word'."""
        words = {}
        for item in items:
            label, sep, word = item.partition("=")
            if not sep or not label or not word:
                raise ValueError(f"verbalizer item {item!r}: expected label=word")
            if label in words:
                raise ValueError(f"verbalizer: label {label!r} given twice")
            words[label] = word
        return cls(words, combine)


def piece_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a piece of text without the special tokens the tokenizer adds around it."""
    ids = list(tokenizer.encode(text)[0])
    first = getattr(tokenizer, "cls_token_id", None)
    last = {getattr(tokenizer, name, None) for name in ("sep_token_id", "end_token_id", "eos_token_id")} - {None}
    if ids and first is not None and ids[0] == first:
        ids = ids[1:]
    if ids and ids[-1] in last:
        ids = ids[:-1]
    return ids


class PromptEmbeddings(nn.Module):
    """n trained input vectors, spliced into the token embeddings at the pattern's {p} slots."""

    def __init__(self, num_prompts: int, dim: int, init: torch.Tensor | None = None) -> None:
        super().__init__()
        if num_prompts < 1:
            raise ValueError(f"num_prompts: expected >= 1, found {num_prompts}")
        weight = torch.empty(num_prompts, dim).normal_(std=0.02) if init is None else init.detach().clone().float()
        if weight.shape != (num_prompts, dim):
            raise ValueError(f"prompt init: expected shape ({num_prompts}, {dim}), found {tuple(weight.shape)}")
        self.weight = nn.Parameter(weight)

    def splice(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """`embeds` (B, T, D) with row j of the table at `positions[:, j]` (B, n)."""
        B, n, D = positions.shape[0], positions.shape[1], embeds.shape[-1]
        table = self.weight.to(embeds.dtype)[None].expand(B, n, D)
        return embeds.scatter(1, positions[..., None].expand(B, n, D), table)


class MaskedSlots:
    """How an MLM scores a label word: the word's k tokens replace k [MASK]s in the input, the
    head is read at those positions, and labels whose words share a length share one pass."""

    separator = True  # [CLS] ... [SEP], as the MLM was trained

    @staticmethod
    def head(model: nn.Module) -> nn.Module | None:
        return getattr(model, "mlm", None)

    @staticmethod
    def check(pattern: Pattern, tokenizer) -> int:
        mask_id = getattr(tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise ValueError("the tokenizer has no mask token: PET over an MLM needs one")
        return mask_id

    @staticmethod
    def groups(word_ids: list[list[int]]) -> list[tuple[list[int], torch.Tensor]]:
        by_length: dict[int, list[int]] = {}
        for i, w in enumerate(word_ids):
            by_length.setdefault(len(w), []).append(i)
        return [(idx, torch.tensor([word_ids[i] for i in idx])) for idx in by_length.values()]

    @staticmethod
    def slot(words: torch.Tensor, mask_id: int | None) -> list[int]:
        return [mask_id] * words.shape[1]

    @staticmethod
    def read_at(slots: torch.Tensor) -> torch.Tensor:
        return slots


class NextTokenSlots:
    """How a causal LM scores a label word: the word is appended after the pattern (so {mask}
    must end it), one pass per label, and token i is read at the position before it,
    log p(w_i | pattern, w_<i)."""

    separator = False

    @staticmethod
    def head(model: nn.Module) -> nn.Module | None:
        return getattr(model, "lm_head", None)

    @staticmethod
    def check(pattern: Pattern, tokenizer) -> None:
        if pattern.parts[-1][0] != "mask":
            raise ValueError(f"pattern {pattern.template!r}: a causal LM predicts the label word after the "
                             "pattern, so {mask} must end it")
        return None

    @staticmethod
    def groups(word_ids: list[list[int]]) -> list[tuple[list[int], torch.Tensor]]:
        return [([i], torch.tensor([w])) for i, w in enumerate(word_ids)]

    @staticmethod
    def slot(words: torch.Tensor, mask_id: int | None) -> list[int]:
        return words[0].tolist()

    @staticmethod
    def read_at(slots: torch.Tensor) -> torch.Tensor:
        return slots - 1


def slot_scorer(model: nn.Module) -> MaskedSlots | NextTokenSlots:
    """NextTokenSlots for a model built causal (application "lm": GPT, GPT-2), else MaskedSlots."""
    return NextTokenSlots() if getattr(model, "application", "encoder") == "lm" else MaskedSlots()


class PromptClassifier(nn.Module):
    """A pattern and a verbalizer over an MLM (BERT-like, built with_mlm) or a causal LM.

    `forward(batch)` returns (scores, word_logp), both (B, labels): the label scores (log of
    the product or mean of the word's token probabilities; softmax gives label
    probabilities) and the log-probability of each whole word (the product), which the
    vocabulary-wide MLM loss of PET trains on.
    """

    def __init__(self, model: nn.Module, tokenizer, pattern: Pattern | str, verbalizer: Verbalizer, *,
                 prompts: PromptEmbeddings | None = None, max_length: int = 128) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.pattern = Pattern(pattern) if isinstance(pattern, str) else pattern
        self.verbalizer, self.max_length = verbalizer, max_length
        self.slots = slot_scorer(model)  # chosen once: masked slots for an MLM, next-token slots for a causal LM
        if self.slots.head(model) is None:
            raise ValueError("PromptClassifier needs the language-model head: load the model with with_mlm=True")
        n = self.pattern.num_prompts
        if n and prompts is None:
            raise ValueError(f"pattern {self.pattern.template!r} has {n} {{p}} slots: pass prompts=PromptEmbeddings")
        if prompts is not None and prompts.weight.shape[0] != n:
            raise ValueError(f"pattern {self.pattern.template!r} has {n} {{p}} slots; the prompt table has "
                             f"{prompts.weight.shape[0]} rows")
        self.prompts = prompts
        self.mask_id = self.slots.check(self.pattern, tokenizer)
        self.word_ids = [piece_ids(tokenizer, w) for w in verbalizer.words.values()]
        for label, ids in zip(verbalizer.labels, self.word_ids):
            if not ids:
                raise ValueError(f"verbalizer: the word of label {label!r} has no tokens")
            unk = getattr(tokenizer, "unk_token_id", None)
            if unk is not None and unk in ids:
                raise ValueError(f"verbalizer: the word {verbalizer.words[label]!r} of label {label!r} "
                                 "holds a token the vocabulary lacks")
        self._literals = {lit: piece_ids(tokenizer, lit) for kind, lit in self.pattern.parts if kind == "lit"}
        self.calibration: torch.Tensor | None = None  # (L,) log prior subtracted from the scores; see calibrate

    # ---- inputs -----------------------------------------------------------------------------
    def _groups(self) -> list[tuple[list[int], torch.Tensor]]:
        """(label indices, their word ids (L_g, k)) per forward pass: one pass per word length for
        an MLM, one per label for a causal LM (each label's word is appended as input)."""
        return self.slots.groups(self.word_ids)

    def _row(self, text: str, pair: str | None, slot: list[int]) -> tuple[list[int], list[int], list[int], list[int]]:
        """(ids, slot positions, prompt positions, positions of the text's own tokens) of one example."""
        tok = self.tokenizer
        cls = getattr(tok, "cls_token_id", None)
        sep = getattr(tok, "sep_token_id", None) if self.slots.separator else None
        a = piece_ids(tok, text)
        b = piece_ids(tok, pair) if pair is not None else []
        if self.pattern.has_pair and pair is None:
            raise ValueError(f"pattern {self.pattern.template!r} has a {{pair}} slot but no pair text was given")
        fixed = sum(len(self._literals[lit]) if kind == "lit" else len(slot) if kind == "mask"
                    else 1 if kind == "p" else 0 for kind, lit in self.pattern.parts)
        budget = self.max_length - fixed - (cls is not None) - (sep is not None)
        if budget < 1:
            raise ValueError(f"pattern {self.pattern.template!r} leaves no room for the text within "
                             f"max_length {self.max_length}")
        while len(a) + len(b) > budget:  # the longer text loses its last token, as BERT's pair truncation
            if len(a) >= len(b):
                a.pop()
            else:
                b.pop()
        ids = [cls] if cls is not None else []
        slots, prompts, own = [], [], []
        for kind, lit in self.pattern.parts:
            if kind == "lit":
                ids += self._literals[lit]
            elif kind in ("text", "pair"):
                piece = a if kind == "text" else b
                own += range(len(ids), len(ids) + len(piece))
                ids += piece
            elif kind == "p":
                prompts.append(len(ids))
                ids.append(getattr(tok, "unk_token_id", 0) or 0)  # a placeholder: its embedding is replaced
            else:
                slots = list(range(len(ids), len(ids) + len(slot)))
                ids += slot
        if sep is not None:
            ids.append(sep)
        return ids, slots, prompts, own

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
               labels: Sequence[int] | None = None, first_group_only: bool = False) -> dict:
        """A batch: one padded tensor set per group of labels (only the first if asked: masked-LM
        batches of unlabeled text need one slot shape), and the label indices if given."""
        pad = getattr(self.tokenizer, "pad_token_id", 0) or 0
        groups = []
        for idx, words in self._groups()[:1] if first_group_only else self._groups():
            slot = self.slots.slot(words, self.mask_id)
            rows = [self._row(t, pairs[i] if pairs is not None else None, slot) for i, t in enumerate(texts)]
            T = max(len(r[0]) for r in rows)
            input_ids = torch.full((len(rows), T), pad, dtype=torch.long)
            attention = torch.zeros((len(rows), T), dtype=torch.long)
            text = torch.zeros((len(rows), T), dtype=torch.bool)
            for i, (ids, _, _, own) in enumerate(rows):
                input_ids[i, :len(ids)] = torch.tensor(ids)
                attention[i, :len(ids)] = 1
                text[i, own] = True
            groups.append({  # input_ids first: the trainer counts a batch's examples by its first tensor
                "input_ids": input_ids, "attention_mask": attention, "labels": idx, "words": words,
                "slots": torch.tensor([r[1] for r in rows]),  # (B, k)
                "prompts": torch.tensor([r[2] for r in rows], dtype=torch.long).reshape(len(rows), -1),  # (B, n)
                "text": text,  # (B, T) True on the tokens of the text (and pair) themselves
            })
        batch = {"groups": groups}
        if labels is not None:
            batch["label_ids"] = torch.as_tensor(list(labels), dtype=torch.long)
        return batch

    # ---- scores -----------------------------------------------------------------------------
    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        # encode() builds batches on the CPU; here, the one place every caller passes, they follow the model
        device = next(self.model.parameters()).device
        batch = move_to(batch, device)
        B = batch["groups"][0]["input_ids"].shape[0]
        L = len(self.word_ids)
        scores = torch.zeros(B, L, device=device)
        word_logp = torch.zeros(B, L, device=device)
        for g in batch["groups"]:
            ids = g["input_ids"]
            embeds = None
            if self.prompts is not None:
                embeds = self.prompts.splice(self.model.embeddings.token(ids), g["prompts"])
            at = self.slots.read_at(g["slots"])  # (B, k): where the head predicts each word token
            logits = self.model(ids, attention_mask=g["attention_mask"], inputs_embeds=embeds, logits_at=at).logits
            logp = logits.float().log_softmax(-1)  # (B, k, V)
            words = g["words"]  # (L_g, k)
            k = words.shape[1]
            token_logp = logp.gather(2, words.T[None].expand(B, k, len(g["labels"]))).transpose(1, 2)  # (B, L_g, k)
            total = token_logp.sum(-1)
            if self.verbalizer.combine == "product":
                score = total
            else:
                score = token_logp.logsumexp(-1) - math.log(k)
            idx = torch.tensor(g["labels"], device=device)
            scores = scores.index_copy(1, idx, score)
            word_logp = word_logp.index_copy(1, idx, total)
        return scores, word_logp

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
                      batch_size: int = 64, calibrated: bool = True) -> torch.Tensor:
        """(N, labels) label probabilities, in the verbalizer's label order (calibrated when set)."""
        was_training = self.training
        self.eval()
        out = []
        for s in range(0, len(texts), batch_size):
            batch = self.encode(texts[s:s + batch_size], pairs[s:s + batch_size] if pairs is not None else None)
            scores = self(batch)[0]
            if calibrated and self.calibration is not None:
                scores = scores - self.calibration.to(scores.device)
            out.append(scores.softmax(-1).cpu())  # on the CPU, as the labels they are compared with
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, len(self.word_ids))

    def calibrate(self, texts: Sequence[str] = ("",), pairs: Sequence[str] | None = None) -> torch.Tensor:
        """Divide out the label words' prior (Zhao et al. 2021, "Calibrate before use").

        An MLM may prefer one label word whatever the text (很 over 不, say), which makes a
        zero-shot pattern predict one label for everything. The prior is the mean label
        distribution over `texts` (unlabelled texts of the task, or the content-free "");
        afterwards p(label | x) is proportional to p(word | x) / prior(label).
        """
        prior = self.predict_proba(list(texts), list(pairs) if pairs is not None else None, calibrated=False)
        self.calibration = prior.mean(0).clamp_min(1e-12).log()
        return self.calibration


def prompt_loss(classifier: PromptClassifier, batch: dict, kind: str = "vocab") -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss of a labelled batch and its example count.

    'vocab' (PET as bert4keras trains it): the language model's cross-entropy over the
    whole vocabulary on each token of the gold label's word, i.e. -log of the word's product
    probability. 'label': cross-entropy of the label scores (softmax over the labels only).
    """
    scores, word_logp = classifier(batch)
    gold = batch["label_ids"].to(scores.device)
    if kind == "vocab":
        loss = -word_logp.gather(1, gold[:, None]).sum()
    elif kind == "label":
        loss = nn.functional.cross_entropy(scores, gold, reduction="sum")
    else:
        raise ValueError(f"loss kind: expected 'vocab' or 'label', found {kind!r}")
    return loss, gold.new_tensor(gold.numel())


# ---- prompt-only checkpoints ------------------------------------------------------------------
def base_fingerprint(model: nn.Module) -> str:
    """A short hash of the base model's token table: prompts trained on one base refuse another."""
    table = model.embeddings.token.weight.detach().float().contiguous()
    return hashlib.sha256(table.numpy().tobytes()).hexdigest()[:16]


def save_prompts(classifier: PromptClassifier, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write the prompt table and what reads it (pattern, verbalizer, base model fingerprint)."""
    from safetensors.torch import save_file

    if classifier.prompts is None:
        raise ValueError("this classifier has no prompt table to save (the pattern has no {p} slots)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weight = classifier.prompts.weight.detach().cpu().contiguous()
    atomic_write(out / PROMPTS_FILE, lambda tmp: save_file({"prompts": weight}, str(tmp)))
    save_json({**prompt_config(classifier), "num_prompts": int(weight.shape[0]), "dim": int(weight.shape[1]),
               "base_fingerprint": base_fingerprint(classifier.model), **(extra or {})}, out / PROMPT_CONFIG)
    return out


def prompt_config(classifier: PromptClassifier) -> dict:
    """What a prompt.json records of a classifier: pattern, words, scoring, length, calibration."""
    cfg = {"pattern": classifier.pattern.template, "words": dict(classifier.verbalizer.words),
           "combine": classifier.verbalizer.combine, "max_length": classifier.max_length}
    if classifier.calibration is not None:
        cfg["calibration"] = [float(v) for v in classifier.calibration]
    return cfg


def classifier_from_config(cfg: dict, model: nn.Module, tokenizer,
                           prompts: PromptEmbeddings | None = None) -> PromptClassifier:
    """The PromptClassifier a prompt.json describes, over `model` (the inverse of prompt_config)."""
    classifier = PromptClassifier(model, tokenizer, cfg["pattern"], Verbalizer(cfg["words"], cfg["combine"]),
                                  prompts=prompts, max_length=cfg["max_length"])
    if cfg.get("calibration") is not None:
        if len(cfg["calibration"]) != len(classifier.word_ids):
            raise ValueError(f"{PROMPT_CONFIG}: calibration has {len(cfg['calibration'])} values for "
                             f"{len(classifier.word_ids)} labels")
        classifier.calibration = torch.tensor(cfg["calibration"])
    return classifier


def read_prompt_config(directory: str | Path) -> dict:
    path = Path(directory) / PROMPT_CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{directory}: no {PROMPT_CONFIG} (not a prompt classifier directory)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    for field in ("pattern", "words", "combine", "max_length"):
        if field not in cfg:
            raise ValueError(f"{path}: missing field {field!r}")
    return cfg


def load_prompts(directory: str | Path, model: nn.Module, tokenizer) -> PromptClassifier:
    """A PromptClassifier over `model` (the base the prompts were trained on) with the saved table."""
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg = read_prompt_config(directory)
    tensors = load_file(str(directory / PROMPTS_FILE))
    if set(tensors) != {"prompts"}:
        raise ValueError(f"{directory / PROMPTS_FILE}: expected one tensor 'prompts', found {sorted(tensors)}")
    weight = tensors["prompts"]
    dim = model.embeddings.token.weight.shape[1]
    if weight.shape[1] != dim:
        raise ValueError(f"{directory / PROMPTS_FILE}: prompts have width {weight.shape[1]}; the model's token "
                         f"embeddings have {dim}")
    want = cfg.get("base_fingerprint")
    if want is not None and want != base_fingerprint(model):
        raise ValueError(f"{directory / PROMPT_CONFIG}: base_fingerprint {want} does not match this model "
                         f"({base_fingerprint(model)}): the prompts were trained on another base model")
    return classifier_from_config(cfg, model, tokenizer, PromptEmbeddings(weight.shape[0], dim, init=weight))
