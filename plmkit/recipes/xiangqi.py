"""Train a GPT on xiangqi game records: next-move prediction through the training engine.

    games.jsonl ─► records.read_games (every move replayed and checked) ─► [BOS] m1 .. mN per game
    ─► split by game (valid_games held out) ─► Trainer (AdamW, warmup + linear decay, progress bar,
    metrics.jsonl, curves.png, checkpoint/resume) ─► after each epoch, on the held-out games:
    agreement (top-1 among legal moves = greedy constrained decoding), agreement_unconstrained and
    legal_rate (the argmax over every move token, and how often it is legal) ─► best epoch ─► model dir

The loss skips the targets inside a game's random opening plies (records that say `opening_plies`):
they are noise put there for variety, not moves to imitate. Both sides' moves are learned.

The output directory appears only when the run is complete: work happens in `<out>.partial`
(resumable: run the same command again after an interruption), renamed at the end.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..files import save_json
from ..hardware import resolve_device
from ..training import LengthGroupedBatches, Trainer, build_optimizer, lambda_scheduler, warmup_linear
from ..training.checkpoint import file_digest, load_checkpoint
from ..xiangqi.model import MoveVocab, build_xiangqi_model, save_xiangqi_model
from .finetune import _write_errors_name
from .outputs import FieldCheck, claim, partial_dir, publish

logger = logging.getLogger("plmkit.xiangqi")


@dataclass
class XiangqiConfig:
    """Defaults for a small GPT on a few thousand engine games, on a CPU."""

    layers: int = 4
    hidden: int = 256
    heads: int = 4
    dropout: float = 0.1
    max_plies: int = 300  # moves per game the model sees (its positions: 1 + max_plies); longer games cut
    batch_size: int = 16
    lr: float = 6e-4
    weight_decay: float = 0.01
    epochs: int = 4
    max_steps: int = 0  # stop after this many optimizer steps (0: no limit); the schedule decays to it
    warmup: float = 0.05
    patience: int = 2
    valid_games: int = 100  # games held out for validation (chosen at random with `seed`)
    precision: str = "auto"  # bf16 autocast where native to the device, else fp32 (plmkit.hardware)
    device: str | None = None  # default: cuda when available, else cpu
    seed: int = 0

    def __post_init__(self) -> None:
        """Every field checked here, so a bad value fails before any file is read or written."""
        check = FieldCheck(self)
        bad, number = check.bad, check.number
        for name in ("layers", "hidden", "heads", "max_plies"):
            if number(name, int) < 1:
                raise bad(name, ">= 1")
        if self.hidden % self.heads:
            raise bad("hidden", f"a multiple of heads ({self.heads})")
        if not 0 <= number("dropout") < 1:
            raise bad("dropout", "in [0, 1)")
        if number("max_steps", int) < 0:
            raise bad("max_steps", ">= 0 (0: no limit)")
        if number("valid_games", int) < 1:
            raise bad("valid_games", ">= 1")
        check.optimisation()


# ---- games as tensors ----------------------------------------------------------------------------

def _moves_of(game: Any) -> tuple[list[str], int]:
    """(moves, opening plies) of a record, as records.read_games returns it (a dict or an object)."""
    get = game.get if isinstance(game, dict) else lambda k, d=None: getattr(game, k, d)
    return list(get("moves")), int(get("opening_plies", 0) or 0)


def encode_games(games: Sequence[Any], vocab: MoveVocab, max_plies: int) -> list[tuple[list[int], int]]:
    """Each game as ([BOS] + move ids, cut to 1 + max_plies) with the number of leading targets to skip;
    the model knows a position only by the moves from the start, so a game from another FEN is refused."""
    from ..xiangqi.rules import START_FEN

    for n, game in enumerate(games, 1):
        fen = game.get("fen") if isinstance(game, dict) else getattr(game, "fen", None)
        if fen not in (None, START_FEN):
            raise ValueError(f"game {n} starts from FEN {fen!r}; the model reads move sequences from the "
                             "standard start position only")
    return [(vocab.encode(moves[:max_plies]), skip) for moves, skip in map(_moves_of, games)]


class Collate:
    """Rows of (ids, skip) -> input_ids, attention_mask, labels (right-padded; -100 where nothing is learned)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in rows) - 1
        inputs = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (ids, skip) in enumerate(rows):
            n = len(ids) - 1
            inputs[i, :n] = torch.tensor(ids[:-1])
            labels[i, :n] = torch.tensor(ids[1:])
            labels[i, :skip] = -100  # targets 0..skip-1 are the random opening plies
        return {"input_ids": inputs, "attention_mask": (inputs != self.pad_id).long(), "labels": labels}


