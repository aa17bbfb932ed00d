"""A GPT over xiangqi moves: the move vocabulary, the model, its directory, and legal-move decoding.

    game ─► [BOS] m1 m2 ... mN   (one token per ICCS move)  ─► GPT-2 (plmkit.models.gpt) ─► next move

After 苏剑林, "当GPT遇上中国象棋：写过文章解过题，要不再来下盘棋？" (https://kexue.fm/archives/7877): a
language model over game records that plays by predicting the next move, decoding restricted to the
legal moves of the position (plmkit.generation's `allowed_tokens`).

Why one token per move rather than squares as tokens (from-square, to-square: two tokens per move):
  * one decision per token: the legal moves of a position are exactly the set `allowed_tokens` keeps, with
    no prefix tree over from/to pairs and no second constrained step whose choices depend on the first;
  * sequences half as long (a 300-ply game is 301 tokens, not 601): attention cost and context halve;
  * the vocabulary is small anyway: the moves geometry allows on a 9 x 10 board are 2,086 (straight
    lines cover rook, cannon, king and pawn moves; plus horse jumps, elephant and advisor diagonals),
    so the embedding table costs 2,088 x d, about what a 2,000-word text vocabulary costs.
  The price: moves that share a square share no parameters by construction; the embeddings learn it.

The model reads move history only, as in the post: it knows the position through the moves from the
start. A position given as a FEN with no history (a puzzle) is met with an empty history and its legal
moves, so it then plays its prior over legal moves, not a reading of the board.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from ..config import ModelConfig
from ..files import atomic_write
from ..generation import generate
from ..generation.decoding import DecoderOnlySteps
from ..generation.filters import allowed_tokens_filter, apply_temperature
from ..models import build_model
from ..pretrained import from_pretrained, save_pretrained

__all__ = ["MoveStream", "MoveVocab", "PAD", "BOS", "all_moves", "build_xiangqi_model", "choose_moves", "load_xiangqi_model",
           "save_xiangqi_model", "xiangqi_config"]

PAD, BOS = "[PAD]", "[BOS]"
VOCAB_FILE = "moves.txt"
FILES = "abcdefghi"


def _on_board(f: int, r: int) -> bool:
    return 0 <= f < 9 and 0 <= r < 10


def all_moves() -> list[str]:
    """Every from-to pair some xiangqi piece can make on an empty-enough board (ICCS), in a fixed order."""
    moves: set[tuple[int, int, int, int]] = set()
    for f in range(9):
        for r in range(10):
            # rook / cannon along lines (also covers king, pawn and every one-step straight move)
            moves.update((f, r, f2, r) for f2 in range(9) if f2 != f)
            moves.update((f, r, f, r2) for r2 in range(10) if r2 != r)
            # horse
            for df, dr in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1)):
                if _on_board(f + df, r + dr):
                    moves.add((f, r, f + df, r + dr))
    # elephants: the 7 points of each side's half, two diagonal steps, never crossing the river
    for low, high in ((0, 4), (5, 9)):
        points = {(f, r) for f, r in ((0, 2), (2, 0), (2, 4), (4, 2), (6, 0), (6, 4), (8, 2))}
        points = points if low == 0 else {(f, 9 - r) for f, r in points}
        for f, r in points:
            for df, dr in ((2, 2), (2, -2), (-2, 2), (-2, -2)):
                if (f + df, r + dr) in points:
                    moves.add((f, r, f + df, r + dr))
    # advisors: the 5 points of each palace, one diagonal step
    for ranks in ((0, 1, 2), (7, 8, 9)):
        lo, mid, hi = ranks
        points = {(3, lo), (5, lo), (4, mid), (3, hi), (5, hi)}
        for f, r in points:
            for df, dr in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                if (f + df, r + dr) in points:
                    moves.add((f, r, f + df, r + dr))
    return [f"{FILES[a]}{b}{FILES[c]}{d}" for a, b, c, d in sorted(moves)]


class MoveVocab:
    """[PAD], [BOS], then one token per move; encode raises on a move it does not know, naming it."""

    def __init__(self, tokens: Sequence[str] | None = None) -> None:
        self.tokens = list(tokens) if tokens is not None else [PAD, BOS, *all_moves()]
        if self.tokens[:2] != [PAD, BOS]:
            raise ValueError(f"a move vocabulary starts with {PAD}, {BOS}; found {self.tokens[:2]}")
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("the move vocabulary repeats a token")
        self.pad_id, self.bos_id = 0, 1

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, move: str) -> int:
        """The token id of one ICCS move."""
        try:
            return self.index[move]
        except KeyError:
            raise ValueError(f"{move!r} is not a move of the vocabulary (ICCS from-to a piece could make, "
                             "e.g. 'h2e2')") from None

    def encode(self, moves: Sequence[str]) -> list[int]:
        """[BOS] followed by the moves' ids."""
        return [self.bos_id, *(self.id(m) for m in moves)]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Ids back to moves, specials left out."""
        return [self.tokens[i] for i in ids if i > 1]

    def save(self, directory: str | os.PathLike) -> None:
        """Write moves.txt (one token a line) into `directory`."""
        atomic_write(Path(directory) / VOCAB_FILE, lambda tmp: tmp.write_text("\n".join(self.tokens) + "\n",
                                                                              encoding="utf-8"))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "MoveVocab":
        """The vocabulary in `directory`/moves.txt."""
        path = Path(directory) / VOCAB_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a xiangqi model directory holds its move vocabulary there")
        return cls([t for t in path.read_text(encoding="utf-8").splitlines() if t])


def xiangqi_config(vocab_size: int, *, layers: int = 4, hidden: int = 256, heads: int = 4,
                   max_plies: int = 300, dropout: float = 0.1) -> ModelConfig:
    """A GPT-2 (pre-norm) config over the move vocabulary; positions for [BOS] plus `max_plies` moves."""
    return ModelConfig(family="gpt2", vocab_size=vocab_size, hidden_size=hidden, num_layers=layers,
                       num_heads=heads, intermediate_size=4 * hidden, max_position=max_plies + 1,
                       type_vocab_size=0, hidden_act="gelu_tanh", layer_norm_eps=1e-5, dropout=dropout,
                       attention_dropout=dropout, pad_token_id=0, bos_token_id=1, eos_token_id=None,
                       source="xiangqi")


def build_xiangqi_model(vocab: MoveVocab, **sizes) -> torch.nn.Module:
    """A randomly initialised GPT-2 over `vocab` (sizes as xiangqi_config takes them)."""
    return build_model(xiangqi_config(len(vocab), **sizes))


def save_xiangqi_model(model: torch.nn.Module, vocab: MoveVocab, out_dir: str | os.PathLike) -> Path:
    """Write the model (Hugging Face GPT-2 layout) and its moves.txt into `out_dir`."""
    return save_pretrained(model, out_dir, tokenizer=vocab)


def load_xiangqi_model(model_dir: str | os.PathLike) -> tuple[torch.nn.Module, MoveVocab]:
    """A saved xiangqi model in eval mode and its vocabulary; a mismatch between the two is an error."""
    vocab = MoveVocab.load(model_dir)
    model = from_pretrained(model_dir, application="lm")
    if model.config.vocab_size != len(vocab):
        raise ValueError(f"{model_dir}: the model has {model.config.vocab_size} token rows, "
                         f"moves.txt {len(vocab)} tokens")
    return model.eval(), vocab


@torch.inference_mode()
def choose_moves(model: torch.nn.Module, vocab: MoveVocab, histories: Sequence[Sequence[str]],
                 legal: Sequence[Sequence[str]] | None = None, *, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> list[str]:
    """The model's next move after each history: greedy or sampled, restricted to `legal[i]` through
    generation's `allowed_tokens` (None: unconstrained, any token but the specials)."""
    if legal is not None and len(legal) != len(histories):
        raise ValueError(f"{len(histories)} histories but {len(legal)} legal-move lists")
    limit = model.config.max_position
    rows = [vocab.encode(h)[-limit:] for h in histories]  # a game past the positions keeps its last moves
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), vocab.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):  # left padding: every row's next token is at the same column
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    if legal is not None:
        allowed = []
        for i, moves in enumerate(legal):
            if not moves:
                raise ValueError(f"history {i}: no legal move to choose from (the game is over)")
            allowed.append(torch.tensor([vocab.id(m) for m in moves]))
    else:
        everything = torch.arange(2, len(vocab))
        allowed = [everything] * len(rows)
    out = generate(model, ids, attention_mask=mask, max_new_tokens=1, do_sample=do_sample,
                   temperature=temperature, top_k=top_k, generator=generator, eos_token_id=(),
                   pad_token_id=vocab.pad_id, allowed_tokens=lambda i, row: allowed[i])
    return [vocab.tokens[int(t)] for t in out[:, -1]]


