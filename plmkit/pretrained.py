"""The edge: detect a checkpoint's format, build the model, load strictly; and the reverse."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .config import ConfigError, ModelConfig, read_json
from .convert.namemap import CheckpointError, LoadReport, apply_map, invert_map, is_training_state
from .convert.tensor_files import open_hf_weights, save_safetensors
from .files import save_json
from .models import Family, Source, families, get_family


FORMAT_NAMES = {"hf": "Hugging Face", "tf": "TensorFlow"}


def _choose_family(fmt: str, d: dict[str, Any], names, where: Path, model: str | None) -> Family:
    """The family named by `model`, else the one whose `fmt` source recognises the checkpoint."""
    if model is not None:
        family = get_family(model)
        if fmt not in family.sources:
            raise NotImplementedError(f"family {family.name!r} has no {FORMAT_NAMES[fmt]} name map yet")
        return family
    found = [f for f in families() if fmt in f.sources and f.sources[fmt].detect is not None
             and f.sources[fmt].detect(d, names)]
    if len(found) == 1:
        return found[0]
    what = f"model_type {d['model_type']!r}" if fmt == "hf" and "model_type" in d else "this checkpoint"
    if not found:
        readable = sorted(f.name for f in families() if fmt in f.sources)
        raise ConfigError(f"{where}: cannot tell the model family of {what} ({FORMAT_NAMES[fmt]} format); "
                          f"pass model=... (families reading this format: {readable})")
    raise ConfigError(f"{where}: {what} fits several families ({[f.name for f in found]}); pass model=...")


def _best_prefix(source: Source, config, names) -> str:
    """The base-model prefix under which the file stores most of the family's tensors."""
    if len(source.prefixes) == 1:
        return source.prefixes[0]
    capped = _capped(config, len(names) + 1)  # more layers than tensors cannot rank prefixes differently

    def hits(prefix: str) -> int:
        try:
            rules, _ = source.rules(capped or config, prefix, names)
        except ConfigError:  # the family ties an option to the layer count
            rules, _ = source.rules(config, prefix, names)
        return sum(all(t in names for t in r.theirs) for r in rules)
    return max(source.prefixes, key=hits)


@dataclass
class CheckpointSource:
    """An opened checkpoint: its family, config, tensor names and a lazy reader, in either format."""

    family: Family
    config: ModelConfig
    names: Any  # container of the file's tensor names (ordered, O(1) membership)
    get: Callable[[str], torch.Tensor]  # one tensor, in its stored dtype
    rules_for: Callable[[ModelConfig], tuple[list, set]]  # config -> (name rules, ignored names)
    description: str  # the file or prefix, for messages
    directory: Path
    format: str  # "hf" or "tf"
    size: int  # bytes of the weight files
    raw_config: dict[str, Any] | None = None  # the config file as read, to name its fields in messages


def _is_hf_dir(directory: Path) -> bool:
    return (directory / "config.json").exists() and any(
        (directory / n).exists() for n in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                                          "pytorch_model.bin.index.json"))


