"""Xiangqi game records (JSONL replayed on read and write) and board pictures (SVG, text)."""
import json
import xml.etree.ElementTree as ET

import pytest

from plmkit.xiangqi.picture import board_svg, board_text
from plmkit.xiangqi.records import read_games, write_games
from plmkit.xiangqi.rules import Board

MATE_FEN = "3k5/4R4/3R5/9/9/9/9/9/9/4K4 b - - 0 1"  # black to move, mated (hand-checked in the rules tests)


def _write_lines(path, objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o, ensure_ascii=False)) + "\n" for o in objs),
                    encoding="utf-8")


def test_round_trip_keeps_moves_results_start_and_metadata(tmp_path):
    games = [{"moves": ["h2e2", "h9g7", "h0g2"], "result": "draw", "event": "random 3 plies"},
             {"moves": [], "result": "red", "fen": MATE_FEN},
             {"moves": ["e7e9"], "result": "red", "fen": "3k5/R8/4R4/9/9/9/9/9/9/4K4 w - - 0 1", "site": "x"}]
    path = write_games(tmp_path / "g.jsonl", games)
    assert read_games(path) == games
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


def test_illegal_move_is_named_with_file_line_game_and_ply(tmp_path):
    path = tmp_path / "bad.jsonl"
    # line 2 blank; game 2 on line 3: ply 3 (red) h2e3 is no legal move (the cannon went to e2)
    _write_lines(path, [{"moves": ["h2e2"], "result": "draw"}, "", {"moves": ["h2e2", "h9g7", "h2e3"], "result": "red"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 3 \(game 2\), ply 3: illegal move 'h2e3' for red"):
        read_games(path)


@pytest.mark.parametrize("token,found", [("h2e", "malformed ICCS move 'h2e'"), ("h2j2", "malformed ICCS move 'h2j2'"),
                                         (7, "malformed move token 7"), ("炮二平五", "malformed ICCS move '炮二平五'")])
def test_malformed_token_is_named(tmp_path, token, found):
    path = tmp_path / "tok.jsonl"
    _write_lines(path, [{"moves": ["h2e2", "h9g7", token], "result": "red"}])
    with pytest.raises(ValueError, match=rf"tok\.jsonl: line 1 \(game 1\), ply 3: {found}"):
        read_games(path)


@pytest.mark.parametrize("line,found", [
    ("{not json", "not valid JSON"),
    ('["h2e2"]', "expected a JSON object"),
    ('{"moves": ["h2e2"]}', "missing field 'result'"),
    ('{"moves": "h2e2", "result": "red"}', "'moves' must be a list"),
    ('{"moves": [], "result": "white"}', "'result' must be one of red, black, draw, found 'white'"),
    ('{"moves": [], "result": "red", "fen": "9/9 w"}', "field 'fen'.*expected 10 ranks"),
    ('{"moves": [], "result": "black", "fen": "' + MATE_FEN + '"}', "result 'black' contradicts the final position"),
])
def test_malformed_records_are_named(tmp_path, line, found):
    path = tmp_path / "rec.jsonl"
    _write_lines(path, [{"moves": [], "result": "draw"}, line])
    with pytest.raises(ValueError, match=rf"rec\.jsonl: line 2 \(game 2\).*{found}"):
        read_games(path)


def test_write_checks_first_and_leaves_the_old_file(tmp_path):
    path = tmp_path / "g.jsonl"
    write_games(path, [{"moves": ["h2e2"], "result": "draw"}])
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"game 2 to write, ply 1: illegal move 'h2h8'"):
        write_games(path, [{"moves": [], "result": "draw"}, {"moves": ["h2h8"], "result": "red"}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.jsonl"]  # no temp file left behind


# ---- pictures: expectations are the standard start layout, written out by hand --------------
START_LAYOUT = {"a0": "R", "b0": "N", "c0": "B", "d0": "A", "e0": "K", "f0": "A", "g0": "B", "h0": "N", "i0": "R",
                "b2": "C", "h2": "C", "a3": "P", "c3": "P", "e3": "P", "g3": "P", "i3": "P"}
START_LAYOUT.update({sq[0] + str(9 - int(sq[1])): p.lower() for sq, p in list(START_LAYOUT.items())})


def test_svg_places_every_piece_with_its_colour_and_glyph():
    b = Board()
    b.push("h2e2")
    root = ET.fromstring(board_svg(b, last_move="h2e2"))
    ns = {"s": "http://www.w3.org/2000/svg"}
    pieces = {g.get("data-square"): g for g in root.iterfind(".//s:g[@class='piece']", ns)}
    layout = dict(START_LAYOUT)
    layout["e2"] = layout.pop("h2")
    assert {sq: g.get("data-piece") for sq, g in pieces.items()} == layout
    centre = {sq: (float(g.find("s:circle", ns).get("cx")), float(g.find("s:circle", ns).get("cy")))
              for sq, g in pieces.items()}
    assert centre["a0"][0] < centre["i0"][0] and centre["a0"][1] > centre["a9"][1]  # red at the bottom
    assert centre["e0"][0] == centre["e9"][0] and centre["a3"][1] == centre["i3"][1]
    assert pieces["e0"].find("s:text", ns).text == "帅" and pieces["e9"].find("s:text", ns).text == "将"
    red_stroke = pieces["e0"].find("s:circle", ns).get("stroke")
    assert all((g.find("s:circle", ns).get("stroke") == red_stroke) == p.isupper() for p, g in
               ((g.get("data-piece"), g) for g in pieces.values()))
    marks = root.findall(".//s:rect[@class='last-move']", ns)
    assert len(marks) == 2
    x = float(marks[1].get("x")) + float(marks[1].get("width")) / 2
    y = float(marks[1].get("y")) + float(marks[1].get("height")) / 2
    assert (x, y) == pytest.approx(centre["e2"])
    assert "楚 河" in board_svg(b)


def test_text_board_start_position():
    lines = board_text(Board()).splitlines()
    assert lines[0] == "9 车马象士将士象马车" and lines[-3] == "0 俥傌相仕帅仕相傌俥"
    assert lines[3] == "6 卒＋卒＋卒＋卒＋卒"
    letters = board_text(Board(), letters=True).splitlines()
    assert letters[0] == "9 r n b a k a b n r" and letters[-3] == "0 R N B A K A B N R"
    assert letters[-1] == "red to move"
