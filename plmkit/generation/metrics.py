"""Scores for generated text against references, and diagnostics of the decoder's outputs.

    score(predictions, references)   -> {"rouge-1", "rouge-2", "rouge-l", "bleu", "exact_match", "char_f1"}
    diagnostics(outputs, eos_token_id=..., max_new_tokens=..., texts=None, n=4)
                                      -> {"unfinished", "repeated_ngram_rate", "distinct-1", "distinct-2"}

Every value is a float in [0, 1]. ROUGE and BLEU come from well-kept libraries, not from code
written here (pip install plmkit[gen]; imported only when `score` runs):

* ROUGE: Google's `rouge-score` (https://github.com/google-research/google-research/tree/master/rouge),
  the re-implementation of ROUGE-1.5.5 that Hugging Face `evaluate` and most papers use, with its
  tokenizer replaced through its documented `tokenizer=` argument. `rouge-chinese` was the other
  candidate: a fork of the `rouge` package (pltrdy), which is known to differ from ROUGE-1.5.5
  (its ROUGE-L is a summary-level union-LCS over sentences it splits itself), with its own fixed
  Chinese handling; rouge-score's scoring is the reference one and lets us state the tokenisation
  here, in one line, instead of inheriting another package's.
* BLEU: `sacrebleu`'s corpus BLEU with its "zh" tokenizer (every Chinese character a token, the
  rest tokenised as mteval-13a), sacrebleu's 0-100 scale divided by 100.

ROUGE tokens (`char_tokens`): every CJK character, punctuation mark or other non-space character
is one token, except runs of ASCII letters and digits, which stay one token each ("GPT2", "2024")
and keep their case. Why: this is how sacrebleu's "zh" tokenizer treats the same text, so ROUGE and
BLEU count the same units; and splitting "2024" into characters would credit "2042" with four
matching unigrams. Whitespace separates tokens and is never one.

ROUGE values are the mean over examples of each pair's F1 (rouge-score scores pairs; the mean is
what `evaluate` reports without bootstrap). `char_f1` is the bag-of-characters F1 that the couplet
baseline in issue 22 reports as "character F1": the multiset overlap of non-whitespace characters,
per pair, averaged (SQuAD's token F1 on characters; two empty strings score 1, one empty 0). On
pure Chinese text it equals ROUGE-1; they differ only where ASCII words are one ROUGE token.

Diagnostics work on the token ids the decoder produced (the continuation only: slice a
decoder-only model's prompt off first). An output ends at its first end token; that token and
everything after it (the pad ids `generate` writes into finished rows) are not content, so pads
need no id of their own. An output with no end token is all content.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["score", "diagnostics", "char_tokens", "char_f1", "same_text"]

_INSTALL = "pip install plmkit[gen]"
_TOKEN = re.compile(r"[A-Za-z0-9]+|\S")  # an ASCII word / number, or any other single non-space character
# whitespace that does not separate two ASCII words: a WordPiece decode writes "12+3" as "12 + 3"
_LOOSE_SPACE = re.compile(r"(?<![A-Za-z0-9])\s+|\s+(?![A-Za-z0-9])")


def same_text(prediction: str, reference: str) -> bool:
    """Exact match up to whitespace, except the spaces that separate two ASCII words or numbers."""
    def squeeze(text: str) -> str:
        return _LOOSE_SPACE.sub("", re.sub(r"\s+", " ", text))
    return squeeze(prediction) == squeeze(reference)


def char_tokens(text: str) -> list[str]:
    """ROUGE tokens of `text`: each non-space character, except ASCII letter/digit runs kept whole."""
    return _TOKEN.findall(text)


def char_f1(prediction: str, reference: str) -> float:
    """F1 of the multisets of non-whitespace characters of a prediction and its reference."""
    p = Counter(c for c in prediction if not c.isspace())
    r = Counter(c for c in reference if not c.isspace())
    if not p or not r:
        return float(p == r)  # both empty: a perfect answer to an empty reference
    overlap = sum((p & r).values())
    return 2 * overlap / (sum(p.values()) + sum(r.values()))


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    for name, value in (("predictions", predictions), ("references", references)):
        if isinstance(value, str):
            raise TypeError(f"{name} must be a sequence of strings, one per example; found a single str")
    if len(predictions) != len(references):
        raise ValueError(f"score: {len(predictions)} predictions but {len(references)} references; "
                         "expected one reference per prediction")
    if len(predictions) == 0:
        raise ValueError("score: predictions and references are empty; expected at least one pair")
    for name, value in (("predictions", predictions), ("references", references)):
        for i, text in enumerate(value):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] must be a str; found {type(text).__name__}")


class _CharTokenizer:
    """rouge-score's tokenizer interface (an object with .tokenize(text) -> list[str])."""

    def tokenize(self, text: str) -> list[str]:
        return char_tokens(text)


