"""Text that cannot be encoded: lone UTF-16 surrogates ("half an emoji"), and what plmkit does with them.

JSON allows a ``\\ud83d`` escape without its partner, so a JSONL row cut in the middle of an emoji
(scraped posts truncated at a UTF-16 boundary) gives Python a ``str`` holding a lone surrogate.
No UTF-8 file and no Rust or C++ tokenizer can hold one: the ``tokenizers`` engine raises
``TypeError: TextInputSequence must be str``, sentencepiece ``List elements must be str or bytes``.

Decision: replace each surrogate by U+FFFD (the Unicode replacement character), count, and warn,
rather than refuse the text. Why:

* U+FFFD is what every lossy Unicode decoder produces for an unpaired surrogate (Python's
  ``errors="replace"``, Rust's ``String::from_utf16_lossy``, browsers' ``TextDecoder``), so users
  of transformers and bert4keras already see it for broken text.
* Half a character carries no meaning a model could use; one bad row in a million-row training
  file should not stop a run that a corrected file would train identically. BERT's normalizer
  drops U+FFFD like any invalid character, so BERT gets the same ids as transformers' Python
  ``BertTokenizer``, which drops the surrogate itself.
* The replacement is one character for one, so character offsets (``rematch``, an answer's
  ``answer_start``) into the text as the user holds it stay valid.
* It is never silent: the readers log one warning per file (count, first line) and the
  tokenizers one per call (count, first text).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

logger = logging.getLogger("plmkit.text")

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> tuple[str, int]:
    """``text`` with every UTF-16 surrogate code point replaced by U+FFFD, and how many were replaced.

    A Python ``str`` holds code points, so a surrogate in it is always unpaired (``json.loads``
    already joins a valid ``\\ud83d\\ude00`` escape pair into one character).
    """
    if _SURROGATE.search(text) is None:  # the common case: no copy
        return text, 0
    return _SURROGATE.subn(REPLACEMENT, text)


def clean_texts(texts: Sequence[str], where: str, name: str | None = "texts") -> list[str]:
    """``texts`` with surrogates replaced (see the module docstring); one warning per call that replaced any.

    ``where`` (the function) and ``name`` (the argument; None for a single text) go into messages.
    """
    out = list(texts)
    total, first, hit = 0, -1, 0
    for i, text in enumerate(out):
        if not isinstance(text, str):
            scope = "the text" if name is None else f"{name}[{i}]"
            raise TypeError(f"{where}: {scope} must be a str, found {type(text).__name__}")
        if _SURROGATE.search(text) is not None:
            out[i], n = _SURROGATE.subn(REPLACEMENT, text)
            total += n
            hit += 1
            if first < 0:
                first = i
    if total:
        scope = "the text" if name is None else f"{name}[{first}]"
        more = f" ({hit} of {len(out)} texts)" if hit > 1 else ""
        logger.warning("%s: replaced %d lone UTF-16 surrogate(s) (half a character, e.g. half an emoji) "
                       "with U+FFFD, first in %s%s", where, total, scope, more)
    return out


def clean_text(text: str, where: str) -> str:
    """One text with surrogates replaced, warning if any were."""
    return clean_texts([text], where, None)[0]


def decode_utf8(raw: bytes, source: str, *, error: type[Exception] = ValueError, bom: bool = True,
                hint: str = "re-encode the file as UTF-8", where: Callable[[int], str] = "line {}".format) -> str:
    """``raw`` decoded as UTF-8 (a leading BOM dropped when ``bom``); undecodable bytes raise ``error``
    naming ``source``, the line (as ``where(line)`` puts it), the byte offset and the bytes
    found: the one message every reader gives."""
    try:
        return raw.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise error(f"{source}: {where(line)}: bytes that are not UTF-8 at byte offset {e.start} "
                    f"({raw[e.start:e.start + 4]!r}); {hint}") from None
