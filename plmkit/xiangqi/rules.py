"""Xiangqi (Chinese chess) rules: board, FEN, legal moves, check, mate, perft.

Squares are numbered `rank * 9 + file` on a 10 x 9 mailbox: file 0-8 is ICCS a-i from red's left,
rank 0-9 from red's side (ICCS `h2e2` is red's central cannon). Pieces are small ints, positive
for red and negative for black, so "own piece" is `piece * sign > 0` with sign +1 for red and -1
for black. Every piece's moves come from tables built once at import (rays, horse legs, elephant
eyes, palaces, pawns before and after the river), and a move is tried by make / test / unmake:
a move is legal when afterwards no enemy rook, cannon, horse or pawn attacks the mover's general
and the two generals do not face each other on an open file ("flying generals").

Rules implemented (the ones every xiangqi program agrees on):
- the full move rules of all seven pieces, incl. horse-leg and elephant-eye blocking, cannon
  screens, palaces, elephants staying on their side, soldiers moving sideways after the river;
- a move that leaves one's own general attacked, or the generals facing each other, is illegal;
- a side with no legal move loses, whether in check (mate) or not (stalemate counts as a loss);
- repetition, simple threefold: `outcome()` is "draw" when the position (placement and side to
  move) has occurred three times in this board's game. The Asian / Chinese rules on perpetual check
  and perpetual chase (where the checking side loses) are **not** implemented; neither is a move
  limit (a game record carries the result "draw" when a player stops a game at a limit).

FEN is the standard xiangqi FEN (as fairy-stockfish writes it): ranks from black's side, letters
k a b n r c p (red upper-case), `w` (or `r`) for red to move; `h` / `e` are read as horse / elephant.
"""
from __future__ import annotations

import random
from typing import Iterator

from plmkit.xiangqi.notation import parse_iccs, square_index, square_name

__all__ = ["Board", "START_FEN", "perft", "RED", "BLACK"]

START_FEN = "rnbakabnr/9/1c5c1/p1p1p1p1p/9/9/P1P1P1P1P/1C5C1/9/RNBAKABNR w - - 0 1"
RED, BLACK = "red", "black"

# piece types; black pieces are the negatives
KING, ADVISOR, ELEPHANT, HORSE, ROOK, CANNON, PAWN = 1, 2, 3, 4, 5, 6, 7
_FEN_TYPES = {"k": KING, "a": ADVISOR, "b": ELEPHANT, "e": ELEPHANT, "n": HORSE, "h": HORSE,
              "r": ROOK, "c": CANNON, "p": PAWN}
_TYPE_LETTER = {KING: "k", ADVISOR: "a", ELEPHANT: "b", HORSE: "n", ROOK: "r", CANNON: "c", PAWN: "p"}


# ---- move tables (built once; index 0 = red, 1 = black where the side matters) -----------------
def _sq(rank: int, file: int) -> int:
    return rank * 9 + file


def _on(rank: int, file: int) -> bool:
    return 0 <= rank <= 9 and 0 <= file <= 8


def _in_palace(side: int, rank: int, file: int) -> bool:
    return 3 <= file <= 5 and (0 <= rank <= 2 if side == 0 else 7 <= rank <= 9)


def _own_half(side: int, rank: int) -> bool:
    return rank <= 4 if side == 0 else rank >= 5