def open_checkpoint(path: str | Path, model: str | None = None, config: str | Path | None = None) -> CheckpointSource:
    """Detect the format of `path`, read its config, pick the family and open its tensors lazily."""
    path = Path(path)
    if not path.exists() and not Path(str(path) + ".index").exists():
        raise FileNotFoundError(f"{path} does not exist (neither a directory, a file nor a TensorFlow prefix)")
    directory = path if path.is_dir() else path.parent
    if _is_hf_dir(directory):
        fmt, config_path = "hf", directory / "config.json"
        weights = open_hf_weights(directory)
        names, get, description = weights, weights.get, weights.description
        size = sum(p.stat().st_size for p in set(weights.names.values()))
    elif path.name.endswith(".index") or any(directory.glob("*.index")) or Path(str(path) + ".index").exists():
        from .convert.tensorflow import TFCheckpointReader, data_filename

        reader = TFCheckpointReader(path)
        fmt, directory = "tf", Path(reader.prefix).parent
        config_path = _tf_config_path(directory, config)
        names = {k: reader.shape(k) for k in reader.keys()}  # name -> shape, in file order
        get, description = reader.get_torch, reader.prefix
        shards = reader.header.num_shards
        size = sum(os.path.getsize(data_filename(reader.prefix, i, shards)) for i in range(shards))
    else:
        raise FileNotFoundError(f"{path}: found neither config.json with model.safetensors / pytorch_model.bin "
                                "(Hugging Face format) nor a TensorFlow checkpoint (*.index)")
    d = read_json(config_path)
    family = _choose_family(fmt, d, names, config_path, model)
    source = family.sources[fmt]
    cfg = source.read_config(d, str(config_path), names)
    prefix = _best_prefix(source, cfg, names)
    return _plausible(CheckpointSource(family, cfg, names, get, lambda c: source.rules(c, prefix, names),
                                       description, directory, fmt, size, d))


def _plausible(source: CheckpointSource) -> CheckpointSource:
    """Refuse at once a config asking for more layers than the file has tensors, whatever is allowed later:
    building them (for info, convert or a load that allows missing tensors) would take minutes."""
    if any(n > len(source.names) for n in _layer_counts(source.config).values()):
        _check_layer_counts(source, source.config, allow_missing=False, allow_unexpected=True)
    return source


def from_pretrained(path: str | Path, model: str | None = None, *, with_mlm: bool = False, with_pool: bool = False,
                    with_nsp: bool = False, application: str | None = None, keep_tokens: list[int] | None = None,
                    allow_missing: bool = False, allow_unexpected: bool = False,
                    dtype: torch.dtype | None = None, config: str | Path | None = None,
                    quantize: str | None = None, **build_options: Any) -> nn.Module:
    """Load a pretrained model in eval mode; `model.load_report` says what was loaded.

    `path` is a Hugging Face directory (config.json + safetensors / pytorch_model.bin) or an
    original TensorFlow checkpoint (a directory, a prefix or the .index file) with the
    release's config beside it (bert_config.json, albert_config.json, config.json; or name
    it with `config=`). The family is the one whose source recognises the checkpoint (a Hugging Face
    config's model_type; a TensorFlow checkpoint's variable names, with its config where the names are
    shared: NEZHA asks for relative positions); `model=` names it where several could read the file
    (roberta's checkpoints are bert's; albert_unshared reads albert's).
    Optimizer slots and step counters are skipped and reported.

    Loading is strict: a missing, unexpected, mis-shaped or mis-typed tensor (an integer tensor
    where ours is floating point, or the reverse; float16/bfloat16/float32 storage is cast) raises
    CheckpointError naming it, unless allow_missing / allow_unexpected is set (then missing and
    unexpected tensors are listed in the report). The config's layer counts are checked against
    the file's tensor names before anything is built.
    Tensors of heads that were not asked for (pooler, MLM, NSP) are skipped and reported.
    `application` ("encoder" | "lm" | "unilm") defaults to the family's own (bidirectional
    for BERT-like encoders, causal for GPT). `num_labels=N` adds a new classification head,
    initialised as the builder does and listed in `load_report.missing`.

    Inference precision: `dtype=torch.bfloat16` stores and runs the model in bf16 (fast where
    the CPU has native bf16: see plmkit.hardware); `quantize="int8"` replaces the linear layers
    by int8 dynamic-quantised ones for CPU inference (plmkit.quantize).
    """
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize: expected None or 'int8', found {quantize!r}")
    source = open_checkpoint(path, model, config)
    options = dict(with_mlm=with_mlm, with_pool=with_pool, with_nsp=with_nsp, **build_options)
    if application is not None:
        options["application"] = application
    model = load_source(source, options, keep_tokens=keep_tokens, allow_missing=allow_missing,
                        allow_unexpected=allow_unexpected, dtype=dtype)
    if quantize == "int8":
        from .quantize import quantize_dynamic
        quantize_dynamic(model)
    return model


