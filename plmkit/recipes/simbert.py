"""SimBERT / RoFormer-Sim: one encoder that both retrieves and paraphrases.

    similar pairs (a, b) ─► rows [CLS] a [SEP] b [SEP] and [CLS] b [SEP] a [SEP], adjacent (rows 2i, 2i+1)
                         ─► [whole-word-mask noise on the source segment of half the rows]
                         ─► UniLM encoder (segment 0 bidirectional, segment 1 causal; with MLM head and pooler)
        seq2seq loss:    predict segment 1 token by token (next-token cross-entropy over its tokens)
        similarity loss: pooled [CLS] vectors (the [CLS] sees only its own source sentence under the UniLM
                         mask), cosine x scale 20, diagonal masked, row i's positive is row i ^ 1
        [distillation]:  lambda 100 x mean squared difference of the batch's cosine matrix from a teacher's

SimBERT: github.com/ZhuiyiTechnology/simbert (kexue.fm/archives/7427); RoFormer-Sim: kexue.fm/archives/8454;
the supervised head (RoFormer-Sim-FT): kexue.fm/archives/8541, trained from labelled pairs by
`finetune_simbert` (`plmkit simbert`). `gen_synonyms` samples paraphrases with top-p, de-duplicates them
and ranks them by cosine to the input, as the SimBERT release does.
Large batches can be accumulated exactly (`chunks`, see plmkit.similarity.contrastive).
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import DataError, mask_tokens, read_examples
from ..files import save_json
from ..hardware import resolve_device, resolve_precision
from ..modules.linear import Linear
from ..sentence import encode_sentences, pool
from ..similarity.contrastive import accumulated_backward, paired_contrastive_loss
from ..training import build_optimizer, lambda_scheduler, warmup_linear
from .outputs import publish

logger = logging.getLogger("plmkit.simbert")

Teacher = Callable[[Sequence[str]], Tensor]  # texts -> (N, D) sentence vectors


@dataclass
class SimBertConfig:
    """Settings of a SimBERT / RoFormer-Sim training run."""

    max_length: int = 64  # tokens of a whole row: [CLS] a [SEP] b [SEP]
    batch_size: int = 32  # pairs per step (each makes two rows)
    steps: int = 1000
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup: float = 0.05
    max_grad_norm: float = 1.0
    scale: float = 20.0  # cosine scale of the in-batch softmax (RoFormer-Sim: 20; SimBERT: 30)
    similarity_weight: float = 1.0
    pooling: str = "pooler_linear"  # the pooler's dense layer without tanh, as both releases
    noise_prob: float = 0.0  # whole-word masking rate on the source segment; 0: no noise
    noise_rows: float = 0.5  # share of rows that get the noise
    distill_weight: float = 100.0  # used only when a teacher is given
    chunks: int = 1  # >1: exact gradient accumulation over this many chunks of the batch
    precision: str = "auto"  # bf16 autocast where native to the device, else fp32 (plmkit.hardware)
    seed: int = 0
    device: str | None = None  # where train_simbert trains the model; default: cuda when available, else cpu


# ---- batches ------------------------------------------------------------------------------------

def pair_batch(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int | None,
               offsets: bool = False) -> dict[str, Tensor]:
    """Rows (a, b) and (b, a) of every pair, adjacent; `sources` lists each row's first text."""
    firsts, seconds = [], []
    for j, pair in enumerate(pairs):
        if len(pair) != 2 or not all(isinstance(t, str) and t for t in pair):
            raise ValueError(f"pair {j}: expected two non-empty texts, found {pair!r}")
        a, b = pair
        firsts += [a, b]
        seconds += [b, a]
    batch = tokenizer(firsts, seconds, max_length=max_length, **({"return_offsets": True} if offsets else {}))
    batch["sources"] = firsts
    return batch


