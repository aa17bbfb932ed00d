"""BERT's WordPiece tokenizer on the Hugging Face ``tokenizers`` Rust engine, with bert4keras's API.

The engine is assembled explicitly from a vocab.txt, the way BERT's reference tokenizer works::

    text ─► BertNormalizer ─► BertPreTokenizer ─► WordPiece ─► [CLS] A [SEP] (B [SEP]) ─► ids
            clean control chars,  split on spaces    greedy longest   type ids 0 / 1
            space out CJK chars,  and punctuation    match, "##"
            strip accents, lower                     continuations

Two truncation rules live here on purpose:

* ``__call__(..., max_length=n)`` truncates exactly as Hugging Face ``BertTokenizerFast(truncation=True)``
  (the engine's "longest_first"), so batches match transformers token for token.
* ``encode(first, second, maxlen=n)`` truncates as bert4keras's ``Tokenizer.encode`` does, so code
  ported from bert4keras gets the same ids.
"""

from __future__ import annotations

import json
import os
import re
import threading
import unicodedata
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from .text import clean_text, clean_texts, replace_surrogates
from .vocab import read_vocab_file, simplify_vocab, token_ids, write_vocab_file

VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"

# Characters that Chinese text writes without spaces around them: CJK ideographs, CJK symbols
# and punctuation (、。「」…), and full-width forms (，！？ＡＢ１). decode() removes spaces the
# engine puts next to them, since WordPiece decoding joins every word with a space.
_NO_SPACE = (
    "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
    "\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f"
)
_SPACE_NEAR_CJK = re.compile(f"(?<=[{_NO_SPACE}]) +| +(?=[{_NO_SPACE}])")


