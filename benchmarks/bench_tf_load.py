"""Load a BERT-base-size TensorFlow checkpoint: plmkit's reader vs TensorFlow's own.

    python benchmarks/bench_tf_load.py [--tf-python /work/tfvenv/bin/python] [--repeats 3]

The checkpoint (google-research/bert names, chinese_L-12_H-768_A-12 shapes, ~411 MB of
float32) is written by TensorFlow when `--tf-python` points at an interpreter that has it,
otherwise by plmkit's writer (the table says which). Every reader runs in a fresh
subprocess that times its imports and the load of every tensor, and reports its peak RSS
(ru_maxrss). plmkit loads into torch tensors; TensorFlow into numpy arrays (torch.from_numpy
on those would be free). The page cache is warmed first, so disk speed is not measured.
The generated files are deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# chinese_L-12_H-768_A-12 / bert-base shapes.
VOCAB, HIDDEN, INTER, LAYERS, MAX_POS = 21128, 768, 3072, 12, 512


def bert_base_shapes() -> dict[str, tuple[int, ...]]:
    """Variable names and shapes of Google's BERT-base release (with pooler and heads)."""
    h, i = HIDDEN, INTER
    shapes = {
        "bert/embeddings/word_embeddings": (VOCAB, h),
        "bert/embeddings/token_type_embeddings": (2, h),
        "bert/embeddings/position_embeddings": (MAX_POS, h),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
        "cls/predictions/transform/dense/kernel": (h, h),
        "cls/predictions/transform/dense/bias": (h,),
        "cls/predictions/transform/LayerNorm/beta": (h,),
        "cls/predictions/transform/LayerNorm/gamma": (h,),
        "cls/predictions/output_bias": (VOCAB,),
        "cls/seq_relationship/output_weights": (2, h),
        "cls/seq_relationship/output_bias": (2,),
    }
    for n in range(LAYERS):
        p = f"bert/encoder/layer_{n}"
        for part in ("query", "key", "value"):
            shapes[f"{p}/attention/self/{part}/kernel"] = (h, h)
            shapes[f"{p}/attention/self/{part}/bias"] = (h,)
        shapes[f"{p}/attention/output/dense/kernel"] = (h, h)
        shapes[f"{p}/attention/output/dense/bias"] = (h,)
        shapes[f"{p}/attention/output/LayerNorm/beta"] = (h,)
        shapes[f"{p}/attention/output/LayerNorm/gamma"] = (h,)
        shapes[f"{p}/intermediate/dense/kernel"] = (h, i)
        shapes[f"{p}/intermediate/dense/bias"] = (i,)
        shapes[f"{p}/output/dense/kernel"] = (i, h)
        shapes[f"{p}/output/dense/bias"] = (h,)
        shapes[f"{p}/output/LayerNorm/beta"] = (h,)
        shapes[f"{p}/output/LayerNorm/gamma"] = (h,)
    return shapes


_GENERATE_TF = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, tensorflow as tf
prefix, shapes = sys.argv[1], json.loads(sys.argv[2])
rng = np.random.default_rng(0)
names = sorted(shapes)
tensors = [tf.constant(rng.standard_normal(shapes[n], dtype=np.float32) * 0.02) for n in names]
tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
print(tf.__version__)
"""

# Each child prints one JSON line. Timing starts before any import.
_CHILD_PLMKIT = r"""
import time
t0 = time.perf_counter()
import hashlib, json, resource, sys
import torch
from plmkit.convert import crc32c
from plmkit.convert.tensorflow import TFCheckpointReader
if sys.argv[2] == "numpy":
    crc32c._google_crc32c = None  # benchmark the fallback even where the wheel is present
t1 = time.perf_counter()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reader = TFCheckpointReader(sys.argv[1], verify=sys.argv[3] == "1", mmap=sys.argv[4] == "1")
tensors = {k: reader.get_torch(k) for k in reader.keys()}
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
finger = {k: hashlib.sha1(t.reshape(-1)[::4099].contiguous().numpy().tobytes()).hexdigest()
          for k, t in tensors.items()}
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "rss_import_kb": rss_import,
                  "peak_kb": peak, "bytes": nbytes, "crc": crc32c.backend(), "finger": finger}))
"""

# numpy arrays only: bypass plmkit/__init__ (which imports torch) to show the reader's own cost.
_CHILD_NUMPY = r"""
import time
t0 = time.perf_counter()
import hashlib, json, os, resource, sys, types
for pkg, sub in (("plmkit", "plmkit"), ("plmkit.convert", "plmkit/convert")):
    mod = types.ModuleType(pkg)
    mod.__path__ = [os.path.join(sys.argv[2], sub)]
    sys.modules[pkg] = mod
from plmkit.convert import crc32c
from plmkit.convert.tensorflow import TFCheckpointReader
t1 = time.perf_counter()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reader = TFCheckpointReader(sys.argv[1], verify=True)
arrays = {k: reader.get(k) for k in reader.keys()}
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
nbytes = sum(a.nbytes for a in arrays.values())
finger = {k: hashlib.sha1(a.reshape(-1)[::4099].tobytes()).hexdigest() for k, a in arrays.items()}
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "rss_import_kb": rss_import,
                  "peak_kb": peak, "bytes": nbytes, "crc": crc32c.backend(), "finger": finger}))
