"""Xiangqi rules: perft against the published counts, move lists against Fairy-Stockfish (pyffish),
hand-derived positions, FEN against pyffish, Chinese notation against cchess and pyffish's WXF."""
import random
import re

import pytest

from plmkit.xiangqi import rules
from plmkit.xiangqi.notation import from_chinese, parse_iccs, square_index, square_name, to_chinese
from plmkit.xiangqi.rules import START_FEN, Board, perft, random_playout


def _sf():
    return pytest.importorskip("pyffish", reason="pyffish (Fairy-Stockfish's binding, in plmkit[test]) is the oracle")


def _to_sf(move: str) -> str:
    """ICCS ranks 0-9 -> Fairy-Stockfish's 1-10."""
    return f"{move[0]}{int(move[1]) + 1}{move[2]}{int(move[3]) + 1}"


def _from_sf(move: str) -> str:
    a, r1, b, r2 = re.fullmatch(r"([a-i])(\d+)([a-i])(\d+)", move).groups()
    return f"{a}{int(r1) - 1}{b}{int(r2) - 1}"


def _random_games(n_games: int, seed: int, max_plies: int = 160, check_bias: float = 0.0):
    """Positions of seeded random legal play from the start: lists of (board copy) per game.
    With `check_bias` the player gives check when it can with that probability (more evasions)."""
    rng = random.Random(seed)
    for _ in range(n_games):
        plies = rng.randrange(20, max_plies)
        end = random_playout(rng, plies, check_bias)
        b, boards = Board(), []
        for move in end.history:  # the position before each move, replayed
            boards.append(b.copy())
            b.push(move)
        if len(end.history) < plies:  # the game ended first: its final position too
            boards.append(b)
        yield boards


# ---- perft: 44 / 1,920 / 79,666 are the published start-position counts (depth 4 in benchmarks/) --
@pytest.mark.parametrize("depth,count", [(1, 44), (2, 1920), (3, 79666)])
def test_perft_start(depth, count):
    assert perft(Board(), depth) == count


def test_perft_two_plies_matches_pyffish_on_midgame_positions():
    sf = _sf()
    for boards in _random_games(1, seed=11, max_plies=60):
        b = boards[-1]
        fen = b.fen()
        expect = sum(len(sf.legal_moves("xiangqi", fen, [m])) for m in sf.legal_moves("xiangqi", fen, []))
        assert perft(b, 2) == expect, fen


# ---- move lists identical to Fairy-Stockfish on random mid-game positions --------------------
def _facing_after(b: Board, move: str) -> bool:
    """Hand rule: after `move`, the two generals share a file with nothing between them."""
    b = b.copy()
    b._make(rules.parse_iccs(move)[0] << 7 | rules.parse_iccs(move)[1])
    kr, kb = b._kings
    if kr % 9 != kb % 9:
        return False
    return all(b._sq[s] == 0 for s in range(kr + 9, kb, 9))


def test_legal_moves_identical_to_pyffish_on_random_positions():
    sf = _sf()
    checked = in_check = pinned = flying = 0
    games = [*_random_games(1, seed=2026, max_plies=200), *_random_games(3, seed=4, check_bias=0.4)]
    for boards in games:
        for b in boards[10:]:  # mid-game: skip the opening
            fen = b.fen()
            mine = sorted(b.legal_moves())
            theirs = sorted(_from_sf(m) for m in sf.legal_moves("xiangqi", fen, []))
            assert mine == theirs, (fen, set(mine) ^ set(theirs))
            checked += 1
            in_check += b.in_check()
            pseudo = {rules._MOVE_NAME[c] for c in rules._pseudo(b._sq, b._sign)}
            rejected = pseudo - set(mine)
            pinned += bool(rejected) and not b.in_check()
            flying += any(_facing_after(b, m) for m in rejected)
    # the sample must exercise what it claims to check
    assert checked >= 300, checked
    assert in_check >= 30, in_check  # check evasion
    assert pinned >= 50, pinned  # moves refused while not in check: pins, screens, legs
    assert flying >= 20, flying  # moves refused because the generals would face


