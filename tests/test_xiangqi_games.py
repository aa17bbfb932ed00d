"""Engine games and puzzle readers: the fairy-stockfish wrapper (against the real binary when installed), seeded
self-play that replays, the puzzle collections' formats, and the `plmkit xiangqi` command's plumbing.

Oracles: hand-derived coordinates (Fairy-Stockfish counts ranks from 1, ICCS from 0), the rules module's
own move generator and mate detection (independent code) against the engine's, and a hand-built mate in one."""
import inspect
import random

import pytest

import plmkit.recipes.xiangqi
from plmkit.cli import build_parser, main
from plmkit.recipes.xiangqi import XiangqiConfig
from plmkit.xiangqi import games as games_module
from plmkit.xiangqi.engine import Engine, EngineError, find_engine, from_engine, to_engine
from plmkit.xiangqi.games import play_one, read_eglib, read_eglib_dir, read_xiangqibench, self_play
from plmkit.xiangqi.records import check_game
from plmkit.xiangqi.rules import Board

try:
    ENGINE = find_engine()
except EngineError:
    ENGINE = None
needs_engine = pytest.mark.skipif(ENGINE is None, reason="needs Debian's fairy-stockfish "
                                  "(apt-get install fairy-stockfish)")


def test_engine_coordinates_are_iccs_ranks_plus_one():
    assert to_engine("h2e2") == "h3e3" and to_engine("b2b9") == "b3b10" and to_engine("a0a9") == "a1a10"
    assert from_engine("b3b10") == "b2b9" and from_engine("i1i2") == "i0i1"
    with pytest.raises(ValueError, match="'j2e2' is not an ICCS move"):
        to_engine("j2e2")
    with pytest.raises(EngineError, match="'a0a1'"):  # rank 0 does not exist in the engine's numbering
        from_engine("a0a1")


def test_a_missing_engine_says_how_to_install_it(tmp_path):
    with pytest.raises(EngineError, match="apt-get install fairy-stockfish"):
        find_engine(tmp_path / "no-such-engine")