class WordPieceTokenizer:
    """BERT WordPiece tokenizer: bert4keras-style ``encode``/``rematch`` plus a batched tensor ``__call__``.

    Args:
        vocab: path of a vocab.txt (one token per line, line number = id) or the tokens in id order.
        do_lower_case: lower-case the text before matching (uncased checkpoints).
        strip_accents: remove combining marks after NFD; ``None`` follows ``do_lower_case`` as BERT does.
        tokenize_chinese_chars: make every CJK ideograph a word of its own.
        unk_token, sep_token, pad_token, cls_token, mask_token: special token names; all but the
            mask token must be in the vocabulary.
        model_max_length: longest sequence the model accepts; stored and saved, never applied silently.
        keep_tokens: original ids of this vocabulary's tokens when it was simplified (see
            :func:`plmkit.tokenizers.simplify_vocab`), else ``None``.
    """

    def __init__(
        self,
        vocab: str | os.PathLike | Sequence[str],
        *,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        model_max_length: int | None = None,
        keep_tokens: Sequence[int] | None = None,
    ) -> None:
        if isinstance(vocab, (str, os.PathLike)):
            self.vocab_file: str | None = os.fspath(vocab)
            tokens = read_vocab_file(vocab)
        else:
            self.vocab_file = None
            tokens = list(vocab)
            for i, token in enumerate(tokens):
                if not isinstance(token, str) or "\n" in token or "\r" in token or replace_surrogates(token)[1]:
                    raise ValueError(f"vocabulary entry {i} must be a str without line breaks or lone surrogates, "
                                     f"found {token!r}")
        source = self.vocab_file or "the given token list"
        if not tokens:
            raise ValueError(f"vocabulary from {source} is empty")
        self._tokens = tokens
        self._ids = token_ids(tokens)
        for field, name in (("unk_token", unk_token), ("sep_token", sep_token),
                            ("pad_token", pad_token), ("cls_token", cls_token)):
            if name not in self._ids:
                raise ValueError(f"{field}={name!r} is not in the vocabulary ({source}, {len(tokens)} tokens)")
        if keep_tokens is not None and len(keep_tokens) != len(tokens):
            raise ValueError(f"keep_tokens has {len(keep_tokens)} ids but the vocabulary has {len(tokens)} tokens")
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        self.model_max_length = model_max_length
        self.keep_tokens: list[int] | None = None if keep_tokens is None else [int(i) for i in keep_tokens]
        self.unk_token_id = self._ids[unk_token]
        self.sep_token_id = self._ids[sep_token]
        self.pad_token_id = self._ids[pad_token]
        self.cls_token_id = self._ids[cls_token]
        self.mask_token_id: int | None = self._ids.get(mask_token)
        self._special_tokens = {unk_token, sep_token, pad_token, cls_token}
        if self.mask_token_id is not None:
            self._special_tokens.add(mask_token)
        self._engine = self._build_engine()
        # The engine keeps truncation as mutable state; the lock keeps a call's setting and its
        # encoding together when several threads share one tokenizer.
        self._lock = threading.Lock()

    def _build_engine(self) -> Tokenizer:
        engine = Tokenizer(WordPiece(self._ids, unk_token=self.unk_token, continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
        engine.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=self.tokenize_chinese_chars,
            strip_accents=self.strip_accents, lowercase=self.do_lower_case)
        engine.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        engine.post_processor = processors.TemplateProcessing(
            single=f"{self.cls_token}:0 $A:0 {self.sep_token}:0",
            pair=f"{self.cls_token}:0 $A:0 {self.sep_token}:0 $B:1 {self.sep_token}:1",
            special_tokens=[(self.cls_token, self.cls_token_id), (self.sep_token, self.sep_token_id)])
        engine.decoder = decoders.WordPiece(prefix="##")
        # Registered special tokens are matched verbatim in the raw text (so "[MASK]" in a prompt
        # stays one token) and are skipped by decode; transformers' BERT tokenizer does the same.
        engine.add_special_tokens([t for t in (self.pad_token, self.unk_token, self.cls_token,
                                               self.sep_token, self.mask_token) if t in self._ids])
        return engine

    def __getstate__(self) -> dict[str, Any]:
        # Locks do not pickle; DataLoader workers started by spawn/forkserver pickle the tokenizer.
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of vocabulary lines (rows of the embedding matrix)."""
        return len(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def get_vocab(self) -> dict[str, int]:
        """A copy of the token -> id map."""
        return dict(self._ids)

    def token_to_id(self, token: str) -> int:
        """Id of a token; the [UNK] id when the token is not in the vocabulary (as bert4keras)."""
        return self._ids.get(token, self.unk_token_id)

    def id_to_token(self, token_id: int) -> str:
        """Token of an id."""
        if not 0 <= int(token_id) < len(self._tokens):
            raise IndexError(f"token id {token_id} is outside the vocabulary (0..{len(self._tokens) - 1})")
        return self._tokens[int(token_id)]

    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of several tokens."""
        return [self.token_to_id(t) for t in tokens]

    def ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """Tokens of several ids."""
        return [self.id_to_token(i) for i in ids]

    # ----------------------------------------------------------------- bert4keras API
    def _encode_one(self, text: str):
        """The engine's encoding of one text, no special tokens, never truncated."""
        # Truncation is engine state that a __call__(max_length=...) leaves set: without this reset
        # every later encode / tokenize / rematch was silently cut to that length.
        with self._lock:
            self._engine.no_truncation()
            return self._engine.encode(text, add_special_tokens=False)

    def tokenize(self, text: str, maxlen: int | None = None) -> list[str]:
        """Tokens of ``text`` wrapped in [CLS] ... [SEP]; ``maxlen`` truncates as :meth:`encode` does."""
        tokens = self._encode_one(clean_text(text, "WordPieceTokenizer.tokenize")).tokens
        n, _ = bert4keras_lengths(len(tokens), None, maxlen, 2)
        return [self.cls_token, *tokens[:n], self.sep_token]

    def encode(self, first: str, second: str | None = None, maxlen: int | None = None, *,
               max_length: int | None = None) -> tuple[list[int], list[int]]:
        """bert4keras ``Tokenizer.encode``: ``(token_ids, segment_ids)`` for ``[CLS] A [SEP] (B [SEP])``.

        Truncation to ``maxlen`` (or ``max_length``, as transformers names it) follows bert4keras
        0.11.5 (see bert4keras_lengths): while the total is too long, drop the last content
        token (the one just before its [SEP]) of the segment with more content tokens, the
        first one on a tie. (``__call__`` truncates as transformers' "longest_first", which
        splits the budget differently.)
        """
        maxlen = resolve_maxlen(maxlen, max_length)
        a = self._encode_one(clean_text(first, "WordPieceTokenizer.encode (first)")).ids
        b = None
        if second is not None:
            b = self._encode_one(clean_text(second, "WordPieceTokenizer.encode (second)")).ids
        na, nb = bert4keras_lengths(len(a), None if b is None else len(b), maxlen, 2 if b is None else 3)
        token_ids = [self.cls_token_id, *a[:na], self.sep_token_id]
        segment_ids = [0] * len(token_ids)
        if b is not None:
            token_ids += [*b[:nb], self.sep_token_id]
            segment_ids += [1] * (nb + 1)
        return token_ids, segment_ids

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Text of token ids: "##" pieces joined, no spaces around CJK characters and full-width punctuation."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects a 1-D tensor of ids, found shape {tuple(ids.shape)}")
            ids = ids.tolist()
        text = self._engine.decode([int(i) for i in ids], skip_special_tokens=skip_special)
        return _SPACE_NEAR_CJK.sub("", text)

    def rematch(self, text: str, tokens: Sequence[str]) -> list[list[int]]:
        """For each token, the indices of the characters of the original ``text`` it comes from.

        Special tokens ([CLS], [SEP], [PAD], [MASK]) get ``[]``; [UNK] gets the characters it
        replaced. Spans come from the engine's alignment, so lower-casing, accent stripping and
        removed control or zero-width characters never shift them; a span is contiguous (a removed
        character inside a word is covered) and, when accents are stripped, extends over combining
        marks that follow the token, so ``text[m[0]:m[-1] + 1]`` is the token's source text.
        ``tokens`` is normally ``tokenize(text)`` or a truncated copy; a token that does not occur,
        in order, in the tokenization of ``text`` gets ``[]``.
        """
        # One replacement character per surrogate: spans into the cleaned text index ``text`` too.
        enc = self._encode_one(clean_text(text, "WordPieceTokenizer.rematch"))
        found, spans = enc.tokens, [list(s) for s in enc.offsets]
        strips = self.do_lower_case if self.strip_accents is None else self.strip_accents
        if strips:
            for k, span in enumerate(spans):
                limit = spans[k + 1][0] if k + 1 < len(spans) else len(text)
                while span[1] < limit and unicodedata.category(text[span[1]]).startswith("M"):
                    span[1] += 1
        mapping: list[list[int]] = []
        j = 0
        for token in tokens:
            if token in self._special_tokens and token != self.unk_token:
                if j < len(found) and found[j] == token:
                    j += 1  # the same special token written literally in the text
                mapping.append([])
                continue
            k = j
            while k < len(found) and found[k] != token:
                k += 1
            if k == len(found):
                mapping.append([])
                continue
            mapping.append(list(range(spans[k][0], spans[k][1])))
            j = k + 1
        return mapping

    # ----------------------------------------------------------------- batches
    def __call__(
        self,
        texts: str | Sequence[str],
        pairs: str | Sequence[str] | None = None,
        max_length: int | None = None,
        padding: bool | str = True,
        return_offsets: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Encode a batch into long tensors ``input_ids``, ``token_type_ids``, ``attention_mask`` (B, T).

        ``pairs`` gives each text a second segment. ``max_length`` truncates exactly as
        transformers' ``BertTokenizerFast(truncation=True, max_length=...)`` ("longest_first").
        ``padding``: True or "longest" pads on the right with [PAD] to the longest sequence,
        "max_length" pads to ``max_length``, False requires equal lengths. ``return_offsets`` adds
        ``offset_mapping`` (B, T, 2): character spans in each sequence's own text, (0, 0) for
        special and padding positions.
        """
        texts_list, pairs_list = batch_inputs(texts, pairs, padding, max_length, 2 if pairs is None else 3,
                                              "WordPieceTokenizer.__call__")
        inputs: list[Any] = texts_list if pairs_list is None else list(zip(texts_list, pairs_list))

        with self._lock:
            if max_length is None:
                self._engine.no_truncation()
            else:
                self._engine.enable_truncation(max_length, stride=0, strategy="longest_first", direction="right")
            # encode_batch_fast skips offset tracking (tokenizers >= 0.21), worth ~25% when unused.
            fast = getattr(self._engine, "encode_batch_fast", None)
            if return_offsets or fast is None:
                encodings = self._engine.encode_batch(inputs)
            else:
                encodings = fast(inputs)

        ids = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        longest = int(lengths.max()) if len(ids) else 0
        width = max_length if padding == "max_length" else longest
        if padding is False and len(ids) and int(lengths.min()) != longest:
            raise ValueError(f"padding=False but sequence lengths differ ({int(lengths.min())}..{longest}); "
                             f"use padding=True")
        valid = np.arange(width) < lengths[:, None]  # (B, T) True where a real token sits
        total = int(lengths.sum())

        def scatter(rows: Sequence[Sequence[int]], fill: int) -> torch.Tensor:
            out = np.full((len(rows), width), fill, dtype=np.int64)
            out[valid] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=total)
            return torch.from_numpy(out)

        result = {"input_ids": scatter(ids, self.pad_token_id)}
        if pairs_list is None:
            result["token_type_ids"] = torch.zeros((len(ids), width), dtype=torch.long)
        else:
            result["token_type_ids"] = scatter([e.type_ids for e in encodings], 0)
        result["attention_mask"] = torch.from_numpy(valid.astype(np.int64))
        if return_offsets:
            offsets = np.zeros((len(ids), width, 2), dtype=np.int64)
            flat = np.fromiter(chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)),
                               dtype=np.int64, count=2 * total)
            offsets[valid] = flat.reshape(total, 2)  # (N, 2) spans of all real tokens
            result["offset_mapping"] = torch.from_numpy(offsets)
        return result

    # ----------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        """Settings saved to tokenizer_config.json (readable by transformers' BertTokenizer too)."""
        cfg: dict[str, Any] = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "unk_token": self.unk_token,
            "sep_token": self.sep_token,
            "pad_token": self.pad_token,
            "cls_token": self.cls_token,
            "mask_token": self.mask_token,
        }
        if self.model_max_length is not None:
            cfg["model_max_length"] = self.model_max_length
        return cfg

    def save(self, directory: str | os.PathLike) -> None:
        """Write vocab.txt and tokenizer_config.json into ``directory`` (each file atomically)."""
        os.makedirs(directory, exist_ok=True)
        write_vocab_file(os.path.join(directory, VOCAB_FILE), self._tokens)
        path = os.path.join(directory, CONFIG_FILE)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.config(), f, ensure_ascii=False, indent=2)
            f.write("\n")
        os.replace(tmp, path)

    def simplified(self, startswith: Sequence[str] | None = None) -> WordPieceTokenizer:
        """A copy over the simplified vocabulary (see ``simplify_vocab``) with ``keep_tokens`` set."""
        if startswith is None:
            startswith = [t for t in (self.pad_token, self.unk_token, self.cls_token, self.sep_token,
                                      self.mask_token) if t in self._ids]
        new_tokens, keep = simplify_vocab(self._tokens, startswith)
        if self.keep_tokens is not None:
            keep = [self.keep_tokens[i] for i in keep]  # compose with an earlier simplification
        return WordPieceTokenizer(
            new_tokens, do_lower_case=self.do_lower_case, strip_accents=self.strip_accents,
            tokenize_chinese_chars=self.tokenize_chinese_chars, unk_token=self.unk_token,
            sep_token=self.sep_token, pad_token=self.pad_token, cls_token=self.cls_token,
            mask_token=self.mask_token, model_max_length=self.model_max_length, keep_tokens=keep)

    def __repr__(self) -> str:
        return (f"WordPieceTokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
                f"strip_accents={self.strip_accents}, tokenize_chinese_chars={self.tokenize_chinese_chars}, "
                f"vocab_file={self.vocab_file!r})")