# ---- hand-built positions --------------------------------------------------------------------
def test_flying_general_pins_the_only_piece_between_the_generals():
    b = Board("4k4/9/9/9/9/9/9/9/4N4/4K4 w - - 0 1")
    # the horse on e1 may not leave the file (the generals would face); the general steps aside
    assert sorted(b.legal_moves()) == ["e0d0", "e0f0"]
    assert not b.is_legal("e1d3")
    with pytest.raises(ValueError, match=r"e1d3.*4k4/9/9/9/9/9/9/9/4N4/4K4 w"):
        b.push("e1d3")


def test_general_may_not_step_onto_the_open_file_of_the_other():
    b = Board("3k5/9/9/9/9/9/9/9/9/4K4 b - - 0 1")
    assert b.legal_moves() == ["d9d8"]  # e9 faces the red general; c9 is outside the palace


def test_mate():
    b = Board("3k5/4R4/3R5/9/9/9/9/9/9/4K4 b - - 0 1")
    assert b.in_check() and b.legal_moves() == [] and b.is_checkmate()
    assert b.outcome() == "red"


def test_stalemate_is_a_loss_for_the_side_to_move():
    # d9 faces the red general, f9 and e8 are covered by the pawn (and the rook): no move, no check
    b = Board("4k4/R4P3/9/9/9/9/9/9/9/3K5 b - - 0 1")
    assert not b.in_check() and b.legal_moves() == [] and b.is_stalemate()
    assert b.outcome() == "red"


def test_horse_leg_blocking():
    b = Board("3k5/9/9/9/4p4/4N4/9/9/9/5K3 w - - 0 1")
    horse = sorted(m for m in b.legal_moves() if m.startswith("e4"))
    assert horse == sorted(["e4d2", "e4f2", "e4c5", "e4g5", "e4c3", "e4g3"])  # d6/f6: leg e5 blocked


def test_elephant_eye_blocking_and_the_river():
    b = Board("4k4/9/9/9/9/6B2/9/9/3K5/2B6 w - - 0 1")
    moves = b.legal_moves()
    assert sorted(m for m in moves if m.startswith("c0")) == ["c0a2"]  # eye d1 holds the general
    assert sorted(m for m in moves if m.startswith("g4")) == ["g4e2", "g4i2"]  # never across the river


def test_cannon_moves_and_captures_over_exactly_one_screen():
    b = Board("3k5/9/9/p8/9/9/P8/9/9/C3K4 w - - 0 1")
    cannon = sorted(m for m in b.legal_moves() if m.startswith("a0"))
    assert cannon == ["a0a1", "a0a2", "a0a6", "a0b0", "a0c0", "a0d0"]


def test_cannon_screen_makes_a_move_illegal_and_gives_check():
    b = Board("4k4/9/2n6/9/9/9/9/4C4/9/3K5 b - - 0 1")
    assert not b.in_check()
    assert not b.is_legal("c7e6")  # the horse would screen the cannon e2 against its own general
    assert b.is_legal("c7d5")
    assert sorted(m for m in b.legal_moves() if m.startswith("e9")) == ["e9e8", "e9f9"]  # d9 faces d0
    b.push("c7d5")
    b.push("e2e3")
    assert not b.in_check()
    assert Board("4k4/9/9/9/4p4/9/9/4C4/9/3K5 b - - 0 1").in_check()  # pawn e5 screens the cannon


def test_soldiers_cross_the_river_then_move_sideways_never_back():
    b = Board("3k5/9/9/8p/2P6/6p2/P8/9/9/5K3 w - - 0 1")
    red = sorted(m for m in b.legal_moves() if m[:2] in ("a3", "c5"))
    assert red == sorted(["a3a4", "c5c6", "c5b5", "c5d5"])
    b.push("f0e0")
    black = sorted(m for m in b.legal_moves() if m[:2] in ("g4", "i6"))
    assert black == sorted(["g4g3", "g4f4", "g4h4", "i6i5"])


