"""generate(): decoding with our models, batched, with a KV cache.

Three model shapes, each wrapped in a `Steps` object the search strategies drive:

    decoder-only (GPT, GPT-2, any stack with application="lm")
        left-padded prompt ─► one forward fills the cache ─► one token per row per step
        returns prompt + continuation, as transformers does
    encoder-decoder (T5, mT5)
        source ─► encoder once ─► decoder from decoder_start_token_id, cross K/V projected once
        returns decoder ids from the start token, as transformers does
    UniLM seq2seq (BERT-like encoders built with application="unilm" and an MLM head)
        source = segment 0 ─► encoded once (bidirectional) ─► target tokens appended as segment 1
        returns the target tokens only (the output, as bert4keras' seq2seq decoders return it)

Without a cache (use_cache=False) every step runs the model over the whole sequence: slower,
and the reference that cached decoding must reproduce.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..modules.attention import KVCache
from ..modules.positions import PaddingAwarePositions
from ..modules.prenorm import position_ids_from_mask
from .search import AllowedTokens, DecodeOptions, beam_search, run_to_end, sample_tokens


def _cat_column(t: torch.Tensor | None, column: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else torch.cat((t, column[:, None].to(t.dtype)), dim=1)


def _left_padded(attention_mask: torch.Tensor) -> bool:
    """True when no row has a pad after a real token."""
    m = attention_mask.bool()
    return not bool((m[:, :-1] & ~m[:, 1:]).any())


class DecoderOnlySteps:
    """A causal LM over a left-padded prompt: positions count each row's real tokens from 0."""

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 token_type_ids: torch.Tensor | None, *, use_cache: bool, capacity: int) -> None:
        self.model = model
        self.ids = input_ids
        padded = attention_mask is not None and not bool(attention_mask.bool().all())
        if padded and not _left_padded(attention_mask):
            raise ValueError("decoder-only prompts must be left-padded (pads before the text, as "
                             "transformers expects): attention_mask has a 0 after a 1 in some row")
        self.mask = attention_mask.long() if padded else None
        self.positions = position_ids_from_mask(self.mask) if padded else None
        self.types = token_type_ids  # generated tokens repeat the last type (the speaker, for CDial-GPT)
        self.cache = KVCache(capacity) if use_cache else None

    def _logits(self, ids: torch.Tensor, types: torch.Tensor | None, positions: torch.Tensor | None) -> torch.Tensor:
        out = self.model(ids, token_type_ids=types, attention_mask=self.mask, position_ids=positions,
                         cache=self.cache, last_logits_only=True)
        return out.logits[:, -1]

    def start(self) -> torch.Tensor:
        return self._logits(self.ids, self.types, self.positions)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat((self.ids, tokens[:, None]), dim=1)
        if self.mask is not None:
            self.mask = _cat_column(self.mask, torch.ones_like(tokens))
            self.positions = _cat_column(self.positions, self.positions[:, -1] + 1)
        if self.types is not None:
            self.types = _cat_column(self.types, self.types[:, -1])
        if self.cache is None:
            return self._logits(self.ids, self.types, self.positions)
        last = slice(-1, None)
        return self._logits(tokens[:, None], None if self.types is None else self.types[:, last],
                            None if self.positions is None else self.positions[:, last])

    def expand(self, index: torch.Tensor) -> None:
        self.ids = self.ids[index]
        self.mask, self.positions, self.types = (None if t is None else t[index]
                                                 for t in (self.mask, self.positions, self.types))
        if self.cache is not None:
            self.cache.reorder(index)

    reorder = expand


class Seq2SeqSteps:
    """An encoder-decoder: the source is encoded once; the decoder starts from `start_id`."""

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 start_id: int, *, use_cache: bool, capacity: int) -> None:
        self.model = model
        self.source, self.mask = input_ids, attention_mask
        self.ids = torch.full((input_ids.shape[0], 1), start_id, dtype=torch.long, device=input_ids.device)
        self.cache = KVCache(capacity) if use_cache else None
        self.memory: torch.Tensor | None = None

    def _logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.decode(ids, self.memory, self.mask, cache=self.cache).logits[:, -1]

    def start(self) -> torch.Tensor:
        self.memory = self.model.encode(self.source, self.mask)  # (B, S, H)
        return self._logits(self.ids)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat((self.ids, tokens[:, None]), dim=1)
        return self._logits(self.ids if self.cache is None else tokens[:, None])

    def expand(self, index: torch.Tensor) -> None:
        self.ids, self.memory = self.ids[index], self.memory[index]
        self.mask = None if self.mask is None else self.mask[index]
        if self.cache is not None:
            self.cache.reorder(index)

    def reorder(self, index: torch.Tensor) -> None:
        # beams of one input share its encoder output: only the decoder's own state moves
        self.ids = self.ids[index]
        if self.cache is not None:
            self.cache.reorder(index, memory=False)