class MoveStream:
    """Many games played at once, one KV-cached forward per ply: `push` each game's move, `choose` the
    model's next move for some of them, restricted to their legal moves by the same `allowed_tokens`
    filter generation applies. Games start together from the start position and move in lockstep (a
    finished game is fed [PAD]); for a match of hundreds of games this is one token per game per ply
    instead of the whole history again (choose_moves, which a single game in a terminal uses)."""

    def __init__(self, model: torch.nn.Module, vocab: MoveVocab, games: int) -> None:
        self.vocab = vocab
        self.capacity = model.config.max_position
        start = torch.full((games, 1), vocab.bos_id, dtype=torch.long)
        with torch.inference_mode():
            self._steps = DecoderOnlySteps(model, start, None, None, use_cache=True, capacity=self.capacity)
            self._scores = self._steps.start()  # (games, V)
        self.length = 1

    @torch.inference_mode()
    def choose(self, rows: Sequence[int], legal: Sequence[Sequence[str]] | None = None, *, do_sample: bool = False,
               temperature: float = 1.0, generator: torch.Generator | None = None) -> list[str]:
        """The next move of each game in `rows` (among `legal[i]`; None: any move token)."""
        if not rows:
            return []
        scores = self._scores[list(rows)].float()  # (R, V)
        if legal is None:
            allowed = [torch.arange(2, len(self.vocab))] * len(rows)
        else:
            allowed = [torch.tensor([self.vocab.id(m) for m in moves]) for moves in legal]
        scores = allowed_tokens_filter(scores, allowed)
        if do_sample:
            token = torch.multinomial(apply_temperature(scores, temperature).softmax(-1), 1, generator=generator)[:, 0]
        else:
            token = scores.argmax(-1)
        return [self.vocab.tokens[int(t)] for t in token]

    @torch.inference_mode()
    def push(self, moves: Sequence[str | None]) -> None:
        """Feed one move per game (None for a game that has ended)."""
        if self.length >= self.capacity:
            raise ValueError(f"the model has {self.capacity} positions: games past {self.capacity - 1} plies "
                             "do not fit (cap the game length)")
        ids = torch.tensor([self.vocab.pad_id if m is None else self.vocab.id(m) for m in moves])
        self._scores = self._steps.step(ids)
        self.length += 1
