"""A UCI engine for xiangqi: Debian's `fairy-stockfish` (GPL-3, run as a separate process, never linked).

    Engine(path) ─► "uci", "setoption name UCI_Variant value xiangqi", Threads 1, Hash 1 MB
    best_move(moves, nodes=200)  ─► "ucinewgame" ─► "position startpos moves ..." ─► "go nodes N" ─► ICCS move
    legal_moves(moves)           ─► "go perft 1" (the engine's own move generator, an independent oracle)

Every search starts with `ucinewgame`, which clears the hash: with one thread and a fixed node budget the
engine is then a pure function of the position, so a game replays move for move (a warm hash makes the
same position search differently once earlier searches filled it). The hash is 1 MB because clearing it is
part of every move's cost. Fairy-Stockfish: https://github.com/fairy-stockfish/Fairy-Stockfish

Fairy-Stockfish numbers xiangqi ranks 1..10 from Red's side; ICCS numbers them 0..9 (h2e2 is its h3e3).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["DEFAULT_ENGINE", "Engine", "EngineError", "find_engine", "from_engine", "to_engine"]

DEFAULT_ENGINE = "/usr/games/fairy-stockfish"
INSTALL_HINT = "install it with: apt-get install fairy-stockfish"

_ENGINE_MOVE = re.compile(r"^([a-i])(10|[1-9])([a-i])(10|[1-9])$")
_ICCS_MOVE = re.compile(r"^([a-i])([0-9])([a-i])([0-9])$")


class EngineError(OSError):
    """The engine is missing, died, or answered something a UCI engine should not (an OSError: like a missing
    file, a user fixes it by installing or pointing to the program)."""


def to_engine(move: str) -> str:
    """ICCS "h2e2" -> Fairy-Stockfish's "h3e3" (its ranks count from 1)."""
    m = _ICCS_MOVE.match(move)
    if m is None:
        raise ValueError(f"{move!r} is not an ICCS move (file a-i, rank 0-9, twice, e.g. 'h2e2')")
    return f"{m[1]}{int(m[2]) + 1}{m[3]}{int(m[4]) + 1}"


def from_engine(move: str) -> str:
    """Fairy-Stockfish's "b3b10" -> ICCS "b2b9"."""
    m = _ENGINE_MOVE.match(move)
    if m is None:
        raise EngineError(f"the engine answered {move!r}, which is not a xiangqi move in its notation")
    return f"{m[1]}{int(m[2]) - 1}{m[3]}{int(m[4]) - 1}"


def find_engine(path: str | os.PathLike | None = None) -> str:
    """The engine's path: `path` if given, else fairy-stockfish on PATH or /usr/games; an error says how to get it."""
    if path is not None:
        p = Path(path)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise EngineError(f"no executable engine at {p}; {INSTALL_HINT}")
        return str(p)
    found = shutil.which("fairy-stockfish") or (DEFAULT_ENGINE if os.access(DEFAULT_ENGINE, os.X_OK) else None)
    if found is None:
        raise EngineError(f"fairy-stockfish was not found on PATH or at {DEFAULT_ENGINE}; {INSTALL_HINT}")
    return found


class Engine:
    """One fairy-stockfish process speaking UCI, set to xiangqi, one thread; use it as a context manager."""

    def __init__(self, path: str | os.PathLike | None = None, *, hash_mb: int = 1) -> None:
        self.path = find_engine(path)
        try:
            self._proc = subprocess.Popen([self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True, bufsize=1)
        except OSError as e:
            raise EngineError(f"could not start {self.path}: {e}; {INSTALL_HINT}") from None
        self._send("uci")
        self._until(lambda line: line == "uciok")
        for name, value in (("UCI_Variant", "xiangqi"), ("Threads", 1), ("Hash", hash_mb)):
            self._send(f"setoption name {name} value {value}")
        self._ready()

    # ---- protocol ----
    def _send(self, line: str) -> None:
        try:
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise EngineError(f"{self.path} exited (code {self._proc.poll()}) while sent {line!r}") from None

    def _until(self, done) -> list[str]:
        """Lines the engine writes, up to and including the first for which done(line) holds."""
        lines = []
        while True:
            line = self._proc.stdout.readline()
            if not line:
                raise EngineError(f"{self.path} exited (code {self._proc.wait()}) before answering; "
                                  f"its last lines: {lines[-3:]}")
            line = line.strip()
            lines.append(line)
            if done(line):
                return lines

    def _ready(self) -> None:
        self._send("isready")
        self._until(lambda line: line == "readyok")

    def _position(self, moves: list[str], fen: str | None) -> None:
        where = "startpos" if fen is None else f"fen {fen}"
        tail = f" moves {' '.join(to_engine(m) for m in moves)}" if moves else ""
        self._send(f"position {where}{tail}")

    # ---- queries ----
    def best_move(self, moves: list[str], nodes: int = 200, fen: str | None = None) -> str | None:
        """The engine's move (ICCS) after `moves` from the start (or `fen`) with a cleared hash; None when the
        side to move has no legal move (checkmated or stalemated: a loss in xiangqi)."""
        if nodes < 1:
            raise ValueError(f"nodes: expected >= 1, found {nodes}")
        self._send("ucinewgame")  # clears the hash: the same position gets the same answer
        self._ready()
        self._position(moves, fen)
        self._send(f"go nodes {nodes}")
        line = self._until(lambda s: s.startswith("bestmove"))[-1]
        parts = line.split()
        if len(parts) < 2 or parts[1] in ("(none)", "0000"):
            return None
        return from_engine(parts[1])

    def legal_moves(self, moves: list[str], fen: str | None = None) -> list[str]:
        """The legal moves (ICCS, sorted) after `moves`, by the engine's own generator (`go perft 1`)."""
        self._position(moves, fen)
        self._send("go perft 1")
        lines = self._until(lambda s: s.startswith("Nodes searched"))
        return sorted(from_engine(s.split(":")[0]) for s in lines if ":" in s and _ENGINE_MOVE.match(s.split(":")[0]))

    def close(self) -> None:
        """Ask the engine to quit; kill it if it does not within a second."""
        if self._proc.poll() is None:
            try:
                self._send("quit")
                self._proc.wait(timeout=1)
            except (EngineError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
