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
        if not 0 <= self.port < 65536:
            raise ValueError(f"ServeConfig.port must be in 0..65535, found {self.port!r}")
