"""Sentence similarity: whitening, CAN post-processing, contrastive losses with exact accumulation, retrieval.

    from plmkit.similarity import fit_whitening, can_correct, accumulated_backward, VectorIndex

The SimBERT / RoFormer-Sim training recipe and gen_synonyms live in plmkit.recipes.simbert.
"""
from .can import can_correct, topk_uncertainty
from .contrastive import accumulated_backward, paired_contrastive_loss, paired_similarity_labels, simcse_loss
from .retrieval import (
    SentenceIndex,
    VectorIndex,
    build_sentence_index,
    load_sentence_index,
    query_sentence_index,
    retrieval_metrics,
)
from .whitening import Whitening, fit_whitening

__all__ = [
    "Whitening", "fit_whitening",
    "can_correct", "topk_uncertainty",
    "accumulated_backward", "paired_contrastive_loss", "paired_similarity_labels", "simcse_loss",
    "VectorIndex", "SentenceIndex", "retrieval_metrics",
    "build_sentence_index", "load_sentence_index", "query_sentence_index",
]
