"""Game records: engine self-play, and readers for two published puzzle collections.

    self_play(n, nodes=200, seed=0, workers=1)  game i: `opening_plies` seeded random legal moves, then the
                                                engine (cleared hash, fixed nodes) plays both sides until a
                                                side has no legal move (mate or stalemate: that side loses)
                                                or `max_plies` (a draw; repetition is not adjudicated)
    read_eglib(path)      cchess 0.6's examples/end_game/*.eglib: "name|fen side|m1,m2,..." per line
    read_xiangqibench(p)  xiangqibench 0.1.1's data/cases.jsonl: engine-verified mates with first_winning_move

Each game is a pure function of (seed, index, nodes, engine version): its random plies come from
random.Random(f"{seed}:{index}") and every engine move from a cleared hash, so any game can be replayed
alone and the result does not depend on how games were spread over worker processes.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

from .engine import Engine, find_engine

__all__ = ["Puzzle", "play_one", "read_eglib", "read_eglib_dir", "read_xiangqibench", "self_play"]


def play_one(engine: Engine, index: int, *, nodes: int = 200, seed: int = 0, opening_plies: int = 4,
             max_plies: int = 300) -> dict:
    """Game `index`: seeded random opening plies, then engine self-play; a dict with moves, result, termination."""
    rng = random.Random(f"{seed}:{index}")
    moves: list[str] = []
    while True:
        if len(moves) >= max_plies:
            return _game(index, moves, "draw", "max_plies", opening_plies, nodes, seed)
        if len(moves) < opening_plies:
            legal = engine.legal_moves(moves)
            move = rng.choice(legal) if legal else None
        else:
            move = engine.best_move(moves, nodes)
        if move is None:  # the side to move has no legal move: it loses (stalemate too, in xiangqi)
            winner = "black" if len(moves) % 2 == 0 else "red"
            return _game(index, moves, winner, "no_legal_move", opening_plies, nodes, seed)
        moves.append(move)


def _game(index: int, moves: list[str], result: str, termination: str, opening: int, nodes: int, seed: int) -> dict:
    return {"id": f"selfplay-{seed}-{index}", "moves": moves, "result": result, "termination": termination,
            "opening_plies": min(opening, len(moves)), "nodes": nodes}


_worker_engine: Engine | None = None


def _worker_init(path: str) -> None:
    global _worker_engine
    _worker_engine = Engine(path)


def _worker_play(args: tuple[int, dict]) -> dict:
    index, kw = args
    return play_one(_worker_engine, index, **kw)


def self_play(n: int, *, engine: str | os.PathLike | None = None, nodes: int = 200, seed: int = 0,
              opening_plies: int = 4, max_plies: int = 300, workers: int = 1, start: int = 0) -> Iterator[dict]:
    """Games start..start+n-1 of engine self-play, in order, over `workers` processes (one engine each)."""
    for name, value, low in (("n", n, 0), ("nodes", nodes, 1), ("opening_plies", opening_plies, 0),
                             ("max_plies", max_plies, 1), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, found {value!r}")
    path = find_engine(engine)
    kw = {"nodes": nodes, "seed": seed, "opening_plies": opening_plies, "max_plies": max_plies}
    jobs = [(i, kw) for i in range(start, start + n)]
    if workers == 1:
        with Engine(path) as e:
            for i, _ in jobs:
                yield play_one(e, i, **kw)
        return
    # forkserver/spawn: a forked copy of a parent holding threads (torch) can deadlock
    with get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(path,)) as pool:
        yield from pool.imap(_worker_play, jobs, chunksize=4)


# ---- puzzle collections ----------------------------------------------------------------------

@dataclass
class Puzzle:
    """A position to solve: its FEN (side to move included), the accepted first moves, and where it came from."""

    fen: str
    first_moves: set[str]
    name: str
    source: str
    solutions: list[list[str]] = field(default_factory=list)


def _side(fen: str, where: str) -> str:
    parts = fen.split()
    if len(parts) < 2 or parts[1] not in ("w", "r", "b"):
        raise ValueError(f"{where}: FEN {fen!r} does not say whose move it is (expected 'w', 'r' or 'b' "
                         "after the placement)")
    return parts[1]


def read_eglib(path: str | os.PathLike) -> list[Puzzle]:
    """One .eglib file of cchess 0.6 as puzzles, lines that share a FEN merged: every variation's first move
    is accepted. Lines without a solution (its level0.eglib holds only positions) are skipped; a solution
    whose text is cut off keeps its complete moves. Errors name the file and line."""
    by_fen: dict[str, Puzzle] = {}
    path = Path(path)
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("|")
            if len(parts) < 2:
                raise ValueError(f"{path}: line {n}: expected 'name|fen|moves', found {line[:60]!r}")
            name, fen = parts[0], parts[1].strip()
            _side(fen, f"{path}: line {n}")
            moves = [m for m in (parts[2].split(",") if len(parts) > 2 else []) if len(m) == 4]
            if not moves:
                continue
            if len(fen.split()) == 2:
                fen += " - - 0 1"
            p = by_fen.setdefault(fen, Puzzle(fen, set(), name, path.name))
            p.first_moves.add(moves[0])
            p.solutions.append(moves)
    return list(by_fen.values())


def read_eglib_dir(folder: str | os.PathLike) -> list[Puzzle]:
    """Every *.eglib under `folder`, positions that two files share merged (their first moves pooled)."""
    by_fen: dict[str, Puzzle] = {}
    for path in sorted(Path(folder).glob("*.eglib")):
        for p in read_eglib(path):
            if p.fen in by_fen:
                by_fen[p.fen].first_moves |= p.first_moves
                by_fen[p.fen].solutions += p.solutions
            else:
                by_fen[p.fen] = p
    return list(by_fen.values())


def read_xiangqibench(path: str | os.PathLike) -> list[Puzzle]:
    """xiangqibench's cases.jsonl as puzzles (first_winning_move the accepted answer); errors name the line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                fen, move = d["fen"], d["first_winning_move"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}: line {n}: expected a JSON object with 'fen' and "
                                 f"'first_winning_move' ({type(e).__name__}: {e})") from None
            _side(fen, f"{path}: line {n}")
            out.append(Puzzle(fen, {move}, d.get("name", d.get("id", f"line {n}")), Path(path).name, [[move]]))
    return out
