"""Export an encoder or a fine-tuned classifier to ONNX, to run with onnxruntime and no plmkit, no torch.

    model directory ─► from_pretrained (pooler when the file holds one; classifier head when fine-tuned)
                    ─► OnnxGraph: named inputs (as the tokenizer makes them) ─► named outputs, plain path
                    ─► torch.onnx.export (TorchScript tracer; batch and sequence axes dynamic)
                    ─► <out>/model.onnx + onnx.json (inputs, outputs, labels) + the model's config file
                       + the tokenizer files, checked against plmkit's own forward with onnxruntime

Outputs: an encoder gives `last_hidden_state` (B, T, H), and `pooled_output` (B, H) when the
checkpoint holds a pooler; a classifier (`plmkit finetune` output, config with id2label) gives
`logits` and `probabilities` (B, num_labels). Inputs are int64 `input_ids`, `attention_mask`,
`token_type_ids` (B, T), those of them the directory's tokenizer produces.

Which exporter: torch 2.13's default, the torch.export-based one (`dynamo=True`), needs the
onnxscript package, takes 4-8x longer on these models and refuses RoBERTa (its position check reads
a tensor's value) and RoFormer without changes to those modules; the TorchScript tracer needs
nothing beyond torch and exports every encoder family plmkit has (tests/test_export_onnx.py checks
each against onnxruntime at several batch sizes and lengths, with padding).
The tracer records one run, so everything that depends on a shape must be a tensor op, not
Python control flow: the fast paths that choose a kernel per shape at run time are switched
off while tracing (plain_path), which changes no number.

The directory is built in `<out>.partial` and renamed into place when complete; each file in it
is written atomically (plmkit.files.atomic_write).
"""
from __future__ import annotations

import logging
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal

import torch
from torch import nn

from .files import atomic_write, save_json

logger = logging.getLogger("plmkit.export")

ONNX_FILE = "model.onnx"
INFO_FILE = "onnx.json"  # what the graph takes and gives, and the label names
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # in the graph's order


class ExportError(ValueError):
    """A model or an option that cannot be exported; the message says which and why."""


@dataclass
class ExportConfig:
    """How `plmkit export` writes a model for another runtime."""

    format: Literal["onnx"] = "onnx"
    opset: int = 17  # ONNX opset: 17 has LayerNormalization; onnxruntime >= 1.14 runs it
    check: bool = True  # run the exported graph with onnxruntime (when installed) against plmkit's forward

    def __post_init__(self) -> None:
        if self.format != "onnx":
            raise ExportError(f"format: expected 'onnx', found {self.format!r}")
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or not 14 <= self.opset <= 20:
            raise ExportError(f"opset: expected an integer in 14..20 (SDPA needs 14), found {self.opset!r}")


@contextmanager
def plain_path(model: nn.Module) -> Iterator[None]:
    """Trace the plain PyTorch path of `model`; no number changes.

    Linear layers take F.linear, not the per-shape oneDNN race (modules.linear), whose winner a
    tracer would freeze and whose op ONNX does not know (both kernels compute the same product).
    Rotary tables are filled for the longest sequence first: the trace then slices one constant
    table, the same rows the model computes, instead of recording the Python arithmetic that sizes
    a new table (ONNX's integer division truncates where Python's floors, giving an empty table).
    """
    from .modules import linear
    from .modules.rotary import RotaryEmbedding

    for m in model.modules():
        if isinstance(m, RotaryEmbedding) and not (m.grid and m.grid_width is None):
            m.cos_sin(model.config.max_position, torch.device("cpu"), torch.float32)
    before = linear._enabled  # None (plmkit.hardware decides), True or False: restored exactly
    linear.set_fast_cpu_linear(False)
    try:
        yield
    finally:
        linear.set_fast_cpu_linear(before)


