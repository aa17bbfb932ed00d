"""Search strategies over any next-token scorer: greedy, sampling, and batched beam search.

A strategy talks to the model only through a `Steps` object (see below), so the same loops
drive our models with or without a KV cache and the scores users compute themselves
(autoregressive.AutoRegressiveDecoder). Rows are hypotheses: B inputs become B * k rows when
each input gets k beams or k samples; row r belongs to input r // k.

Beam search keeps, per input, `num_beams` running hypotheses ranked by summed log-probability
and a list of the `num_beams` best finished ones ranked by score / length ** length_penalty,
and stops by transformers' rules (early_stopping True / False / "never"), so that it returns
the same sequences as transformers' generate on the same scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import torch

from . import filters

# the score of a beam that must not be chosen; finite like transformers' so that sums stay finite
_UNCHOSEN = -1.0e9


class Steps(Protocol):
    """What a strategy needs from a model: next-token scores as tokens are appended."""

    def start(self) -> torch.Tensor:
        """(B, V) scores of the first new token of each input."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row (N,); return the (N, V) scores of the next one."""

    def expand(self, index: torch.Tensor) -> None:
        """Keep rows `index` (N',), in that order: turns B inputs into B * k hypotheses."""

    def reorder(self, index: torch.Tensor) -> None:
        """Like expand, for an index that only permutes rows among the hypotheses of one input."""


# a constraint: (input index, ids of that row so far) -> the token ids allowed next
AllowedTokens = Callable[[int, torch.Tensor], "Sequence[int] | torch.Tensor"]


