"""Extractive reading comprehension (CMRC 2018): sliding windows, span pointers, answer merging, EM/F1.

    context ─► windows of `max_chars` characters every `stride` characters
            ─► [CLS] question [SEP] window [SEP] ─► encoder ─► GlobalPointer(1 head) over (start, end)
            ─► per window: the best context span and its score; no-answer windows point at [CLS]
            ─► per question: the span of the window that scores highest ─► characters of the context

As the bert4keras CLUE baseline (kexue.fm/archives/8739): one softmax over every (start, end)
pair of a window, [CLS]-[CLS] as the target of windows that do not hold the answer. The metric
is the CMRC 2018 evaluation's: EM after removing punctuation, F1 of the longest common substring
over a mixed segmentation (CJK characters one by one, other runs as words).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

__all__ = ["MrcExample", "Window", "WindowAnswer", "answer_tokens", "best_span", "cmrc_em", "cmrc_f1",
           "cmrc_scores", "make_windows", "merge_answers"]


@dataclass
class MrcExample:
    """A question about a context; answers are (text, character start) pairs (empty for test data)."""

    qid: str
    question: str
    context: str
    answers: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Window:
    """A slice ``context[start:end]`` of one question's context, and where the answer sits in it."""

    qid: str
    start: int
    end: int
    answer: tuple[int, int] | None = None  # [start, end) characters inside the window, None if absent


@dataclass
class WindowAnswer:
    """A window's best span in context characters [start, end), with its score."""

    qid: str
    score: float
    start: int
    end: int


def make_windows(example: MrcExample, max_chars: int, stride: int) -> list[Window]:
    """Windows of at most ``max_chars`` characters starting every ``stride`` characters, covering the context.

    The first answer (when there is one) is labelled in every window that holds it whole.
    """
    if max_chars < 1 or stride < 1:
        raise ValueError(f"make_windows: max_chars and stride must be >= 1, found {max_chars}, {stride}")
    if stride > max_chars:
        raise ValueError(f"make_windows: stride {stride} > max_chars {max_chars} would skip characters")
    answer = None
    if example.answers:
        text, start = example.answers[0]
        answer = (start, start + len(text))
    n = len(example.context)
    windows = []
    left = 0
    while True:
        right = min(left + max_chars, n)
        inside = answer is not None and left <= answer[0] and answer[1] <= right and answer[1] > answer[0]
        windows.append(Window(example.qid, left, right, (answer[0] - left, answer[1] - left) if inside else None))
        if right >= n:
            return windows
        left += stride


def answer_tokens(span: tuple[int, int], offsets: Sequence[Sequence[int]], context_tokens: Sequence[int]
                  ) -> tuple[int, int] | None:
    """(first, last) token of a [start, end) character span of the window, among ``context_tokens``.

    A boundary inside a token takes the whole token; None when truncation cut the span off.
    """
    start, end = span
    first = next((i for i in context_tokens if offsets[i][1] > start), None)
    last = next((i for i in reversed(context_tokens) if offsets[i][0] < end), None)
    if first is None or last is None or first > last or offsets[last][1] < end:
        return None
    return first, last


def best_span(scores: torch.Tensor, allowed: torch.Tensor, max_tokens: int | None = None) -> tuple[int, int, float]:
    """(start, end, score) of the best pair of a (T, T) score matrix among ``allowed`` (T,) tokens."""
    T = scores.shape[-1]
    ok = allowed.bool()
    keep = ok[:, None] & ok[None, :] & torch.ones(T, T, dtype=torch.bool, device=scores.device).triu()
    if max_tokens is not None:
        keep &= ~torch.ones(T, T, dtype=torch.bool, device=scores.device).triu(max_tokens)
    if not bool(keep.any()):
        raise ValueError("best_span: no allowed (start, end) pair")
    masked = scores.float().masked_fill(~keep, float("-inf"))
    flat = int(masked.argmax())
    return flat // T, flat % T, float(masked.view(-1)[flat])


def merge_answers(answers: Iterable[WindowAnswer], contexts: dict[str, str]) -> dict[str, str]:
    """Each question's answer text: the span of its highest-scoring window (the first one on a tie)."""
    best: dict[str, WindowAnswer] = {}
    for a in answers:
        if a.qid not in best or a.score > best[a.qid].score:
            best[a.qid] = a
    return {qid: contexts[qid][a.start:a.end] for qid, a in best.items()}


# ---- the CMRC 2018 metric ------------------------------------------------------------------

_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")  # the official list ("……" never matches a char)
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _segments(text: str, drop_punct: bool) -> list[str]:
    """CJK characters one by one, other runs split into words and punctuation marks."""
    out: list[str] = []
    run = ""
    for ch in str(text).lower().strip():
        if drop_punct and ch in _PUNCT:
            continue
        if _CJK.match(ch) or ch in _PUNCT:
            out.extend(_WORD.findall(run))
            run = ""
            out.append(ch)
        else:
            run += ch
    out.extend(_WORD.findall(run))
    return out


def _strip_punct(text: str) -> str:
    return "".join(ch for ch in str(text).lower().strip() if ch not in _PUNCT)


def _longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def cmrc_f1(prediction: str, references: Sequence[str]) -> float:
    """Best F1 over the references, on the longest common substring of the segmentations."""
    pred = _segments(prediction, drop_punct=True)
    scores = [0.0]
    for ref in references:
        gold = _segments(ref, drop_punct=True)
        common = _longest_common_substring(gold, pred)
        if common:
            p, r = common / len(pred), common / len(gold)
            scores.append(2 * p * r / (p + r))
    return max(scores)


def cmrc_em(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the prediction equals a reference once punctuation is removed and case folded."""
    pred = _strip_punct(prediction)
    return float(any(_strip_punct(r) == pred for r in references))


def cmrc_scores(predictions: dict[str, str], references: dict[str, Sequence[str]]) -> dict[str, float]:
    """Mean EM and F1 over the reference questions (a missing prediction scores 0)."""
    if not references:
        raise ValueError("cmrc_scores: no reference answers")
    em = f1 = 0.0
    for qid, refs in references.items():
        pred = predictions.get(qid, "")
        em += cmrc_em(pred, refs)
        f1 += cmrc_f1(pred, refs)
    return {"em": em / len(references), "f1": f1 / len(references)}
