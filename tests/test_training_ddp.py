"""DDP through torchrun on CPU (gloo) ends where one process with accumulation ends."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plmkit.training import load_checkpoint, read_metrics

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "train_ddp.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("train_ddp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torchrun_two_processes_match_one_process_with_accumulation(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch built without torch.distributed")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(SCRIPT), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)

    script = _load_script()
    # Per-rank accumulation 1 against one process with 2; per-rank 2 (no_sync) against 4.
    for per_rank in (1, 2):
        weights, steps = script.single_process_run(per_rank)
        assert ddp[per_rank]["step"] == steps == 12 // per_rank
        for name, value in weights.items():
            diff = (value - ddp[per_rank]["model"][name]).abs().max().item()
            assert diff <= 1e-5, f"{name}: per-rank accumulation {per_rank}, max difference {diff}"
        # A control: the weights moved well beyond the tolerance.
        assert max((value - script.make(1)[0].state_dict()[n]).abs().max().item()
                   for n, value in weights.items()) > 1e-2

    # Rank 0 alone wrote the log (each step once) and the checkpoint holds both ranks' RNG states.
    records = read_metrics(tmp_path / "acc2" / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    state = load_checkpoint(tmp_path / "acc2" / "checkpoint.pt")
    assert state["world_size"] == 2 and len(state["rng_states"]) == 2