def move_loss(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-move cross-entropy and the number of targets (exact over uneven batches)."""
    logits = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
    labels = batch["labels"]
    loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum")
    return loss, (labels != -100).sum()


def legal_ids(games: Sequence[Any], vocab: MoveVocab, max_plies: int) -> list[list[list[int]]]:
    """For each game, the legal move ids before each of its (first max_plies) moves, by replaying it."""
    from ..xiangqi.rules import Board

    out = []
    for game in games:
        moves, _ = _moves_of(game)
        board, per_ply = Board(), []
        for m in moves[:max_plies]:
            per_ply.append([vocab.id(x) for x in board.legal_moves()])
            board.push(m)
        out.append(per_ply)
    return out


@torch.no_grad()
def agreement(model, rows: Sequence[tuple[list[int], int]], legal: Sequence[Sequence[Sequence[int]]],
              batch_size: int = 16) -> dict[str, float]:
    """Top-1 agreement with the recorded moves, among legal moves and over all tokens, and the legal rate of
    the unconstrained argmax; opening plies a record marks random are not counted.

    One teacher-forced forward per game gives every position's next-move scores: the argmax over a
    position's legal moves is what greedy constrained decoding picks there (same scores, same mask)."""
    model.eval()
    device = next(model.parameters()).device
    collate = Collate(0)
    hit = hit_free = legal_free = total = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = collate(chunk)
        logits = model(batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        logits = logits.float().cpu()  # (B, T, V)
        logits[..., :2] = float("-inf")  # [PAD] and [BOS] are never moves
        for b, (ids, skip) in enumerate(chunk):
            for t in range(skip, len(ids) - 1):
                target, allowed = ids[t + 1], legal[start + b][t]
                scores = logits[b, t]
                free = int(scores.argmax())
                best = allowed[int(scores[allowed].argmax())]
                hit += best == target
                hit_free += free == target
                legal_free += free in allowed
                total += 1
    total = max(total, 1)
    return {"agreement": hit / total, "agreement_unconstrained": hit_free / total, "legal_rate": legal_free / total,
            "positions": total}


# ---- the recipe ----------------------------------------------------------------------------------

def read_game_file(path: str | Path) -> list[Any]:
    """A JSONL game file through records.read_games: every move replayed, errors naming game and ply."""
    from ..xiangqi.records import read_games

    return list(read_games(path))


def train_xiangqi(games: str | Path, out_dir: str | Path, cfg: XiangqiConfig | None = None, *,
                  progress: bool = True, overwrite: bool = False) -> dict:
    """Train a GPT on the games, keep the best epoch by held-out agreement, write the model directory.

    The run works in `<out>.partial`, whose run.json records the games' digest and the settings: the
    same call resumes it, a different one is refused (`overwrite` discards it). Returns results.json."""
    cfg = cfg or XiangqiConfig()
    out = Path(out_dir)
    work = partial_dir(out, overwrite)
    started = time.time()
    records = read_game_file(games)
    if len(records) <= cfg.valid_games:
        raise ValueError(f"{games}: {len(records)} games, but valid_games={cfg.valid_games} are held out; "
                         "give more games or a smaller valid_games")
    order = list(range(len(records)))
    random.Random(cfg.seed).shuffle(order)
    held = set(order[:cfg.valid_games])
    train_games = [g for i, g in enumerate(records) if i not in held]
    valid_games = [g for i, g in enumerate(records) if i in held]

    vocab = MoveVocab()
    train_rows = encode_games(train_games, vocab, cfg.max_plies)
    valid_rows = encode_games(valid_games, vocab, cfg.max_plies)
    valid_legal = legal_ids(valid_games, vocab, cfg.max_plies)
    device = resolve_device(cfg.device)
    identity = {"recipe": "plmkit xiangqi train", "sha256": {"games": file_digest(games)},
                "config": {k: v for k, v in asdict(cfg).items() if k not in ("device", "precision")}}
    claim(work, identity, overwrite=overwrite)  # the first file written

    torch.manual_seed(cfg.seed)
    model = build_xiangqi_model(vocab, layers=cfg.layers, hidden=cfg.hidden, heads=cfg.heads,
                                max_plies=cfg.max_plies, dropout=cfg.dropout).to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(train_rows, collate_fn=Collate(vocab.pad_id), batch_sampler=LengthGroupedBatches(
        [len(ids) for ids, _ in train_rows], cfg.batch_size, generator))

    def metric_fn(model, _loader) -> dict[str, float]:
        scores = agreement(model, valid_rows, valid_legal, cfg.batch_size)
        return {k: v for k, v in scores.items() if k != "positions"}  # a count, not a curve

    with _write_errors_name(work):
        steps = len(loader) * cfg.epochs
        if cfg.max_steps:
            steps = min(steps, cfg.max_steps)
        optimizer = build_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = lambda_scheduler(optimizer, warmup_linear(int(steps * cfg.warmup), steps))
        trainer = Trainer(model.train(), move_loss, optimizer, scheduler, max_grad_norm=1.0,
                          precision=cfg.precision, out_dir=work, progress=progress, log_every=20)
        result = trainer.fit(loader, epochs=cfg.epochs, valid_loader=valid_rows, metric_fn=metric_fn,
                             early_stopping_patience=cfg.patience, monitor="agreement", mode="max",
                             valid_loss=False, max_steps=cfg.max_steps or None)
        # max_steps may stop inside an epoch, after its last validation: the final weights are measured too
        last = agreement(model, valid_rows, valid_legal, cfg.batch_size)
        best = work / "best.pt"
        if best.exists() and trainer.best is not None and trainer.best > last["agreement"]:
            model.load_state_dict(load_checkpoint(best)["model"])
        model.eval()
        report = {"train_games": len(train_games), "valid_games": len(valid_games),
                  "train_moves": sum(len(ids) - 1 - skip for ids, skip in train_rows),
                  "valid": agreement(model, valid_rows, valid_legal, cfg.batch_size),
                  "epochs_run": result["epoch"], "steps": result["step"], "config": asdict(cfg),
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "precision": trainer.precision, "device": str(trainer.device), "games": str(games),
                  "seconds": None}
        save_xiangqi_model(model.cpu(), vocab, work / "model")
        report["seconds"] = round(time.time() - started, 1)
        save_json(report, work / "results.json")
    publish(work, out)  # resume state dropped; the model is the result
    report["out_dir"] = str(out)
    report["model"] = str(out / "model")
    report["curves"] = str(out / "curves.png")
    return report