def test_games_without_the_engine_is_one_line(tmp_path, capsys):
    assert main(["xiangqi", "games", "--engine", str(tmp_path / "none"), "--games", "1",
                 "--out", str(tmp_path / "g.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plmkit xiangqi: error: ") and "apt-get install fairy-stockfish" in err[0]
    assert not (tmp_path / "g.jsonl").exists()


def test_games_options_default_to_self_plays_defaults():
    args = vars(build_parser().parse_args(["xiangqi", "games", "--games", "1", "--out", "o"]))
    defaults = inspect.signature(self_play).parameters
    for name in ("nodes", "workers", "seed", "opening_plies", "max_plies"):
        assert args[name] == defaults[name].default, name


def test_train_hands_the_recipe_the_configs_defaults(monkeypatch, capsys):
    args = vars(build_parser().parse_args(["xiangqi", "train", "--games", "g", "--out", "o"]))
    assert all(args[name] is None for name in inspect.signature(XiangqiConfig).parameters)
    seen = {}

    def stand_in(games, out, cfg, **kw):
        seen["cfg"] = cfg
        return {"valid": {"agreement": 0.5, "agreement_unconstrained": 0.4, "legal_rate": 0.9, "positions": 1},
                "model": "o/model", "curves": "o/curves.png"}

    monkeypatch.setattr(plmkit.recipes.xiangqi, "train_xiangqi", stand_in)
    assert main(["xiangqi", "train", "--games", "g", "--out", "o"]) == 0
    assert seen["cfg"] == XiangqiConfig()
    assert main(["xiangqi", "train", "--games", "g", "--out", "o", "--device", "cpu", "--layers", "2"]) == 0
    assert seen["cfg"] == XiangqiConfig(device="cpu", layers=2)


# ---- the engine itself ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine():
    with Engine(ENGINE) as e:
        yield e


@needs_engine
def test_the_engines_legal_moves_are_the_rules_modules(engine):
    rng, board, moves = random.Random(7), Board(), []
    assert len(engine.legal_moves([])) == 44
    for _ in range(60):
        legal = board.legal_moves()
        if not legal:
            break
        if len(moves) % 6 == 0:
            assert engine.legal_moves(moves) == sorted(legal), board.fen()
        moves.append(rng.choice(legal))
        board.push(moves[-1])


@needs_engine
def test_the_engine_finds_a_mate_in_one_on_the_last_rank(engine):
    # black king e9 alone; rooks a7 and b8: a7a9 mates (b8 holds rank 8), b8b9 does not (e8 is free)
    fen = "4k4/1R7/R8/9/9/9/9/9/9/3K5 w - - 0 1"
    move = engine.best_move([], nodes=200, fen=fen)
    board = Board.from_fen(fen)
    board.push(move)
    assert move == "a7a9" and board.outcome() == "red"


@needs_engine
def test_a_game_replays_move_for_move_and_its_result_is_the_rules(engine):
    kw = dict(nodes=30, seed=3, opening_plies=4, max_plies=80)
    first = play_one(engine, 5, **kw)
    engine.best_move(["h2e2"], nodes=500)  # a search in between must not change the replay
    assert play_one(engine, 5, **kw) == first
    assert play_one(engine, 6, **kw)["moves"] != first["moves"]  # another index: other opening plies
    board = check_game(first, "self-play game")  # every move legal by the rules module
    if first["termination"] == "no_legal_move":
        assert board.legal_moves() == [] and first["result"] == ("black" if board.turn == "red" else "red")


@needs_engine
def test_self_play_over_two_processes_gives_the_same_games():
    kw = dict(engine=ENGINE, nodes=10, seed=1, max_plies=16)
    assert list(self_play(2, workers=2, **kw)) == list(self_play(2, workers=1, **kw))


# ---- puzzle collections --------------------------------------------------------------------------------

EGLIB = """\
车的杀法|3a1k3/4a4/9/9/9/4R4/9/9/9/4K4 w - - 0 1
由中应外|1RN1k4/3P3rC/6n2/9/9/9/9/4p4/3p5/c1rAK4 w|d8e8,e9f9,e8e9,f9e9,c9d7
由中应外|1RN1k4/3P3rC/6n2/9/9/9/9/4p4/3p5/c1rAK4 w|c9d7,e9f9
泥马渡康王-17|1P2kab2/6P2/4b3P/9/8P/8P/9/5n2B/3CNr3/3AKA2p w|d1f1,e7c5,g8f8,c5a7,i2g4,f2
"""


def test_eglib_lines_sharing_a_position_pool_their_first_moves(tmp_path):
    (tmp_path / "a.eglib").write_text(EGLIB, encoding="utf-8")
    puzzles = read_eglib(tmp_path / "a.eglib")
    assert len(puzzles) == 2  # the line without a solution is left out
    first, second = puzzles
    assert first.fen == "1RN1k4/3P3rC/6n2/9/9/9/9/4p4/3p5/c1rAK4 w - - 0 1" and first.first_moves == {"d8e8", "c9d7"}
    assert second.solutions == [["d1f1", "e7c5", "g8f8", "c5a7", "i2g4"]]  # the cut-off "f2" dropped
    for p in puzzles:
        board = Board.from_fen(p.fen)
        assert p.first_moves <= set(board.legal_moves())
    (tmp_path / "b.eglib").write_text(EGLIB.splitlines()[1].replace("d8e8", "b9b8") + "\n", encoding="utf-8")
    pooled = {p.fen: p for p in read_eglib_dir(tmp_path)}
    assert pooled[first.fen].first_moves == {"d8e8", "c9d7", "b9b8"}


def test_a_malformed_puzzle_line_is_named(tmp_path):
    (tmp_path / "a.eglib").write_text(EGLIB + "no separator here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.eglib: line 5: expected 'name\|fen\|moves'"):
        read_eglib(tmp_path / "a.eglib")
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"fen": "4k4/1R7/R8/9/9/9/9/9/9/3K5 w - - 0 1", "first_winning_move": "a7a9"}\n'
                     '{"fen": "4k4/9/9/9/9/9/9/9/9/3K5 w - - 0 1"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"cases\.jsonl: line 2: .*'first_winning_move'"):
        read_xiangqibench(cases)
    cases.write_text(cases.read_text().splitlines()[0] + "\n", encoding="utf-8")
    assert read_xiangqibench(cases)[0].first_moves == {"a7a9"}


def test_self_play_refuses_bad_counts_before_starting_an_engine():
    with pytest.raises(ValueError, match="workers: expected an integer >= 1, found 0"):
        next(games_module.self_play(1, workers=0))
