"""Name maps between our parameter names and a checkpoint's, as data, with strict checks.

A map is a list of `Rule`s. Each rule says how one of our tensors is made from one or more
of theirs (copy, transpose, concatenate) — and therefore, inverted, how to write theirs
from ours. `{i}` in a rule stands for a layer index and is expanded over the config's
layers. Loading checks coverage both ways: every tensor of ours is produced, every tensor
in the file is consumed, recognised as belonging to a head that was not built, or listed
as training state to skip.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import torch


class CheckpointError(ValueError):
    """A checkpoint does not fit the model: a tensor is missing, unexpected, mis-shaped or mis-typed."""


@dataclass(frozen=True)
class Rule:
    """ours <- op(theirs...): `transpose` each source (TF kernels), then `cat` along cat_dim, then
    multiply by `scale` (theirs = ours / scale when writing; a constant folded into a weight)."""

    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False
    cat_dim: int = 0
    vocab_rows: bool = False  # rows indexed by token id: sliced by keep_tokens
    optional: bool = False  # absent in some checkpoints (e.g. a tied decoder copy): ours stays as built
    scale: float = 1.0

    def __init__(self, ours: str, theirs: str | Iterable[str], transpose: bool = False, cat_dim: int = 0,
                 vocab_rows: bool = False, optional: bool = False, scale: float = 1.0) -> None:
        object.__setattr__(self, "ours", ours)
        object.__setattr__(self, "theirs", (theirs,) if isinstance(theirs, str) else tuple(theirs))
        object.__setattr__(self, "transpose", transpose)
        object.__setattr__(self, "cat_dim", cat_dim)
        object.__setattr__(self, "vocab_rows", vocab_rows)
        object.__setattr__(self, "optional", optional)
        object.__setattr__(self, "scale", scale)

    def expand(self, num_layers: int, fmt: Mapping[str, str]) -> list["Rule"]:
        """Concrete rules: `{i}` over layers, other `{names}` from fmt (e.g. a prefix)."""
        layers = range(num_layers) if "{i}" in self.ours else [None]
        out = []
        for i in layers:
            values = dict(fmt, i=i)
            out.append(Rule(self.ours.format(**values), [t.format(**values) for t in self.theirs],
                            self.transpose, self.cat_dim, self.vocab_rows, self.optional, self.scale))
        return out


@dataclass
class LoadReport:
    """What a load did: each list names tensors (ours for missing, theirs otherwise)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ours, left as initialised
    unexpected: list[str] = field(default_factory=list)  # theirs, not recognised
    skipped_heads: list[str] = field(default_factory=list)  # theirs, for heads not built
    skipped_state: list[str] = field(default_factory=list)  # theirs, optimizer slots, global_step, ...
    ignored: list[str] = field(default_factory=list)  # theirs, copies of tensors we load once (tied weights)

    def summary(self) -> str:
        """One line per category with counts."""
        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        for name in ("missing", "unexpected", "skipped_heads", "skipped_state"):
            items = getattr(self, name)
            if items:
                shown = ", ".join(items[:5]) + (f", ... (+{len(items) - 5})" if len(items) > 5 else "")
                parts.append(f"{name.replace('_', ' ')}: {len(items)} ({shown})")
        return "; ".join(parts)


def _combine(rule: Rule, tensors: list[torch.Tensor]) -> torch.Tensor:
    if rule.transpose:
        tensors = [t.t() for t in tensors]
    value = tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=rule.cat_dim)
    return value if rule.scale == 1.0 else value * rule.scale


def _dtype_kind(dtype: torch.dtype) -> str:
    """The kind a stored tensor must share with ours: precision within a kind is cast, across kinds refused."""
    if dtype.is_floating_point:
        return "floating point"
    if dtype.is_complex:
        return "complex"
    return "boolean" if dtype == torch.bool else "integer"


