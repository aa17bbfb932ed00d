"""Xiangqi (Chinese chess): rules and move generation, notations, board pictures, game records.

`rules.Board` is the position (FEN, ICCS moves, legal moves, check, outcome); `notation` converts
ICCS <-> Chinese notation; `picture` draws a board (SVG, terminal text); `records` reads and
writes JSONL game files, replaying every move.
"""