class OnnxGraph(nn.Module):
    """The module that is traced: named (B, T) int64 tensors in, the export's outputs as a tuple."""

    def __init__(self, model: nn.Module, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.inputs, self.outputs = model, inputs, outputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        given = dict(zip(self.inputs, tensors))
        out = self.model(given["input_ids"], token_type_ids=given.get("token_type_ids"),
                         attention_mask=given.get("attention_mask"))
        if "logits" in self.outputs:
            logits = out.label_logits  # (B, num_labels)
            return logits, logits.softmax(-1)
        if "pooled_output" in self.outputs:
            return out.last_hidden_state, out.pooled_output  # (B, T, H), (B, H)
        return (out.last_hidden_state,)


def _model_dir(path: Path) -> Path:
    """The model directory itself: a `plmkit finetune` output keeps it in model/."""
    if not path.exists():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if (path / "fewshot.json").exists():
        raise ExportError(f"{path} is a pet / ptune classifier (fewshot.json): it scores label words with the MLM "
                          "head and has no ONNX export; export a `plmkit finetune` classifier or an encoder")
    if (path / "model" / "config.json").exists() and not (path / "config.json").exists():
        return path / "model"
    return path


def load_for_export(path: str | Path) -> tuple[nn.Module, Path]:
    """The model of `path` in fp32 eval mode with the heads an export gives, after checking it has an ONNX path."""
    from .modules.encoder import Encoder
    from .pretrained import load_source, open_checkpoint

    directory = _model_dir(Path(path))
    source = open_checkpoint(directory)
    family, config = source.family, source.config
    with torch.device("meta"):  # what the family builds, before any weight is read
        probe = family.build(config)
    if not isinstance(probe, Encoder) or probe.application != "encoder":
        kind = ("a decoder-only language model" if family.causal else "an encoder-decoder" if hasattr(probe, "decoder")
                else f"built as {type(probe).__name__}")
        raise ExportError(f"{directory}: family {family.name!r} is {kind}; ONNX export covers bidirectional "
                          "encoders (BERT, RoBERTa, ALBERT, ELECTRA, NEZHA, RoFormer) and their fine-tuned "
                          "classifiers")
    options = {}
    if not config.labels:  # a classifier builds its pooler with its head
        rules, _ = source.rules_for(config)
        pooler = [r for r in rules if r.ours.startswith("pooler.")]
        options["with_pool"] = bool(pooler) and all(t in source.names for r in pooler for t in r.theirs)
    return load_source(source, options).float().eval(), directory


def _graph_io(model: nn.Module, tokenizer) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Input names (those the tokenizer makes that the model reads) and output names."""
    made = set(tokenizer(["a"]).keys()) if tokenizer is not None else set(INPUTS)
    if getattr(model.embeddings, "segment", None) is None:
        made.discard("token_type_ids")  # no segment table: the graph would not read them
    inputs = tuple(n for n in INPUTS if n in made)
    if model.config.labels:
        return inputs, ("logits", "probabilities")
    return inputs, ("last_hidden_state", "pooled_output") if model.pooler is not None else ("last_hidden_state",)


def sample_inputs(model: nn.Module, inputs: tuple[str, ...], batch: int = 2, length: int = 7,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """Random (batch, length) inputs with the last row padded, for tracing and checking."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    length = min(length, c.max_position)
    ids = torch.randint(1, c.vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, max(length // 2, 1):] = 0
    ids = ids.masked_fill(mask == 0, c.pad_token_id or 0)
    segments = torch.zeros(batch, length, dtype=torch.long)
    segments[:, length // 2:] = 1 if c.type_vocab_size > 1 else 0
    made = {"input_ids": ids, "attention_mask": mask, "token_type_ids": segments}
    return {n: made[n] for n in inputs}


def _trace(graph: OnnxGraph, example: dict[str, torch.Tensor], onnx_path: Path, opset: int) -> None:
    axes = {n: {0: "batch", 1: "sequence"} for n in graph.inputs}
    axes.update({n: {0: "batch", 1: "sequence"} if n == "last_hidden_state" else {0: "batch"} for n in graph.outputs})
    with plain_path(graph.model), torch.no_grad(), warnings.catch_warnings():
        # the tracer warns that the exporter is legacy, and about Python checks of shapes (a length
        # against the position table) that it records as constants: the checks, not the computation
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, tuple(example[n] for n in graph.inputs), str(onnx_path), dynamo=False,
                          input_names=list(graph.inputs), output_names=list(graph.outputs), dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True)


def check_parity(onnx_path: str | Path, model: nn.Module, inputs: tuple[str, ...],
                 shapes: tuple[tuple[int, int], ...] = ((1, 5), (3, 16), (4, 33))) -> float | None:
    """Largest |onnxruntime - plmkit| over the outputs at several (batch, length) shapes with padding;
    None when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    graph = OnnxGraph(model, inputs, tuple(names)).eval()
    worst = 0.0
    for i, (batch, length) in enumerate(shapes):
        feed = sample_inputs(model, inputs, batch, length, seed=i + 1)
        got = session.run(None, {n: t.numpy() for n, t in feed.items()})
        with torch.no_grad():
            want = graph(*feed.values())
        worst = max([worst] + [float((torch.from_numpy(g) - w).abs().max()) for g, w in zip(got, want)])
    return worst


def export_onnx(model_dir: str | Path, out_dir: str | Path, cfg: ExportConfig | None = None, *,
                overwrite: bool = False) -> dict:
    """Write `out_dir` with model.onnx, onnx.json, the model's config file and its tokenizer; returns onnx.json."""
    from .tokenizers import load_tokenizer

    cfg = cfg or ExportConfig()
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"output directory {out} already exists (pass overwrite to replace it)")
    model, directory = load_for_export(model_dir)
    try:
        tokenizer = load_tokenizer(directory)
    except FileNotFoundError:
        tokenizer = None
        logger.warning("%s has no tokenizer files: the export takes all of %s; tokenise with the model's "
                       "own tokenizer", directory, ", ".join(INPUTS))
    inputs, outputs = _graph_io(model, tokenizer)
    graph = OnnxGraph(model, inputs, outputs).eval()
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    started = time.perf_counter()
    atomic_write(work / ONNX_FILE, lambda tmp: _trace(graph, sample_inputs(model, inputs), tmp, cfg.opset))
    seconds = time.perf_counter() - started
    c = model.config
    info = {
        "format": "onnx", "file": ONNX_FILE, "opset": cfg.opset, "family": c.family,
        "task": "classification" if c.labels else "encoder",
        "inputs": {n: {"dtype": "int64", "shape": ["batch", "sequence"]} for n in inputs},
        "outputs": {n: {"dtype": "float32", "shape": ["batch", "sequence", c.hidden_size] if n == "last_hidden_state"
                        else ["batch", len(c.labels) if c.labels else c.hidden_size]} for n in outputs},
        "labels": c.labels, "max_length": c.max_position, "pad_token_id": c.pad_token_id,
        "tokenizer": None if tokenizer is None else type(tokenizer).__name__,
        "source": str(directory), "torch": torch.__version__, "export_seconds": round(seconds, 2),
        "max_abs_diff": None, "config": asdict(cfg),
    }
    if cfg.check:
        info["max_abs_diff"] = check_parity(work / ONNX_FILE, model, inputs)
        if info["max_abs_diff"] is not None and not info["max_abs_diff"] <= 1e-4:
            raise ExportError(f"{work / ONNX_FILE}: onnxruntime differs from plmkit by {info['max_abs_diff']:.3g} "
                              "(max abs, more than 1e-4); the export is kept there for inspection")
    config_file = source_config_file(directory)
    atomic_write(work / config_file.name, lambda tmp: shutil.copyfile(config_file, tmp))
    if tokenizer is not None:
        tokenizer.save(work)
    save_json(info, work / INFO_FILE)
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)  # the complete directory appears at once
    return info


def source_config_file(directory: Path) -> Path:
    """The model's config file (config.json, or a TensorFlow release's bert_config.json ...)."""
    from .pretrained import _tf_config_path

    if (directory / "config.json").exists():
        return directory / "config.json"
    return _tf_config_path(directory, None)


__all__ = ["ExportConfig", "ExportError", "OnnxGraph", "check_parity", "export_onnx", "load_for_export", "plain_path"]