def batch_inputs(texts, pairs, padding, max_length: int | None, n_special: int,
                 where: str = "tokenizer") -> tuple[list[str], list[str] | None]:
    """The checked (texts, pairs) of a batch call, lone surrogates replaced (see .text), shared by both tokenizers."""
    texts_list = _as_text_list(texts, "texts", where)
    pairs_list = None if pairs is None else _as_text_list(pairs, "pairs", where)
    if pairs_list is not None and len(pairs_list) != len(texts_list):
        raise ValueError(f"pairs has {len(pairs_list)} texts but texts has {len(texts_list)}")
    if padding not in (True, False, "longest", "max_length"):
        raise ValueError(f"padding must be True, False, 'longest' or 'max_length', found {padding!r}")
    if padding == "max_length" and max_length is None:
        raise ValueError("padding='max_length' needs max_length")
    if max_length is not None and max_length < n_special:
        raise ValueError(f"max_length={max_length} leaves no room for the {n_special} special tokens")
    return texts_list, pairs_list


def _as_text_list(texts: str | Sequence[str], name: str, where: str) -> list[str]:
    """A list of texts (type-checked, lone surrogates replaced) from one text or several."""
    return clean_texts([texts] if isinstance(texts, str) else list(texts), where, name)


def resolve_maxlen(maxlen: int | None, max_length: int | None) -> int | None:
    """``maxlen`` (bert4keras's name) or ``max_length`` (transformers'): one of them."""
    if maxlen is not None and max_length is not None and maxlen != max_length:
        raise ValueError(f"give maxlen or max_length, not both (found {maxlen} and {max_length})")
    return maxlen if maxlen is not None else max_length


def bert4keras_lengths(na: int, nb: int | None, maxlen: int | None, n_special: int) -> tuple[int, int]:
    """Content lengths of one or two segments after bert4keras 0.11.5's ``encode`` truncation.

    bert4keras tokenizes each text with its start and end tokens, adds 1 to ``maxlen`` for a
    pair (B's start token is dropped afterwards), then pops the token before the end token of
    the longer segment, the first one on a tie, until the total fits. Both segments carry the
    same special tokens while lengths are compared, so this compares the content lengths.
    ``n_special`` is how many special tokens the final sequence holds. (Without a start token,
    bert4keras's +1 would let a pair reach ``maxlen + 1`` tokens; here the result never
    exceeds ``maxlen``.) A segment whose content is used up is left alone rather than losing
    a special token.
    """
    b = nb or 0
    if maxlen is None:
        return na, b
    if maxlen < n_special:
        raise ValueError(f"maxlen={maxlen} leaves no room for the {n_special} special tokens")
    while na + b + n_special > maxlen:
        if b == 0 or (na > 0 and na >= b):
            na -= 1
        else:
            b -= 1
    return na, b