"""

_CHILD_TF = r"""
import time
t0 = time.perf_counter()
import hashlib, json, os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
t1 = time.perf_counter()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reader = tf.train.load_checkpoint(sys.argv[1])
arrays = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
nbytes = sum(a.nbytes for a in arrays.values())
finger = {k: hashlib.sha1(a.reshape(-1)[::4099].tobytes()).hexdigest() for k, a in arrays.items()}
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "rss_import_kb": rss_import,
                  "peak_kb": peak, "bytes": nbytes, "crc": "TF (SSE4.2)", "finger": finger,
                  "version": tf.__version__}))
"""


def run_child(python: str, code: str, args: list[str], env_extra: dict[str, str]) -> dict:
    env = dict(os.environ)
    env.update(env_extra)
    out = subprocess.run([python, "-c", code, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tf-python", default="/work/tfvenv/bin/python")
    ap.add_argument("--workdir", default="/tmp/plmkit_bench_tf")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--crc-site", default="", help="directory with google-crc32c installed (--target)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    have_tf = os.path.exists(args.tf_python)
    shapes = bert_base_shapes()
    os.makedirs(args.workdir, exist_ok=True)
    prefix = os.path.join(args.workdir, "bert_model.ckpt")
    try:
        if have_tf:
            out = subprocess.run([args.tf_python, "-c", _GENERATE_TF, prefix, json.dumps(shapes)],
                                 check=True, capture_output=True, text=True)
            writer = f"TensorFlow {out.stdout.strip().splitlines()[-1]} (tf.raw_ops.SaveV2)"
        else:
            sys.path.insert(0, REPO)
            import numpy as np

            from plmkit.convert.tensorflow import write_tf_checkpoint

            rng = np.random.default_rng(0)
            write_tf_checkpoint(prefix, {n: rng.standard_normal(s, dtype=np.float32) * 0.02
                                         for n, s in shapes.items()}, state_file=False)
            writer = "plmkit write_tf_checkpoint (no TensorFlow available)"
        files = [os.path.join(args.workdir, f) for f in os.listdir(args.workdir)]
        size = sum(os.path.getsize(f) for f in files)
        for f in files:  # warm the page cache
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass

        py = sys.executable
        base_env = {"PYTHONPATH": REPO}
        variants = [
            ("plmkit, verify CRC (numpy), mmap", py, _CHILD_PLMKIT, [prefix, "numpy", "1", "1"], base_env),
        ]
        if args.crc_site:
            env = {"PYTHONPATH": os.pathsep.join([args.crc_site, REPO])}
            variants.append(("plmkit, verify CRC (google-crc32c), mmap", py, _CHILD_PLMKIT,
                             [prefix, "auto", "1", "1"], env))
        variants.append(("plmkit, no verify, mmap", py, _CHILD_PLMKIT, [prefix, "numpy", "0", "1"], base_env))
        variants.append(("plmkit, no verify, read into memory", py, _CHILD_PLMKIT,
                         [prefix, "numpy", "0", "0"], base_env))
        variants.append(("plmkit -> numpy (no torch import), verify CRC (numpy)", py, _CHILD_NUMPY,
                         [prefix, REPO], base_env))
        if args.crc_site:
            env = {"PYTHONPATH": os.pathsep.join([args.crc_site, REPO])}
            variants.append(("plmkit -> numpy (no torch import), verify CRC (google-crc32c)", py,
                             _CHILD_NUMPY, [prefix, REPO], env))
        if have_tf:
            variants.append(("TensorFlow tf.train.load_checkpoint", args.tf_python, _CHILD_TF, [prefix], {}))

        results = {}
        for _ in range(args.repeats):  # interleave variants so background load hits all alike
            for label, python, code, cargs, env in variants:
                results.setdefault(label, []).append(run_child(python, code, cargs, env))

        fingers = [runs[0]["finger"] for runs in results.values()]
        assert all(f == fingers[0] for f in fingers), "readers disagree on tensor values"

        mb = 1024 * 1024
        print(f"checkpoint: {len(shapes)} tensors, {size / mb:.1f} MiB, written by {writer}")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, {datetime.date.today()}")
        print(f"median of {args.repeats} fresh processes, warm page cache\n")
        print("| reader | CRC check | import s | load s | import+load s | peak RSS MiB | peak / file | "
              "(peak - RSS after import) / file |")
        print("|---|---|---|---|---|---|---|---|")
        tf_total = None
        if have_tf:
            tf_runs = results["TensorFlow tf.train.load_checkpoint"]
            tf_total = statistics.median(r["import_s"] + r["load_s"] for r in tf_runs)
        for label, runs in results.items():
            imp = statistics.median(r["import_s"] for r in runs)
            load = statistics.median(r["load_s"] for r in runs)
            total = statistics.median(r["import_s"] + r["load_s"] for r in runs)
            peak = statistics.median(r["peak_kb"] for r in runs) * 1024
            extra = statistics.median(r["peak_kb"] - r["rss_import_kb"] for r in runs) * 1024
            speed = f" ({tf_total / total:.1f}x TF)" if tf_total and not label.startswith("TensorFlow") else ""
            crc = runs[0]["crc"] if "no verify" not in label else "off"
            print(f"| {label} | {crc} | {imp:.2f} | {load:.2f} | {total:.2f}{speed} | {peak / mb:.0f} | "
                  f"{peak / size:.2f} | {extra / size:.2f} |")
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
