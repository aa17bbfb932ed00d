"""Xiangqi board pictures: an SVG (river, palaces, Chinese glyphs in red and black) and terminal text.

Red is drawn at the bottom (ICCS rank 0), files a-i left to right, as the ICCS coordinates read.
Glyphs tell the sides apart even without colour: red 俥傌相仕帅炮兵, black 车马象士将砲卒.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

from plmkit.xiangqi.notation import FILES, parse_iccs
from plmkit.xiangqi.rules import Board

__all__ = ["board_svg", "board_text", "GLYPHS"]

GLYPHS = {"K": "帅", "A": "仕", "B": "相", "N": "傌", "R": "俥", "C": "炮", "P": "兵",
          "k": "将", "a": "士", "b": "象", "n": "马", "r": "车", "c": "砲", "p": "卒"}

_CELL, _MARGIN = 56, 56
_RED, _BLACK, _LINE, _PAPER = "#c0161b", "#1a1a1a", "#5b3a1a", "#f3d9a4"


def _xy(file: int, rank: int) -> tuple[int, int]:
    return _MARGIN + file * _CELL, _MARGIN + (9 - rank) * _CELL


def board_svg(board: Board, last_move: str | None = None) -> str:
    """An SVG picture of `board`; `last_move` (ICCS) marks its from and to squares."""
    w, h = 2 * _MARGIN + 8 * _CELL, 2 * _MARGIN + 9 * _CELL
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           f'font-family="\'Noto Serif CJK SC\', \'Songti SC\', \'SimSun\', serif">',
           f'<rect width="{w}" height="{h}" fill="{_PAPER}"/>',
           f'<g stroke="{_LINE}" stroke-width="1.5" fill="none">']
    x0, y_top = _xy(0, 9)
    x8, y_bot = _xy(8, 0)
    out.append(f'<rect x="{x0}" y="{y_top}" width="{x8 - x0}" height="{y_bot - y_top}" stroke-width="2.5"/>')
    for rank in range(10):
        _, y = _xy(0, rank)
        out.append(f'<line x1="{x0}" y1="{y}" x2="{x8}" y2="{y}"/>')
    for file in range(1, 8):  # inner files stop at the river
        x, _ = _xy(file, 0)
        out.append(f'<line x1="{x}" y1="{_xy(0, 0)[1]}" x2="{x}" y2="{_xy(0, 4)[1]}"/>')
        out.append(f'<line x1="{x}" y1="{_xy(0, 5)[1]}" x2="{x}" y2="{_xy(0, 9)[1]}"/>')
    for low in (0, 7):  # palace diagonals
        (xa, ya), (xb, yb) = _xy(3, low), _xy(5, low + 2)
        out.append(f'<line x1="{xa}" y1="{ya}" x2="{xb}" y2="{yb}"/><line x1="{xa}" y1="{yb}" x2="{xb}" y2="{ya}"/>')
    out.append("</g>")
    river_y = (_xy(0, 4)[1] + _xy(0, 5)[1]) // 2
    for text, file in (("楚 河", 2), ("漢 界", 6)):
        x = _MARGIN + file * _CELL
        out.append(f'<text x="{x:.0f}" y="{river_y}" font-size="{_CELL * 0.5:.0f}" fill="{_LINE}" '
                   f'text-anchor="middle" dominant-baseline="central">{text}</text>')
    for i, name in enumerate(FILES):  # ICCS coordinates on the edges
        x, _ = _xy(i, 0)
        out.append(f'<text x="{x}" y="{h - 8}" font-size="14" fill="{_LINE}" text-anchor="middle">{name}</text>')
    for rank in range(10):
        _, y = _xy(0, rank)
        out.append(f'<text x="8" y="{y}" font-size="14" fill="{_LINE}" dominant-baseline="central">{rank}</text>')
    if last_move is not None:
        f, t = parse_iccs(last_move)
        for sq in (f, t):
            x, y = _xy(sq % 9, sq // 9)
            r = _CELL * 0.47
            out.append(f'<rect class="last-move" x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" '
                       f'height="{2 * r:.1f}" fill="none" stroke="#2a7ae2" stroke-width="2.5" stroke-dasharray="6 3"/>')
    for square, letter in board.pieces():
        sq = int(square[1]) * 9 + FILES.index(square[0])
        x, y = _xy(sq % 9, sq // 9)
        color = _RED if letter.isupper() else _BLACK
        out.append(f'<g class="piece" data-square="{square}" data-piece="{letter}">'
                   f'<circle cx="{x}" cy="{y}" r="{_CELL * 0.42:.1f}" fill="#fdf3dc" stroke="{color}" stroke-width="2"/>'
                   f'<circle cx="{x}" cy="{y}" r="{_CELL * 0.35:.1f}" fill="none" stroke="{color}" stroke-width="1"/>'
                   f'<text x="{x}" y="{y}" font-size="{_CELL * 0.44:.0f}" fill="{color}" text-anchor="middle" '
                   f'dominant-baseline="central">{escape(GLYPHS[letter])}</text></g>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def board_text(board: Board, letters: bool = False) -> str:
    """A terminal drawing, black at the top: Chinese glyphs (two columns each), or FEN letters."""
    empty = "." if letters else "\uff0b"  # full-width plus keeps the glyph columns aligned
    gap = " " if letters else ""
    lines = []
    for rank in range(9, -1, -1):
        cells = []
        for file in range(9):
            p = board.piece_at(rank * 9 + file)
            cells.append(empty if p is None else (p if letters else GLYPHS[p]))
        lines.append(f"{rank} " + gap.join(cells))
        if rank == 5:
            lines.append("  " + ("~" * 17 if letters else "  楚 河      漢 界"))
    lines.append("  " + (" ".join(FILES) if letters else "".join(ch + " " for ch in FILES)).rstrip())
    lines.append(f"{board.turn} to move")
    return "\n".join(lines)