def whole_word_ids(batch: dict, segment: Callable[[str], list[str]] | None) -> Tensor:
    """(B, T) for each source token, the position of the first token of its word (words from `segment`).

    Tokens outside the source segment, and every token when `segment` is None, are their own word.
    """
    ids = batch["input_ids"]
    B, T = ids.shape
    word_ids = torch.arange(T).expand(B, T).clone()
    if segment is None:
        return word_ids
    offsets = batch["offset_mapping"]
    source = (batch["token_type_ids"] == 0) & batch["attention_mask"].bool()
    for b, text in enumerate(batch["sources"]):
        char_word, pos = [0] * len(text), 0
        for w, word in enumerate(segment(text)):
            start = text.find(word, pos)
            if start < 0:  # a segmenter that rewrites text: fall back to tokens as words
                break
            char_word[start:start + len(word)] = [w] * len(word)
            pos = start + len(word)
        first: dict[int, int] = {}
        for t in range(T):
            s, e = offsets[b, t].tolist()
            if not source[b, t] or e <= s or s >= len(char_word):
                continue
            word_ids[b, t] = first.setdefault(char_word[s], t)
    return word_ids


def source_noise(batch: dict, tokenizer, prob: float, rows: float, *, segment=None,
                 generator: torch.Generator | None = None) -> Tensor:
    """Input ids with whole-word masking (80% [MASK], 10% random, 10% kept) on the source of a share of rows."""
    ids = batch["input_ids"]
    if prob <= 0:
        return ids
    if tokenizer.mask_token_id is None:
        raise ValueError("source noise needs a [MASK] token in the tokenizer's vocabulary")
    chosen = torch.rand(len(ids), generator=generator) < rows  # (B,)
    special_ids = torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])
    maskable = (chosen[:, None] & (batch["token_type_ids"] == 0) & batch["attention_mask"].bool()
                & ~torch.isin(ids, special_ids))
    masked, _ = mask_tokens(ids, mask_id=tokenizer.mask_token_id, vocab_size=tokenizer.vocab_size,
                            special=~maskable, prob=prob, word_ids=whole_word_ids(batch, segment),
                            generator=generator)
    return masked


# ---- losses -------------------------------------------------------------------------------------

def seq2seq_loss_sum(logits: Tensor, input_ids: Tensor, token_type_ids: Tensor,
                     attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(sum of next-token cross-entropies over segment-1 targets, their count): UniLM's seq2seq loss."""
    target = input_ids[:, 1:]  # (B, T-1): token t+1 is predicted at position t
    weight = (token_type_ids[:, 1:] * attention_mask[:, 1:]).bool()
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(), reduction="none")
    return (ce.view_as(target) * weight).sum(), weight.sum()


def similarity_matrix(vectors: Tensor) -> Tensor:
    """(N, N) cosine similarities."""
    z = F.normalize(vectors.float(), dim=-1)
    return z @ z.T


def distillation_loss(student: Tensor, teacher: Tensor, weight: float = 100.0) -> Tensor:
    """weight x mean squared difference between the student's and the teacher's cosine matrices (8454)."""
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student has {student.shape[0]} vectors, teacher {teacher.shape[0]}")
    return weight * (similarity_matrix(student) - similarity_matrix(teacher).to(student.device)).pow(2).mean()


