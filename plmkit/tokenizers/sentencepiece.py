"""SentencePiece tokenizers (ALBERT, T5, mT5) on Google's ``sentencepiece`` engine, with bert4keras's API.

    text ─► split out special tokens ─► [ALBERT: collapse spaces, ``/'' -> ", strip accents, lower]
         ─► spiece.model (its own normaliser, "▁" word prefix, unigram / BPE) ─► template ─► ids

    T5 / mT5:  A </s>            A </s> B </s>               (sentinels <extra_id_N> above the model's ids)
    ALBERT:    [CLS] A [SEP]     [CLS] A [SEP] B [SEP]       (segment ids 0 ... 0 1 ... 1)

Special tokens written in the text ("</s>", "<extra_id_0>", "[MASK]") are kept whole, as
transformers' tokenizers do. ``__call__`` truncates as transformers does with
``truncation=True`` ("longest_first"); ``encode(maxlen=)`` truncates as bert4keras's
``SpTokenizer.encode``. ``keep_tokens`` (see ``pruned``) maps ids onto a pruned vocabulary, the
tokenizer-side half of loading a model with ``from_pretrained(..., keep_tokens=...)``.
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..files import read_json_object
from .text import clean_text, clean_texts
from .wordpiece import batch_inputs, bert4keras_lengths, resolve_maxlen  # shared by both tokenizers

SPIECE_FILE = "spiece.model"
CONFIG_FILE = "tokenizer_config.json"
_SPACE = "\u2581"  # "▁", SentencePiece's word-start mark


def _engine(model_file: str):
    try:
        import sentencepiece
    except ImportError:
        raise ImportError("SentencePiece tokenizers need the 'sentencepiece' package: "
                          "pip install 'plmkit[sentencepiece]'") from None
    try:
        return sentencepiece.SentencePieceProcessor(model_file=model_file)
    except (OSError, RuntimeError) as e:
        raise ValueError(f"{model_file}: not a readable SentencePiece model ({e})") from None


class SentencePieceTokenizer:
    """A SentencePiece model wrapped in a start / end token template (see the module docstring).

    Args:
        model_file: path of the ``spiece.model``.
        start_token: token put before the first segment ("[CLS]" for ALBERT) or None (T5).
        end_token: token closing each segment ("</s>" for T5, "[SEP]" for ALBERT).
        pad_token, unk_token, mask_token: special tokens; pad and unk must exist.
        extra_ids: sentinel tokens ``<extra_id_0..N-1>`` appended above the model's pieces,
            ``<extra_id_0>`` last (T5's layout).
        do_lower_case, keep_accents, remove_space, replace_quotes: ALBERT's text preprocessing
            (lower-case, NFKD accent stripping, whitespace collapsing, ``/'' to ") before the
            model's own normaliser.
        segment_ids: whether ``__call__`` returns ``token_type_ids`` (ALBERT yes, T5 no).
        keep_tokens: original ids of a pruned vocabulary in new-id order (see ``pruned``).
        model_max_length: longest sequence the model accepts; stored and saved, never applied silently.
    """

    def __init__(self, model_file: str | os.PathLike, *, start_token: str | None, end_token: str,
                 pad_token: str = "<pad>", unk_token: str = "<unk>", mask_token: str | None = None,
                 extra_ids: int = 0, do_lower_case: bool = False, keep_accents: bool = True,
                 remove_space: bool = False, replace_quotes: bool = False, segment_ids: bool = False,
                 keep_tokens: Sequence[int] | None = None, model_max_length: int | None = None) -> None:
        self.model_file = os.fspath(model_file)
        self._sp = _engine(self.model_file)
        n = self._sp.get_piece_size()
        self._pieces = [self._sp.id_to_piece(i) for i in range(n)]
        if extra_ids < 0:
            raise ValueError(f"extra_ids must be >= 0, found {extra_ids}")
        self._ids: dict[str, int] = {p: i for i, p in enumerate(self._pieces)}
        sentinels = [f"<extra_id_{i}>" for i in range(extra_ids - 1, -1, -1)]  # <extra_id_0> gets the top id
        for token in sentinels:
            if token not in self._ids:
                self._ids[token] = len(self._pieces)
                self._pieces.append(token)
        self.start_token, self.end_token = start_token, end_token
        self.pad_token, self.unk_token, self.mask_token = pad_token, unk_token, mask_token
        self.extra_ids = extra_ids
        self.do_lower_case, self.keep_accents, self.remove_space = do_lower_case, keep_accents, remove_space
        self.replace_quotes = replace_quotes
        self.segment_ids = segment_ids
        self.model_max_length = model_max_length
        for field, token in (("end_token", end_token), ("pad_token", pad_token), ("unk_token", unk_token),
                             ("start_token", start_token)):
            if token is not None and token not in self._ids:
                raise ValueError(f"{field}={token!r} is not a piece of {self.model_file} ({n} pieces)")
        specials = [t for t in (start_token, end_token, pad_token, unk_token, mask_token) if t is not None]
        self._special = [t for t in dict.fromkeys(specials + sentinels) if t in self._ids]
        self._special_ids = {self._ids[t] for t in self._special}
        # longest first, so that a special token that contains another one wins
        self._split = re.compile("(" + "|".join(re.escape(t) for t in sorted(self._special, key=len, reverse=True))
                                 + ")")
        self.keep_tokens: list[int] | None = None
        self._to_new: np.ndarray | None = None
        if keep_tokens is not None:
            self._set_keep_tokens(keep_tokens)

    # ----------------------------------------------------------------- factories
    @classmethod
    def for_t5(cls, model_file: str | os.PathLike, *, extra_ids: int = 100, **options: Any) -> SentencePieceTokenizer:
        """T5 / mT5: ``A </s>`` (``A </s> B </s>``), 100 sentinels, no preprocessing."""
        return cls(model_file, start_token=None, end_token="</s>", extra_ids=extra_ids, **options)

    @classmethod
    def for_albert(cls, model_file: str | os.PathLike, **options: Any) -> SentencePieceTokenizer:
        """ALBERT: ``[CLS] A [SEP]`` (``[CLS] A [SEP] B [SEP]``), lower-cased, accents stripped."""
        settings = dict(start_token="[CLS]", end_token="[SEP]", mask_token="[MASK]", do_lower_case=True,
                        keep_accents=False, remove_space=True, replace_quotes=True, segment_ids=True)
        settings.update(options)
        return cls(model_file, **settings)

    # ----------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Rows of the embedding matrix this tokenizer indexes (pieces + sentinels, or the pruned count)."""
        return len(self.keep_tokens) if self.keep_tokens is not None else len(self._pieces)

    def __len__(self) -> int:
        return self.vocab_size

    def _new_id(self, old: int) -> int:
        return old if self._to_new is None else int(self._to_new[old])

    def _old_id(self, new: int) -> int:
        if not 0 <= new < self.vocab_size:
            raise IndexError(f"token id {new} is outside the vocabulary (0..{self.vocab_size - 1})")
        return new if self.keep_tokens is None else self.keep_tokens[new]

    def token_to_id(self, token: str) -> int:
        """Id of a piece or special token; the unk id for anything else."""
        return self._new_id(self._ids.get(token, self._ids[self.unk_token]))

    def id_to_token(self, token_id: int) -> str:
        """Piece (or special token) of an id."""
        return self._pieces[self._old_id(int(token_id))]

    @property
    def pad_token_id(self) -> int:
        """Id used for padding."""
        return self.token_to_id(self.pad_token)

    @property
    def end_token_id(self) -> int:
        """Id of the token closing each segment (T5's eos, ALBERT's [SEP])."""
        return self.token_to_id(self.end_token)

    @property
    def unk_token_id(self) -> int:
        """Id of unknown text."""
        return self.token_to_id(self.unk_token)

    # ----------------------------------------------------------------- text -> ids
    def _preprocess(self, text: str) -> str:
        if self.remove_space:
            text = " ".join(text.split())
        if self.replace_quotes:
            text = text.replace("``", '"').replace("''", '"')
        if not self.keep_accents:
            text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        return text.lower() if self.do_lower_case else text

    def _pieces_of(self, texts: Sequence[str], where: str, name: str | None = None) -> list[list[int]]:
        """Original ids of each text's pieces, special tokens in the text kept whole, no template.

        Lone surrogates become U+FFFD with a warning (see plmkit.tokenizers.text); ``where`` and
        ``name`` say in that warning which call and argument held them.
        """
        texts = clean_texts(texts, where, name)
        chunks: list[str] = []
        layout: list[list[int | str]] = []  # per text: chunk indices (int) and special tokens (str)
        for text in texts:
            parts: list[int | str] = []
            for k, part in enumerate(self._split.split(text) if self._special else [text]):
                if k % 2:
                    parts.append(part)
                elif part:
                    parts.append(len(chunks))
                    chunks.append(self._preprocess(part))
            layout.append(parts)
        encoded = self._sp.encode(chunks, out_type=int) if chunks else []
        return [[i for p in parts for i in ([self._ids[p]] if isinstance(p, str) else encoded[p])]
                for parts in layout]

    def _template(self, a: list[int], b: list[int] | None) -> tuple[list[int], list[int]]:
        """Old ids -> (new ids, segment ids) with the start / end tokens around each segment."""
        start = [self._ids[self.start_token]] if self.start_token is not None else []
        end = [self._ids[self.end_token]]
        ids = start + a + end
        segments = [0] * len(ids)
        if b is not None:
            ids += b + end
            segments += [1] * (len(b) + 1)
        if self._to_new is not None:
            ids = self._to_new[np.asarray(ids, dtype=np.int64)].tolist()
        return ids, segments

    def _n_special(self, pair: bool) -> int:
        return (self.start_token is not None) + 1 + pair

    def tokenize(self, text: str, maxlen: int | None = None) -> list[str]:
        """Pieces of ``text`` inside the template; ``maxlen`` truncates as :meth:`encode` does."""
        ids, _ = self.encode(text, maxlen=maxlen)
        return [self.id_to_token(i) for i in ids]

    def encode(self, first: str, second: str | None = None, maxlen: int | None = None, *,
               max_length: int | None = None) -> tuple[list[int], list[int]]:
        """(token_ids, segment_ids) as bert4keras's ``SpTokenizer.encode``, including its truncation
        (wordpiece.bert4keras_lengths); ``max_length`` is another name for ``maxlen``."""
        maxlen = resolve_maxlen(maxlen, max_length)
        first = clean_text(first, "SentencePieceTokenizer.encode (first)")
        if second is not None:
            second = clean_text(second, "SentencePieceTokenizer.encode (second)")
        pieces = self._pieces_of([first] if second is None else [first, second], "SentencePieceTokenizer.encode")
        a, b = pieces[0], (pieces[1] if second is not None else None)
        if maxlen is not None:
            na, nb = bert4keras_lengths(len(a), None if b is None else len(b), maxlen,
                                        (self.start_token is not None) + 1 + (b is not None))
            a, b = a[:na], (None if b is None else b[:nb])
        return self._template(a, b)

    def __call__(self, texts: str | Sequence[str], pairs: str | Sequence[str] | None = None,
                 max_length: int | None = None, padding: bool | str = True) -> dict[str, torch.Tensor]:
        """Encode a batch into long tensors ``input_ids``, ``attention_mask`` (B, T) (+ ``token_type_ids`` for ALBERT).

        ``max_length`` truncates exactly as transformers' ``truncation=True`` ("longest_first");
        ``padding``: True or "longest" pads on the right to the longest sequence, "max_length"
        pads to ``max_length``, False requires equal lengths.
        """
        n_special = self._n_special(pairs is not None)
        texts_list, pairs_list = batch_inputs(texts, pairs, padding, max_length, n_special,
                                              "SentencePieceTokenizer.__call__")
        pieces = self._pieces_of(texts_list + (pairs_list or []), "SentencePieceTokenizer.__call__")
        rows, segments = [], []
        for k in range(len(texts_list)):
            a = pieces[k]
            b = pieces[len(texts_list) + k] if pairs_list is not None else None
            if max_length is not None:
                na, nb = _longest_first(len(a), None if b is None else len(b), max_length - n_special)
                a, b = a[:na], (None if b is None else b[:nb])
            ids, segs = self._template(a, b)
            rows.append(ids)
            segments.append(segs)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        longest = int(lengths.max()) if rows else 0
        width = max_length if padding == "max_length" else longest
        if padding is False and rows and int(lengths.min()) != longest:
            raise ValueError(f"padding=False but sequence lengths differ ({int(lengths.min())}..{longest}); "
                             "use padding=True")
        valid = np.arange(width) < lengths[:, None]  # (B, T) True where a real token sits

        def scatter(values: list[list[int]], fill: int) -> torch.Tensor:
            out = np.full((len(values), width), fill, dtype=np.int64)
            out[valid] = np.fromiter((i for row in values for i in row), dtype=np.int64, count=int(lengths.sum()))
            return torch.from_numpy(out)

        result = {"input_ids": scatter(rows, self.pad_token_id)}
        if self.segment_ids:
            result["token_type_ids"] = scatter(segments, 0)
        result["attention_mask"] = torch.from_numpy(valid.astype(np.int64))
        return result

    # ----------------------------------------------------------------- ids -> text
    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Text of token ids; special tokens (sentinels included) are dropped unless skip_special=False."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects a 1-D tensor of ids, found shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out: list[str] = []
        run: list[int] = []

        def flush() -> None:
            if run:
                text = self._sp.decode(run)
                # the engine drops the word mark of a run's first piece; keep it as a space mid-text
                out.append(" " + text if out and self._pieces[run[0]].startswith(_SPACE) else text)
                run.clear()

        for new in ids:
            old = self._old_id(int(new))
            if old in self._special_ids:
                flush()
                if not skip_special:
                    out.append(self._pieces[old])
            else:
                run.append(old)
        flush()
        return "".join(out)

    # ----------------------------------------------------------------- vocabulary pruning
    def _set_keep_tokens(self, keep_tokens: Sequence[int]) -> None:
        keep = [int(i) for i in keep_tokens]
        bad = [i for i in keep if not 0 <= i < len(self._pieces)]
        if bad:
            raise ValueError(f"keep_tokens holds ids outside the vocabulary of {len(self._pieces)}: {bad[:5]}")
        if len(set(keep)) != len(keep):
            raise ValueError("keep_tokens lists an id twice")
        missing = [t for t in (self.unk_token, self.pad_token, self.end_token, self.start_token)
                   if t is not None and self._ids[t] not in keep]
        if missing:
            raise ValueError(f"keep_tokens must keep the special tokens {missing}")
        to_new = np.full(len(self._pieces), keep.index(self._ids[self.unk_token]), dtype=np.int64)
        to_new[keep] = np.arange(len(keep))  # pieces outside the kept set become unk
        self.keep_tokens, self._to_new = keep, to_new

    def used_token_ids(self, texts: Iterable[str], always: Iterable[str] = ()) -> list[int]:
        """Original ids the texts use, specials and `always` tokens first: a keep_tokens list for pruning."""
        first = [self._ids[t] for t in self._special if not t.startswith("<extra_id_")]
        first += [self._ids[t] for t in always]
        seen = set(first)
        used = sorted({i for ids in self._pieces_of(list(texts), "SentencePieceTokenizer.used_token_ids")
                       for i in ids} - seen)
        return list(dict.fromkeys(first)) + used

    def pruned(self, keep_tokens: Sequence[int]) -> SentencePieceTokenizer:
        """A copy whose ids index a vocabulary cut down to `keep_tokens` (original ids, new-id order)."""
        return type(self)(self.model_file, **{**self._settings(), "keep_tokens": keep_tokens})

    # ----------------------------------------------------------------- persistence
    def _settings(self) -> dict[str, Any]:
        return dict(start_token=self.start_token, end_token=self.end_token, pad_token=self.pad_token,
                    unk_token=self.unk_token, mask_token=self.mask_token, extra_ids=self.extra_ids,
                    do_lower_case=self.do_lower_case, keep_accents=self.keep_accents,
                    remove_space=self.remove_space, replace_quotes=self.replace_quotes,
                    segment_ids=self.segment_ids,
                    keep_tokens=self.keep_tokens, model_max_length=self.model_max_length)

    def config(self) -> dict[str, Any]:
        """Settings saved to tokenizer_config.json (transformers reads the T5 / ALBERT fields)."""
        albert = self.start_token is not None
        cfg: dict[str, Any] = {"tokenizer_class": "AlbertTokenizer" if albert else "T5Tokenizer",
                               "unk_token": self.unk_token, "pad_token": self.pad_token}
        if albert:
            cfg.update(do_lower_case=self.do_lower_case, keep_accents=self.keep_accents,
                       remove_space=self.remove_space, cls_token=self.start_token, sep_token=self.end_token,
                       mask_token=self.mask_token)
        else:
            cfg.update(eos_token=self.end_token, extra_ids=self.extra_ids)
        if self.model_max_length is not None:
            cfg["model_max_length"] = self.model_max_length
        if self.keep_tokens is not None:
            cfg["keep_tokens"] = self.keep_tokens  # plmkit's field: transformers does not prune
        return cfg

    def save(self, directory: str | os.PathLike) -> None:
        """Write spiece.model and tokenizer_config.json into ``directory`` (each file atomically)."""
        os.makedirs(directory, exist_ok=True)
        with open(self.model_file, "rb") as f:
            model = f.read()
        for name, data in ((SPIECE_FILE, model),
                           (CONFIG_FILE, (json.dumps(self.config(), ensure_ascii=False, indent=2) + "\n").encode())):
            path = os.path.join(directory, name)
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)

    def __repr__(self) -> str:
        kind = "albert" if self.start_token is not None else "t5"
        return (f"SentencePieceTokenizer({kind}, vocab_size={self.vocab_size}, extra_ids={self.extra_ids}, "
                f"model_file={self.model_file!r})")


def _longest_first(na: int, nb: int | None, budget: int) -> tuple[int, int]:
    """Content lengths kept by transformers' "longest_first" truncation to `budget` content tokens.

    The shorter sequence (the first one on a tie) keeps at most half the budget, rounded down;
    the other gets the rest. This is what the `tokenizers` engine does, not a token-by-token loop.
    """
    if nb is None:
        return min(na, budget), 0
    if na + nb <= budget:
        return na, nb
    if na > nb:
        kept_b = min(nb, budget // 2)
        return budget - kept_b, kept_b
    kept_a = min(na, budget // 2)
    return kept_a, budget - kept_a


# ---- loading from a directory -----------------------------------------------------------------

_T5_CLASSES = ("T5Tokenizer", "T5TokenizerFast", "MT5Tokenizer", "MT5TokenizerFast")
_ALBERT_CLASSES = ("AlbertTokenizer", "AlbertTokenizerFast")


def _kind(model_file: str, tok_cfg: dict[str, Any], directory: str) -> str:
    """'t5' or 'albert': from tokenizer_config.json, else config.json's model_type, else the pieces."""
    cls = tok_cfg.get("tokenizer_class")
    if cls in _T5_CLASSES:
        return "t5"
    if cls in _ALBERT_CLASSES:
        return "albert"
    config_path = os.path.join(directory, "config.json")
    if os.path.isfile(config_path):
        model_type = read_json_object(config_path).get("model_type")
        if model_type in ("t5", "mt5"):
            return "t5"
        if model_type == "albert":
            return "albert"
    sp = _engine(model_file)
    pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    if {"[CLS]", "[SEP]"} <= pieces:
        return "albert"
    if "</s>" in pieces:
        return "t5"
    raise ValueError(f"{model_file}: cannot tell whether this is a T5 or an ALBERT SentencePiece model "
                     "(no tokenizer_config.json / config.json naming it, and neither [CLS]/[SEP] nor </s> "
                     "among its pieces); pass kind='t5' or kind='albert'")


def load_sentencepiece(model_file: str | os.PathLike, kind: str | None = None,
                       **overrides: Any) -> SentencePieceTokenizer:
    """The tokenizer of a ``spiece.model``, set up for T5 / mT5 or ALBERT (``kind``, else detected).

    Settings come from tokenizer_config.json beside the model when present (extra_ids,
    do_lower_case, keep_accents, remove_space, model_max_length, keep_tokens); ``overrides`` win.
    """
    model_file = os.fspath(model_file)
    directory = os.path.dirname(model_file) or "."
    config_path = os.path.join(directory, CONFIG_FILE)
    tok_cfg = read_json_object(config_path) if os.path.isfile(config_path) else {}
    kind = kind or _kind(model_file, tok_cfg, directory)
    if kind not in ("t5", "albert"):
        raise ValueError(f"kind must be 't5' or 'albert', found {kind!r}")
    fields = {"t5": {"extra_ids": int}, "albert": {"do_lower_case": bool, "keep_accents": bool, "remove_space": bool}}
    settings: dict[str, Any] = {}
    for field, typ in {**fields[kind], "model_max_length": int, "keep_tokens": list}.items():
        if field in tok_cfg and tok_cfg[field] is not None:
            value = tok_cfg[field]
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise ValueError(f"{config_path}: field {field!r} must be {typ.__name__}, found {value!r}")
            if field == "model_max_length" and value >= 10**12:  # transformers' "no limit"
                continue
            settings[field] = value
    settings.update(overrides)
    factory = SentencePieceTokenizer.for_t5 if kind == "t5" else SentencePieceTokenizer.for_albert
    return factory(model_file, **settings)


__all__ = ["SentencePieceTokenizer", "load_sentencepiece", "SPIECE_FILE"]