class UniLMSteps:
    """UniLM seq2seq on a BERT-like encoder: source in segment 0, generated target in segment 1.

    Sources are moved to the right end of their rows (pads first), so every target starts at
    the last column; absolute positions count each row's real tokens, so a padded row is
    decoded as it would be alone.
    """

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 token_type_ids: torch.Tensor | None, *, use_cache: bool, capacity: int) -> None:
        if getattr(model, "mlm", None) is None:
            raise ValueError("UniLM generation reads next-token scores from the MLM head, and this model has none: "
                             "load it with with_mlm=True")
        self.model = model
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        order = torch.argsort(mask, dim=1, stable=True)  # pads first, tokens keep their order
        self.ids, self.types, self.mask = input_ids.gather(1, order), types.gather(1, order), mask.gather(1, order)
        first = 0
        position = getattr(getattr(model, "embeddings", None), "position", None)
        if isinstance(position, PaddingAwarePositions):  # RoBERTa counts positions from pad_token_id + 1
            first = position.pad_token_id + 1
        self.positions = position_ids_from_mask(self.mask) + first
        self.cache = KVCache(capacity) if use_cache else None

    def _logits(self, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor,
                positions: torch.Tensor) -> torch.Tensor:
        out = self.model(ids, token_type_ids=types, attention_mask=mask, position_ids=positions, cache=self.cache,
                         last_logits_only=True)
        return out.logits[:, -1]

    def start(self) -> torch.Tensor:
        return self._logits(self.ids, self.types, self.mask, self.positions)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(tokens)
        self.ids = torch.cat((self.ids, tokens[:, None]), dim=1)
        self.types, self.mask = _cat_column(self.types, ones), _cat_column(self.mask, ones)
        self.positions = _cat_column(self.positions, self.positions[:, -1] + 1)
        if self.cache is None:
            return self._logits(self.ids, self.types, self.mask, self.positions)
        return self._logits(tokens[:, None], self.types[:, -1:], self.mask, self.positions[:, -1:])

    def expand(self, index: torch.Tensor) -> None:
        self.ids, self.types, self.mask, self.positions = (t[index] for t in
                                                           (self.ids, self.types, self.mask, self.positions))
        if self.cache is not None:
            self.cache.reorder(index)

    reorder = expand


def _special_ids(model: nn.Module) -> dict[str, Any]:
    """The end, pad and decoder-start ids the model's config records; None where it records none.

    Arguments given to generate() win over these. A config that names no pad id (GPT-2's) pads
    with the end id, as transformers does; the decoder starts from decoder_start_token_id, else
    from the pad id (T5's convention).
    """
    config = getattr(model, "config", None)  # any module with a config-like attribute, or none
    pad = getattr(config, "pad_token_id", None)
    start = getattr(config, "decoder_start_token_id", None)
    return {"eos": getattr(config, "eos_token_id", None), "pad": pad, "start": pad if start is None else start}


def _as_ids(value: int | Sequence[int] | None) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def _kind(model: nn.Module) -> str:
    if getattr(model, "is_encoder_decoder", False):
        return "seq2seq"
    reason = getattr(model, "cannot_generate", None)
    if reason:
        raise ValueError(reason)
    application = getattr(model, "application", None)
    if application in ("lm", "unilm"):
        return application
    raise ValueError(f"cannot generate with {type(model).__name__} (application={application!r}): build it with "
                     "application='lm' (a causal LM) or 'unilm' (seq2seq over segments), or use an encoder-decoder")