def _tf_config_names() -> list[str]:
    """The config file names TensorFlow releases of the registered families ship, looked for in turn."""
    names = dict.fromkeys(f.sources["tf"].config_file for f in families() if "tf" in f.sources)
    return sorted(names, key=lambda n: n == "config.json")  # the generic name last


# *config*.json files that describe something else than the model (plmkit's own export writes the first)
_NOT_MODEL_CONFIG = re.compile(r"tokeni[sz]er|generation|preprocessor|processor|feature_extractor|special_tokens|"
                               r"sentence|adapter|quantiz|peft|trainer|training|optimizer|deepspeed|accelerate")
# a model config states the model's size under at least one of these names
_SIZE_FIELDS = ("num_hidden_layers", "num_layers", "n_layer", "hidden_size", "d_model", "n_embd")


def _is_model_config(path: Path) -> bool:
    if _NOT_MODEL_CONFIG.search(path.name.lower()):
        return False
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and any(k in d for k in _SIZE_FIELDS)


def _tf_config_path(directory: Path, explicit: str | Path | None) -> Path:
    if explicit is not None:
        p = Path(explicit)
        return p if p.is_absolute() or p.exists() else directory / p
    for name in _tf_config_names():
        if (directory / name).exists():
            return directory / name
    others = sorted(directory.glob("*config*.json"))
    found = [f for f in others if _is_model_config(f)]
    if len(found) == 1:
        return found[0]
    passed = [f.name for f in others if f not in found]
    raise FileNotFoundError(
        f"{directory}: no config file beside the TensorFlow checkpoint (the model's): looked for "
        f"{', '.join(_tf_config_names())}, "
        f"or one other *config*.json stating the model's size ({' / '.join(_SIZE_FIELDS)})"
        + (f"; found several: {[f.name for f in found]}" if found else "")
        + (f"; not model configs: {passed}" if passed else "") + "; pass config=...")


# Our own module tree numbers its layers `blocks.{i}.` (under encoder. / decoder. for encoder-decoders);
# the config field that counts each stack, and the names config files give that field.
_LAYER_NAME = re.compile(r"^(|encoder\.|decoder\.)blocks\.(\d+)\.")
_LAYER_FIELDS = {"": "num_layers", "encoder.": "num_layers", "decoder.": "num_decoder_layers"}
_FILE_FIELDS = {"num_layers": ("num_hidden_layers", "num_layers", "n_layer"),
                "num_decoder_layers": ("num_decoder_layers",)}


def _layer_counts(config: ModelConfig) -> dict[str, int]:
    counts = {"num_layers": config.num_layers}
    if hasattr(config.options, "num_decoder_layers"):  # an encoder-decoder
        counts["num_decoder_layers"] = config.options.num_decoder_layers or config.num_layers
    return counts


def _with_layer_counts(config: ModelConfig, counts: dict[str, int]) -> ModelConfig | None:
    """`config` with other layer counts, to look at name rules cheaply; None if the family refuses them."""
    if counts == _layer_counts(config):
        return config
    try:
        config = config.replace(num_layers=counts["num_layers"])
        if "num_decoder_layers" in counts:
            config = config.with_options(num_decoder_layers=counts["num_decoder_layers"])
        return config
    except ConfigError:
        return None


def _capped(config: ModelConfig, limit: int) -> ModelConfig | None:
    """`config` with its layer counts capped at `limit`; None if the family refuses that."""
    return _with_layer_counts(config, {f: min(n, limit) for f, n in _layer_counts(config).items()})