class SupervisedSimilarityHead(nn.Module):
    """concat(u, v, |u - v|) ─► dense, no bias ─► num_tasks x num_labels logits, other tasks' masked (8541)."""

    def __init__(self, hidden_size: int, num_tasks: int, num_labels: int = 2) -> None:
        super().__init__()
        self.num_tasks, self.num_labels = num_tasks, num_labels
        self.dense = Linear(3 * hidden_size, num_tasks * num_labels, bias=False)

    def forward(self, u: Tensor, v: Tensor, task_ids: Tensor) -> Tensor:
        """(B, num_tasks * num_labels) logits; those of tasks other than each row's are -inf."""
        if task_ids.min() < 0 or task_ids.max() >= self.num_tasks:
            raise ValueError(f"task ids must be in 0..{self.num_tasks - 1}, found {task_ids.min()}..{task_ids.max()}")
        logits = self.dense(torch.cat([u, v, (u - v).abs()], dim=-1))
        task_of_column = torch.arange(logits.shape[-1], device=logits.device) // self.num_labels
        return logits.masked_fill(task_of_column[None, :] != task_ids[:, None], float("-inf"))

    def loss(self, logits: Tensor, task_ids: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy over all tasks' columns; the masked ones take no probability."""
        return F.cross_entropy(logits.float(), task_ids * self.num_labels + labels)


# ---- model --------------------------------------------------------------------------------------

def build_simbert(config, **options) -> nn.Module:
    """A randomly initialised UniLM encoder with MLM head and pooler (any BERT-like family's config)."""
    from ..models import build_model

    return build_model(config, with_mlm=True, with_pool=True, application="unilm", **options)


def load_simbert(path, *, device: str | torch.device | None = None, **options) -> nn.Module:
    """A pretrained checkpoint as a UniLM encoder with MLM head and pooler, on `device` (default: cuda when
    available, else cpu)."""
    from ..pretrained import from_pretrained

    model = from_pretrained(path, with_mlm=True, with_pool=True, application="unilm", **options)
    return model.to(resolve_device(device))


def _check_model(model: nn.Module) -> None:
    if getattr(model, "application", None) != "unilm" or model.mlm is None or model.pooler is None:
        raise ValueError("SimBERT training needs application='unilm', with_mlm=True and with_pool=True "
                         "(build_simbert / load_simbert make such a model)")


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def simbert_step(model: nn.Module, batch: dict, config: SimBertConfig, *, input_ids: Tensor | None = None,
                 teacher_vectors: Tensor | None = None) -> dict[str, float]:
    """One forward/backward of the whole SimBERT loss on a pair batch (gradients accumulate into .grad)."""
    device = next(model.parameters()).device
    ids = (batch["input_ids"] if input_ids is None else input_ids).to(device)
    target = batch["input_ids"].to(device)
    seg, att = batch["token_type_ids"].to(device), batch["attention_mask"].to(device)
    count = (seg[:, 1:] * att[:, 1:]).sum().clamp(min=1)

    def embed(rows: slice):
        with _autocast(config.precision, device):
            out = model(ids[rows], token_type_ids=seg[rows], attention_mask=att[rows])
            z = pool(out, att[rows], config.pooling, model).float()
        s2s, _ = seq2seq_loss_sum(out.logits, target[rows], seg[rows], att[rows])
        return z, s2s / count

    def pair_losses(z: Tensor) -> tuple[Tensor, Tensor]:
        sim = config.similarity_weight * paired_contrastive_loss(z, config.scale)
        distill = distillation_loss(z, teacher_vectors, config.distill_weight) if teacher_vectors is not None \
            else z.new_zeros(())
        return sim, distill

    if config.chunks <= 1:
        z, s2s = embed(slice(None))
        sim, distill = pair_losses(z)
        (s2s + sim + distill).backward()
        return {"loss": (s2s + sim + distill).item(), "seq2seq": s2s.item(), "similarity": sim.item(),
                "distill": distill.item()}
    n = len(ids)
    size = 2 * math.ceil(n / 2 / config.chunks)  # even: a pair's two rows stay in one chunk
    chunks = [slice(i, min(i + size, n)) for i in range(0, n, size)]
    total = accumulated_backward(embed, chunks, lambda z: sum(pair_losses(z)))
    return {"loss": total.item()}


def _pair_order(n: int, batch_size: int, generator: torch.Generator):
    """Endless shuffled passes over n pairs, batch_size at a time."""
    while True:
        perm = torch.randperm(n, generator=generator).tolist()
        for i in range(0, n - batch_size + 1, batch_size):  # a short last batch is dropped
            yield perm[i:i + batch_size]


def train_simbert(model: nn.Module, tokenizer, pairs: Sequence[tuple[str, str]],
                  config: SimBertConfig | None = None, *, teacher: Teacher | None = None,
                  segment: Callable[[str], list[str]] | None = None,
                  callback: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Train in place, on config.device, for config.steps steps; returns one record of losses per step.

    `teacher(texts)` gives reference vectors for distillation; `segment(text)` gives the words
    for whole-word noise (None: tokens); `callback(step, record)` is called after every step.
    """
    config = config or SimBertConfig()
    _check_model(model)
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs to contrast, found {len(pairs)}")
    model.to(resolve_device(config.device))  # simbert_step moves each batch to the model's device
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout
    optimizer = build_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = lambda_scheduler(optimizer, warmup_linear(int(config.warmup * config.steps), config.steps))
    order = _pair_order(len(pairs), min(config.batch_size, len(pairs)), generator)
    needs_offsets = config.noise_prob > 0 and segment is not None
    history = []
    model.train()
    for step in range(1, config.steps + 1):
        batch = pair_batch(tokenizer, [pairs[i] for i in next(order)], config.max_length, offsets=needs_offsets)
        noisy = source_noise(batch, tokenizer, config.noise_prob, config.noise_rows, segment=segment,
                             generator=generator)
        teacher_vectors = None
        if teacher is not None:
            with torch.no_grad():
                teacher_vectors = teacher(batch["sources"]).float()
        record = simbert_step(model, batch, config, input_ids=noisy, teacher_vectors=teacher_vectors)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        record.update(step=step, grad_norm=float(norm), lr=scheduler.get_last_lr()[0])
        history.append(record)
        if callback is not None:
            callback(step, record)
    model.eval()
    return history


def teacher_from(model: nn.Module, tokenizer, pooling: str = "pooler_linear", max_length: int | None = None) -> Teacher:
    """A Teacher that encodes texts with a (frozen) model, e.g. a trained SimBERT."""
    def encode(texts: Sequence[str]) -> Tensor:
        return encode_sentences(model, tokenizer, list(texts), pooling=pooling, normalize=False,
                                max_length=max_length)
    return encode


# ---- paraphrases --------------------------------------------------------------------------------

Sampler = Callable[..., list[list[int]]]


def generate_sampler(model: nn.Module, token_ids: list[int], segment_ids: list[int], *, n: int, top_p: float,
                     max_new_tokens: int, end_id: int, generator: torch.Generator | None) -> list[list[int]]:
    """n continuations sampled with plmkit.generate (UniLM: generated tokens are segment 1)."""
    from ..generation import generate

    device = next(model.parameters()).device  # generate decodes where its inputs are
    out = generate(model, torch.tensor([token_ids], device=device),
                   token_type_ids=torch.tensor([segment_ids], device=device),
                   max_new_tokens=max_new_tokens, do_sample=True, top_p=top_p, num_return_sequences=n,
                   generator=generator, eos_token_id=end_id)  # (n, new tokens): UniLM returns the target only
    return [row.tolist() for row in out]


def gen_synonyms(model: nn.Module, tokenizer, text: str, n: int = 100, k: int = 20, *, top_p: float = 0.95,
                 max_new_tokens: int = 32, max_length: int | None = 64, pooling: str = "pooler_linear",
                 generator: torch.Generator | None = None, sampler: Sampler | None = None) -> list[str]:
    """Up to k paraphrases of `text`: n top-p samples, de-duplicated (the input itself dropped), best cosine first.

    `sampler` replaces the decoder (same arguments as generate_sampler), e.g. to use a cache or beam search.
    """
    token_ids, segment_ids = tokenizer.encode(text, maxlen=max_length)
    sample = sampler or generate_sampler
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            continuations = sample(model, token_ids, segment_ids, n=n, top_p=top_p, max_new_tokens=max_new_tokens,
                                   end_id=tokenizer.sep_token_id, generator=generator)
    finally:
        model.train(was_training)
    seen: dict[str, None] = {}
    for ids in continuations:
        ids = list(ids)
        if tokenizer.sep_token_id in ids:
            ids = ids[:ids.index(tokenizer.sep_token_id)]
        candidate = tokenizer.decode(ids).strip()
        if candidate and candidate != text:
            seen.setdefault(candidate)
    candidates = list(seen)
    if not candidates:
        return []
    vectors = encode_sentences(model, tokenizer, [text] + candidates, pooling=pooling, max_length=max_length)
    scores = vectors[1:] @ vectors[0]  # (C,) cosines to the input
    order = torch.argsort(scores, descending=True, stable=True)
    return [candidates[i] for i in order[:k].tolist()]


# ---- fine-tuning on labelled pairs: `plmkit simbert` (kexue.fm/archives/8541) ----------------------------

OBJECTIVES = ("supervised", "unsupervised", "both")
SUPERVISED_LOSSES = ("concat", "cosent")
SETTINGS = "simbert.json"  # beside the weights: how the vectors are pooled


@dataclass
class SimBertPairsConfig:
    """Settings of `plmkit simbert`: fine-tune on sentence pairs labelled 1 (similar) or 0 (not).

    supervised:   u, v pooled from each sentence alone, then by `supervised_loss`:
                  concat: concat(u, v, |u - v|) ─► dense ─► 2-way cross-entropy (SupervisedSimilarityHead, as
                          8541 trains; the head is dropped afterwards: similarity is the cosine of u, v)
                  cosent: every similar pair's cosine ranked above every dissimilar one's in the batch
                          (CoSENT, kexue.fm/archives/8847: the same author's fix for training one thing, the
                          classifier, and using another, the cosine)
    unsupervised: the SimBERT loss (seq2seq + in-batch similarity) on the pairs labelled 1
    both:         the sum of the two, the SimBERT part on a separate stream of label-1 pairs
    """

    objective: Literal["supervised", "unsupervised", "both"] = "supervised"
    supervised_loss: Literal["concat", "cosent"] = "cosent"
    epochs: int = 3  # passes over the labelled pairs (unsupervised: over the label-1 pairs)
    batch_size: int = 32  # pairs per step
    max_length: int = 64  # tokens of one sentence (supervised), of a whole SimBERT row (unsupervised)
    lr: float = 1e-4  # as plmkit's other recipes; suits the embedded small model (benchmarks/README.md)
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_grad_norm: float = 1.0
    scale: float = 20.0  # cosine scale of CoSENT and of the SimBERT loss's in-batch softmax
    pooling: str = "pooler_linear"  # as SimBERT / RoFormer-Sim were trained; any of plmkit.sentence.POOLINGS
    precision: str = "auto"  # bf16 autocast where native to the device, else fp32 (plmkit.hardware)
    seed: int = 0
    device: str | None = None  # default: cuda when available, else cpu
    text_a_col: str = "text_a"
    text_b_col: str = "text_b"
    label_col: str = "label"

    def __post_init__(self) -> None:
        """Every field checked here, so a bad value fails before any file is read or written."""
        from ..hardware import PRECISIONS
        from ..sentence import POOLINGS

        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"{name}: expected {expected}, found {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (4 if name == "max_length" else 1):
                raise bad(name, "an integer >= 4" if name == "max_length" else "an integer >= 1")
        for name, ok, expected in (("lr", lambda x: x > 0, "> 0"), ("weight_decay", lambda x: x >= 0, ">= 0"),
                                   ("warmup", lambda x: 0 <= x <= 1, "a fraction of the steps in [0, 1]"),
                                   ("max_grad_norm", lambda x: x > 0, "> 0"), ("scale", lambda x: x > 0, "> 0")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise bad(name, expected)
        for name, allowed in (("objective", OBJECTIVES), ("supervised_loss", SUPERVISED_LOSSES), ("pooling", POOLINGS),
                              ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise bad(name, f"one of {', '.join(allowed)}")
        for name in ("text_a_col", "text_b_col", "label_col"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise bad(name, "a column name")

    def simbert(self) -> SimBertConfig:
        """The SimBERT loss's settings (simbert_step) for the unsupervised part."""
        return SimBertConfig(max_length=self.max_length, batch_size=self.batch_size, scale=self.scale,
                             pooling=self.pooling, precision=self.precision, seed=self.seed, device=self.device)


LabelledPair = tuple[str, str, int]  # (text a, text b, 1 similar / 0 not)


def read_labelled_pairs(path: str | Path, cfg: SimBertPairsConfig | None = None) -> list[LabelledPair]:
    """(a, b, label) rows of a CSV / TSV / JSONL file; a missing column or a label other than 0 / 1 names its line."""
    cfg = cfg or SimBertPairsConfig()
    data = read_examples(path, text_col=cfg.text_a_col, pair_col=cfg.text_b_col, label_col=cfg.label_col)
    rows = []
    for a, b, label, line in zip(data.texts, data.pairs, data.labels, data.lines):
        if label not in ("0", "1"):
            raise DataError(f"{path}: line {line}: field {cfg.label_col!r} must be 0 or 1, found {label!r}")
        for column, text in ((cfg.text_a_col, a), (cfg.text_b_col, b)):
            if not text.strip():
                raise DataError(f"{path}: line {line}: field {column!r} is empty")
        rows.append((a, b, int(label)))
    return rows


def cosent_loss(cosines: Tensor, labels: Tensor, scale: float = 20.0) -> Tensor:
    """log(1 + sum over similar i, dissimilar j of exp(scale * (cos_j - cos_i))): CoSENT (kexue.fm/archives/8847)."""
    diff = scale * (cosines[None, :] - cosines[:, None])  # (B, B): [i, j] = scale * (cos_j - cos_i)
    ranked = labels.bool()[:, None] & ~labels.bool()[None, :]  # i similar, j not
    terms = diff.float().masked_select(ranked)
    return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)  # the 1 inside the log is exp(0)


def supervised_loss(model: nn.Module, head: SupervisedSimilarityHead | None, tokenizer,
                    rows: Sequence[LabelledPair], cfg: SimBertPairsConfig) -> Tensor:
    """The supervised loss (cfg.supervised_loss) of labelled pairs; u and v are each sentence pooled on its own.

    concat: mean cross-entropy of `head` on concat(u, v, |u - v|); cosent: CoSENT on cos(u, v) (head unused)."""
    device = next(model.parameters()).device
    n = len(rows)
    batch = tokenizer([a for a, _, _ in rows] + [b for _, b, _ in rows], max_length=cfg.max_length)
    batch = {k: v.to(device) for k, v in batch.items()}
    with _autocast(cfg.precision, device):
        out = model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                    attention_mask=batch["attention_mask"])
        z = pool(out, batch["attention_mask"], cfg.pooling, model).float()  # (2n, H): the a's, then the b's
    labels = torch.tensor([y for _, _, y in rows], device=device)
    if cfg.supervised_loss == "cosent":
        return cosent_loss(F.cosine_similarity(z[:n], z[n:], dim=-1), labels, cfg.scale)
    if head is None:
        raise ValueError("supervised_loss 'concat' needs the SupervisedSimilarityHead")
    tasks = torch.zeros(n, dtype=torch.long, device=device)  # one task: the file's
    return head.loss(head(z[:n], z[n:], tasks), tasks, labels)


