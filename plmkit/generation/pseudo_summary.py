"""PEGASUS-style pseudo-summaries: a document's most central sentences become the target, the rest the source.

    document ─► sentences (ending at 。！？；… or a newline; the ending kept, so they join back to the document)
             ─► greedy: m = round(ratio · n) times, move to the target the sentence that makes the target's
                ROUGE-L against the remaining text highest ─► (remaining sentences -> picked sentences), both
                in document order

Gap-sentence generation: Zhang et al. 2020, "PEGASUS" (arXiv:1912.08777, its Algorithm 1 "Ind-Orig"
greedy selection). The T5 PEGASUS variant (https://kexue.fm/archives/8209): the picked sentences are
removed from the source rather than masked, about a quarter of the sentences are picked, and the
score is the longest common subsequence (ROUGE-L) of the two texts' characters.

ROUGE-L F1 = 2·LCS / (|target| + |rest|), and |target| + |rest| is the document's length whichever
sentences are picked, so the greedy step maximises the LCS itself; ties go to the earliest sentence.
Whitespace is not scored (a newline ending a sentence is kept in the text, not compared).

A document of one sentence has no pseudo-summary: `pseudo_summary` returns None and
`pseudo_summary_pairs` skips it and counts it (`PairStats.too_short`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

SENTENCE_ENDS = "。！？；…\n"
# a sentence: text up to and including a run of endings (。」 closing quotes stay with their sentence)
_SENTENCE = re.compile(r"[^。！？；…\n]*[。！？；…\n]+[”’」』）)]*|[^。！？；…\n]+$")


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, each with its ending; "".join(result) == text (a blank piece joins the one before)."""
    sentences: list[str] = []
    for piece in _SENTENCE.findall(text):
        if sentences and not piece.strip():
            sentences[-1] += piece  # "\n\n" or trailing spaces: not a sentence of their own
        else:
            sentences.append(piece)
    return sentences


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of two strings.

    Bit-parallel (Allison & Dix 1986, Hyyrö 2004): one integer of |b| bits is the DP row, updated by one
    addition per character of `a`, O(|a|·|b|/64) word operations instead of the O(|a|·|b|) table."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    matches: dict[str, int] = {}
    for i, c in enumerate(b):
        matches[c] = matches.get(c, 0) | (1 << i)
    full = (1 << len(b)) - 1
    row = full
    for c in a:
        u = row & matches.get(c, 0)
        row = ((row + u) | (row - u)) & full
    return len(b) - bin(row).count("1")  # the zeros of the row are the matched positions


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of two texts by characters, whitespace ignored."""
    a, b = _chars(candidate), _chars(reference)
    return 2 * lcs_length(a, b) / (len(a) + len(b)) if a or b else 0.0


def _chars(text: str) -> str:
    return "".join(text.split())


@dataclass(frozen=True)
class PseudoSummary:
    """One document's pair: the source (sentences not picked) and the target (picked), both in document order."""

    sentences: tuple[str, ...]
    picked: tuple[int, ...]  # indices into sentences, ascending

    @property
    def source(self) -> str:
        return "".join(s for i, s in enumerate(self.sentences) if i not in self.picked)

    @property
    def target(self) -> str:
        return "".join(self.sentences[i] for i in self.picked)


def pick_sentences(sentences: list[str], count: int) -> list[int]:
    """Greedily pick `count` sentences (PEGASUS Ind-Orig greedy with ROUGE-L): each step adds the sentence that
    gives the longest common subsequence between the picked text and the remaining text; earliest on ties."""
    if not 0 < count < len(sentences):
        raise ValueError(f"count: expected 1 .. {len(sentences) - 1} for {len(sentences)} sentences, found {count}")
    chars = [_chars(s) for s in sentences]
    picked: list[int] = []
    for _ in range(count):
        best, best_score = -1, -1
        for i in range(len(sentences)):
            if i in picked:
                continue
            chosen = sorted(picked + [i])
            target = "".join(chars[j] for j in chosen)
            rest = "".join(chars[j] for j in range(len(sentences)) if j not in chosen)
            score = lcs_length(target, rest)
            if score > best_score:
                best, best_score = i, score
        picked.append(best)
    return sorted(picked)


def pseudo_summary(document: str, ratio: float = 0.25) -> PseudoSummary | None:
    """The document's pseudo-summary pair, round(ratio · sentences) of them picked (at least one, and at least one
    left); None for a document of fewer than two sentences, which has no pair."""
    if not 0 < ratio < 1:
        raise ValueError(f"ratio: expected a fraction in (0, 1), found {ratio!r}")
    sentences = [s for s in split_sentences(document)]
    if len(sentences) < 2:
        return None
    count = min(max(1, round(ratio * len(sentences))), len(sentences) - 1)
    return PseudoSummary(tuple(sentences), tuple(pick_sentences(sentences, count)))


@dataclass
class PairStats:
    """What pseudo_summary_pairs did with the documents it read."""

    documents: int = 0
    pairs: int = 0
    too_short: int = 0  # documents of one sentence (or blank): no pair possible, skipped
    examples_skipped: list[int] = field(default_factory=list)  # the first few skipped documents' indices


def pseudo_summary_pairs(documents: Iterable[str], ratio: float = 0.25,
                         stats: PairStats | None = None) -> Iterator[tuple[str, str]]:
    """(source, target) pairs of the documents; those of fewer than two sentences are skipped and counted in
    `stats`."""
    stats = stats if stats is not None else PairStats()
    for n, document in enumerate(documents):
        stats.documents += 1
        pair = pseudo_summary(document, ratio)
        if pair is None or not _chars(pair.source) or not _chars(pair.target):
            stats.too_short += 1
            if len(stats.examples_skipped) < 5:
                stats.examples_skipped.append(n)
            continue
        stats.pairs += 1
        yield pair.source, pair.target


__all__ = ["split_sentences", "lcs_length", "rouge_l", "pick_sentences", "pseudo_summary", "pseudo_summary_pairs",
           "PseudoSummary", "PairStats", "SENTENCE_ENDS"]
