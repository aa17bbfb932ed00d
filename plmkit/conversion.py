"""Convert a checkpoint between the original TensorFlow format and Hugging Face's, keeping every head.

    src (TF prefix / directory, or HF directory) ─► family + config ─► heads whose tensors are in the file
        ─► strict load (name map, training state skipped) ─► save_pretrained(format=to) + tokenizer files

`plmkit convert SRC DST --to hf|tf` calls `convert`. What the source holds decides what is
built: a pooler, MLM, NSP / sentence-order, replaced-token or classification head is written
to the destination exactly when its tensors are in the source; what is left out (optimizer
slots, step counters, the other half of an ELECTRA checkpoint) is listed in the report.
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .convert.namemap import LoadReport
from .files import atomic_write
from .pretrained import CheckpointSource, load_source, open_checkpoint, save_pretrained

# a source at least this large (bytes on disk) shows a progress bar unless progress=False
PROGRESS_MIN_BYTES = 64 * 2**20
# boolean head options builders may accept; each is tried alone on the meta device
HEAD_OPTIONS = ("with_pool", "with_nsp", "with_mlm", "with_rtd")
TOKENIZER_FILES = ("vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.model",
                   "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


@dataclass
class ConversionReport:
    """What a conversion read, built and wrote."""

    source: str
    destination: Path
    family: str
    to: str
    heads: dict[str, Any]  # build options found in the source (with_mlm=True, num_labels=3, ...)
    dtype: torch.dtype  # floating dtype written
    load: LoadReport
    copied: list[str] = field(default_factory=list)  # tokenizer files copied beside the weights

    def summary(self) -> str:
        """One paragraph: family, heads, dtype, then the load report."""
        heads = ", ".join(f"{k}={v}" for k, v in self.heads.items()) or "no heads"
        extra = f"; copied {', '.join(self.copied)}" if self.copied else ""
        return (f"{self.family} ({heads}) -> {self.destination} [{self.to}, {str(self.dtype).replace('torch.', '')}]; "
                f"{self.load.summary()}{extra}")


def available_heads(source: CheckpointSource) -> dict[str, Any]:
    """The build options whose heads have every tensor in the file (a head is built only whole)."""
    family, cfg = source.family, source.config
    rules = {r.ours: r for r in source.rules_for(cfg)[0]}

    def present(ours: str) -> bool:
        return ours in rules and all(t in source.names for t in rules[ours].theirs)

    with torch.device("meta"):
        base = family.build(cfg)
    base_names, base_modules = set(base.state_dict()), len(list(base.modules()))
    found: dict[str, Any] = {}
    for option in HEAD_OPTIONS:
        try:
            with torch.device("meta"):
                built = family.build(cfg, **{option: True})
        except (TypeError, ValueError):  # the family has no such head
            continue
        added = set(built.state_dict()) - base_names
        if added:
            if all(present(n) for n in added):
                found[option] = True
        elif len(list(built.modules())) > base_modules:  # a head with no tensors of its own (tied): nothing to lose
            found[option] = True
    if "classifier.dense.weight" in rules and present("classifier.dense.weight") and not cfg.labels:
        found["num_labels"] = int(source.get(rules["classifier.dense.weight"].theirs[0]).shape[0])
    return found


def _copy_tokenizer(src_dir: Path, dst: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        path = src_dir / name
        if not path.is_file() or (dst / name).resolve() == path.resolve():
            continue
        atomic_write(dst / name, lambda tmp, path=path: shutil.copyfile(path, tmp))  # mode 0666 - umask, not 0600
        copied.append(name)
    return copied


def convert(src: str | Path, dst: str | Path, to: str = "hf", model: str | None = None,
            config: str | Path | None = None, progress: bool = True,
            dtype: torch.dtype | None = None) -> ConversionReport:
    """Read any checkpoint from_pretrained reads and write it as `to` ("hf" or "tf") under `dst`.

    `model` names the family where the config cannot (TensorFlow checkpoints of RoFormer, T5,
    ELECTRA, GPT); `config` names the config file beside a TensorFlow checkpoint. Every head
    whose tensors the source holds is built and written; training state is skipped and listed
    in the report. Floating tensors keep the source's storage precision (bfloat16 mT5 stays
    bfloat16) unless `dtype` says otherwise. Tokenizer files beside the source are copied.
    """
    if to not in ("hf", "tf"):
        raise ValueError(f"to must be 'hf' or 'tf', found {to!r}")
    source = open_checkpoint(src, model, config)
    heads = available_heads(source)
    cfg = source.config
    if "num_labels" in heads:  # a TF run_classifier head: name its labels so the HF config can hold them
        cfg = cfg.replace(labels=[f"LABEL_{i}" for i in range(heads["num_labels"])])
    options = {k: v for k, v in heads.items() if k != "num_labels"}

    from .training.logs import ProgressBar

    with torch.device("meta"):
        ours = set(source.family.build(cfg, **options).state_dict())
    to_read = {t for r in source.rules_for(cfg)[0] if r.ours in ours for t in r.theirs if t in source.names}
    bar = ProgressBar(total=len(to_read), desc=f"convert {Path(source.description).name}", stream=sys.stderr,
                      enabled=progress and source.size >= PROGRESS_MIN_BYTES, every=max(1, len(to_read) // 20))
    stored: set[torch.dtype] = set()

    def get(name: str) -> torch.Tensor:
        value = source.get(name)
        if value.is_floating_point():
            stored.add(value.dtype)
        bar.update(1)
        return value.float() if value.is_floating_point() else value

    try:
        built = load_source(source, options, get=get, config=cfg)
    finally:
        bar.close()
    if dtype is None and len(stored) == 1 and next(iter(stored)) in (torch.bfloat16, torch.float16):
        dtype = next(iter(stored))  # the precision the release was stored in
    out = Path(dst)
    save_pretrained(built, out, format=to, dtype=dtype)
    copied = _copy_tokenizer(source.directory, out)
    return ConversionReport(source=source.description, destination=out, family=source.family.name, to=to,
                            heads=heads, dtype=dtype or torch.float32, load=built.load_report, copied=copied)


__all__ = ["convert", "ConversionReport", "available_heads"]