def _check_layer_counts(source: CheckpointSource, config: ModelConfig, *, allow_missing: bool,
                        allow_unexpected: bool) -> None:
    """Compare the config's layer counts with the layers the file's tensor names hold, before building.

    Only names are looked at, for one layer more than the config asks (to see layers it leaves out),
    but never more layers than the file has tensors: a layer that is not shared holds at least one
    tensor of its own, so a config asking for a million layers is refused at once, not after building.
    """
    counts = _layer_counts(config)
    limit = len(source.names) + 1
    probe_counts = {f: min(n + 1, limit) for f, n in counts.items()}
    rules = None
    for probe in (_with_layer_counts(config, probe_counts), _capped(config, limit)):
        try:
            rules = source.rules_for(probe)[0] if probe is not None else None
        except ConfigError:  # a family option tied to the layer count
            rules = None
        if rules is not None:
            probe_counts = _layer_counts(probe)
            break
    if rules is None:
        return  # the full load still checks every tensor
    layers: dict[str, dict[int, set[str]]] = {f: {} for f in counts}
    for rule in rules:
        m = _LAYER_NAME.match(rule.ours)
        if m and not rule.optional and _LAYER_FIELDS[m.group(1)] in layers:
            layers[_LAYER_FIELDS[m.group(1)]].setdefault(int(m.group(2)), set()).update(rule.theirs)
    for field_name, by_layer in layers.items():
        probe_n, wanted = probe_counts[field_name], counts[field_name]
        reads = [t for names in by_layer.values() for t in names]
        if len(by_layer) < probe_n or len(reads) != len(set(reads)):
            continue  # layers that share weights (ALBERT's layer groups): no count to compare
        held = 0
        while held < probe_n and any(t in source.names for t in by_layer[held]):
            held += 1
        if held == wanted or (held < wanted and allow_missing) or (held > wanted and allow_unexpected):
            continue
        raw = source.raw_config or {}
        spelled = next((k for k in _FILE_FIELDS[field_name] if raw.get(k) == wanted), field_name)
        if held > wanted:
            extra = sorted(t for t in by_layer[wanted] if t in source.names)
            raise ConfigError(f"{config.source}: field {spelled!r} is {wanted}, but {source.description} holds "
                              f"tensors for more layers (e.g. {extra[0]!r}); set {spelled} to match the checkpoint")
        absent = sorted(t for t in by_layer[held] if t not in source.names)
        if held == 0:
            raise CheckpointError(f"{source.description} holds no tensor of layer 0 under the names family "
                                  f"{source.family.name!r} reads (no {absent[0]!r}); is model=... right?")
        raise ConfigError(f"{config.source}: field {spelled!r} is {wanted}, but {source.description} holds tensors "
                          f"for {held} layers (0..{held - 1}; no {absent[0]!r}); set {spelled} to match the "
                          "checkpoint")


def load_source(source: CheckpointSource, options: dict[str, Any], *, keep_tokens: list[int] | None = None,
                allow_missing: bool = False, allow_unexpected: bool = False, dtype: torch.dtype | None = None,
                get: Callable[[str], torch.Tensor] | None = None, config: ModelConfig | None = None) -> nn.Module:
    """Build on the meta device, map names strictly, load with assign: no second copy of the weights.

    `get` replaces the source's tensor reader (e.g. to count tensors for a progress bar);
    `config` replaces the source's config (e.g. with label names added).
    """
    family, names, description = source.family, source.names, source.description
    config = config or source.config
    get = get or source.get
    rules_for = source.rules_for
    if keep_tokens is not None:
        bad = [t for t in keep_tokens if not 0 <= t < config.vocab_size]
        if bad:
            raise ValueError(f"keep_tokens holds ids outside the vocabulary of {config.vocab_size}: {bad[:5]}")
        config = config.replace(vocab_size=len(keep_tokens))
    _check_layer_counts(source, config, allow_missing=allow_missing, allow_unexpected=allow_unexpected)
    if config.labels and "num_labels" not in options:
        options["num_labels"] = len(config.labels)  # a fine-tuned classifier loads with its head
    with torch.device("meta"):
        model = family.build(config, **options)
    rules, tied = rules_for(config)
    ours = model.state_dict()
    state, report = apply_map(rules, ours, names, get, source=description, ignore=tied,
                              skip_state=is_training_state, keep_tokens=keep_tokens,
                              allow_missing=allow_missing, allow_unexpected=allow_unexpected)
    if report.missing:
        # tensors left out of the file are initialised as the builder would, on a real device
        fresh = family.build(config, **options).state_dict()
        state.update({k: fresh[k] for k in report.missing})
    model.load_state_dict({k: v.to(ours[k].dtype) for k, v in state.items()}, strict=True, assign=True)
    if dtype is not None:
        model.to(dtype)
    model.load_report = report
    return model.eval()