def prepare(model: nn.Module, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
            token_type_ids: torch.Tensor | None = None, max_new_tokens: int = 20, min_new_tokens: int = 0,
            num_beams: int = 1, do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
            top_p: float | None = None, repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
            length_penalty: float = 1.0, early_stopping: bool | str = False, num_return_sequences: int = 1,
            eos_token_id: int | Sequence[int] | None = None, pad_token_id: int | None = None,
            decoder_start_token_id: int | None = None, allowed_tokens: AllowedTokens | None = None,
            use_cache: bool = True) -> tuple[Any, torch.Tensor, torch.Tensor | None, DecodeOptions]:
    """Validate the arguments and build (steps, ids the strategy starts from, counted mask, options)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError(f"input_ids must be a (batch, length) tensor of token ids, found "
                         f"{type(input_ids).__name__} of shape {tuple(getattr(input_ids, 'shape', ()))}")
    for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if t is not None and t.shape != input_ids.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}; input_ids has {tuple(input_ids.shape)}")
    kind = _kind(model)
    known = _special_ids(model)
    eos = _as_ids(known["eos"]) if eos_token_id is None else _as_ids(eos_token_id)
    if pad_token_id is None:  # transformers' rule: no pad id -> pad with the end token
        pad_token_id = known["pad"] if known["pad"] is not None else (eos[0] if eos else 0)
    opts = DecodeOptions(
        max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, num_beams=num_beams, do_sample=do_sample,
        temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size, length_penalty=length_penalty, early_stopping=early_stopping,
        num_return_sequences=num_return_sequences, eos_token_ids=eos, pad_token_id=int(pad_token_id),
        allowed_tokens=allowed_tokens)
    B, S = input_ids.shape
    counted = None
    if kind == "lm":
        steps = DecoderOnlySteps(model, input_ids, attention_mask, token_type_ids, use_cache=use_cache,
                                 capacity=S + max_new_tokens)
        prompt = input_ids
        if steps.mask is not None:
            counted = steps.mask.bool()  # the repetition penalty skips left padding, as transformers' does
    elif kind == "seq2seq":
        if token_type_ids is not None:
            raise ValueError("an encoder-decoder takes no token_type_ids")
        start = decoder_start_token_id if decoder_start_token_id is not None else known["start"]
        if start is None:
            raise ValueError("decoder_start_token_id is not set and the model's config has none")
        steps = Seq2SeqSteps(model, input_ids, attention_mask, int(start), use_cache=use_cache,
                             capacity=1 + max_new_tokens)
        prompt = steps.ids
    else:
        steps = UniLMSteps(model, input_ids, attention_mask, token_type_ids, use_cache=use_cache,
                           capacity=S + max_new_tokens)
        prompt = input_ids.new_empty(B, 0)
    return steps, prompt, counted, opts


def _sampling_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if seed is None:
        return generator
    if generator is not None:
        raise ValueError("pass a torch.Generator or a seed, not both")
    return torch.Generator().manual_seed(seed)


@torch.inference_mode()
def generate(model: nn.Module, input_ids: torch.Tensor, *, max_new_tokens: int = 20, num_beams: int = 1,
             do_sample: bool = False, generator: torch.Generator | None = None, seed: int | None = None,
             streamer: Callable[[torch.Tensor], None] | None = None, **options: Any) -> torch.Tensor:
    """Generate token ids: greedy, sampling (do_sample) or beam search (num_beams > 1), batched, KV-cached.

    Returns transformers' layout: decoder-only models give prompt + continuation (B * k, S + n);
    encoder-decoders the decoder ids from the start token (B * k, 1 + n); UniLM models the
    target tokens (B * k, n); k = num_return_sequences, each input's rows adjacent, finished
    rows padded with pad_token_id. Options (keyword): attention_mask, token_type_ids,
    min_new_tokens, temperature, top_k, top_p, repetition_penalty, no_repeat_ngram_size,
    length_penalty, early_stopping (True / False / "never"), num_return_sequences,
    eos_token_id (an id or a list of stop ids; default the model's; () never stops early),
    pad_token_id, decoder_start_token_id, allowed_tokens (fn(input index, row ids so far) ->
    ids allowed next, honoured by every strategy; the row is what this function returns for
    it: the padded prompt and new tokens, the decoder ids, or the UniLM target), use_cache.
    Sampling draws from `generator`
    (or a new one seeded with `seed`). `streamer(tokens)` is called with each step's (N,) new
    tokens (greedy and sampling only; see also generate_stream).
    """
    steps, prompt, counted, opts = prepare(model, input_ids, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                           do_sample=do_sample, **options)
    generator = _sampling_generator(generator, seed)
    if opts.num_beams > 1:
        if streamer is not None:
            raise ValueError("streaming needs greedy or sampled decoding: beam search only knows its "
                             "sequences at the end (num_beams must be 1)")
        return beam_search(steps, prompt, opts, prompt_counted=counted, generator=generator)
    return run_to_end(sample_tokens(steps, prompt, opts, prompt_counted=counted, generator=generator), streamer)


def generate_stream(model: nn.Module, input_ids: torch.Tensor, *, max_new_tokens: int = 20,
                    generator: torch.Generator | None = None, seed: int | None = None,
                    **options: Any) -> Iterator[torch.Tensor]:
    """Yield each step's new tokens (N,) as they are decoded (greedy or sampling; options as generate)."""
    if options.get("num_beams", 1) > 1:
        raise ValueError("streaming needs greedy or sampled decoding: beam search only knows its "
                         "sequences at the end (num_beams must be 1)")
    with torch.inference_mode():
        steps, prompt, counted, opts = prepare(model, input_ids, max_new_tokens=max_new_tokens, **options)
        tokens = sample_tokens(steps, prompt, opts, prompt_counted=counted,
                               generator=_sampling_generator(generator, seed))
    while True:
        with torch.inference_mode():  # a consumer may run autograd between tokens: keep the mode per step
            try:
                new = next(tokens)
            except StopIteration:
                return
        yield new