def test_push_pop_restore_the_position_and_history():
    b = Board()
    for m in ["h2e2", "h9g7", "h0g2", "i9h9"]:
        b.push(m)
    assert b.history == ["h2e2", "h9g7", "h0g2", "i9h9"] and b.turn == "red"
    assert b.piece_at("e2") == "C" and b.piece_at("h9") == "r" and b.piece_at("i9") is None
    for _ in range(4):
        b.pop()
    assert b.fen() == START_FEN and b.history == []
    with pytest.raises(IndexError):
        b.pop()


def test_threefold_repetition_is_a_draw():
    b = Board()
    shuffle = ["h0g2", "h9g7", "g2h0", "g7h9"]
    for m in shuffle * 2:
        assert b.outcome() is None
        b.push(m)
    assert b.repetitions() == 3 and b.outcome() == "draw"


def test_malformed_moves_and_fens_are_named():
    b = Board()
    assert not b.is_legal("z2e2") and not b.is_legal("h2") and not b.is_legal("h2h2")
    with pytest.raises(ValueError, match="malformed ICCS move 'h2x2'"):
        b.push("h2x2")
    with pytest.raises(ValueError, match="expected 10 ranks"):
        Board("rnbakabnr/9 w")
    with pytest.raises(ValueError, match="unknown piece letter 'x'"):
        Board("rnbakabnx/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w")
    with pytest.raises(ValueError, match="one black general, found 0"):
        Board("rnba1abnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w")
    with pytest.raises(ValueError, match="outside its palace"):
        Board("rnba1abnr/9/1c5c1/p1p1pkp1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w")


# ---- FEN -------------------------------------------------------------------------------------
def test_fen_matches_pyffish_after_random_games_and_round_trips():
    sf = _sf()
    for boards in _random_games(3, seed=5):
        b = boards[-1]
        theirs = sf.get_fen("xiangqi", START_FEN, [_to_sf(m) for m in b.history])
        assert b.fen().split()[:2] == theirs.split()[:2]  # placement and side to move
        assert Board.from_fen(theirs).fen().split()[:2] == theirs.split()[:2]
        assert Board.from_fen(b.fen()).fen() == b.fen()
        assert Board.from_fen(b.fen()).legal_moves() == b.legal_moves()


def test_squares():
    assert square_index("a0") == 0 and square_index("i9") == 89 and square_name(square_index("e7")) == "e7"
    assert parse_iccs("H2-E2") == parse_iccs("h2e2") == (square_index("h2"), square_index("e2"))


# ---- Chinese notation ------------------------------------------------------------------------
def test_chinese_notation_hand_checked():
    b = Board()
    assert to_chinese(b, "h2e2") == "炮二平五" and from_chinese(b, "炮二平五") == "h2e2"
    assert to_chinese(b, "h0g2") == "马二进三" and from_chinese(b, "马二进三") == "h0g2"
    assert to_chinese(b, "i0i1") == "车一进一" and from_chinese(b, "车一进一") == "i0i1"
    assert from_chinese(b, "傌２進３") == "h0g2" and from_chinese(b, "俥9进1") == "a0a1"
    assert from_chinese(b, "相三进五") == "g0e2" and from_chinese(b, "仕四进五") == "f0e1"
    b.push("h2e2")
    assert to_chinese(b, "h9g7") == "马8进7" and from_chinese(b, "马8进7") == "h9g7"
    assert from_chinese(b, "砲８平５") == "h7e7" and from_chinese(b, "將5进1") == "e9e8"
    # two rooks on one file: 前/后 from red's front (higher rank)
    r = Board("3k5/9/9/4R4/9/9/4R4/9/9/5K3 w - - 0 1")
    assert to_chinese(r, "e6e7") == "前车进一" and to_chinese(r, "e3f3") == "后车平四"
    assert from_chinese(r, "后车退一") == "e3e2"
    with pytest.raises(ValueError, match="车五进一.*matches no legal move"):
        from_chinese(r, "车五进一")
    with pytest.raises(ValueError, match="expected four characters"):
        from_chinese(r, "炮二平")


