"""Shared helpers for tests that compare plmkit with Hugging Face transformers on the same weights."""
import json
import os
import re
import subprocess
import sys

import torch

# parameters that are zero / one at init and would hide a wiring mistake: biases and norm gains
_PERTURB = re.compile(r"bias$|LayerNorm|layer_norm|\.ln_")


def random_hf_model(cls, config, path, *, safe: bool = True):
    """A tiny random transformers model in eval mode, with non-zero biases and norms, saved to `path`."""
    torch.manual_seed(0)
    hf = cls(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if _PERTURB.search(name):
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(path, safe_serialization=safe)
    return hf


def padded_batch(vocab: int, type_vocab: int, B: int = 3, T: int = 11, pad: int = 0, seed: int = 1):
    """(ids, token_type_ids, attention_mask): rows of lengths T, T-4 and 2, right-padded with `pad`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    for b, n in enumerate((T, T - 4, 2)[:B]):
        mask[b, n:] = 0
        ids[b, n:] = pad
    types = torch.randint(0, max(type_vocab, 1), (B, T), generator=g) * mask
    return ids, types, mask


def logits_parity_and_round_trip(hf, ours, hf_cls, batch, tmp_path, shape):
    """`ours` gives `hf`'s logits on `batch` (ids, types, mask) within 1e-5; saved by plmkit, `hf_cls`
    reads it back to the same logits. Returns the model transformers read back."""
    import plmkit

    def run(model):
        ids, types, mask = batch
        with torch.no_grad():
            return model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits

    ref, out = run(hf), run(ours)
    assert out.shape == ref.shape == shape
    assert (out - ref).abs().max() <= 1e-5
    plmkit.save_pretrained(ours, tmp_path / "ours")
    back = hf_cls.from_pretrained(tmp_path / "ours").eval()
    assert (run(back) - out).abs().max() <= 1e-5
    return back


# The request loop every oracle worker script ends with: one JSON line [mode, cases] in, "done" or an error out.
WORKER_LOOP = r"""
for line in sys.stdin:
    mode, cases = json.loads(line)
    try:
        for case in cases:
            run(mode, case)
        print("done", flush=True)
    except Exception:
        print("error: " + json.dumps(traceback.format_exc()), flush=True)
"""


class OracleWorker:
    """A Python process running `script` (which defines run(mode, case) and greets) with `path` first on its
    path: how tests reach an older transformers that cannot share the test venv's imports."""

    def __init__(self, script: str, path: str | os.PathLike) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen([sys.executable, "-c", script + WORKER_LOOP], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.greeting = self.proc.stdout.readline().strip()

    def __call__(self, mode: str, cases: list[dict]) -> None:
        self.proc.stdin.write(json.dumps([mode, cases]) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "done", f"oracle ({mode}) failed: {json.loads(answer[7:]) if answer.startswith('error') else answer}"

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