def _build_tables():
    rays, horse, king, advisor, elephant, pawn = [], [], ([], []), ([], []), ([], []), ([], [])
    for s in range(90):
        r, f = divmod(s, 9)
        # rays in the order up (towards black), down, left, right; the first two are the file
        rays.append(tuple(
            tuple(_sq(r + dr * k, f + df * k) for k in range(1, 10) if _on(r + dr * k, f + df * k))
            for dr, df in ((1, 0), (-1, 0), (0, -1), (0, 1))))
        # horse: two steps one way, one the other; the leg is the orthogonal neighbour it passes
        horse.append(tuple(
            (_sq(r + lr, f + lf), _sq(r + dr, f + df))
            for dr, df in ((2, 1), (2, -1), (-2, 1), (-2, -1), (1, 2), (-1, 2), (1, -2), (-1, -2))
            if _on(r + dr, f + df)
            for lr, lf in [((dr // 2, 0) if abs(dr) == 2 else (0, df // 2))]))
        for side in (0, 1):
            king[side].append(tuple(_sq(r + dr, f + df) for dr, df in ((1, 0), (-1, 0), (0, 1), (0, -1))
                                    if _in_palace(side, r + dr, f + df)))
            advisor[side].append(tuple(_sq(r + dr, f + df) for dr, df in ((1, 1), (1, -1), (-1, 1), (-1, -1))
                                       if _in_palace(side, r + dr, f + df)))
            elephant[side].append(tuple(
                (_sq(r + dr // 2, f + df // 2), _sq(r + dr, f + df))
                for dr, df in ((2, 2), (2, -2), (-2, 2), (-2, -2))
                if _on(r + dr, f + df) and _own_half(side, r + dr)))
            fwd = 1 if side == 0 else -1
            steps = [(fwd, 0)] + ([(0, 1), (0, -1)] if not _own_half(side, r) else [])
            pawn[side].append(tuple(_sq(r + dr, f + df) for dr, df in steps if _on(r + dr, f + df)))
    # reverse tables for attack detection: who could land on square k
    horse_att = [[] for _ in range(90)]
    for h in range(90):
        for leg, t in horse[h]:
            horse_att[t].append((h, leg))
    pawn_att = ([[] for _ in range(90)], [[] for _ in range(90)])
    for side in (0, 1):
        for p in range(90):
            for t in pawn[side][p]:
                pawn_att[side][t].append(p)
    return (tuple(rays), tuple(horse), tuple(map(tuple, king)), tuple(map(tuple, advisor)),
            tuple(map(tuple, elephant)), tuple(map(tuple, pawn)), tuple(tuple(a) for a in horse_att),
            tuple(tuple(tuple(a) for a in pawn_att[s]) for s in (0, 1)))


(_RAYS, _HORSE, _KING, _ADVISOR, _ELEPHANT, _PAWN, _HORSE_ATT, _PAWN_ATT) = _build_tables()
# move code (from << 7 | to) -> ICCS string; a list index is the cheapest lookup
_MOVE_NAME = [square_name(c >> 7) + square_name(c & 127) if (c & 127) < 90 and c >> 7 < 90 else ""
              for c in range(90 << 7)]


def _attacked(sq: list[int], k: int, s: int) -> bool:
    """Is square k (holding the general of the side with sign s) attacked by the other side?"""
    er, ec, ek = -s * ROOK, -s * CANNON, -s * KING
    for d, ray in enumerate(_RAYS[k]):
        screen = False
        for t in ray:
            q = sq[t]
            if q:
                if screen:
                    if q == ec:
                        return True
                    break
                if q == er or (q == ek and d < 2):  # d < 2: on the file, the generals "fly"
                    return True
                screen = True
    eh = -s * HORSE
    for h, leg in _HORSE_ATT[k]:
        if sq[h] == eh and not sq[leg]:
            return True
    ep = -s * PAWN
    for p in _PAWN_ATT[0 if s < 0 else 1][k]:
        if sq[p] == ep:
            return True
    return False


_ALL = range(90)


def _pseudo(sq: list[int], s: int, squares=_ALL) -> list[int]:
    """The moves of side s (sign) from `squares` by the piece rules, before the own-general test."""
    side = 0 if s > 0 else 1
    out = []
    add = out.append
    for i in squares:
        p = sq[i] * s
        if p <= 0:
            continue
        base = i << 7
        if p == ROOK:
            for ray in _RAYS[i]:
                for t in ray:
                    q = sq[t] * s
                    if q == 0:
                        add(base | t)
                    else:
                        if q < 0:
                            add(base | t)
                        break
        elif p == CANNON:
            for ray in _RAYS[i]:
                screen = False
                for t in ray:
                    q = sq[t] * s
                    if not screen:
                        if q == 0:
                            add(base | t)
                        else:
                            screen = True
                    elif q:
                        if q < 0:
                            add(base | t)
                        break
        elif p == HORSE:
            for leg, t in _HORSE[i]:
                if not sq[leg] and sq[t] * s <= 0:
                    add(base | t)
        elif p == PAWN:
            for t in _PAWN[side][i]:
                if sq[t] * s <= 0:
                    add(base | t)
        elif p == ELEPHANT:
            for eye, t in _ELEPHANT[side][i]:
                if not sq[eye] and sq[t] * s <= 0:
                    add(base | t)
        elif p == ADVISOR:
            for t in _ADVISOR[side][i]:
                if sq[t] * s <= 0:
                    add(base | t)
        else:  # KING
            for t in _KING[side][i]:
                if sq[t] * s <= 0:
                    add(base | t)
    return out


def _relation(k: int) -> tuple[int, ...]:
    """How each square relates to a general on k: 1-4 on its ray 0-3 (rank or file: rooks, cannons
    and their screens, the facing general), 5 a diagonal neighbour (a horse leg), 0 neither."""
    rel = [0] * 90
    for d, ray in enumerate(_RAYS[k]):
        for x in ray:
            rel[x] = d + 1
    for _, leg in _HORSE_ATT[k]:
        rel[leg] = 5
    return tuple(rel)


_RELATION = tuple(_relation(k) for k in range(90))
# horse squares that attack a general on k through a given leg square
_HORSE_BY_LEG = tuple({leg: tuple(h for h, lg in _HORSE_ATT[k] if lg == leg) for _, leg in _HORSE_ATT[k]}
                      for k in range(90))


def _line_attacked(sq: list[int], ray: tuple[int, ...], s: int, on_file: bool) -> bool:
    """Does an enemy (of sign s) rook, cannon, or (on the file) general attack along `ray`?"""
    screen = False
    for t in ray:
        q = sq[t]
        if q:
            if screen:
                return q == -s * CANNON
            if q == -s * ROOK or (on_file and q == -s * KING):
                return True
            screen = True
    return False


def _legal(sq: list[int], s: int, king: int) -> list[int]:
    """Legal move codes of side s whose general stands on `king`.

    In check, or for a general's move, every move is made and the general's square fully tested.
    Otherwise the general was safe before the move, so only what the move changed can expose it: the
    ray through the emptied from-square and through the filled to-square (a new cannon screen), and a
    horse leg when the from-square is a diagonal neighbour; pawn attacks never depend on occupancy.
    A capture on `to` leaves that square occupied, so it never opens a line."""
    out = []
    add = out.append
    if _attacked(sq, king, s):
        for m in _pseudo(sq, s):
            f, t = m >> 7, m & 127
            cap = sq[t]
            sq[t] = sq[f]
            sq[f] = 0
            if not _attacked(sq, t if f == king else king, s):
                add(m)
            sq[f] = sq[t]
            sq[t] = cap
        return out
    rel = _RELATION[king]
    rays = _RAYS[king]
    eh = -s * HORSE
    for m in _pseudo(sq, s):
        f, t = m >> 7, m & 127
        rf, rt = rel[f], rel[t]
        if not (rf or rt):
            add(m)
            continue
        cap = sq[t]
        sq[t] = sq[f]
        sq[f] = 0
        if f == king:
            bad = _attacked(sq, t, s)
        else:
            bad = False
            if 0 < rf < 5:
                bad = _line_attacked(sq, rays[rf - 1], s, rf < 3)
            elif rf == 5:
                for h in _HORSE_BY_LEG[king][f]:
                    if sq[h] == eh:
                        bad = True
            if not bad and 0 < rt < 5 and rt != rf:
                bad = _line_attacked(sq, rays[rt - 1], s, rt < 3)
        if not bad:
            add(m)
        sq[f] = sq[t]
        sq[t] = cap
    return out


class Board:
    """A xiangqi position with its game so far: `push` / `pop` moves in ICCS (`h2e2`)."""

    __slots__ = ("_sq", "_sign", "_kings", "_stack", "_keys", "history", "halfmove", "fullmove")

    def __init__(self, fen: str = START_FEN) -> None:
        """The position of `fen` (the start position by default)."""
        self._set_fen(fen)

    # ---- FEN -----------------------------------------------------------------------------
    @classmethod
    def from_fen(cls, fen: str) -> "Board":
        """A board from a xiangqi FEN; a malformed FEN raises ValueError naming the fault."""
        return cls(fen)

    def _set_fen(self, fen: str) -> None:
        if not isinstance(fen, str):
            raise ValueError(f"xiangqi FEN must be a string, found {type(fen).__name__}")
        fields = fen.split()
        if not fields:
            raise ValueError("xiangqi FEN is empty")
        rows = fields[0].split("/")
        if len(rows) != 10:
            raise ValueError(f"xiangqi FEN {fen!r}: expected 10 ranks separated by '/', found {len(rows)}")
        sq = [0] * 90
        for n, row in enumerate(rows):
            rank, file = 9 - n, 0
            for ch in row:
                if ch.isdigit():
                    file += int(ch)
                elif ch.lower() in _FEN_TYPES:
                    if file > 8:
                        break
                    t = _FEN_TYPES[ch.lower()]
                    sq[_sq(rank, file)] = t if ch.isupper() else -t
                    file += 1
                else:
                    raise ValueError(f"xiangqi FEN {fen!r}: unknown piece letter {ch!r} on rank {rank}")
            if file != 9:
                raise ValueError(f"xiangqi FEN {fen!r}: rank {rank} ({row!r}) covers {file} files, expected 9")
        turn = fields[1].lower() if len(fields) > 1 else "w"
        if turn not in ("w", "r", "b"):
            raise ValueError(f"xiangqi FEN {fen!r}: side to move must be 'w' (red) or 'b' (black), found {fields[1]!r}")
        kings = []
        for s, name in ((1, "red"), (-1, "black")):
            where = [i for i in range(90) if sq[i] == s * KING]
            if len(where) != 1:
                raise ValueError(f"xiangqi FEN {fen!r}: expected one {name} general, found {len(where)}")
            r, f = divmod(where[0], 9)
            if not _in_palace(0 if s > 0 else 1, r, f):
                raise ValueError(f"xiangqi FEN {fen!r}: the {name} general on {square_name(where[0])} is outside its palace")
            kings.append(where[0])
        try:
            self.halfmove = int(fields[4]) if len(fields) > 4 else 0
            self.fullmove = int(fields[5]) if len(fields) > 5 else 1
        except ValueError:
            raise ValueError(f"xiangqi FEN {fen!r}: the move counters must be integers") from None
        self._sq = sq
        self._sign = -1 if turn == "b" else 1
        self._kings = kings  # [red general square, black general square]
        self._stack = []  # (move code, captured piece, halfmove) per ply, for pop
        self._keys = [self._key()]
        self.history = []

    def fen(self) -> str:
        """The standard xiangqi FEN of this position."""
        rows = []
        for rank in range(9, -1, -1):
            row, empty = "", 0
            for file in range(9):
                p = self._sq[_sq(rank, file)]
                if not p:
                    empty += 1
                    continue
                if empty:
                    row += str(empty)
                    empty = 0
                letter = _TYPE_LETTER[abs(p)]
                row += letter.upper() if p > 0 else letter
            rows.append(row + (str(empty) if empty else ""))
        side = "w" if self._sign > 0 else "b"
        return f"{'/'.join(rows)} {side} - - {self.halfmove} {self.fullmove}"

    def __repr__(self) -> str:
        return f"Board({self.fen()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Board) and self._key() == other._key()

    __hash__ = None  # a board changes with every push: hash `fen()` instead

    def _key(self) -> tuple:
        return (self._sign, *self._sq)

    def copy(self) -> "Board":
        """An independent copy, history included."""
        b = Board.__new__(Board)
        b._sq = self._sq[:]
        b._sign = self._sign
        b._kings = self._kings[:]
        b._stack = self._stack[:]
        b._keys = self._keys[:]
        b.history = self.history[:]
        b.halfmove, b.fullmove = self.halfmove, self.fullmove
        return b

    # ---- queries ---------------------------------------------------------------------------
    @property
    def turn(self) -> str:
        """The side to move: "red" or "black"."""
        return RED if self._sign > 0 else BLACK

    def piece_at(self, square: str | int) -> str | None:
        """The FEN letter on a square (`"e0"` or an index 0-89): upper-case red, None when empty."""
        i = square if isinstance(square, int) else square_index(square)
        if not 0 <= i < 90:
            raise ValueError(f"xiangqi square index must be 0-89, found {i}")
        p = self._sq[i]
        if not p:
            return None
        letter = _TYPE_LETTER[abs(p)]
        return letter.upper() if p > 0 else letter

    def pieces(self) -> Iterator[tuple[str, str]]:
        """(square, FEN letter) for every piece, red's rank 0 first."""
        for i in range(90):
            if self._sq[i]:
                yield square_name(i), self.piece_at(i)

    def in_check(self) -> bool:
        """Is the side to move in check (incl. facing the other general)?"""
        s = self._sign
        return _attacked(self._sq, self._kings[0 if s > 0 else 1], s)

    def _legal_codes(self) -> list[int]:
        return _legal(self._sq, self._sign, self._kings[0 if self._sign > 0 else 1])

    def legal_moves(self) -> list[str]:
        """Every legal move in ICCS (`h2e2`), in generation order."""
        names = _MOVE_NAME
        return [names[m] for m in self._legal_codes()]

    def _has_legal(self) -> bool:
        return bool(self._legal_codes())

    def _code(self, move: str) -> int:
        """The code of a well-formed ICCS move, or ValueError naming it and the position."""
        try:
            f, t = parse_iccs(move)
        except ValueError as e:
            raise ValueError(f"{e} (position {self.fen()})") from None
        return f << 7 | t

    def is_legal(self, move: str) -> bool:
        """Is `move` (ICCS) legal here? A malformed string is simply not legal."""
        try:
            code = self._code(move)
        except ValueError:
            return False
        return self._is_legal_code(code)

    def _is_legal_code(self, code: int) -> bool:
        f, t = code >> 7, code & 127
        s, sq = self._sign, self._sq
        if sq[f] * s <= 0 or sq[t] * s > 0:
            return False
        if code not in _pseudo(sq, s, (f,)):
            return False
        king = self._kings[0 if s > 0 else 1]
        cap = sq[t]
        sq[t] = sq[f]
        sq[f] = 0
        ok = not _attacked(sq, t if f == king else king, s)
        sq[f] = sq[t]
        sq[t] = cap
        return ok

    def is_capture(self, move: str) -> bool:
        """Does `move` land on an enemy piece? (Legality is not checked.)"""
        code = self._code(move)
        return self._sq[code & 127] * self._sign < 0

    def gives_check(self, move: str) -> bool:
        """Would the legal `move` put the other side in check?"""
        self.push(move)
        try:
            return self.in_check()
        finally:
            self.pop()

    # ---- moves -----------------------------------------------------------------------------
    def push(self, move: str) -> None:
        """Play the ICCS `move`; ValueError naming the move and the FEN when it is not legal."""
        code = self._code(move)
        if not self._is_legal_code(code):
            raise ValueError(f"illegal xiangqi move {move!r} for {self.turn} in position {self.fen()}")
        self._make(code)
        self.history.append(_MOVE_NAME[code])

    def _make(self, code: int) -> None:
        f, t = code >> 7, code & 127
        sq, s = self._sq, self._sign
        cap = sq[t]
        self._stack.append((code, cap, self.halfmove))
        p = sq[f]
        sq[t] = p
        sq[f] = 0
        if p == s * KING:
            self._kings[0 if s > 0 else 1] = t
        self.halfmove = 0 if cap else self.halfmove + 1
        if s < 0:
            self.fullmove += 1
        self._sign = -s
        self._keys.append(self._key())

    def pop(self) -> str:
        """Take back the last move and return it (ICCS); IndexError when there is none."""
        if not self._stack:
            raise IndexError("xiangqi board: no move to take back")
        code, cap, half = self._stack.pop()
        self._keys.pop()
        f, t = code >> 7, code & 127
        sq = self._sq
        s = -self._sign  # the side that made the move
        p = sq[t]
        sq[f] = p
        sq[t] = cap
        if p == s * KING:
            self._kings[0 if s > 0 else 1] = f
        self._sign = s
        self.halfmove = half
        if s < 0:
            self.fullmove -= 1
        return self.history.pop()

    # ---- game end --------------------------------------------------------------------------
    def repetitions(self) -> int:
        """How many times the current position (placement + side to move) has occurred in this game."""
        key = self._keys[-1]
        return self._keys.count(key)

    def is_checkmate(self) -> bool:
        """In check with no legal move."""
        return self.in_check() and not self._has_legal()

    def is_stalemate(self) -> bool:
        """Not in check but no legal move (a loss in xiangqi)."""
        return not self.in_check() and not self._has_legal()

    def outcome(self) -> str | None:
        """None while the game goes on; the winner "red"/"black" when the side to move has no legal
        move (mate or stalemate); "draw" when this position occurs for the third time."""
        if not self._has_legal():
            return BLACK if self._sign > 0 else RED
        if self.repetitions() >= 3:
            return "draw"
        return None


def random_playout(rng: random.Random, plies: int, check_bias: float = 0.0) -> Board:
    """Up to `plies` seeded random legal moves from the start (fewer if the game ends); with `check_bias` a
    checking move, when there is one, is preferred with that probability (more check evasions to test)."""
    b = Board()
    for _ in range(plies):
        moves = b.legal_moves()
        if not moves:
            break
        if check_bias and rng.random() < check_bias:
            moves = [m for m in moves if b.gives_check(m)] or moves
        b.push(rng.choice(moves))
    return b


def perft(board: Board, depth: int) -> int:
    """The number of leaf positions `depth` plies ahead (the standard move-generator check)."""
    if depth < 0:
        raise ValueError(f"perft depth must be >= 0, found {depth}")
    if depth == 0:
        return 1
    b = board.copy()
    return _perft(b._sq, b._sign, b._kings, depth)


def _perft(sq: list[int], s: int, kings: list[int], depth: int) -> int:
    ki = 0 if s > 0 else 1
    king = kings[ki]
    moves = _legal(sq, s, king)
    if depth == 1:
        return len(moves)
    total = 0
    for m in moves:
        f, t = m >> 7, m & 127
        cap = sq[t]
        sq[t] = sq[f]
        sq[f] = 0
        kings[ki] = t if f == king else king
        total += _perft(sq, -s, kings, depth - 1)
        kings[ki] = king
        sq[f] = sq[t]
        sq[t] = cap
    return total
