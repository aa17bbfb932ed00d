"""Word-level WordPiece: jieba words first, BERT WordPiece for the words the vocabulary lacks.

The tokenizer of T5 PEGASUS (https://kexue.fm/archives/8209, ZhuiyiTechnology/t5-pegasus) and
WoBERT: bert4keras's ``Tokenizer(vocab, do_lower_case=True, pre_tokenize=lambda s: jieba.cut(s,
HMM=False))``. Its vocab.txt holds whole Chinese words beside BERT's characters and ``##`` pieces,
so a sentence takes fewer tokens than one character per token::

    text ─► lower, strip accents ─► jieba.cut(HMM=False) ─► word in vocab? ─► keep it as one token
            (whole text, as bert4keras)                        │ no
                                                               ▼
                           BERT basic split (drop control chars, CJK chars and punctuation alone,
                           split on spaces) ─► WordPiece greedy longest match with "##" pieces

The word test is on the exact (lower-cased) string jieba returns, so "中国人民银行" is split into
characters even when "中国" and "人民" are in the vocabulary: bert4keras never re-segments.

It is :class:`WordPieceTokenizer` with a different pre-tokenizer in the same Hugging Face
``tokenizers`` engine, so encode / tokenize / rematch / decode / batched ``__call__`` / offsets all
come from there. Two things differ from bert4keras on purpose, as in :class:`WordPieceTokenizer`:
a word WordPiece cannot match is the token "[UNK]" (bert4keras keeps the word as a token string;
both give the [UNK] id), and the special tokens ([MASK], [SEP], ...) written in a text stay one
token instead of being lower-cased and split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tokenizers import NormalizedString, PreTokenizedString, Regex, Tokenizer, normalizers, pre_tokenizers

from .wordpiece import WordPieceTokenizer

__all__ = ["JiebaWordPieceTokenizer", "jieba_words"]

#: What tokenizer_config.json's "pre_tokenize" field holds for this tokenizer.
PRE_TOKENIZE_NAME = "jieba"

# BERT's punctuation: every non-alphanumeric printable ASCII character, and Unicode category P*.
_PUNCTUATION = Regex(r"[!-/:-@\[-`{-~]|\p{P}")


def jieba_words(text: str) -> Iterable[str]:
    """jieba's words of ``text`` without the HMM for unknown words, as T5 PEGASUS segments."""
    try:
        import jieba
    except ImportError as e:
        raise ImportError("the jieba word tokenizer (T5 PEGASUS, WoBERT) needs jieba: "
                          "pip install 'plmkit[zh]' (or pass pre_tokenize=None for plain WordPiece)") from e
    jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading at INFO to stderr
    return jieba.cut(text, HMM=False)


class _WordSplit:
    """The engine's pre-tokenizer: segmenter words, and BERT's basic split of words not in the vocabulary."""

    def __init__(self, vocab: dict[str, int], segment: Callable[[str], Iterable[str]], chinese_chars: bool) -> None:
        self._vocab = vocab
        self._segment = segment
        # The text is already lower-cased / accent-stripped; this only does BERT's cleaning and CJK spacing.
        self._basic = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=chinese_chars,
                                                 strip_accents=False, lowercase=False)

    def _split(self, _: int, text: NormalizedString) -> list[NormalizedString]:
        out: list[NormalizedString] = []
        start = 0
        for word in self._segment(text.normalized):
            end = start + len(word)
            piece = text[start:end]
            if text.normalized[start:end] != word:
                raise ValueError(f"the pre_tokenize function returned {word!r} at character {start}, which is not "
                                 f"the text there ({text.normalized[start:end]!r}); it must return the text's "
                                 "characters in order, split into words")
            start = end
            if word in self._vocab:
                out.append(piece)
                continue
            self._basic.normalize(piece)
            for part in piece.split(" ", "removed"):  # BertNormalizer made every space character " "
                out.extend(p for p in part.split(_PUNCTUATION, "isolated") if p.normalized)
        if start != len(text.normalized):
            raise ValueError(f"the pre_tokenize function returned words covering {start} of "
                             f"{len(text.normalized)} characters; it must return the whole text")
        return out

    def pre_tokenize(self, pretok: PreTokenizedString) -> None:
        pretok.split(self._split)


class JiebaWordPieceTokenizer(WordPieceTokenizer):
    """T5 PEGASUS / WoBERT tokenizer: jieba words in the vocabulary stay whole, others go to WordPiece.

    Takes every :class:`WordPieceTokenizer` argument, plus:

    Args:
        pre_tokenize: the word segmenter, text -> words covering the text in order; ``None`` is
            :func:`jieba_words` (``jieba.cut(text, HMM=False)``). Give a module-level function
            if the tokenizer is to be pickled (DataLoader workers).
    """

    def __init__(self, vocab: str | os.PathLike | Sequence[str], *,
                 pre_tokenize: Callable[[str], Iterable[str]] | None = None, **kwargs: Any) -> None:
        self.pre_tokenize = jieba_words if pre_tokenize is None else pre_tokenize
        super().__init__(vocab, **kwargs)

    def _build_engine(self) -> Tokenizer:
        engine = super()._build_engine()
        # bert4keras lower-cases and strips accents on the whole text before segmenting it; the
        # rest of BERT's normalisation applies only to the words that go to WordPiece.
        engine.normalizer = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False,
                                                       strip_accents=self.strip_accents,
                                                       lowercase=self.do_lower_case)
        split = _WordSplit(self._ids, self.pre_tokenize, self.tokenize_chinese_chars)
        engine.pre_tokenizer = pre_tokenizers.PreTokenizer.custom(split)
        return engine

    def __getstate__(self) -> dict[str, Any]:
        # An engine with a Python pre-tokenizer cannot be serialized; it is rebuilt on unpickling.
        state = super().__getstate__()
        del state["_engine"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._engine = self._build_engine()

    def config(self) -> dict[str, Any]:
        """tokenizer_config.json settings; ``"pre_tokenize": "jieba"`` tells ``load_tokenizer`` to reload this class."""
        cfg = super().config()
        if self.pre_tokenize is jieba_words:
            cfg["pre_tokenize"] = PRE_TOKENIZE_NAME
        return cfg

    def simplified(self, startswith: Sequence[str] | None = None) -> JiebaWordPieceTokenizer:
        """A copy over the simplified vocabulary; note bert4keras's rule drops every multi-character CJK word."""
        plain = super().simplified(startswith)
        return JiebaWordPieceTokenizer(
            plain._tokens, pre_tokenize=self.pre_tokenize, do_lower_case=self.do_lower_case,
            strip_accents=self.strip_accents, tokenize_chinese_chars=self.tokenize_chinese_chars,
            unk_token=self.unk_token, sep_token=self.sep_token, pad_token=self.pad_token,
            cls_token=self.cls_token, mask_token=self.mask_token, model_max_length=self.model_max_length,
            keep_tokens=plain.keep_tokens)

    def __repr__(self) -> str:
        return super().__repr__().replace("WordPieceTokenizer(", "JiebaWordPieceTokenizer(", 1)