def pair_cosines(model: nn.Module, tokenizer, pairs: Sequence[Sequence], *, pooling: str = "pooler_linear",
                 max_length: int | None = None) -> Tensor:
    """(N,) cosine of each pair's two texts (each text encoded once)."""
    texts = list(dict.fromkeys(t for p in pairs for t in p[:2]))
    index = {t: i for i, t in enumerate(texts)}
    z = encode_sentences(model, tokenizer, texts, pooling=pooling, max_length=max_length)  # (T, H), unit length
    return (z[[index[p[0]] for p in pairs]] * z[[index[p[1]] for p in pairs]]).sum(-1)


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative (ties: half)."""
    s, y = torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels).bool()
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        raise ValueError(f"AUC needs both labels, found {n1} positive and {n0} negative pairs")
    _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)  # ascending values
    ranks = (counts.cumsum(0) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean rank
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def best_threshold(scores: Tensor, labels: Tensor) -> tuple[float, float]:
    """(threshold, accuracy) of the rule `score >= threshold -> similar` that is right most often on these pairs."""
    s, y = torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels).bool()
    values = torch.unique(s)  # candidate thresholds, ascending
    below_pos = torch.searchsorted(s[y].sort().values, values)  # positives under each threshold: wrong
    below_neg = torch.searchsorted(s[~y].sort().values, values)  # negatives under it: right
    correct = (int(y.sum()) - below_pos) + below_neg
    k = int(torch.argmax(correct))
    if int((~y).sum()) > int(correct[k]):  # everything called dissimilar beats every threshold
        return float(values[-1]) + 1.0, float((~y).float().mean())
    return float(values[k]), float(correct[k]) / len(s)


def pair_metrics(scores: Tensor, labels: Tensor, threshold: float | None = None) -> dict[str, float]:
    """AUC, and accuracy at `threshold` (None: at the best one for these pairs, which is returned too)."""
    best, best_accuracy = best_threshold(scores, labels)
    out = {"auc": roc_auc(scores, labels), "threshold": best, "accuracy": best_accuracy}
    if threshold is not None:
        y = torch.as_tensor(labels).bool()
        out.update(threshold=threshold, accuracy=float(((torch.as_tensor(scores) >= threshold) == y).float().mean()),
                   best_accuracy=best_accuracy)
    return out


def load_start(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """load_simbert, except that a checkpoint without a pooler (a masked-LM release) gets a fresh one, logged."""
    from ..pretrained import CheckpointError

    model = load_simbert(path, device=device, allow_missing=True)
    missing = model.load_report.missing
    others = [n for n in missing if not n.startswith("pooler.")]
    if others:
        raise CheckpointError(f"{path}: the checkpoint lacks {others[:5]}; only the pooler may be missing "
                              "(it is then initialised fresh)")
    if missing:
        logger.warning("%s has no pooler: %s initialised fresh", path, ", ".join(missing))
    return model


def finetune_simbert(model_path: str | Path, train: str | Path, out_dir: str | Path, *,
                     valid: str | Path | None = None, test: str | Path | None = None,
                     cfg: SimBertPairsConfig | None = None, overwrite: bool = False) -> dict:
    """Fine-tune a SimBERT-style model on labelled pairs; write `<out>/model` and `<out>/results.json`.

    Valid and test pairs are scored by cosine before and after (AUC, accuracy at the best threshold;
    test's at the threshold best on valid when valid is given). With valid, the epoch of the best
    valid AUC is kept. Every input is read before anything is written; the work happens in
    `<out>.partial`, renamed when complete (an interrupted run starts afresh). Returns the results."""
    cfg = cfg or SimBertPairsConfig()
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output directory {out} already exists (pass overwrite to replace it)")
    started = time.time()
    splits = {"train": read_labelled_pairs(train, cfg)}
    for name, path in (("valid", valid), ("test", test)):
        if path is not None:
            splits[name] = rows = read_labelled_pairs(path, cfg)
            if len({y for *_, y in rows}) < 2:
                raise DataError(f"{path}: {name} pairs need both labels (0 and 1) to be scored")
    train_rows = splits["train"]
    positives = [(a, b) for a, b, y in train_rows if y == 1]
    if cfg.objective != "unsupervised" and len({y for *_, y in train_rows}) < 2:
        raise DataError(f"{train}: the supervised objective needs pairs of both labels (0 and 1)")
    if cfg.objective != "supervised" and len(positives) < 2:
        raise DataError(f"{train}: the SimBERT objective needs at least 2 pairs labelled 1, found {len(positives)}")

    from ..pretrained import save_pretrained
    from ..tokenizers import load_tokenizer

    device = resolve_device(cfg.device)
    tokenizer = load_tokenizer(model_path)
    model = load_start(model_path, device)
    torch.manual_seed(cfg.seed)  # the head's initialisation and dropout
    head = SupervisedSimilarityHead(model.config.hidden_size, num_tasks=1).to(device) \
        if cfg.supervised_loss == "concat" and cfg.objective != "unsupervised" else None

    def evaluate(name: str, threshold: float | None = None) -> dict[str, float]:
        rows = splits[name]
        scores = pair_cosines(model, tokenizer, rows, pooling=cfg.pooling, max_length=cfg.max_length)
        return pair_metrics(scores.cpu(), torch.tensor([y for *_, y in rows]), threshold)

    def scored() -> dict[str, dict[str, float]]:
        result = {"valid": evaluate("valid")} if "valid" in splits else {}
        if "test" in splits:
            result["test"] = evaluate("test", result["valid"]["threshold"] if result else None)
        return result

    report: dict = {"objective": cfg.objective, "model": str(model_path), "device": str(device),
                    "precision": resolve_precision(cfg.precision, device),
                    "examples": {name: len(rows) for name, rows in splits.items()}, "before": scored()}
    stream = train_rows if cfg.objective != "unsupervised" else positives
    batch_size = min(cfg.batch_size, len(stream))
    steps = cfg.epochs * math.ceil(len(stream) / batch_size)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = build_optimizer(nn.ModuleList([model] + ([head] if head else [])), lr=cfg.lr,
                                weight_decay=cfg.weight_decay)
    scheduler = lambda_scheduler(optimizer, warmup_linear(int(cfg.warmup * steps), steps))
    simbert_cfg = cfg.simbert()
    extra = _pair_order(len(positives), min(cfg.batch_size, len(positives)), generator) \
        if cfg.objective == "both" else None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    history, best, best_auc = [], None, -1.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(stream), generator=generator).tolist()
        for at in range(0, len(order), batch_size):
            chosen = [stream[i] for i in order[at:at + batch_size]]
            record: dict[str, float] = {}
            if cfg.objective != "supervised":
                pairs = chosen if extra is None else [positives[i] for i in next(extra)]
                if len(pairs) >= 2:  # a last batch of one pair has nothing to contrast with
                    record.update(simbert_step(model, pair_batch(tokenizer, pairs, cfg.max_length), simbert_cfg))
            if cfg.objective != "unsupervised":
                loss = supervised_loss(model, head, tokenizer, chosen, cfg)
                loss.backward()
                record["supervised"] = loss.item()
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            history.append({"epoch": epoch, **record, "grad_norm": float(norm)})
            if len(history) % 50 == 0:
                logger.info("step %d/%d %s", len(history), steps,
                            " ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "similarity"))
        model.eval()
        if "valid" in splits:
            auc = evaluate("valid")["auc"]
            history[-1]["valid_auc"] = auc
            logger.info("epoch %d: valid AUC %.4f", epoch, auc)
            if auc > best_auc:
                best_auc, best = auc, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                report["best_epoch"] = epoch
    if best is not None:
        model.load_state_dict(best)
    report.update(after=scored(), steps=len(history), config=asdict(cfg), history=history)

    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    save_pretrained(model, work / "model", tokenizer=tokenizer)
    save_json({"pooling": cfg.pooling, "max_length": cfg.max_length, "objective": cfg.objective},
              work / "model" / SETTINGS)
    report["seconds"] = round(time.time() - started, 1)
    save_json(report, work / "results.json")
    publish(work, out, state=())
    report["out_dir"] = str(out)
    return report
