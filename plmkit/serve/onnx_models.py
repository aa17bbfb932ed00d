"""`--runtime onnx`: classify and embed through an onnxruntime session of the model's ONNX export.

    finetune classifier / encoder directory ─► plmkit.export.export_onnx into a temporary directory (startup)─┐
    a directory `plmkit export` wrote (its onnx.json says what it is) ────────────────────────────────────────┴─►
        InferenceSession (CPU execution provider, torch's thread count) + the directory's tokenizer
    texts ─► tokenizer, as the torch path calls it ─► session ─► probabilities  (classify)
                                                              ─► last_hidden_state / pooled_output ─► pool ─► L2
                                                                 normalise (embed, plmkit.sentence.pool's rules)

The export holds the last layer's states and the pooler's output only, so embed offers mean, cls and pooler
pooling; first_last_mean (which reads the first block's states too) is refused at startup. pet / ptune, seq2seq
and index directories keep the torch runtime. Why onnxruntime at all: benchmarks/README.md (the ONNX export and
`plmkit serve` sections) measures it against plmkit's fp32 path on this machine.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F

from .config import ServeConfig

logger = logging.getLogger("plmkit.serve")
# the poolings an export can feed: what each reads from the graph's outputs
ONNX_POOLINGS = {"mean": "last_hidden_state", "cls": "last_hidden_state", "pooler": "pooled_output"}


def is_onnx_dir(path: str | Path) -> bool:
    """Whether `path` is a directory `plmkit export --format onnx` wrote (it holds onnx.json)."""
    from ..export import INFO_FILE

    return (Path(path) / INFO_FILE).is_file()


class OnnxModel:
    """An exported directory loaded for inference: the session, its input and output names, the tokenizer."""

    def __init__(self, directory: Path) -> None:
        import onnxruntime as ort

        from ..export import INFO_FILE
        from ..tokenizers import load_tokenizer

        self.info = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        # one forward at a time (the server's single inference thread) gets every core, as torch's does
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between ops: spinning threads take the cores the event loop and the clients need
        # (on 2 cores the server with spinning answered fewer requests/s than torch; benchmarks/README.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(directory / self.info["file"]), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        try:
            self.tokenizer = load_tokenizer(directory)
        except FileNotFoundError:
            raise ValueError(f"{directory}: the ONNX export has no tokenizer files (the model directory it was "
                             "exported from had none); plmkit serve needs them to tokenise requests") from None

    def run(self, texts: list[str], pairs: list[str] | None, max_length: int,
            names: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The outputs `names` for one padded batch, and its attention mask (B, T)."""
        batch = self.tokenizer(texts, pairs, max_length=max_length)
        got = self.session.run(names, {n: batch[n].numpy() for n in self.inputs})
        return [torch.from_numpy(g) for g in got], batch["attention_mask"]


def load_onnx(name: str, path: Path, kind: str | None, cfg: ServeConfig):
    """A ServedModel answering classify (classifier) or embed (encoder) with onnxruntime; `kind` None: `path` is
    already an export, else it is exported now into a temporary directory, removed once the session is built."""
    from ..export import ExportConfig, export_onnx
    from .models import ServedModel, _classify_with

    if kind == "encoder":
        _check_pooling(path, cfg.pooling, None)  # before the export: first_last_mean is known to fail
    if kind is None:
        model, exported = OnnxModel(Path(path)), str(path)
    else:
        with tempfile.TemporaryDirectory(prefix="plmkit-serve-onnx-") as tmp:
            logger.info("model %s: exporting %s to ONNX for --runtime onnx (checked against plmkit's forward)",
                        name, path)
            export_onnx(path, Path(tmp) / "onnx", ExportConfig())
            model, exported = OnnxModel(Path(tmp) / "onnx"), "at startup"
    info = {"runtime": "onnxruntime", "onnx": exported, "family": model.info.get("family"), "device": "cpu",
            "max_abs_diff_vs_torch": model.info.get("max_abs_diff")}
    if model.info["task"] == "classification":
        labels = model.info["labels"]
        return ServedModel(name, Path(path), "classifier",
                           {"classify": _classify_with(_predict_with(model, cfg.max_length, labels), labels)},
                           {"labels": labels, **info})
    _check_pooling(path, cfg.pooling, model.outputs)
    dim = model.info["outputs"][ONNX_POOLINGS[cfg.pooling]]["shape"][-1]
    return ServedModel(name, Path(path), "encoder", {"embed": _embed_with(model, cfg.pooling, cfg.max_length)},
                       {"pooling": cfg.pooling, "dim": dim, **info})


def _check_pooling(path: Path, pooling: str, outputs: list[str] | None) -> None:
    if pooling not in ONNX_POOLINGS:
        raise ValueError(f"{path}: --pooling {pooling} cannot run with --runtime onnx: it averages the first and last "
                         "blocks' hidden states, and the ONNX export gives the last block's only; use --pooling "
                         f"{' / '.join(ONNX_POOLINGS)}, or --runtime torch for {pooling}")
    if outputs is not None and ONNX_POOLINGS[pooling] not in outputs:
        raise ValueError(f"{path}: --pooling {pooling} needs the graph output {ONNX_POOLINGS[pooling]!r}, and the "
                         f"ONNX export gives {', '.join(outputs)} (the checkpoint holds no pooler); use --pooling "
                         "mean or cls")


def _predict_with(model: OnnxModel, max_length: int, labels: list[str]) -> Callable:
    """TextClassifier.predict's contract over the session: (label, probabilities) per text."""

    def predict(texts: list[str], pairs: list[str] | None, batch_size: int) -> list[tuple[str, list[float]]]:
        (probs,), _ = model.run(texts, pairs, max_length, ["probabilities"])  # (B, num_labels)
        return [(labels[int(p.argmax())], p.tolist()) for p in probs]
    return predict


def _embed_with(model: OnnxModel, pooling: str, max_length: int) -> Callable[[list], list]:
    """encode_sentences' vectors (pooled, L2-normalised) over the session."""
    from ..sentence import pool

    name = ONNX_POOLINGS[pooling]

    def run(texts: list[str]) -> list[list[float]]:
        (states,), mask = model.run(texts, None, max_length, [name])  # (B, T, H) or (B, H)
        output = SimpleNamespace(last_hidden_state=states if name == "last_hidden_state" else None,
                                 pooled_output=states if name == "pooled_output" else None, hidden_states=None)
        return F.normalize(pool(output, mask, pooling), dim=-1).tolist()  # (B, H)
    return run
