"""Xiangqi move notations: ICCS squares and moves, and Chinese (WXF-style) move text both ways.

ICCS: files a-i from red's left, ranks 0-9 from red's side; a move is `h2e2` (also read: `H2-E2`).
Square index = rank * 9 + file, the layout of `plmkit.xiangqi.rules`.

Chinese notation (the Chinese Xiangqi Association's rules, as in 炮二平五 / 马8进7):
- a piece is named by its glyph and its file, counted from its owner's right: red uses 一..九,
  black 1..9; then 进 (forward), 退 (back) or 平 (sideways); then for rook, cannon, pawn and
  general the ranks moved (进/退) or the destination file (平), for horse, elephant and advisor
  the destination file;
- two (three) pieces of a kind on one file: 前/后 (前/中/后) replace the file, counted from the
  owner's front (前车进一); four or five pawns: 前, 二, 三, (四), 后; when two files each hold two or
  more such pawns, the file number follows the marker instead of the glyph (前三平四);
- advisors and elephants keep their file even when two share it: the direction tells them apart.
Reading accepts traditional and variant glyphs (傌/馬/马, 俥/車/车, 炮/砲/包, 帥/帅/將/将,
仕/士, 相/象, 兵/卒, 進/进, 後/后) and Chinese, ASCII or full-width digits for either side.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plmkit.xiangqi.rules import Board

__all__ = ["square_index", "square_name", "parse_iccs", "to_chinese", "from_chinese", "FILES"]

FILES = "abcdefghi"


def square_name(index: int) -> str:
    """ICCS name (`e0`) of square index 0-89."""
    return FILES[index % 9] + str(index // 9)


def square_index(name: str) -> int:
    """Index 0-89 of an ICCS square like `e0`; ValueError naming it when malformed."""
    if not isinstance(name, str) or len(name) != 2 or name[0].lower() not in FILES or not "0" <= name[1] <= "9":
        raise ValueError(f"xiangqi square {name!r}: expected a file a-i and a rank 0-9, like 'e0'")
    return int(name[1]) * 9 + FILES.index(name[0].lower())


def parse_iccs(move: str) -> tuple[int, int]:
    """(from, to) square indexes of an ICCS move `h2e2` (or `H2-E2`); ValueError naming it when malformed."""
    if not isinstance(move, str):
        raise ValueError(f"xiangqi move must be an ICCS string like 'h2e2', found {type(move).__name__}")
    text = move.replace("-", "") if len(move) == 5 and move[2] == "-" else move
    if len(text) != 4:
        raise ValueError(f"malformed ICCS move {move!r}: expected 4 characters like 'h2e2'")
    try:
        f, t = square_index(text[:2]), square_index(text[2:])
    except ValueError:
        raise ValueError(f"malformed ICCS move {move!r}: expected file a-i and rank 0-9 twice, like 'h2e2'") from None
    if f == t:
        raise ValueError(f"malformed ICCS move {move!r}: from and to squares are the same")
    return f, t


# ---- Chinese notation ----------------------------------------------------------------------
_RED_NUM = "一二三四五六七八九"
_GLYPH = {  # FEN letter -> the glyph written (simplified, the common printed form)
    "K": "帅", "A": "仕", "B": "相", "N": "马", "R": "车", "C": "炮", "P": "兵",
    "k": "将", "a": "士", "b": "象", "n": "马", "r": "车", "c": "炮", "p": "卒",
}
# every accepted character -> one canonical character, so text compares by kind, not by glyph
_CANON = {}
for _chars, _c in (("帅帥将將", "K"), ("仕士", "A"), ("相象", "B"), ("马馬傌", "N"), ("车車俥", "R"),
                   ("炮砲包", "C"), ("兵卒", "P"), ("进進", "+"), ("退", "-"), ("平", "="),
                   ("前", "F"), ("后後", "L"), ("中", "M")):
    for _ch in _chars:
        _CANON[_ch] = _c
for _n in range(1, 10):
    for _ch in (_RED_NUM[_n - 1], str(_n), chr(0xFF10 + _n)):
        _CANON[_ch] = str(_n)


def _canon(text: str) -> str | None:
    out = []
    for ch in text:
        if ch.isspace():
            continue
        c = _CANON.get(ch)
        if c is None:
            return None
        out.append(c)
    return "".join(out)


def _num(side_red: bool, n: int) -> str:
    return _RED_NUM[n - 1] if side_red else str(n)


def _file_no(side_red: bool, file: int) -> int:
    """File number 1-9 counted from the owner's right (red's right is file i)."""
    return 9 - file if side_red else file + 1


def to_chinese(board: "Board", iccs: str) -> str:
    """The Chinese notation (炮二平五) of the legal ICCS move `iccs` in `board`."""
    if not board.is_legal(iccs):
        raise ValueError(f"cannot write {iccs!r} in Chinese notation: not a legal move for {board.turn} in {board.fen()}")
    return _write(board, *parse_iccs(iccs))


def _write(board: "Board", f: int, t: int) -> str:
    letter = board.piece_at(f)
    red = letter.isupper()
    kind = letter.upper()
    fr, ff = divmod(f, 9)
    tr, tf = divmod(t, 9)
    fwd = (tr - fr) if red else (fr - tr)
    direction = "平" if fwd == 0 else ("进" if fwd > 0 else "退")
    if kind in "RCPK" and fwd != 0:
        target = _num(red, abs(fwd))
    else:
        target = _num(red, _file_no(red, tf))
    return _name(board, f, letter, red, kind, ff, fr) + direction + target


def _name(board: "Board", f: int, letter: str, red: bool, kind: str, ff: int, fr: int) -> str:
    glyph = _GLYPH[letter]
    file_text = _num(red, _file_no(red, ff))
    if kind in "KAB":
        return glyph + file_text
    # same pieces on this file, front (towards the enemy) first
    ranks = sorted((r for r in range(10) if board.piece_at(r * 9 + ff) == letter), reverse=red)
    n = len(ranks)
    if n == 1:
        return glyph + file_text
    pos = ranks.index(fr)
    if n == 2:
        marker = "前后"[pos]
    elif n == 3:
        marker = "前中后"[pos]
    else:
        marker = "前" if pos == 0 else "后" if pos == n - 1 else _num(red, pos + 1)
    if kind == "P":
        crowded = sum(1 for file in range(9)
                      if sum(board.piece_at(r * 9 + file) == letter for r in range(10)) >= 2)
        if crowded >= 2:
            return marker + file_text
    return marker + glyph


def from_chinese(board: "Board", text: str) -> str:
    """The ICCS move of Chinese notation `text` (炮二平五, 马8进7, 前车进一) in `board`."""
    want = _canon(text) if isinstance(text, str) else None
    if not want or len(want) != 4:
        raise ValueError(f"Chinese move {text!r}: expected four characters like 炮二平五 or 马8进7 "
                         f"(position {board.fen()})")
    kinds = [c for c in want if c in "KABNRCP"]
    kind = kinds[0] if kinds else "P"  # 前三进一: crowded pawns are named by file alone
    found = []
    for m in board.legal_moves():
        f, t = parse_iccs(m)
        letter = board.piece_at(f)
        if letter.upper() != kind:
            continue
        written = _canon(_write(board, f, t))
        alternatives = {written}
        if letter.upper() in "AB":  # 前/后 for two advisors / elephants on a file is also seen
            r = f // 9
            same = [rr for rr in range(10) if board.piece_at(rr * 9 + f % 9) == letter]
            if len(same) == 2:
                front = max(same) if letter.isupper() else min(same)
                alternatives.add(("F" if r == front else "L") + written[0] + written[2:])
        if want in alternatives:
            found.append(m)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"Chinese move {text!r} matches no legal move for {board.turn} in position {board.fen()}")
    raise ValueError(f"Chinese move {text!r} is ambiguous ({', '.join(found)}) in position {board.fen()}")
