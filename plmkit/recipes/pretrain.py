"""Pretraining of a small model with a character vocabulary built from the corpus (or an init model's).

    corpus lines ─► words (POS-tagged text: its own segmentation; else jieba when installed; else characters)
                 ─► objective "mlm" (BERT / RoFormer): char WordPiece ids packed into sequences of max_length
                                                      ─► dynamic (whole-word) masking
                    objective "pegasus" (T5 family): each line a document ─► pseudo-summary pairs
                                                      (plmkit.generation.pseudo_summary) ─► seq2seq batches
                    objective "mass" (T5 family): packed sequences ─► one contiguous span masked (MassBatches)
                 ─► Trainer (AdamW, warmup + linear decay, bf16 autocast where native, resumable) ─► HF-format model dir

The encoder-decoder objectives share plmkit.recipes.seq2seq's loss (summed next-token cross-entropy over the
target tokens), so a pretrained directory is fine-tuned by `plmkit seq2seq` as it is.
"""
from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Literal, Sequence

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..data import SPECIALS, DataError, build_char_vocab, mask_tokens, pad_rows
from ..files import save_json
from ..generation.pseudo_summary import PairStats, pseudo_summary_pairs
from ..hardware import PRECISIONS, resolve_device
from ..models import build_model, get_family
from ..pretrained import from_pretrained, save_pretrained
from ..tokenizers import WordPieceTokenizer, load_tokenizer
from ..tokenizers.text import decode_utf8
from ..training import Trainer, build_optimizer, lambda_scheduler, set_dropout, warmup_linear
from ..training.checkpoint import check_run_identity, file_digest
from .seq2seq import Pairs, seq2seq_loss

logger = logging.getLogger("plmkit.pretrain")
_TAGGED = re.compile(r"^(\S+)/[A-Za-z]+$")


@dataclass
class PretrainConfig:
    """Sizes and budget of a pretraining run (the defaults make the embedded model)."""

    family: str = "bert"
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position: int = 256
    max_length: int = 128
    vocab_min_count: int = 3
    vocab_max_size: int = 6000
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: float = 0.05
    steps: int = 2500  # the length of the learning-rate schedule
    stop_after: int = 0  # stop (and export) after this many steps; 0: run the whole schedule
    mask_prob: float = 0.15
    whole_word: bool = True  # mask whole words (segmented corpora, or jieba); False: single characters
    precision: str = "auto"  # bf16 autocast where native to the device, else fp32 (plmkit.hardware)
    device: str | None = None  # default: cuda when available, else cpu
    seed: int = 0
    init: str = ""  # continue from this model directory (its vocabulary and sizes); "": random weights
    dropout: float = 0.0  # while pretraining (the saved config keeps 0.1 for fine-tuning); see set_dropout
    grow_layers: int = 0  # with init: deepen the init model to this many layers by stacking (see stack_layers)
    objective: Literal["mlm", "pegasus", "mass"] = field(default="mlm", metadata={"help": (
        "mlm: masked LM of an encoder; pegasus: each corpus line a document, its central sentences the target "
        "(arXiv:1912.08777, kexue.fm/archives/8209); mass: one masked span per sequence (arXiv:1905.02450); "
        "pegasus and mass train an encoder-decoder: --family t5.1.1 / mt5.1.1 / t5.1.0, or --init a T5 directory")})
    max_target_length: int = field(default=64, metadata={"help": "pegasus: target tokens, its end token included"})
    summary_ratio: float = field(default=0.25, metadata={"help": "pegasus: the share of a document's sentences "
                                                                  "moved to the target"})
    mass_ratio: float = field(default=0.5, metadata={"help": "mass: the share of a sequence's tokens in the span"})

    def __post_init__(self) -> None:
        """Every field checked here, so a bad value fails before the corpus is read or anything written."""
        def check(name: str, ok, expected: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise ValueError(f"{name}: expected {expected}, found {value!r}")

        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "batch_size", "steps"):
            check(name, lambda v: v == int(v) and v >= 1, "an integer >= 1")
        check("max_length", lambda v: v == int(v) and v >= 3, "an integer >= 3 ([CLS] text [SEP])")
        check("max_position", lambda v: v == int(v) and (self.init or v >= self.max_length),
              f"an integer >= max_length ({self.max_length})")
        for name in ("vocab_min_count", "vocab_max_size", "stop_after", "grow_layers", "seed"):
            check(name, lambda v: v == int(v) and v >= 0, "an integer >= 0")
        check("vocab_max_size", lambda v: v > len(SPECIALS), f"more than the {len(SPECIALS)} special tokens")
        check("lr", lambda v: v > 0, "> 0")
        check("weight_decay", lambda v: v >= 0, ">= 0")
        check("warmup", lambda v: 0 <= v <= 1, "a fraction of the steps in [0, 1]")
        check("mask_prob", lambda v: 0 < v < 1, "a probability in (0, 1)")
        check("dropout", lambda v: 0 <= v < 1, "a probability in [0, 1)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, found {self.precision!r}")
        if self.grow_layers and not self.init:
            raise ValueError("grow_layers needs init: the model whose layers are stacked")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: expected one of {', '.join(OBJECTIVES)}, found {self.objective!r}")
        check("max_target_length", lambda v: v == int(v) and v >= 2, "an integer >= 2 (a token and the end)")
        check("summary_ratio", lambda v: 0 < v < 1, "a fraction in (0, 1)")
        check("mass_ratio", lambda v: 0 < v < 1, "a fraction in (0, 1)")
        if self.objective != "mlm":
            if self.grow_layers:
                raise ValueError(f"grow_layers stacks encoder layers for mlm; objective {self.objective} trains "
                                 "an encoder-decoder")
            if not self.init and self.family not in ENCODER_DECODERS:
                raise ValueError(f"family: objective {self.objective} trains an encoder-decoder from scratch: "
                                 f"expected one of {', '.join(ENCODER_DECODERS)} (or init: a T5 / mT5 / T5 PEGASUS "
                                 f"directory), found {self.family!r}")