def test_chinese_notation_for_stacked_pieces_by_hand():
    three = Board("3k5/9/4P4/4P4/4P4/9/9/9/9/5K3 w - - 0 1")  # red pawns e7, e6, e5
    assert [to_chinese(three, m) for m in ("e7e8", "e6d6", "e5f5")] == ["前兵进一", "中兵平六", "后兵平四"]
    two_files = Board("3k5/9/9/2P1P4/2P1P4/9/9/9/9/5K3 w - - 0 1")  # pawns stacked on files 七 and 五
    assert to_chinese(two_files, "c6c7") == "前七进一" and to_chinese(two_files, "e5d5") == "后五平六"
    assert from_chinese(two_files, "前七进一") == "c6c7"
    black = Board("1n1k5/9/1n7/9/9/9/9/9/9/5K3 b - - 0 1")  # black horses b9, b7: b7 is black's front
    assert to_chinese(black, "b7c5") == "前马进3" and to_chinese(black, "b9d8") == "后马进4"
    assert from_chinese(black, "後馬進１") == "b9a7"


def test_fen_reads_variant_letters_and_red_side_letter():
    a = Board("rheakaehr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RHEAKAEHR r - - 0 1")
    assert a.fen() == START_FEN


def test_chinese_round_trip_is_one_to_one_on_random_positions():
    for boards in _random_games(2, seed=9):
        for b in boards[::16]:
            moves = b.legal_moves()
            texts = [to_chinese(b, m) for m in moves]
            assert len(set(texts)) == len(texts), b.fen()  # no two moves share a text
            assert [from_chinese(b, t) for t in texts] == moves


def test_chinese_matches_cchess_on_random_positions():
    cchess = pytest.importorskip("cchess", reason="cchess 1.25 (in plmkit[test]) is the Chinese-notation oracle")
    from plmkit.xiangqi.notation import _canon
    compared = 0
    for boards in _random_games(2, seed=17):
        for b in boards[5::20]:
            for m in b.legal_moves():
                theirs = cchess.ChessBoard(b.fen()).move_iccs(m).to_text()
                assert _canon(to_chinese(b, m)) == _canon(theirs), (b.fen(), m, theirs)
                assert from_chinese(b, theirs) == m
                compared += 1
    assert compared >= 150, compared


def test_chinese_reads_pyffish_wxf_for_doubled_pieces():
    """pyffish writes WXF (C2=5, R++1: piece, then +/- for front/rear); translated to Chinese
    glyphs, our reader must find the same move. Positions with doubled rooks, horses, elephants."""
    sf = _sf()
    glyph = {"K": "帅", "A": "仕", "E": "相", "H": "马", "R": "车", "C": "炮", "P": "兵",
             "+": "进", "-": "退", "=": "平", ".": "平"}
    for fen in ["3k5/9/9/4R4/9/9/4R4/4N4/4N4/5K3 w - - 0 1",
                "3k5/9/9/9/9/9/9/2BA5/9/2BAK4 w - - 0 1",
                "2b1ka3/9/5a3/9/2b1c4/9/4c4/9/9/5K3 b - - 0 1"]:
        b = Board(fen)
        for m in b.legal_moves():
            wxf = sf.get_san("xiangqi", fen, _to_sf(m), False, sf.NOTATION_XIANGQI_WXF)
            if wxf[1] in "+-":  # R++1: marker after the piece -> 前车进一
                text = ("前" if wxf[1] == "+" else "后") + glyph[wxf[0]] + glyph[wxf[2]] + wxf[3]
            else:
                text = glyph[wxf[0]] + wxf[1] + glyph[wxf[2]] + wxf[3]
            assert from_chinese(b, text) == m, (fen, m, wxf, text)
