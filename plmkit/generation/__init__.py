"""Decoding: greedy, beam search and sampling, batched, with a KV cache (see decoding.generate).

    generate(model, input_ids, max_new_tokens=..., num_beams=1, do_sample=False, ...)
    generate_stream(model, input_ids, ...)            # yields each step's new tokens
    AutoRegressiveDecoder                              # bert4keras-style: you supply next-token scores
    filters.*                                          # logits filters as pure functions
    metrics.score / metrics.diagnostics                # ROUGE, BLEU, char F1 (plmkit[gen]); decoder checks
"""
from . import filters, metrics
from .autoregressive import AutoRegressiveDecoder
from .decoding import generate, generate_stream
from .search import DecodeOptions

__all__ = ["generate", "generate_stream", "AutoRegressiveDecoder", "DecodeOptions", "filters", "metrics"]
