"""Xiangqi move generator: perft 1-4 from the start (against the published counts), a cross-check
of legal-move lists against Fairy-Stockfish (pyffish) on random positions, and throughput.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_xiangqi_rules.py [--depth 4] [--games 40]

Published start-position perft: 44 / 1,920 / 79,666 / 3,290,240 (chessprogramming wiki, "Chinese
Chess" perft results; also what Fairy-Stockfish's own perft prints).
"""
from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plmkit.xiangqi.notation import from_chinese, to_chinese  # noqa: E402
from plmkit.xiangqi.records import read_games, write_games  # noqa: E402
from plmkit.xiangqi.rules import Board, perft  # noqa: E402

PUBLISHED = {1: 44, 2: 1920, 3: 79666, 4: 3290240, 5: 133312995}


def random_games(n: int, seed: int, check_bias: float = 0.0, max_plies: int = 200) -> list[list[str]]:
    """Seeded random legal play; with `check_bias` a checking move is preferred with that probability."""
    rng = random.Random(seed)
    games = []
    for _ in range(n):
        b = Board()
        for _ in range(rng.randrange(20, max_plies)):
            moves = b.legal_moves()
            if not moves:
                break
            if check_bias and rng.random() < check_bias:
                moves = [m for m in moves if b.gives_check(m)] or moves
            b.push(rng.choice(moves))
        games.append(b.history[:])
    return games


def result(moves: list[str]) -> str:
    b = Board()
    for m in moves:
        b.push(m)
    return b.outcome() or "draw"


def positions(games: list[list[str]]):
    for moves in games:
        b = Board()
        for m in moves:
            yield b
            b.push(m)
        yield b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--games", type=int, default=40, help="random games per sample (plain and check-seeking)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")

    print("\n## perft from the start position")
    print("| depth | nodes | published | time s | leaves/s |\n|---|---|---|---|---|")
    for d in range(1, args.depth + 1):
        t = time.perf_counter()
        n = perft(Board(), d)
        dt = time.perf_counter() - t
        ok = "" if n == PUBLISHED[d] else " MISMATCH"
        print(f"| {d} | {n:,} | {PUBLISHED[d]:,}{ok} | {dt:.3f} | {n / dt:,.0f} |")

    games = random_games(args.games, seed=1) + random_games(args.games, seed=2, check_bias=0.4)
    all_pos = list(b.copy() for b in positions(games))
    print(f"\nsample: {len(games)} random games (half check-seeking), {len(all_pos):,} positions, "
          f"{sum(b.in_check() for b in all_pos):,} in check, "
          f"{sum(b.outcome() in ('red', 'black') for b in all_pos)} with no legal move")

    print("\n## throughput (one process)")
    t = time.perf_counter()
    n_moves = sum(len(b.legal_moves()) for b in all_pos)
    dt = time.perf_counter() - t
    print(f"legal_moves(): {len(all_pos) / dt:,.0f} positions/s ({n_moves / dt:,.0f} legal moves/s)")
    t = time.perf_counter()
    checks = sum(b.in_check() for b in all_pos)
    dt = time.perf_counter() - t
    print(f"in_check(): {len(all_pos) / dt:,.0f} positions/s")
    t = time.perf_counter()
    plies = sum(len(g) for g in random_games(args.games, seed=3))
    dt = time.perf_counter() - t
    print(f"random playout (legal_moves + push per ply): {plies / dt:,.0f} plies/s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "games.jsonl"
        write_games(path, [{"moves": g, "result": result(g)} for g in games])
        t = time.perf_counter()
        n_read = sum(len(g["moves"]) for g in read_games(path))
        dt = time.perf_counter() - t
    print(f"read_games replay (parse + is_legal + push per ply): {n_read / dt:,.0f} plies/s")
    sample = all_pos[::25]
    t = time.perf_counter()
    n_cn = 0
    for b in sample:
        for m in b.legal_moves():
            assert from_chinese(b, to_chinese(b, m)) == m
            n_cn += 1
    dt = time.perf_counter() - t
    print(f"Chinese notation round trip (to_chinese + from_chinese): {n_cn / dt:,.0f} moves/s over {n_cn:,} moves")

    try:
        import pyffish as sf
    except ImportError:
        print("\npyffish not installed (pip install plmkit[test]): cross-check skipped")
        return
    print("\n## cross-check against Fairy-Stockfish (pyffish", ".".join(map(str, sf.version())), ")")

    def from_sf(m: str) -> str:
        a, r1, b, r2 = re.fullmatch(r"([a-i])(\d+)([a-i])(\d+)", m).groups()
        return f"{a}{int(r1) - 1}{b}{int(r2) - 1}"

    t = time.perf_counter()
    same = moves_compared = in_check = mates = 0
    for b in all_pos:
        fen = b.fen()
        theirs = sorted(from_sf(m) for m in sf.legal_moves("xiangqi", fen, []))
        mine = sorted(b.legal_moves())
        same += mine == theirs
        if mine != theirs:
            print("MISMATCH", fen, set(mine) ^ set(theirs))
        moves_compared += len(theirs)
        in_check += b.in_check()
        mates += not theirs
    dt = time.perf_counter() - t
    print(f"positions identical: {same:,} / {len(all_pos):,} ({moves_compared:,} legal moves; {in_check:,} "
          f"positions in check; {mates} with no legal move) in {dt:.1f} s "
          f"(pyffish {len(all_pos) / dt:,.0f} positions/s incl. our side: it parses the FEN per call)")
    del checks


if __name__ == "__main__":
    main()