def _libraries():
    try:
        from rouge_score import rouge_scorer
        import sacrebleu
    except ImportError as e:
        raise ImportError(f"plmkit.generation.metrics.score needs rouge-score and sacrebleu "
                          f"(missing: {e.name}): {_INSTALL}") from e
    return rouge_scorer, sacrebleu


def score(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F1 on characters, corpus BLEU ("zh"), exact match and character F1, each in [0, 1]."""
    _check_pairs(predictions, references)
    rouge_scorer, sacrebleu = _libraries()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_CharTokenizer())
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, references):
        pair = scorer.score(target=ref, prediction=pred)
        for key in totals:
            totals[key] += pair[key].fmeasure
    count = len(predictions)
    bleu = sacrebleu.corpus_bleu(list(predictions), [list(references)], tokenize="zh")
    return {
        "rouge-1": totals["rouge1"] / count,
        "rouge-2": totals["rouge2"] / count,
        "rouge-l": totals["rougeL"] / count,
        "bleu": bleu.score / 100.0,
        "exact_match": sum(same_text(p, r) for p, r in zip(predictions, references)) / count,
        "char_f1": sum(char_f1(p, r) for p, r in zip(predictions, references)) / count,
    }


def _content(ids: Sequence[int], stops: frozenset[int]) -> tuple[list[int], bool]:
    """The ids before the first end token, and whether there was one."""
    ids = [int(t) for t in ids]  # also takes a row of a tensor
    for i, t in enumerate(ids):
        if t in stops:
            return ids[:i], True
    return ids, False


def _ngrams(seq: Sequence, n: int) -> list[tuple]:
    return [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]


def _repeat_rate(seq: Sequence, n: int) -> float | None:
    """Share of the n-grams of seq that occurred at an earlier position of seq; None without n-grams."""
    grams = _ngrams(seq, n)
    if not grams:
        return None
    seen: set[tuple] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


def _distinct(seqs: Sequence[Sequence], n: int) -> float:
    """Distinct n-grams over all sequences / all n-grams (n-grams never cross sequences); 0 when none."""
    grams = [g for s in seqs for g in _ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def diagnostics(outputs: Sequence[Sequence[int]], *, eos_token_id: int | Sequence[int] | None,
                max_new_tokens: int, texts: Sequence[str] | None = None, n: int = 4) -> dict[str, float]:
    """Share of unfinished outputs, repeated n-gram rate, distinct-1/2 of a batch of generated token ids.

    unfinished: outputs with no end token and at least max_new_tokens ids (the decoder never stopped).
    repeated_ngram_rate: per output, the share of its token n-grams equal to an n-gram starting
    earlier in the same output (Su Jianlin, "如何应对Seq2Seq中的'根本停不下来'问题",
    https://kexue.fm/archives/7500, on decoders that repeat themselves), averaged
    over the outputs with at least n content tokens (0 when none has).
    distinct-1 / distinct-2 (Li et al. 2016, https://arxiv.org/abs/1510.03055): distinct unigrams /
    bigrams over all outputs divided by the number of unigrams / bigrams (not by the token count,
    as the paper does for both), on the non-whitespace characters of `texts` when given (one text
    per output, the decoded content), else on the content token ids.
    """
    if isinstance(outputs, (str, bytes)):
        raise TypeError("outputs must be a sequence of token id lists, one per output; found a single str")
    if len(outputs) == 0:
        raise ValueError("diagnostics: outputs is empty; expected at least one list of token ids")
    if max_new_tokens < 1:
        raise ValueError(f"diagnostics: max_new_tokens must be >= 1; found {max_new_tokens}")
    if n < 1:
        raise ValueError(f"diagnostics: n must be >= 1; found {n}")
    if texts is not None:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, one per output; found a single str")
        if len(texts) != len(outputs):
            raise ValueError(f"diagnostics: {len(outputs)} outputs but {len(texts)} texts; "
                             "expected one text per output")
    if eos_token_id is None:
        stops: frozenset[int] = frozenset()
    elif isinstance(eos_token_id, int):
        stops = frozenset([eos_token_id])
    else:
        stops = frozenset(int(t) for t in eos_token_id)

    contents, unfinished = [], 0
    for ids in outputs:
        content, ended = _content(ids, stops)
        contents.append(content)
        unfinished += not ended and len(content) >= max_new_tokens
    rates = [r for r in (_repeat_rate(c, n) for c in contents) if r is not None]
    units = contents if texts is None else [[c for c in t if not c.isspace()] for t in texts]
    return {
        "unfinished": unfinished / len(outputs),
        "repeated_ngram_rate": sum(rates) / len(rates) if rates else 0.0,
        "distinct-1": _distinct(units, 1),
        "distinct-2": _distinct(units, 2),
    }
