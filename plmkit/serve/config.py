"""Every setting of `plmkit serve`, with its default (the command line's options are generated from it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ServeConfig:
    """How the server listens, batches, limits requests and runs its models."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0: every interface)"})
    port: int = 8000
    device: str | None = None
    precision: Literal["fp32", "bf16", "int8"] = field(
        default="fp32", metadata={"help": "bf16: fast where the CPU has native bf16; int8: dynamic quantisation "
                                          "(CPU); pet / ptune classifiers run in fp32 only"})
    max_batch_size: int = field(default=32, metadata={"help": "most texts run in one forward pass (1: one "
                                                              "request at a time)"})
    max_wait_ms: float = field(default=5.0, metadata={"help": "longest a request waits for others to share its "
                                                              "batch"})
    max_queue: int = field(default=2048, metadata={"help": "texts waiting per route before requests get 503"})
    request_timeout: float = field(default=30.0, metadata={"help": "seconds a request may wait and run before "
                                                                   "it gets 503"})
    max_body_bytes: int = 1_000_000
    max_text_chars: int = 4096
    max_items: int = field(default=64, metadata={"help": "most texts in one request"})
    max_length: int = field(default=128, metadata={"help": "tokens per text for classify and embed (longer "
                                                           "texts are truncated)"})
    pooling: Literal["cls", "pooler", "mean", "first_last_mean"] = field(
        default="mean", metadata={"help": "embed's pooling for a plain encoder (an index keeps its own)"})
    graceful_timeout: float = field(default=30.0, metadata={"help": "seconds in-flight requests may take to "
                                                                    "finish after SIGINT / SIGTERM"})
    runtime: Literal["torch", "onnx"] = field(
        default="torch", metadata={"help": "onnx: classify (finetune classifiers) and embed (encoders) run in "
                                           "onnxruntime on the CPU, from an ONNX export made at startup (or a "
                                           "`plmkit export` directory given as --model); pet / ptune, similar "
                                           "and generate keep torch; fp32 only; no first_last_mean pooling"})
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "max_body_bytes", "max_text_chars", "max_items", "max_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"ServeConfig.{name} must be a positive integer, found {getattr(self, name)!r}")
        for name in ("max_wait_ms", "graceful_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"ServeConfig.{name} must be >= 0, found {getattr(self, name)!r}")
        if self.request_timeout <= 0:
            raise ValueError(f"ServeConfig.request_timeout must be > 0, found {self.request_timeout!r}")
        if self.runtime not in ("torch", "onnx"):
            raise ValueError(f"ServeConfig.runtime must be 'torch' or 'onnx', found {self.runtime!r}")
        if self.runtime == "onnx" and self.precision != "fp32":
            raise ValueError(f"ServeConfig.precision {self.precision!r} is a torch runtime option: runtime 'onnx' "
                             "runs the fp32 export; give precision fp32 or runtime torch")
        if self.runtime == "onnx" and self.device not in (None, "cpu"):
            raise ValueError(f"ServeConfig.device {self.device!r}: runtime 'onnx' runs on the CPU (onnxruntime's "
                             "CPU execution provider); give device cpu or runtime torch")
        if not 0 <= self.port < 65536:
            raise ValueError(f"ServeConfig.port must be in 0..65535, found {self.port!r}")
