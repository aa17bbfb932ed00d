"""The xiangqi GPT: its move vocabulary, legal-move constrained decoding, its directory, and its training run.

Oracles: the published count of xiangqi's geometrically possible moves (2,086, the size of the policy head
of AlphaZero-style xiangqi programs), the rules module's move generator (an independent piece of code) for
legality, weights compared across a save/load and across an interrupted-then-resumed run."""
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plmkit.xiangqi.model import (MoveVocab, all_moves, build_xiangqi_model, choose_moves, load_xiangqi_model,
                                  save_xiangqi_model)
from plmkit.xiangqi.rules import Board

VOCAB = MoveVocab()
TINY = dict(layers=1, hidden=16, heads=2, max_plies=60)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_xiangqi_model(VOCAB, **TINY).eval()


def random_game(rng: random.Random, plies: int) -> tuple[Board, list[str]]:
    """A position after up to `plies` random legal moves (fewer when the game ends)."""
    board, moves = Board(), []
    for _ in range(plies):
        legal = board.legal_moves()
        if not legal:
            break
        moves.append(rng.choice(legal))
        board.push(moves[-1])
    return board, moves


def test_the_vocabulary_has_every_geometric_move_once():
    moves = all_moves()
    assert len(moves) == 2086 and len(set(moves)) == 2086
    assert len(VOCAB) == 2088 and VOCAB.tokens[:2] == ["[PAD]", "[BOS]"]


def test_every_legal_move_of_random_games_has_a_token():
    rng = random.Random(1)
    for _ in range(20):
        board, moves = random_game(rng, 80)
        assert set(board.legal_moves()) <= set(VOCAB.index)
        assert VOCAB.decode(VOCAB.encode(moves)) == moves


def test_an_unknown_move_is_named():
    with pytest.raises(ValueError, match="'a0b1'"):  # a diagonal no piece makes from a0
        VOCAB.encode(["h2e2", "a0b1"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), plies=st.integers(0, 50), sample=st.booleans())
def test_constrained_decoding_never_emits_an_illegal_move(tiny_model, seed, plies, sample):
    rng = random.Random(seed)
    games = [random_game(rng, rng.randint(0, plies)) for _ in range(3)]
    games = [(b, m) for b, m in games if b.legal_moves()]
    if not games:
        return
    chosen = choose_moves(tiny_model, VOCAB, [m for _, m in games], [b.legal_moves() for b, _ in games],
                          do_sample=sample, temperature=2.0, generator=torch.Generator().manual_seed(seed))
    for (board, _), move in zip(games, chosen):
        assert board.is_legal(move), (board.fen(), move)


def test_without_the_constraint_the_random_model_proposes_illegal_moves(tiny_model):
    """What the constraint is for: the same untrained model, unconstrained, mostly picks illegal moves."""
    rng = random.Random(3)
    games = [random_game(rng, rng.randint(0, 40)) for _ in range(30)]
    games = [(b, m) for b, m in games if b.legal_moves()]
    free = choose_moves(tiny_model, VOCAB, [m for _, m in games])
    illegal = sum(not b.is_legal(x) for (b, _), x in zip(games, free))
    assert illegal > len(games) // 2


def test_left_padding_in_a_batch_changes_no_choice(tiny_model):
    rng = random.Random(4)
    games = [random_game(rng, n) for n in (0, 3, 17)]
    alone = [choose_moves(tiny_model, VOCAB, [m], [b.legal_moves()])[0] for b, m in games]
    batched = choose_moves(tiny_model, VOCAB, [m for _, m in games], [b.legal_moves() for b, _ in games])
    assert alone == batched


def test_a_model_directory_round_trips(tiny_model, tmp_path):
    save_xiangqi_model(tiny_model, VOCAB, tmp_path / "m")
    model, vocab = load_xiangqi_model(tmp_path / "m")
    assert vocab.tokens == VOCAB.tokens
    ids = torch.tensor([VOCAB.encode(["h2e2", "h9g7", "h0g2"])])
    torch.testing.assert_close(model(ids).logits, tiny_model(ids).logits, rtol=0, atol=0)