@dataclass(frozen=True)
class DecodeOptions:
    """Every knob of a decoding run, validated once."""

    max_new_tokens: int = 20
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    allowed_tokens: AllowedTokens | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        def positive(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, found {value!r}")

        positive("max_new_tokens")
        positive("min_new_tokens", 0)
        positive("num_beams")
        positive("num_return_sequences")
        positive("no_repeat_ngram_size", 0)
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ValueError(f"num_return_sequences ({self.num_return_sequences}) cannot exceed num_beams "
                             f"({self.num_beams}): beam search returns its best finished beams")
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ValueError(f"num_return_sequences={self.num_return_sequences} with greedy decoding would repeat "
                             "one sequence; use do_sample=True or num_beams >= num_return_sequences")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, found {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 or None: off), found {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], found {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, found {self.repetition_penalty}")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', found {self.early_stopping!r}")

    @property
    def rows_per_input(self) -> int:
        return self.num_beams if self.num_beams > 1 else self.num_return_sequences


def process_scores(scores: torch.Tensor, ids: torch.Tensor, generated: int, opts: DecodeOptions, *,
                   counted: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the options' filters to next-token scores (N, V), in transformers' order.

    `ids` (N, t) are the rows so far, `generated` how many of their tokens are new, `counted`
    (N, t) the positions the repetition penalty reads (None: all).
    """
    if opts.repetition_penalty != 1.0:
        scores = filters.repetition_penalty(scores, ids, opts.repetition_penalty, counted)
    if opts.no_repeat_ngram_size:
        scores = filters.no_repeat_ngram_filter(scores, ids, opts.no_repeat_ngram_size)
    if generated < opts.min_new_tokens and opts.eos_token_ids:
        scores = filters.ban_tokens(scores, opts.eos_token_ids)
    if opts.allowed_tokens is not None:
        k = opts.rows_per_input
        scores = filters.allowed_tokens_filter(scores, [opts.allowed_tokens(r // k, ids[r]) for r in range(len(ids))])
    if opts.do_sample:
        # beams must keep a token that does not end them (transformers' rule)
        keep = len(opts.eos_token_ids) + 1 if opts.num_beams > 1 else 1
        if opts.temperature != 1.0:
            scores = filters.apply_temperature(scores, opts.temperature)
        if opts.top_k:
            scores = filters.top_k_filter(scores, opts.top_k, keep)
        if opts.top_p is not None and opts.top_p < 1.0:
            scores = filters.top_p_filter(scores, opts.top_p, keep)
    return scores


def _expand(steps: Steps, scores: torch.Tensor, prompt: torch.Tensor, counted: torch.Tensor | None,
            k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """B inputs -> B * k rows (each input's rows adjacent), in the steps object and in our tensors."""
    if k == 1:
        return scores, prompt, counted
    index = torch.arange(prompt.shape[0], device=prompt.device).repeat_interleave(k)
    steps.expand(index)
    return scores[index], prompt[index], None if counted is None else counted[index]


def sample_tokens(steps: Steps, prompt: torch.Tensor, opts: DecodeOptions, *,
                  prompt_counted: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Greedy (argmax) or sampled decoding, one (N,) tensor of new tokens per step.

    Rows that produced an end token get pad_token_id from then on; the loop stops when every
    row has ended or after max_new_tokens. The generator's return value (StopIteration.value)
    is the (N, t + steps) ids: `prompt` followed by the new tokens.
    """
    B, t0 = prompt.shape
    scores = steps.start()
    scores, prompt, prompt_counted = _expand(steps, scores, prompt, prompt_counted, opts.num_return_sequences)
    N, total = prompt.shape[0], t0 + opts.max_new_tokens
    ids = prompt.new_full((N, total), opts.pad_token_id)
    ids[:, :t0] = prompt
    counted = None
    if prompt_counted is not None:
        counted = torch.ones(N, total, dtype=torch.bool, device=ids.device)
        counted[:, :t0] = prompt_counted
    eos = torch.tensor(opts.eos_token_ids, dtype=torch.long, device=ids.device)
    ended = torch.zeros(N, dtype=torch.bool, device=ids.device)
    for step in range(opts.max_new_tokens):
        cur = t0 + step
        s = process_scores(scores.float(), ids[:, :cur], step, opts,
                           counted=None if counted is None else counted[:, :cur])
        if opts.do_sample:
            token = torch.multinomial(s.softmax(dim=-1), 1, generator=generator).squeeze(1)  # (N,)
        else:
            token = s.argmax(dim=-1)  # (N,)
        token = token.masked_fill(ended, opts.pad_token_id)
        ids[:, cur] = token
        if len(eos):
            ended |= torch.isin(token, eos)
        yield token
        if step + 1 == opts.max_new_tokens or bool(ended.all()):
            return ids[:, :cur + 1]
        scores = steps.step(token)
    return ids  # unreachable: max_new_tokens >= 1


def beam_search(steps: Steps, prompt: torch.Tensor, opts: DecodeOptions, *,
                prompt_counted: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Batched beam search (beam sampling with do_sample): (B * num_return_sequences, t + steps) ids.

    Each input's sequences come best first; finished ones shorter than the longest returned
    are padded with pad_token_id.
    """
    B, t0 = prompt.shape
    nb, n_end = opts.num_beams, len(opts.eos_token_ids)
    total = t0 + opts.max_new_tokens
    scores = steps.start()
    scores, prompt, prompt_counted = _expand(steps, scores, prompt, prompt_counted, nb)
    V, device = scores.shape[-1], prompt.device
    # candidates per input: enough that num_beams survive even if the best ones all end
    K = min(max(2, 1 + n_end) * nb, nb * V)
    in_first_nb = torch.arange(K, device=device) < nb  # only the best num_beams candidates may finish

    run_ids = prompt.new_full((B, nb, total), opts.pad_token_id)
    run_ids[:, :, :t0] = prompt.view(B, nb, t0)
    counted = None
    if prompt_counted is not None:
        counted = torch.ones(B * nb, total, dtype=torch.bool, device=device)
        counted[:, :t0] = prompt_counted
    run_scores = torch.zeros(B, nb, device=device)
    run_scores[:, 1:] = _UNCHOSEN  # the beams start as copies: let only the first one propose
    done_ids = run_ids.clone()
    done_scores = torch.full((B, nb), _UNCHOSEN, device=device)
    done_full = torch.zeros(B, nb, dtype=torch.bool, device=device)  # slot holds a finished hypothesis
    done_len = torch.zeros(B, nb, dtype=torch.long, device=device)  # its number of new tokens
    improvable = torch.ones(B, dtype=torch.bool, device=device)  # a running beam may still beat the finished
    eos = torch.tensor(opts.eos_token_ids, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device)[:, None] * nb  # (B, 1) first row of each input

    for step in range(opts.max_new_tokens):
        cur = t0 + step
        logp = torch.log_softmax(scores.float(), dim=-1)  # (B * nb, V)
        logp = process_scores(logp, run_ids.view(B * nb, total)[:, :cur], step, opts,
                              counted=None if counted is None else counted[:, :cur])
        flat = (logp.view(B, nb, V) + run_scores[..., None]).view(B, nb * V)  # summed log-probs of every extension
        if opts.do_sample:
            # K draws without replacement from softmax(flat), as Gumbel-top-k: unlike multinomial it
            # accepts rows with fewer than K possible tokens (filtered or not-yet-live beams)
            u = torch.rand(flat.shape, generator=generator, device=device).clamp_(min=1e-20)
            pick = (flat - torch.log(-torch.log(u))).topk(K, dim=-1).indices  # (B, K) in draw order
            cand_scores = flat.gather(1, pick)
        else:
            cand_scores, pick = flat.topk(K, dim=-1)  # (B, K), best first
        cand_beam, cand_token = pick // V, pick % V
        cand_ids = run_ids.gather(1, cand_beam[..., None].expand(B, K, total))  # (B, K, total)
        cand_ids[:, :, cur] = cand_token
        if cur + 1 >= total:
            ends = torch.ones(B, K, dtype=torch.bool, device=device)
        elif n_end:
            ends = torch.isin(cand_token, eos)
        else:
            ends = torch.zeros(B, K, dtype=torch.bool, device=device)

        # the best candidates that did not end keep running
        alive_scores = cand_scores + ends.float() * _UNCHOSEN
        keep = alive_scores.topk(nb, dim=-1).indices  # (B, nb)
        run_scores = alive_scores.gather(1, keep)
        run_ids = cand_ids.gather(1, keep[..., None].expand(B, nb, total))
        parent = cand_beam.gather(1, keep)  # (B, nb) beam each survivor extends

        # candidates that ended join the finished list if they rank among its best
        all_done = done_full.all(dim=1) if opts.early_stopping is True else torch.zeros_like(improvable)
        may_finish = ends & in_first_nb & (improvable & ~all_done)[:, None]
        normalised = cand_scores / float(step + 1) ** opts.length_penalty
        normalised = normalised.masked_fill(~may_finish, -torch.inf)
        merged = torch.cat((done_scores, normalised), dim=1).topk(nb, dim=-1).indices  # (B, nb)
        done_scores = torch.cat((done_scores, normalised), dim=1).gather(1, merged)
        done_ids = torch.cat((done_ids, cand_ids), dim=1).gather(1, merged[..., None].expand(B, nb, total))
        done_full = torch.cat((done_full, may_finish), dim=1).gather(1, merged)
        done_len = torch.cat((done_len, torch.full_like(cand_beam, step + 1)), dim=1).gather(1, merged)

        # can the best running beam still beat the worst finished one? (transformers' heuristic)
        if opts.early_stopping == "never" and opts.length_penalty > 0.0:
            best_len = opts.max_new_tokens  # a positive penalty favours the longest possible continuation
        else:
            best_len = step + 1
        best_possible = run_scores[:, 0] / float(best_len) ** opts.length_penalty
        worst_done = torch.where(done_full.all(dim=1), done_scores.min(dim=1).values,
                                 torch.full_like(best_possible, _UNCHOSEN))
        improvable &= best_possible > worst_done
        stop = (not bool(improvable.any()) or bool(ends.all())
                or (opts.early_stopping is True and bool(done_full.all())))
        if stop or step + 1 == opts.max_new_tokens:
            break
        steps.reorder((parent + rows).view(-1))
        scores = steps.step(run_ids[:, :, cur].reshape(-1))

    k = opts.num_return_sequences
    length = t0 + int(done_len[:, :k].max())
    return done_ids[:, :k, :length].reshape(B * k, length)


def run_to_end(tokens: Iterator[torch.Tensor],
               on_token: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Drive a sample_tokens generator to its end (calling `on_token` with each step's tokens); its final ids."""
    while True:
        try:
            new = next(tokens)
        except StopIteration as finished:
            return finished.value
        if on_token is not None:
            on_token(new)
