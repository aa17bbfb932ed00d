"""Load test of `plmkit serve` on loopback: N requests (one text each) from C concurrent httpx clients, with
dynamic batching vs one request at a time (--max-batch-size 1), next to calling the same model in-process
(one text a call, and batches of 32), for each runtime (`--runtime torch`: plmkit's fp32 forward; `--runtime onnx`:
onnxruntime on the model's ONNX export, made by the server at startup). Routes: classify (the embedded small
Chinese BERT with a 2-label head) and embed (the embedded model, mean pooling). Prints a markdown table with the
1-minute load average after each row (the machine is shared); every request must succeed.

    nice python benchmarks/bench_serve.py --requests 2000 --concurrency 32
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

import plmkit
from plmkit.serve.config import ServeConfig
from plmkit.serve.models import load_model
from plmkit.zoo import embedded_model_dir

ROOT = Path(__file__).resolve().parents[1]
CHARS = "这个东西我们他们的了是在有好棒赞喜欢满意差烂坏讨厌失望很不质量物流服务价格电影天气"


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(rng.randint(8, 40))) for _ in range(n)]


def classifier_dir(root: Path) -> Path:
    """The embedded model with a random 2-label head, laid out as `plmkit finetune` writes it."""
    torch.manual_seed(0)
    model = plmkit.from_pretrained(embedded_model_dir(), num_labels=2)
    model.config.labels = ["negative", "positive"]
    plmkit.save_pretrained(model, root / "clf" / "model", tokenizer=plmkit.load_tokenizer(embedded_model_dir()))
    return root / "clf"


def percentiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


async def load(url: str, route: str, model: str, inputs: list[str], concurrency: int) -> dict:
    """Every input as its own request, `concurrency` at a time; latencies, errors, throughput."""
    latencies: list[float] = []
    errors: list[str] = []
    queue = iter(inputs)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker():
            for text in queue:
                t = time.perf_counter()
                try:
                    r = await client.post(f"/v1/{route}", json={"texts": [text], "model": model})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                latencies.append(time.perf_counter() - t)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return {"requests": len(latencies), "errors": len(errors), "first_error": errors[:1], "seconds": seconds,
            "rps": len(latencies) / seconds, "p50": p50, "p99": p99}


def start_server(models: list[str], max_batch: int, max_wait_ms: float,
                 runtime: str = "torch") -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "plmkit.cli", "serve", "--port", str(port), "--device", "cpu", "--log-level",
            "warning", "--max-batch-size", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-queue", "100000",
            "--runtime", runtime]
    for m in models:
        args += ["--model", m]
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def in_process(fn, inputs: list[str], batch: int) -> dict:
    """fn over the inputs `batch` at a time, sequentially: throughput, and per-call latency."""
    latencies = []
    start = time.perf_counter()
    for i in range(0, len(inputs), batch):
        t = time.perf_counter()
        fn(inputs[i:i + batch])
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return {"requests": len(inputs), "errors": 0, "seconds": seconds, "rps": len(inputs) / seconds,
            "p50": p50, "p99": p99}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--routes", nargs="+", default=["classify", "embed"])
    ap.add_argument("--single-calls", type=int, default=500, help="in-process one-text calls timed")
    ap.add_argument("--runtimes", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    args = ap.parse_args()
    inputs = texts(args.requests)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clf_dir = classifier_dir(Path(tmp))
        served = {"classify": f"clf={clf_dir}", "embed": f"enc={embedded_model_dir()}"}
        for route in args.routes:
            name = "clf" if route == "classify" else "enc"
            for runtime in args.runtimes:
                # in-process: the very batch function the server calls, without HTTP or batching
                run = load_model(name, Path(served[route].split("=", 1)[1]),
                                 ServeConfig(device="cpu", runtime=runtime)).routes[route]

                def call(batch: list[str], run=run, route=route) -> list:
                    return run([(t, None) for t in batch] if route == "classify" else batch)
                call(inputs[:64])  # warm up
                single = inputs[:args.single_calls]  # the slowest way: a sample is enough for its rate
                rows.append((route, runtime, f"in-process, one text a call ({len(single)} calls)",
                             in_process(call, single, 1) | {"load": os.getloadavg()[0]}))
                rows.append((route, runtime, f"in-process, batches of {args.max_batch_size}",
                             in_process(call, inputs, args.max_batch_size) | {"load": os.getloadavg()[0]}))
                del run, call
                for label, max_batch in ((f"server, dynamic batching (max {args.max_batch_size}, "
                                          f"{args.max_wait_ms:g} ms)", args.max_batch_size),
                                         ("server, one request at a time (max batch 1)", 1)):
                    proc, url = start_server([served[route]], max_batch, args.max_wait_ms, runtime)
                    try:
                        asyncio.run(load(url, route, name, inputs[:200], args.concurrency))  # warm up
                        batches_before = httpx.get(url + "/healthz").json()["batches"]
                        result = asyncio.run(load(url, route, name, inputs, args.concurrency))
                        result["batches"] = httpx.get(url + "/healthz").json()["batches"] - batches_before
                        result["load"] = os.getloadavg()[0]
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        proc.wait(timeout=60)
                    rows.append((route, runtime, label, result))
                    if result["errors"]:
                        print(f"ERRORS in {route} / {runtime} / {label}: {result['errors']} "
                              f"({result['first_error']})", file=sys.stderr)
    print(f"\n{args.requests} requests of one text each, {args.concurrency} concurrent clients (httpx, same "
          f"machine); torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| route | runtime | how | requests/s | p50 ms | p99 ms | errors | forward passes | load avg |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for route, runtime, label, r in rows:
        print(f"| {route} | {runtime} | {label} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} | "
              f"{r.get('batches', '')} | {r['load']:.1f} |")
    return 1 if any(r["errors"] for _, _, _, r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
