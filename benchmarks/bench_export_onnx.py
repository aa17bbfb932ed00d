"""onnxruntime on `plmkit export --format onnx` output vs plmkit's own CPU path, one process, interleaved rounds.

    python benchmarks/bench_export_onnx.py [--batch 8] [--seq 128] [--rounds 7] [--threads 2]

Two models: the embedded small Chinese BERT (4 layers, 256 hidden) and a random BERT-base-size one
(12 layers, 768 hidden, 21128 vocabulary). Each is exported with plmkit.export.export_onnx, then in
every round each engine runs one forward of the same batch x seq input (the last rows padded):
  onnxruntime   CPU execution provider, intra-op threads = --threads, inter-op 1, all graph optimisations
  plmkit fp32   torch.inference_mode, torch threads = --threads, the kernels plmkit.hardware chooses here
  plmkit bf16   the same with dtype=torch.bfloat16, only where bf16 is native (plmkit.hardware)
The median of the rounds is reported, with the largest |difference| of last_hidden_state from plmkit fp32.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import plmkit  # noqa: E402
from plmkit import hardware  # noqa: E402
from plmkit.config import ModelConfig  # noqa: E402
from plmkit.export import export_onnx  # noqa: E402
from plmkit.models import build_model  # noqa: E402
from plmkit.zoo import embedded_model_dir  # noqa: E402


def machine_line() -> str:
    """lscpu's model name and the flags that decide the kernels, with the thread count and versions."""
    import onnxruntime

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        lscpu = ""
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    name = fields.get("Model name", platform.processor()).strip()
    flags = set(fields.get("Flags", "").split())
    shown = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
    family = f"family {fields.get('CPU family', '?').strip()}, model {fields.get('Model', '?').strip()}"
    return (f"{name} ({family}; {shown}), torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"{torch.get_num_threads()} threads")


def bert_base_dir(root: Path) -> Path:
    """A random BERT-base-size model (Chinese BERT's vocabulary size), without tokenizer files: inputs are random ids."""
    torch.manual_seed(0)
    cfg = ModelConfig(family="bert", vocab_size=21128, hidden_size=768, num_layers=12, num_heads=12,
                      intermediate_size=3072, max_position=512)
    plmkit.save_pretrained(build_model(cfg, with_pool=True), root / "bert-base")
    return root / "bert-base"


def inputs(vocab: int, batch: int, seq: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[batch // 2:, seq * 3 // 4:] = 0  # half the rows padded by a quarter, as a batch of real texts is
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask,
            "token_type_ids": torch.zeros(batch, seq, dtype=torch.long)}


def bench(name: str, model_dir: Path, out: Path, args) -> list[str]:
    import onnxruntime

    started = time.perf_counter()
    info = export_onnx(model_dir, out, overwrite=True)
    export_s = time.perf_counter() - started
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(out / info["file"]), options, providers=["CPUExecutionProvider"])
    fp32 = plmkit.from_pretrained(model_dir, with_pool=True)
    batch = inputs(fp32.config.vocab_size, args.batch, args.seq)
    feed = {n: batch[n].numpy() for n in info["inputs"]}

    def torch_run(model):
        def run():
            with torch.inference_mode():
                return model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                             attention_mask=batch["attention_mask"]).last_hidden_state.float()
        return run

    engines = {"onnxruntime fp32": lambda: torch.from_numpy(session.run(["last_hidden_state"], feed)[0]),
               "plmkit fp32": torch_run(fp32)}
    if hardware.choose(hardware.detect(), "cpu").precision == "bf16":
        engines["plmkit bf16"] = torch_run(plmkit.from_pretrained(model_dir, with_pool=True, dtype=torch.bfloat16))
    reference = engines["plmkit fp32"]()
    diffs = {k: float((run() - reference).abs().max()) for k, run in engines.items()}  # also the warm-up
    for run in engines.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(args.rounds):  # interleaved: load on the shared machine hits every engine alike
        for k, run in engines.items():
            start = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    base = medians["plmkit fp32"]
    rows = []
    for k, m in medians.items():
        rows.append(f"| {name} | {k} | {m * 1e3:.0f} ms | {args.batch / m:.1f} | {base / m:.2f}x | {diffs[k]:.1e} |")
    rows.append(f"| {name} | (export: {export_s:.1f} s, onnxruntime vs plmkit at 3 shapes {info['max_abs_diff']:.1e}) "
                "| | | | |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("plmkit.export").setLevel(logging.ERROR)  # the random model has no tokenizer, on purpose
    print(f"{datetime.date.today()}; {machine_line()}; load average {os.getloadavg()[0]:.1f} at the start")
    print(f"forward of {args.batch} x {args.seq}, median of {args.rounds} interleaved rounds\n")
    print("| model | engine | median | seq/s | speed vs plmkit fp32 | max abs diff vs plmkit fp32 |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, model_dir in (("embedded (4 x 256)", embedded_model_dir()), ("BERT-base size", bert_base_dir(root))):
            for row in bench(name, model_dir, root / f"{model_dir.name}-onnx", args):
                print(row, flush=True)


if __name__ == "__main__":
    main()