OBJECTIVES = ("mlm", "pegasus", "mass")
ENCODER_DECODERS = ("t5.1.0", "t5.1.1", "mt5.1.1")  # the families an encoder-decoder objective builds from scratch


def line_words(line: str, segment=None) -> list[str]:
    """Words of one line: a POS-tagged line (word/tag ...) keeps its words; else `segment` (jieba) or chars."""
    parts = line.split()
    if parts and sum(bool(_TAGGED.match(p)) for p in parts) >= 0.8 * len(parts):
        return [m.group(1) if (m := _TAGGED.match(p)) else p for p in parts]
    text = "".join(parts) if segment is None else line.strip()
    return list(segment(text)) if segment is not None else list(text)


def _jieba():
    try:
        import jieba
    except ImportError:
        return None
    jieba.setLogLevel(logging.WARNING)
    return jieba.lcut


def read_corpus(files: Sequence[str | Path], exclude: Iterable[str] = ()) -> list[list[str]]:
    """Lines of the corpus files as word lists (empty lines, and lines whose text is in `exclude`, dropped)."""
    segment = _jieba()
    exclude = {" ".join(t.split()) for t in exclude}
    lines = []
    for f in files:
        path = Path(f)
        if not path.exists():
            raise FileNotFoundError(f"corpus file {path} does not exist")
        text = decode_utf8(path.read_bytes(), f"corpus file {path}", error=DataError)
        for n, line in enumerate(text.splitlines(), 1):
            if exclude and " ".join(line.split()) in exclude:
                continue
            words = [w for w in line_words(line, segment) if w.strip()]
            if words:
                lines.append(words)
    if not lines:
        raise DataError(f"the corpus {', '.join(map(str, files))} holds no text")
    return lines


def char_tokenizer(vocab: list[str]) -> WordPieceTokenizer:
    """A WordPiece tokenizer over a character vocabulary; Latin letters and digits also get ## forms."""
    extra = [f"##{t}" for t in vocab[len(SPECIALS):] if t.isascii() and t.isalnum()]
    return WordPieceTokenizer(vocab + extra, do_lower_case=True)


