"""plmkit against what a CPU user would pick instead of transformers: CTranslate2 for decoding,
onnxruntime for encoders. One process, identical random weights, interleaved rounds.

    pip install ctranslate2 onnxruntime onnx   # benchmark-only; not plmkit dependencies
    python benchmarks/bench_peers.py [--rounds 3] [--parts decode,encode]

decode: GPT-2 small (12 x 768, 50,257 tokens) greedy, batch 8, 32-token prompts, 64 new tokens
(end token disabled), tokens/s of the whole call. Peers: transformers fp32; CTranslate2 4.x
fp32 and int8 (its converter, compute_type float32 / int8); plmkit fp32 and int8
(from_pretrained(quantize="int8"): fbgemm dynamic int8 linears and an int8 copy of the tied
LM head). "same ids" compares with transformers' fp32 output.
encode: BERT-base forward, batch 8 x 128 (a quarter padded), ms per call (median). Peers:
transformers fp32; onnxruntime fp32 (graph optimisations on) and int8 (its quantize_dynamic);
plmkit fp32 and int8.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import plmkit  # noqa: E402
from plmkit import hardware  # noqa: E402
from plmkit.generation import generate  # noqa: E402


def interleaved(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds per function, called in turn each round after one warm-up call each."""
    outs = {k: fn() for k, fn in fns.items()}
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, outs


def word_level_tokenizer(vocab_size: int, directory: str) -> None:
    """A tokenizer whose tokens are t0 .. t{V-1}: CTranslate2's converter wants a vocabulary."""
    import tokenizers
    import transformers

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    last = f"t{vocab_size - 1}"  # GPT-2 uses its last id as start and end token
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token=last,
                                         eos_token=last).save_pretrained(directory)


def decode(rounds: int) -> None:
    import ctranslate2
    import transformers

    d = tempfile.mkdtemp()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config()
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    hf.save_pretrained(d)
    word_level_tokenizer(cfg.vocab_size, d)
    ct2 = {}
    for ctype in ("float32", "int8"):
        out = f"{d}/ct2_{ctype}"
        ctranslate2.converters.TransformersConverter(d).convert(out, quantization=None if ctype == "float32" else "int8")
        ct2[ctype] = ctranslate2.Generator(out, device="cpu", compute_type=ctype, intra_threads=torch.get_num_threads())
    ours = plmkit.from_pretrained(d).eval()
    ours_q = plmkit.from_pretrained(d, quantize="int8")
    B, P, N = 8, 32, 64
    ids = torch.randint(2, cfg.vocab_size, (B, P), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    prompts = [[f"t{i}" for i in row] for row in ids.tolist()]

    def run_hf():
        with torch.inference_mode():
            return hf.generate(ids, attention_mask=mask, max_new_tokens=N, min_new_tokens=N, do_sample=False)[:, P:]

    def run_ct2(ctype):
        def run():
            res = ct2[ctype].generate_batch(prompts, max_length=N, min_length=N, sampling_topk=1,
                                            include_prompt_in_result=False, end_token=[])
            return torch.tensor([r.sequences_ids[0] for r in res])
        return run

    fns = {"transformers fp32": run_hf, "CTranslate2 fp32": run_ct2("float32"), "CTranslate2 int8": run_ct2("int8"),
           "plmkit fp32": lambda: generate(ours, ids, attention_mask=mask, max_new_tokens=N, eos_token_id=())[:, P:],
           "plmkit int8": lambda: generate(ours_q, ids, attention_mask=mask, max_new_tokens=N, eos_token_id=())[:, P:]}
    t, outs = interleaved(fns, rounds)
    base = t["transformers fp32"]
    print(f"GPT-2 small greedy, batch {B}, prompt {P}, {N} new tokens; median of {rounds}")
    print("| engine | tokens/s | vs transformers fp32 | same ids as transformers fp32 |")
    print("|---|---|---|---|")
    for k in fns:
        same = (outs[k].shape == outs["transformers fp32"].shape
                and float((outs[k] == outs["transformers fp32"]).float().mean()))
        print(f"| {k} | {B * N / t[k]:.1f} | {base / t[k]:.2f}x | {same:.3f} of tokens |", flush=True)


def encode(rounds: int) -> None:
    import onnxruntime as ort
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    d = tempfile.mkdtemp()
    torch.manual_seed(0)
    cfg = transformers.BertConfig()
    hf = transformers.BertModel(cfg).eval()
    hf.save_pretrained(d)
    B, T = 8, 128
    ids = torch.randint(1000, cfg.vocab_size, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[B // 2:, T * 3 // 4:] = 0
    onnx_path = f"{d}/bert.onnx"
    class Wrapped(torch.nn.Module):  # keyword arguments, one output: what the exporter traces cleanly
        def __init__(self) -> None:
            super().__init__()
            self.bert = hf

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    torch.onnx.export(Wrapped().eval(), (ids, mask), onnx_path, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], dynamic_axes={"input_ids": {0: "b", 1: "t"},
                                                                        "attention_mask": {0: "b", 1: "t"}},
                      opset_version=17, dynamo=False)
    quantize_dynamic(onnx_path, f"{d}/bert_int8.onnx", weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = {k: ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
            for k, p in (("fp32", onnx_path), ("int8", f"{d}/bert_int8.onnx"))}
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    ours = plmkit.from_pretrained(d)
    ours_q = plmkit.from_pretrained(d, quantize="int8")

    def torch_call(fn):
        def run():
            with torch.inference_mode():
                return fn()
        return run

    fns = {"transformers fp32": torch_call(lambda: hf(input_ids=ids, attention_mask=mask).last_hidden_state),
           "onnxruntime fp32": lambda: torch.from_numpy(sess["fp32"].run(None, feed)[0]),
           "onnxruntime int8": lambda: torch.from_numpy(sess["int8"].run(None, feed)[0]),
           "plmkit fp32": torch_call(lambda: ours(ids, attention_mask=mask).last_hidden_state),
           "plmkit int8": torch_call(lambda: ours_q(ids, attention_mask=mask).last_hidden_state)}
    t, outs = interleaved(fns, rounds)
    base = t["transformers fp32"]
    real = mask.bool()
    print(f"BERT-base forward, {B} x {T}; median of {rounds}")
    print("| engine | ms | vs transformers fp32 | max abs diff vs transformers fp32 |")
    print("|---|---|---|---|")
    for k in fns:
        diff = (outs[k] - outs["transformers fp32"])[real].abs().max().item()
        print(f"| {k} | {t[k] * 1e3:.0f} | {base / t[k]:.2f}x | {diff:.1e} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", default="decode,encode")
    args = ap.parse_args()
    r = hardware.report()
    print(f"machine: {r['cpu']} (flags {r['isa_flags']}; oneDNN cap {r['onednn_isa_cap']}; ATen "
          f"{r['aten_capability']}), {r['threads']} threads, torch {r['torch']}")
    for part in args.parts.split(","):
        {"decode": decode, "encode": encode}[part](args.rounds)


if __name__ == "__main__":
    main()
