"""Xiangqi (Chinese chess): rules and move generation, notations, board pictures, game records.

`rules.Board` is the position (FEN, ICCS moves, legal moves, check, outcome); `notation` converts
ICCS <-> Chinese notation; `picture` draws a board (SVG, terminal text); `records` reads and
writes JSONL game files, replaying every move; `engine` drives fairy-stockfish (UCI) and `games` plays
engine self-play and reads the puzzle collections; `model` is a GPT over one token per move, decoded
through legal-move `allowed_tokens`; `play` is terminal play. Training: `plmkit.recipes.xiangqi`.
"""
