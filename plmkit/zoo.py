"""Models that ship inside the package."""
from __future__ import annotations

from pathlib import Path

EMBEDDED = Path(__file__).parent / "pretrained_models" / "tiny-zh-char-bert"


def embedded_model_dir() -> Path:
    """The embedded small Chinese BERT (character vocabulary); see README for what it is."""
    if not (EMBEDDED / "config.json").exists():
        raise FileNotFoundError(f"the embedded model is missing from {EMBEDDED} (a broken install?)")
    return EMBEDDED