def pack(lines: list[list[str]], tokenizer: WordPieceTokenizer, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(token ids, first-token position of each token's word) sequences of at most max_length."""
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    body = max_length - 2
    seqs, ids, word = [], [], []

    def flush():
        if ids:
            seqs.append(([cls] + ids + [sep], [0] + [w + 1 for w in word] + [len(ids) + 1]))
        ids.clear(), word.clear()

    for words in lines:
        for w in words:
            pieces = tokenizer.encode(w)[0][1:-1]  # without [CLS]/[SEP]
            if not pieces:
                continue
            if len(ids) + len(pieces) > body:
                flush()
            start = len(ids)
            ids.extend(pieces[:body])
            word.extend([start] * len(pieces[:body]))
        if len(ids) >= body * 0.9:
            flush()
    flush()
    return seqs


class MLMBatches:
    """Collate packed sequences into padded, dynamically masked batches."""

    def __init__(self, tokenizer: WordPieceTokenizer, mask_prob: float, whole_word: bool = True) -> None:
        self.pad, self.mask = tokenizer.token_to_id("[PAD]"), tokenizer.token_to_id("[MASK]")
        self.vocab_size = tokenizer.vocab_size
        self.special_ids = torch.tensor([tokenizer.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]")])
        self.mask_prob, self.whole_word = mask_prob, whole_word

    def __call__(self, items: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        T = max(len(i) for i, _ in items)
        ids = torch.full((len(items), T), self.pad, dtype=torch.long)
        word = torch.arange(T).repeat(len(items), 1)
        for b, (i, w) in enumerate(items):
            ids[b, : len(i)] = torch.tensor(i)
            word[b, : len(w)] = torch.tensor(w)
        special = torch.isin(ids, self.special_ids)
        masked, labels = mask_tokens(ids, mask_id=self.mask, vocab_size=self.vocab_size, special=special,
                                     prob=self.mask_prob, word_ids=word if self.whole_word else None)
        positions, targets = masked_positions(labels)
        return {"input_ids": masked, "attention_mask": (ids != self.pad).long(), "labels": labels,
                "positions": positions, "targets": targets}


def stack_layers(model: torch.nn.Module, num_layers: int) -> torch.nn.Module:
    """A deeper copy of an encoder: its L layers, then copies of its top `num_layers - L` layers.

    Progressive stacking (Gong et al., "Efficient Training of BERT by Progressively Stacking",
    ICML 2019): a model of 2L layers started from an L-layer one's layers repeated recovers the
    shallow model's MLM loss within a few hundred steps and then goes below it. Doubling repeats
    every layer in order, as the paper does; fewer new layers repeat the top ones, so the last layer
    is still the one the MLM head was trained on."""
    have = model.config.num_layers
    if not have < num_layers <= 2 * have:
        raise ValueError(f"grow_layers {num_layers}: expected more than the model's {have} layers and at most {2 * have}")
    config = replace(model.config, num_layers=num_layers)
    deeper = build_model(config, with_mlm=model.mlm is not None, with_pool=model.pooler is not None)
    order = list(range(have)) + list(range(2 * have - num_layers, have))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.")}
    for new, old in enumerate(order):
        state.update({f"blocks.{new}.{k}": v.clone() for k, v in model.blocks[old].state_dict().items()})
    deeper.load_state_dict(state, strict=True)
    return deeper.train(model.training)


def masked_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) positions of each row's masked tokens (K: the most any row has; short rows point at
    position 0) and their (B, K) targets (-100 where a row has fewer)."""
    picked = labels != -100
    K = max(int(picked.sum(1).max()), 1)
    order = torch.sort(picked.int(), dim=1, descending=True, stable=True).indices[:, :K]  # masked first, in order
    targets = labels.gather(1, order).masked_fill(~picked.gather(1, order), -100)
    return order.masked_fill(targets == -100, 0), targets


def mlm_loss(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over the masked positions, and their count. The MLM head runs on the
    masked positions alone (`logits_at`): the (B, T, V) logits would cost a quarter of the step."""
    out = model(batch["input_ids"], attention_mask=batch["attention_mask"], logits_at=batch["positions"])
    targets = batch["targets"]
    loss = F.cross_entropy(out.logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")
    return loss, (targets != -100).sum()


def mass_example(body: Sequence[int], start: int, length: int, mask_id: int) -> tuple[list[int], list[int], list[int]]:
    """MASS's (encoder ids, decoder input ids, labels) for a sequence whose tokens [start, start + length) are the span.

    MASS (Song et al. 2019, arXiv:1905.02450, its Figure 1): the encoder sees the sequence with the span's
    tokens replaced by [MASK]; the decoder predicts the span, its input at span position t being token t - 1
    (the span shifted right) and [MASK] at every other position: the tokens the encoder sees are masked in
    the decoder, so the decoder must lean on the encoder. The first span position's input is [MASK] too
    (its shifted token lies outside the span). Positions after the span are left out: a causal decoder's
    span predictions cannot see them and they carry no loss. Labels are -100 outside the span."""
    n = len(body)
    if not (0 < length <= n and 0 <= start <= n - length):
        raise ValueError(f"span [{start}, {start + length}) does not fit a sequence of {n} tokens")
    end = start + length
    encoder = [mask_id if start <= t < end else tok for t, tok in enumerate(body)]
    decoder = [body[t - 1] if start < t < end else mask_id for t in range(end)]
    labels = [body[t] if t >= start else -100 for t in range(end)]
    return encoder, decoder, labels


class MassBatches:
    """Packed sequences -> MASS batches: a span of round(ratio · n) tokens at a uniformly drawn start per sequence,
    drawn from `rng` (a random.Random: a seeded one repeats the same spans)."""

    def __init__(self, tokenizer, ratio: float, rng: random.Random, pad: int = 0) -> None:
        ids = {t: tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]")}
        ids = {t: i if i is not None and tokenizer.id_to_token(i) == t else None for t, i in ids.items()}  # not [UNK]
        if any(v is None for v in ids.values()):
            missing = ", ".join(t for t, v in ids.items() if v is None)
            raise ValueError(f"objective mass: the vocabulary has no {missing} (MASS masks with [MASK]; packed "
                             "sequences are [CLS] ... [SEP])")
        self.cls, self.sep, self.mask = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
        self.ratio, self.rng, self.pad = ratio, rng, pad

    def span(self, n: int) -> tuple[int, int]:
        """(start, length) of the span of a sequence of n tokens."""
        length = min(n, max(1, round(self.ratio * n)))
        return self.rng.randrange(n - length + 1), length

    def __call__(self, items: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        encoders, decoders, labels = [], [], []
        for ids, _ in items:
            body = ids[1:-1]  # without [CLS] / [SEP]
            e, d, l = mass_example(body, *self.span(len(body)), self.mask)
            encoders.append([self.cls] + e + [self.sep])
            decoders.append(d)
            labels.append(l)
        input_ids, attention_mask = pad_rows(encoders, self.pad)
        decoder_input_ids, decoder_attention_mask = pad_rows(decoders, self.pad)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids,
                "decoder_attention_mask": decoder_attention_mask, "labels": pad_rows(labels, -100)[0]}


def _encoder_decoder(cfg: PretrainConfig, tokenizer) -> torch.nn.Module:
    """The encoder-decoder a pegasus / mass run trains: `cfg.init`'s, or a new one of `cfg.family` and sizes."""
    if cfg.init:
        model = from_pretrained(cfg.init).train()
        if not getattr(model, "is_encoder_decoder", False):
            raise ValueError(f"init {cfg.init}: objective {cfg.objective} trains an encoder-decoder (T5 / mT5 / "
                             f"T5 PEGASUS); this is a {model.config.family} encoder")
        return model
    family = get_family(cfg.family)
    start = tokenizer.token_to_id("[CLS]")
    end = tokenizer.token_to_id("[SEP]")
    config = family.tiny().replace(
        vocab_size=tokenizer.vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, head_size=cfg.hidden_size // cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position=cfg.max_position, pad_token_id=tokenizer.token_to_id("[PAD]"), eos_token_id=end,
        decoder_start_token_id=start,  # T5 PEGASUS style: the decoder starts from [CLS], targets end with [SEP]
    ).with_options(num_decoder_layers=cfg.num_layers, relative_attention_num_buckets=32,
                   relative_attention_max_distance=128)
    model = family.build(config)
    head = getattr(model, "lm_head", None)
    if isinstance(getattr(head, "weight", None), torch.Tensor):  # an untied head (T5.1.1 / mT5)
        with torch.no_grad():  # rows of std hidden^-0.5: first logits of std ~1 (mT5's std 1 starts the loss ~17;
            head.weight.normal_(0, cfg.hidden_size ** -0.5)  # benchmarks/results_seq2seq.md)
    return model.train()


def pretrain(corpus: Sequence[str | Path], out_dir: str | Path, cfg: PretrainConfig | None = None, *,
             exclude: Iterable[str] = (), progress: bool = True, resume: bool = True) -> Path:
    """Run pretraining with `cfg.objective`; returns the directory of the final model (out_dir/model)."""
    cfg = cfg or PretrainConfig()
    out = Path(out_dir)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    started = time.time()
    exclude = list(exclude)
    lines = read_corpus(corpus, exclude)  # the corpus, vocabulary, packing and model are checked before out exists
    vocab_path = out / "vocab.txt"
    new_vocab = False
    if cfg.init:  # continued pretraining: the model's own vocabulary and sizes
        tokenizer = load_tokenizer(cfg.init)
        new_vocab = True
    elif resume and vocab_path.exists():  # a resumed run must keep the vocabulary it started with
        vocab = [t for t in vocab_path.read_text(encoding="utf-8").split("\n") if t]
        tokenizer = WordPieceTokenizer(vocab, do_lower_case=True)
    else:
        tokenizer = char_tokenizer(build_char_vocab((c for words in lines for w in words for c in w),
                                                    min_count=cfg.vocab_min_count, max_size=cfg.vocab_max_size))
        new_vocab = True
    if cfg.objective == "pegasus":
        stats = PairStats()
        seqs = list(pseudo_summary_pairs(("".join(words) for words in lines), cfg.summary_ratio, stats))
        logger.info("pegasus: %d documents -> %d pseudo-summary pairs (%d of one sentence skipped)",
                    stats.documents, stats.pairs, stats.too_short)
    else:
        seqs = pack(lines, tokenizer, cfg.max_length)
    if len(seqs) < cfg.batch_size:
        unit = "pseudo-summary pairs" if cfg.objective == "pegasus" else f"sequences of <= {cfg.max_length} tokens"
        raise DataError(f"corpus {', '.join(map(str, corpus))}: {len(seqs)} {unit}, "
                        f"fewer than one batch ({cfg.batch_size})")
    logger.info("corpus: %d lines -> %d items; vocab %d", len(lines), len(seqs), tokenizer.vocab_size)
    if cfg.objective != "mlm":
        model = _encoder_decoder(cfg, tokenizer)
        pad = model.config.pad_token_id or 0
        if cfg.objective == "pegasus":
            collate = Pairs(tokenizer, "encoder-decoder", cfg.max_length, cfg.max_target_length,
                            model.config.decoder_start_token_id, pad)
        else:
            collate = MassBatches(tokenizer, cfg.mass_ratio, random.Random(cfg.seed), pad=pad)
        loss_fn = seq2seq_loss
    elif cfg.init:
        model = from_pretrained(cfg.init, with_mlm=True, with_pool=True).train()
        if cfg.max_length > model.config.max_position:
            raise ValueError(f"max_length {cfg.max_length} exceeds max_position {model.config.max_position} of {cfg.init}")
        if cfg.grow_layers:
            model = stack_layers(model, cfg.grow_layers)
    else:
        config = ModelConfig(family=cfg.family, vocab_size=tokenizer.vocab_size, hidden_size=cfg.hidden_size,
                             num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                             intermediate_size=cfg.intermediate_size, max_position=cfg.max_position, type_vocab_size=2)
        model = build_model(config, with_mlm=True, with_pool=True)
    if cfg.objective == "mlm":
        collate, loss_fn = MLMBatches(tokenizer, cfg.mask_prob, cfg.whole_word), mlm_loss
    # resume only the run that started here (same corpus, exclusions and settings); a restart records itself
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("stop_after", "device", "precision")}
    if cfg.objective == "mlm":  # the identity of an MLM run as it was before the other objectives existed
        for key in ("objective", "max_target_length", "summary_ratio", "mass_ratio"):
            del settings[key]
    excluded = hashlib.sha256("\n".join(sorted(exclude)).encode("utf-8", "surrogatepass")).hexdigest()
    if not resume:
        (out / "run" / "run.json").unlink(missing_ok=True)
    check_run_identity(out / "run", {"corpus": [[str(f), file_digest(f)] for f in corpus],
                                     "excluded_texts": excluded, "config": settings},
                       fresh=f"remove {out} (or pass --restart)")
    out.mkdir(parents=True, exist_ok=True)
    if new_vocab:
        tokenizer.save(out)
    set_dropout(model, cfg.dropout)
    device = resolve_device(cfg.device)
    model.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(seqs, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                                         collate_fn=collate, drop_last=True)
    optimizer = build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = lambda_scheduler(optimizer, warmup_linear(int(cfg.steps * cfg.warmup), cfg.steps))
    trainer = Trainer(model, loss_fn, optimizer, scheduler, max_grad_norm=1.0, precision=cfg.precision,
                      out_dir=out / "run", progress=progress, save_every=200, log_every=20,
                      device=device)
    epochs = -(-cfg.steps // len(loader))
    result = trainer.fit(loader, epochs=epochs, max_steps=cfg.stop_after or cfg.steps, resume=resume)
    model_dir = out / "model"
    save_pretrained(model.eval(), model_dir, dtype=torch.float16, tokenizer=tokenizer)
    settings = asdict(cfg)
    if cfg.init:  # the sizes and vocabulary are the init model's, not this config's defaults
        c = model.config
        settings.update(family=c.family, hidden_size=c.hidden_size, num_layers=c.num_layers, num_heads=c.num_heads,
                        intermediate_size=c.intermediate_size, max_position=c.max_position)
        for key in ("vocab_min_count", "vocab_max_size"):
            del settings[key]
    about = {"recipe": "plmkit pretrain", "config": settings, "corpus": [str(c) for c in corpus],
             "excluded_texts": len(exclude), "lines": len(lines), "sequences": len(seqs), "steps": result["step"],
             "precision": trainer.precision, "device": str(trainer.device),
             "seconds_this_run": round(time.time() - started, 1)}
    if cfg.objective == "pegasus":
        about["pseudo_summary"] = asdict(stats)
    save_json(about, model_dir / "pretrain.json")
    return model_dir