def _dtype_str(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def apply_map(rules: list[Rule], ours: Mapping[str, torch.Tensor], theirs: Mapping[str, object],
              get: Callable[[str], torch.Tensor], *, source: str, skip_state: Callable[[str], bool] = lambda n: False,
              ignore: Iterable[str] = (), keep_tokens: list[int] | None = None, allow_missing: bool = False,
              allow_unexpected: bool = False) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Build our state dict from a checkpoint through `rules`; raise on any gap unless allowed.

    `ours` holds the model's tensors (for names and shapes), `theirs` the checkpoint's names,
    `get(name)` reads one of their tensors (lazily, so large files are not read twice);
    `ignore` names their tensors that duplicate others (a tied decoder saved beside the embeddings).
    """
    report = LoadReport(source=source)
    by_ours = {r.ours: r for r in rules}
    claimed: set[str] = set()
    state: dict[str, torch.Tensor] = {}
    errors: list[str] = []
    for name, target in ours.items():
        rule = by_ours.get(name)
        if rule is None:
            errors.append(f"no rule maps our tensor {name!r} (a gap in the name map for this family)")
            continue
        absent = [t for t in rule.theirs if t not in theirs]
        if absent:
            if rule.optional or allow_missing:
                report.missing.append(name)
                partial = [t for t in rule.theirs if t in theirs]  # parts of a fused tensor we cannot complete
                claimed.update(partial)
                report.ignored.extend(partial)
            else:
                errors.append(f"missing tensor {absent[0]!r} (for {name}) in {source}")
            continue
        parts = [get(t) for t in rule.theirs]
        wrong = [(t, p) for t, p in zip(rule.theirs, parts) if _dtype_kind(p.dtype) != _dtype_kind(target.dtype)]
        if wrong:
            t, p = wrong[0]
            errors.append(f"tensor {t!r} in {source} has dtype {_dtype_str(p.dtype)}, expected "
                          f"{_dtype_kind(target.dtype)} ({_dtype_str(target.dtype)}) for {name}")
            claimed.update(rule.theirs)  # named once, as mis-typed, not again as unexpected
            continue
        value = _combine(rule, parts)
        if rule.vocab_rows and keep_tokens is not None:
            value = value[torch.as_tensor(keep_tokens, dtype=torch.long)]
        if tuple(value.shape) != tuple(target.shape):
            errors.append(f"tensor {'+'.join(rule.theirs)!r} in {source} has shape {tuple(value.shape)}, "
                          f"expected {tuple(target.shape)} for {name}")
            claimed.update(rule.theirs)
            continue
        state[name] = value
        claimed.update(rule.theirs)
        report.loaded.append(name)
    known_unbuilt = {t for r in rules if r.ours not in ours for t in r.theirs}
    ignore = set(ignore)
    for name in theirs:
        if name in claimed:
            continue
        if name in ignore:
            report.ignored.append(name)
        elif name in known_unbuilt:
            report.skipped_heads.append(name)
        elif skip_state(name):
            report.skipped_state.append(name)
        else:
            report.unexpected.append(name)
    if report.unexpected and not allow_unexpected:
        shown = ", ".join(repr(n) for n in report.unexpected[:10])
        errors.append(f"unexpected tensors in {source}: {shown}"
                      + (f" and {len(report.unexpected) - 10} more" if len(report.unexpected) > 10 else ""))
    if errors:
        allowable = any(e.startswith(("missing tensor", "unexpected tensors")) for e in errors)
        hint = (" (pass allow_missing=True / allow_unexpected=True to load anyway and get a report)"
                if allowable and not allow_missing else "")
        raise CheckpointError("; ".join(errors) + hint)
    return state, report


def invert_map(rules: list[Rule], ours: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their tensors from ours: split concatenations, undo transposes and scales (rules for unbuilt parts are skipped)."""
    out: dict[str, torch.Tensor] = {}
    for rule in rules:
        if rule.ours not in ours:
            continue
        value = ours[rule.ours] if rule.scale == 1.0 else ours[rule.ours] / rule.scale
        parts = [value] if len(rule.theirs) == 1 else list(torch.chunk(value, len(rule.theirs), dim=rule.cat_dim))
        for name, part in zip(rule.theirs, parts):
            out[name] = (part.t() if rule.transpose else part).contiguous()
    return out


_STATE_PATTERNS = re.compile(r"(^|/)(global_step|adam_[mv]|Adam(_\d+)?|.*_slot_v[rc]?|.*slot_v|beta[12]_power|"
                             r"bad_steps|good_steps|loss_scale)(/|$)|\.OPTIMIZER_SLOT|save_counter|_CHECKPOINTABLE_OBJECT_GRAPH")


def is_training_state(name: str) -> bool:
    """Optimizer slots, step counters and other training state found in TF checkpoints."""
    return bool(_STATE_PATTERNS.search(name))