def _write_hf(tensors: dict[str, torch.Tensor], out: Path, source: Source, dtype: torch.dtype | None) -> None:
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    save_safetensors(tensors, out / source.checkpoint_name)


def _write_tf(tensors: dict[str, torch.Tensor], out: Path, source: Source, dtype: torch.dtype | None) -> None:
    from .convert.tensorflow import write_tf_checkpoint

    dtypes = {torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(dtype) if dtype is not None else None
    write_tf_checkpoint(out / source.checkpoint_name, {k: v.float() for k, v in tensors.items()}, dtypes=dtypes)


_WRITERS = {"hf": _write_hf, "tf": _write_tf}


INFERENCE_PRECISIONS = ("fp32", "bf16", "int8")


def inference_options(precision: str) -> dict[str, Any]:
    """from_pretrained options for an inference precision: fp32 (exact), bf16 (weights and compute), int8
    (dynamic quantisation of the linear layers, CPU)."""
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(INFERENCE_PRECISIONS)}, found {precision!r}")
    return {"bf16": {"dtype": torch.bfloat16}, "int8": {"quantize": "int8"}}.get(precision, {})


def save_pretrained(model: nn.Module, out_dir: str | Path, format: str = "hf", *, dtype: torch.dtype | None = None,
                    tokenizer=None) -> Path:
    """Write `model` in a checkpoint format of its family: "hf", a directory transformers loads back to the
    same outputs, or "tf", an original-style TensorFlow checkpoint with the release's variable names and
    config file. Both go through the family's Source for that format (name map, config writer).

    `dtype` stores floating tensors in another precision (e.g. float16 to halve the size);
    `tokenizer` (anything with .save(dir)) is written beside the weights.
    """
    out = Path(out_dir)
    if getattr(model, "quantized", None):
        raise ValueError(f"save_pretrained: the model is {model.quantized}-quantised for inference; save the float "
                         "model (load it again without quantize=) and quantise after loading")
    if format not in _WRITERS:
        raise ValueError(f"format must be one of {', '.join(repr(f) for f in _WRITERS)}, found {format!r}")
    config = model.config
    family = get_family(config.family)
    source = family.sources.get(format)
    if source is None:
        raise NotImplementedError(f"family {family.name!r} has no {FORMAT_NAMES[format]} name map yet")
    rules, _ = source.rules(config, source.prefixes[0], None)
    ours = model.state_dict()
    missing = sorted(set(ours) - {r.ours for r in rules})
    if missing:
        raise CheckpointError(f"no {FORMAT_NAMES[format]} rule writes our tensors {missing[:5]} for family "
                              f"{config.family!r}")
    theirs = {k: v.detach().cpu() for k, v in invert_map(rules, ours).items()}
    written = source.write_config(config)
    if source.architecture is not None:
        written["architectures"] = [source.architecture(model)]
    out.mkdir(parents=True, exist_ok=True)
    _WRITERS[format](theirs, out, source, dtype)
    save_json(written, out / source.config_file)
    if tokenizer is not None:
        tokenizer.save(out)
    return out


__all__ = ["from_pretrained", "save_pretrained", "LoadReport", "CheckpointError"]