def test_a_vocabulary_that_does_not_fit_the_model_is_refused(tiny_model, tmp_path):
    save_xiangqi_model(tiny_model, VOCAB, tmp_path / "m")
    (tmp_path / "m" / "moves.txt").write_text("[PAD]\n[BOS]\nh2e2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="2088 token rows, moves.txt 3 tokens"):
        load_xiangqi_model(tmp_path / "m")


# ---- training through the Trainer ------------------------------------------------------------------

def _game_file(path, n=12, seed=5):
    from plmkit.xiangqi.records import write_games

    rng = random.Random(seed)
    games = []
    for _ in range(n):
        board, moves = random_game(rng, rng.randint(4, 30))
        games.append({"moves": moves, "result": board.outcome() or "draw", "opening_plies": 2})
    return write_games(path, games)


def _train(games, out, **fields):
    from plmkit.recipes.xiangqi import XiangqiConfig, train_xiangqi

    cfg = XiangqiConfig(layers=1, hidden=16, heads=2, max_plies=40, batch_size=4, epochs=2, valid_games=3,
                        precision="fp32", device="cpu", **fields)
    return train_xiangqi(games, out, cfg, progress=False)


def test_a_training_run_writes_its_model_and_curves_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import plmkit.recipes.xiangqi as recipe
    from plmkit.training.checkpoint import load_checkpoint

    games = _game_file(tmp_path / "g.jsonl")
    whole = _train(games, tmp_path / "whole")
    run = tmp_path / "whole"
    assert (run / "curves.png").stat().st_size > 0 and (run / "metrics.jsonl").exists()
    assert not (run / "checkpoint.pt").exists() and whole["steps"] == 2 * 3  # 9 games / 4 a batch, 2 epochs
    model, vocab = load_xiangqi_model(run / "model")
    board = Board()
    assert board.is_legal(choose_moves(model, vocab, [[]], [board.legal_moves()])[0])
    # 3 games held out, each counted once past its 2 random opening plies
    from itertools import combinations

    from plmkit.xiangqi.records import read_games

    lengths = [len(g["moves"]) - 2 for g in read_games(games)]
    v = whole["valid"]
    assert 0 <= v["agreement"] <= 1 and 0 <= v["legal_rate"] <= 1
    assert v["positions"] in {sum(c) for c in combinations(lengths, 3)}
    assert whole["train_moves"] + v["positions"] == sum(lengths)

    real, calls = recipe.move_loss, {"n": 0}

    def dies_in_epoch_two(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:  # the second micro-batch of epoch 2: epoch 1's checkpoint is on disk
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(recipe, "move_loss", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _train(games, tmp_path / "cut")
    assert load_checkpoint(tmp_path / "cut.partial" / "checkpoint.pt")["step"] == 3
    monkeypatch.setattr(recipe, "move_loss", real)
    resumed = _train(games, tmp_path / "cut")
    assert resumed["steps"] == whole["steps"] and resumed["valid"] == whole["valid"]
    a, _ = load_xiangqi_model(tmp_path / "whole" / "model")
    b, _ = load_xiangqi_model(tmp_path / "cut" / "model")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("bad, found", [
    ('{"moves": ["h2e2", "h9g7", "h2h9"], "result": "draw"}', "ply 3"),  # h2 is empty after h2e2
    ('{"moves": ["h2e2", "h9-g7x"], "result": "draw"}', "ply 2"),
])
def test_a_game_file_with_a_bad_move_is_refused_naming_game_and_ply(tmp_path, bad, found):
    from plmkit.recipes.xiangqi import read_game_file

    path = tmp_path / "g.jsonl"
    path.write_text('{"moves": ["h2e2"], "result": "draw"}\n' + bad + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"line 2 \(game 2\), {found}"):
        read_game_file(path)
    with pytest.raises(ValueError, match=rf"game 2.*{found}"):
        _train(path, tmp_path / "run")
    assert not (tmp_path / "run.partial").exists()  # refused before anything was written


def test_many_games_at_once_choose_what_generate_chooses(tiny_model):
    """MoveStream (one cached token per ply) against choose_moves (generate over the whole history)."""
    from plmkit.xiangqi.model import MoveStream

    rng = random.Random(8)
    boards, histories = [Board() for _ in range(3)], [[] for _ in range(3)]
    stream = MoveStream(tiny_model, VOCAB, 3)
    for _ in range(12):
        legal = [b.legal_moves() for b in boards]
        assert stream.choose([0, 1, 2], legal) == choose_moves(tiny_model, VOCAB, histories, legal)
        assert stream.choose([2, 0]) == [choose_moves(tiny_model, VOCAB, [histories[i]])[0] for i in (2, 0)]
        played = [rng.choice(x) for x in legal]
        for b, h, m in zip(boards, histories, played):
            b.push(m)
            h.append(m)
        stream.push(played)


def test_play_takes_iccs_and_chinese_and_answers_with_legal_moves(tiny_model):
    from plmkit.xiangqi.play import model_player, play

    typed = iter(["h2e2", "h2e3", "马二进三", "undo", "b0c2", "quit"])
    seen = []
    result = play(model_player(tiny_model, VOCAB), read=lambda prompt: next(typed), write=seen.append)
    assert result == "quit"
    assert any(line.startswith("not played: h2e3 is not a legal move") for line in seen)
    answers = [line.split()[2] for line in seen if line.startswith("model plays")]
    assert len(answers) == 3  # after h2e2, after 马二进三 (h0g2), after b0c2 once undo took back a pair
    board = Board()
    for move in ("h2e2", answers[0], "h0g2", answers[1]):  # 马二进三 is h0g2 for red
        assert board.is_legal(move), (board.fen(), move)
        board.push(move)
    board.pop(), board.pop()  # undo
    for move in ("b0c2", answers[2]):
        assert board.is_legal(move), (board.fen(), move)
        board.push(move)


def test_a_game_from_another_position_is_refused_for_training():
    from plmkit.recipes.xiangqi import encode_games

    start = {"moves": ["h2e2"], "result": "draw"}
    puzzle = {"moves": ["a7a9"], "result": "red", "fen": "4k4/1R7/R8/9/9/9/9/9/9/3K5 w - - 0 1"}
    assert encode_games([start], VOCAB, 10) == [([1, VOCAB.id("h2e2")], 0)]
    with pytest.raises(ValueError, match="game 2 starts from FEN '4k4/1R7"):
        encode_games([start, puzzle], VOCAB, 10)
