"""Idiom cloze (CHID): one input per (blank, candidate), then a one-to-one assignment per passage.

    [CLS] candidate [SEP] left context ··· [unused1] ··· right context [SEP]
          (other blanks of the paragraph appear as 4 × [MASK]; the blank being filled is the marker)
    ─► encoder ─► one score per candidate ─► (blanks × candidates) scores of a passage
    ─► assign_one_to_one: every blank its own idiom, maximising the total score (Hungarian method)

The layout follows the bert4keras CLUE baseline (kexue.fm/archives/8739). The idioms of a
passage line are drawn from its candidate list without repetition, so decoding blanks
jointly beats taking each blank's argmax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["ChidBlank", "MASKS_PER_BLANK", "assign_one_to_one", "chid_inputs"]

MASKS_PER_BLANK = 4  # an idiom is 4 characters: other blanks keep their length as [MASK] tokens


@dataclass
class ChidBlank:
    """One blank of a CHID passage: its text around it, the passage's candidates, and the answer."""

    key: str  # "#idiom000123#", the key of the answer and submission dicts
    group: int  # index of the passage line: blanks of one group share candidates and are assigned jointly
    left: list[str]  # text pieces before the blank, split where other blanks sit
    right: list[str]  # text pieces after the blank, split where other blanks sit
    candidates: list[str]
    answer: int | None = None


def _pieces_ids(tokenizer, pieces: Sequence[str], mask_id: int) -> list[int]:
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        if i:
            ids.extend([mask_id] * MASKS_PER_BLANK)
        if piece:
            ids.extend(tokenizer.encode(piece)[0][1:-1])
    return ids


def chid_inputs(blank: ChidBlank, tokenizer, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input ids, segment ids) for each candidate of ``blank``, all at most ``max_length`` long."""
    mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    vocab = tokenizer.get_vocab()
    marker = vocab.get("[unused1]", tokenizer.unk_token_id)  # a token pretraining never gave a meaning
    cands = [tokenizer.encode(c)[0] for c in blank.candidates]  # [CLS] idiom [SEP]
    left = _pieces_ids(tokenizer, blank.left, mask_id)
    right = _pieces_ids(tokenizer, blank.right, mask_id)
    budget = max_length - max(len(c) for c in cands) - 2  # the marker and the final [SEP]
    if budget < 0:
        raise ValueError(f"CHID max_length={max_length} is too short for candidate idioms of "
                         f"{max(len(c) for c in cands) - 2} tokens")
    # Keep the context nearest the blank: trim the far end of the longer side first.
    cut_left = cut_right = 0
    while len(left) - cut_left + len(right) - cut_right > budget:
        if len(left) - cut_left >= len(right) - cut_right:
            cut_left += 1
        else:
            cut_right += 1
    context = left[cut_left:] + [marker] + right[:len(right) - cut_right] + [tokenizer.sep_token_id]
    return [(c + context, [0] * len(c) + [1] * len(context)) for c in cands]


def _min_cost_assignment(cost: list[list[float]]) -> list[int]:
    """Column of each row minimising the total cost; rows <= columns (shortest augmenting paths)."""
    n, m = len(cost), len(cost[0])
    u = [0.0] * (n + 1)  # row potentials
    v = [0.0] * (m + 1)  # column potentials
    owner = [0] * (m + 1)  # owner[j]: row (1-based) matched to column j; column 0 is a virtual start
    way = [0] * (m + 1)
    for row in range(1, n + 1):
        owner[0] = row
        j0 = 0
        slack = [math.inf] * (m + 1)
        used = [False] * (m + 1)
        while True:  # grow a tree of tight edges from `row` until it reaches a free column
            used[j0] = True
            i0, delta, j1 = owner[j0], math.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < slack[j]:
                        slack[j], way[j] = reduced, j0
                    if slack[j] < delta:
                        delta, j1 = slack[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    slack[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the augmenting path back to the root
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    result = [0] * n
    for j in range(1, m + 1):
        if owner[j]:
            result[owner[j] - 1] = j - 1
    return result


def assign_one_to_one(scores: Sequence[Sequence[float]]) -> list[int]:
    """Candidate of each blank, no candidate used twice, with the largest total score.

    ``scores[i][j]`` is blank i's score for candidate j. With more blanks than candidates
    (never in CHID) the candidates are assigned one-to-one to the blanks that fit them best,
    and the blanks left over take their own best candidate.
    """
    rows = [list(map(float, r)) for r in scores]
    if not rows:
        return []
    n, m = len(rows), len(rows[0])
    if any(len(r) != m for r in rows) or m == 0:
        raise ValueError(f"assign_one_to_one: expected a non-empty rectangular score matrix, found row lengths "
                         f"{[len(r) for r in rows]}")
    if any(not math.isfinite(x) for r in rows for x in r):
        raise ValueError("assign_one_to_one: scores must be finite")
    if n <= m:
        return _min_cost_assignment([[-x for x in r] for r in rows])
    by_candidate = _min_cost_assignment([[-rows[i][j] for i in range(n)] for j in range(m)])
    result = [max(range(m), key=lambda j: rows[i][j]) for i in range(n)]
    for j, i in enumerate(by_candidate):
        result[i] = j
    return result
