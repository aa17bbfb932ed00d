"""Play the model in a terminal: a person enters ICCS (h2e2) or Chinese notation (炮二平五), the model answers
with legal-move constrained decoding, and the board is drawn after every move.

The loop reads and writes through the callables it is given (the CLI passes input and print), so it runs
the same under a test's scripted input. Commands at the prompt: `undo` takes back the last move pair,
`quit` ends the game.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

from .model import MoveVocab, choose_moves
from .rules import Board

__all__ = ["model_player", "parse_move", "play"]

_ICCS = re.compile(r"^[a-iA-I][0-9]-?[a-iA-I][0-9]$")
Player = Callable[[Board, list[str]], str]


def parse_move(board: Board, text: str) -> str:
    """An ICCS move (h2e2, H2-E2) or Chinese notation (炮二平五) as a legal ICCS move of `board`; ValueError
    saying what was wrong otherwise."""
    from .notation import from_chinese

    text = text.strip()
    if _ICCS.match(text):
        move = text.replace("-", "").lower()
        if not board.is_legal(move):
            raise ValueError(f"{move} is not a legal move for {board.turn} here")
        return move
    return from_chinese(board, text)


def model_player(model: torch.nn.Module, vocab: MoveVocab, *, do_sample: bool = False, temperature: float = 1.0,
                 seed: int | None = None) -> Player:
    """A player that asks the model for its move among the legal ones (greedy, or sampled with `temperature`)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def move(board: Board, history: list[str]) -> str:
        return choose_moves(model, vocab, [history], [board.legal_moves()], do_sample=do_sample,
                            temperature=temperature, generator=generator)[0]

    return move


def play(opponent: Player, *, human: str = "red", read: Callable[[str], str] = input,
         write: Callable[[str], None] = print, max_plies: int = 300) -> str:
    """One game between a person (`human` side) and `opponent`; returns "red", "black", "draw" or "quit"."""
    from .notation import to_chinese
    from .picture import board_text

    if human not in ("red", "black"):
        raise ValueError(f"human: expected 'red' or 'black', found {human!r}")
    board, moves = Board(), []
    write(board_text(board))
    while board.outcome() is None and len(moves) < max_plies:
        if board.turn == human:
            text = read(f"{board.turn} to move (ICCS like h2e2, or 炮二平五; undo, quit): ").strip()
            if text == "quit":
                return "quit"
            if text == "undo":
                for _ in range(min(2, len(moves))):
                    board.pop()
                    moves.pop()
                write(board_text(board))
                continue
            try:
                move = parse_move(board, text)
            except ValueError as e:
                write(f"not played: {e}")
                continue
        else:
            move = opponent(board, moves)
            write(f"model plays {move} ({to_chinese(board, move)})")
        board.push(move)
        moves.append(move)
        write(board_text(board))
    result = board.outcome() or "draw"
    write({"red": "red wins", "black": "black wins", "draw": "draw"}[result])
    return result
