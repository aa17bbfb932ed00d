"""AutoRegressiveDecoder: bert4keras' decoder for models you score yourself, batched.

Subclass it and define `predict(inputs, output_ids, states)`: the inputs (a tuple of
batch-first tensors, one row per hypothesis), the ids decoded so far (N, t), and whatever
state you returned last time; return the next-token scores (N, V), or (scores, new_states).
Greedy search, beam search and sampling then run over whole batches:

    class Titles(AutoRegressiveDecoder):
        def predict(self, inputs, output_ids, states):
            source, = inputs
            return my_model(source, output_ids)[:, -1]          # (N, V) logits

    titles = Titles(start_id=None, end_id=sep_id, maxlen=32)
    ids = titles.beam_search([source_ids], topk=4)             # (B, t) best hypothesis per input

Tensors in `inputs` and `states` (also inside tuples, lists, dicts, and KVCache objects) are
reordered with the hypotheses; other state values are passed back unchanged.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch

from ..modules.attention import KVCache
from .search import DecodeOptions, beam_search, run_to_end, sample_tokens


def select_rows(obj: Any, index: torch.Tensor) -> Any:
    """Rows `index` of every batch-first tensor in a (nested) structure; other values unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj.index_select(0, index.to(obj.device))
    if isinstance(obj, KVCache):
        obj.reorder(index)
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(select_rows(o, index) for o in obj)
    if isinstance(obj, dict):
        return {k: select_rows(v, index) for k, v in obj.items()}
    return obj


class _UserSteps:
    """Steps over the user's predict(): keeps inputs, output ids and states row-aligned."""

    def __init__(self, decoder: AutoRegressiveDecoder, inputs: tuple, output_ids: torch.Tensor, states: Any) -> None:
        self.decoder, self.inputs, self.output_ids, self.states = decoder, inputs, output_ids, states

    def _scores(self) -> torch.Tensor:
        result = self.decoder.predict(self.inputs, self.output_ids, self.states)
        if isinstance(result, tuple) and len(result) == 2:
            result, self.states = result
        if not isinstance(result, torch.Tensor) or result.dim() != 2 or result.shape[0] != self.output_ids.shape[0]:
            raise ValueError(f"{type(self.decoder).__name__}.predict must return ({self.output_ids.shape[0]}, vocab) "
                             f"scores, found {type(result).__name__} {tuple(getattr(result, 'shape', ()))}")
        kind = self.decoder.scores
        return result.float().log() if kind == "probas" else result  # log is monotone: same argmax, same softmax

    def start(self) -> torch.Tensor:
        return self._scores()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.output_ids = torch.cat((self.output_ids, tokens[:, None]), dim=1)
        return self._scores()

    def expand(self, index: torch.Tensor) -> None:
        self.inputs = select_rows(self.inputs, index)
        self.output_ids = self.output_ids[index]
        self.states = select_rows(self.states, index)

    reorder = expand


class AutoRegressiveDecoder:
    """Batched greedy / beam / sampled decoding over scores that `predict` computes.

    start_id: first output token (None: start from nothing); end_id: an id or list of ids
    that end a sequence; maxlen / minlen: most / fewest tokens to generate; `scores`: what
    predict returns, "logits" (default), "logprobs" or "probas". Every search returns
    (rows, t) ids (the start token first, when there is one), padded with pad_id.
    """

    def __init__(self, start_id: int | None, end_id: int | Sequence[int] | None, maxlen: int, minlen: int = 0, *,
                 pad_id: int = 0, scores: str = "logits") -> None:
        if scores not in ("logits", "logprobs", "probas"):
            raise ValueError(f"scores must be 'logits', 'logprobs' or 'probas', found {scores!r}")
        self.start_id = start_id
        self.end_ids = () if end_id is None else ((end_id,) if isinstance(end_id, int) else tuple(end_id))
        self.maxlen, self.minlen, self.pad_id, self.scores = maxlen, minlen, pad_id, scores

    def predict(self, inputs: tuple, output_ids: torch.Tensor, states: Any) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """Next-token scores (N, V) for each row, or (scores, states). Define this in a subclass."""
        raise NotImplementedError(f"{type(self).__name__} must define predict(inputs, output_ids, states)")

    def _run(self, inputs: Any, states: Any, options: dict[str, Any]):
        inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        if not inputs or not isinstance(inputs[0], torch.Tensor):
            raise ValueError("inputs must be a tensor or a sequence of batch-first tensors")
        B, device = inputs[0].shape[0], inputs[0].device
        first = torch.full((B, 0 if self.start_id is None else 1), self.start_id or 0, dtype=torch.long,
                           device=device)
        opts = DecodeOptions(max_new_tokens=self.maxlen, min_new_tokens=self.minlen, eos_token_ids=self.end_ids,
                             pad_token_id=self.pad_id, **options)
        return _UserSteps(self, inputs, first, states), first, opts

    @torch.inference_mode()
    def greedy_search(self, inputs: Any, states: Any = None, **options: Any) -> torch.Tensor:
        """The highest-scoring next token at every step: (B, t)."""
        steps, first, opts = self._run(inputs, states, options)
        return run_to_end(sample_tokens(steps, first, opts))

    @torch.inference_mode()
    def beam_search(self, inputs: Any, topk: int, states: Any = None, **options: Any) -> torch.Tensor:
        """Beam search with `topk` beams (bert4keras' name): (B * num_return_sequences, t), best first.

        Options: length_penalty, early_stopping, num_return_sequences, repetition_penalty,
        no_repeat_ngram_size, allowed_tokens, do_sample (beam sampling) with generator.
        """
        generator = options.pop("generator", None)
        steps, first, opts = self._run(inputs, states, {**options, "num_beams": topk})
        return beam_search(steps, first, opts, generator=generator)

    @torch.inference_mode()
    def random_sample(self, inputs: Any, n: int, topk: int | None = None, topp: float | None = None,
                      states: Any = None, temperature: float = 1.0, generator: torch.Generator | None = None,
                      **options: Any) -> torch.Tensor:
        """`n` samples per input (B * n, t), each input's adjacent; topk / topp filter the distribution."""
        steps, first, opts = self._run(inputs, states, {**options, "do_sample": True, "num_return_sequences": n,
                                                        "top_k": topk, "top_p": topp, "temperature": temperature})
        return run_to_end(sample_tokens(steps, first, opts, generator=generator))

    def stream(self, inputs: Any, states: Any = None, generator: torch.Generator | None = None,
               **options: Any) -> Iterator[torch.Tensor]:
        """Yield each step's new tokens (N,) as they come (greedy, or sampling with do_sample=True)."""
        with torch.inference_mode():
            steps, first, opts = self._run(inputs, states, options)
            tokens = sample_tokens(steps, first, opts, generator=generator)
        while True:
            with torch.inference_mode():
                try:
                    new = next(tokens)
                except StopIteration:
                    return
            yield new

