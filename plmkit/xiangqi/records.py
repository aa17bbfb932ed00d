"""Xiangqi game records: JSONL, one game per line, every move replayed when read or written.

A line is a JSON object:
    {"moves": ["h2e2", "h9g7", ...], "result": "red" | "black" | "draw",
     "fen": "<start FEN>" (optional, the standard start when absent), ...any other metadata}
Reading replays each game on a `Board`: a malformed token, an illegal move, or a result that
contradicts a final mate / stalemate is an error naming the file, the line, the game and the ply.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from plmkit.files import atomic_write
from plmkit.xiangqi.notation import parse_iccs
from plmkit.xiangqi.rules import START_FEN, Board

__all__ = ["iter_games", "read_games", "write_games", "check_game", "RESULTS"]

RESULTS = ("red", "black", "draw")


def check_game(game: Any, where: str) -> Board:
    """Validate one game record and replay it; returns the final board. `where` prefixes every error."""
    if not isinstance(game, dict):
        raise ValueError(f"{where}: expected a JSON object with 'moves' and 'result', found {type(game).__name__}")
    for key in ("moves", "result"):
        if key not in game:
            raise ValueError(f"{where}: missing field {key!r}")
    moves, result = game["moves"], game["result"]
    if not isinstance(moves, list):
        raise ValueError(f"{where}: field 'moves' must be a list of ICCS strings, found {type(moves).__name__}")
    if result not in RESULTS:
        raise ValueError(f"{where}: field 'result' must be one of {', '.join(RESULTS)}, found {result!r}")
    fen = game.get("fen", START_FEN)
    try:
        board = Board.from_fen(fen)
    except ValueError as e:
        raise ValueError(f"{where}: field 'fen': {e}") from None
    for ply, move in enumerate(moves, 1):
        if not isinstance(move, str):
            raise ValueError(f"{where}, ply {ply}: malformed move token {move!r} (expected an ICCS string like 'h2e2')")
        try:
            parse_iccs(move)
        except ValueError as e:
            raise ValueError(f"{where}, ply {ply}: {e}") from None
        if not board.is_legal(move):
            raise ValueError(f"{where}, ply {ply}: illegal move {move!r} for {board.turn} in position {board.fen()}")
        board.push(move)
    ended = board.outcome()
    if ended in ("red", "black") and result != ended:
        raise ValueError(f"{where}: result {result!r} contradicts the final position, where {ended} has won "
                         f"(the side to move has no legal move) in {board.fen()}")
    return board


def iter_games(path: str | os.PathLike) -> Iterator[dict]:
    """Yield each game of a JSONL record file after replaying it; errors name the file, line, game and ply."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        game_no = 0
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            game_no += 1
            where = f"{path}: line {line_no} (game {game_no})"
            try:
                game = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            check_game(game, where)
            yield game


def read_games(path: str | os.PathLike) -> list[dict]:
    """Every game of a JSONL record file, each replayed and checked (see `iter_games`)."""
    return list(iter_games(path))


def write_games(path: str | os.PathLike, games: Iterable[dict]) -> Path:
    """Check every game by replaying it, then write them as JSONL atomically; returns the path."""
    games = list(games)
    for n, game in enumerate(games, 1):
        check_game(game, f"{path}: game {n} to write")
    text = "".join(json.dumps(g, ensure_ascii=False, separators=(",", ":")) + "\n" for g in games)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
