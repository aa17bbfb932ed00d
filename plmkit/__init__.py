"""plmkit: pretrained Transformer language models in PyTorch, Chinese NLP first.

The public surface: from_pretrained, save_pretrained, build_model, load_tokenizer, generate, ModelConfig.
"""
from .config import ConfigError, ModelConfig
from .convert.namemap import CheckpointError
from .generation import generate
from .models import build_model
from .pretrained import from_pretrained, save_pretrained

__version__ = "0.1.0"


def load_tokenizer(path, **options):
    """The tokenizer stored at `path` (a directory holding vocab.txt / spiece.model, or the file)."""
    from .tokenizers import load_tokenizer as load

    return load(path, **options)

__all__ = ["from_pretrained", "save_pretrained", "build_model", "load_tokenizer", "generate", "ModelConfig",
           "ConfigError", "CheckpointError"]
