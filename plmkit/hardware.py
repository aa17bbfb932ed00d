"""What the machine can do, and the defaults chosen from it: one place for device, precision and kernels.

    detect() ─► Hardware (CPU model, vendor, ISA flags, oneDNN's ISA cap, CUDA)   read once per process
    choose(Hardware) ─► Choices (device, precision, fast fp32 linear)          a pure function; tests drive it

The rules, and why (measured in benchmarks/README.md):

* **precision "auto"** is bf16 autocast only where bf16 matmuls are native: a CUDA device that
  supports bf16, or a CPU with AVX512-BF16 or AMX-BF16 whose oneDNN may use them. Elsewhere bf16
  is emulated and an order of magnitude slower than fp32 (22.5 s against 1.0 s for one training
  step on an AVX2-only EPYC), so "auto" is fp32 there, and asking for bf16 warns once.
* **the oneDNN fp32 linear** (modules/linear.py) is raced against torch's default GEMM once per
  shape class on first use, on any CPU whose torch has oneDNN: which one is faster depends on
  the CPU and the shape (2.5x for oneDNN on every shape of Zen 5; on Zen 4 and AVX2-only CPUs
  the same rate for large products but up to 2.5x for oneDNN at a few rows), so neither an
  ISA rule nor a vendor rule gets all of them right. The two kernels agree to ~1e-6.

oneDNN's ISA cap (the ONEDNN_MAX_CPU_ISA environment variable, which also lets an AVX-512
machine play an AVX2 one) is honoured: a capability oneDNN may not use is not counted.
"""
from __future__ import annotations

import os
import platform
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import torch

PRECISIONS = ("auto", "fp32", "bf16")
# oneDNN's CPU ISA levels (x86), lowest first: a cap admits its own level and the ones below
_ONEDNN_ISA_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                     "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX",
                     "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512",
                     "AVX10_2_512_AMX_2")


@dataclass(frozen=True)
class Hardware:
    """What detect() found; every field is a plain value so tests can build any machine."""

    cpu_model: str = "unknown"
    vendor: str = "unknown"  # "AuthenticAMD", "GenuineIntel", ... ("unknown" off Linux)
    flags: frozenset[str] = field(default_factory=frozenset)  # /proc/cpuinfo flags (lower case)
    onednn_isa_cap: str | None = None  # ONEDNN_MAX_CPU_ISA, upper case; None: no cap
    aten_capability: str = "DEFAULT"  # torch's vectorised-kernel level (AVX512, AVX2, ...)
    onednn_bf16: bool = False  # torch's oneDNN reports bf16 support (within the cap)
    threads: int = 1
    cuda: bool = False
    cuda_name: str | None = None
    cuda_bf16: bool = False

    def onednn_allows(self, level: str) -> bool:
        """Whether oneDNN's ISA cap admits `level` (one of _ONEDNN_ISA_ORDER)."""
        cap = self.onednn_isa_cap
        if cap in (None, "", "ALL", "DEFAULT"):
            return True
        if cap not in _ONEDNN_ISA_ORDER:
            return True  # a name we do not know: oneDNN treats it as no cap too
        return _ONEDNN_ISA_ORDER.index(cap) >= _ONEDNN_ISA_ORDER.index(level)

    @property
    def cpu_native_bf16(self) -> bool:
        """bf16 dot products in hardware (AVX512-BF16, AMX-BF16, Arm BF16) that oneDNN may use."""
        has = bool(self.flags & {"avx512_bf16", "amx_bf16", "bf16"})
        return has and self.onednn_bf16 and self.onednn_allows("AVX512_CORE_BF16")

    @property
    def onednn_avx512(self) -> bool:
        """oneDNN may run AVX-512 kernels here."""
        return {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= self.flags and self.onednn_allows("AVX512_CORE")


@dataclass(frozen=True)
class Choices:
    """The defaults chosen for a machine, with the reason for each."""

    device: str
    precision: str  # "bf16" or "fp32": what precision="auto" means here
    fast_linear: bool  # fp32 CPU inference may take oneDNN's linear kernel (raced per shape class)
    reasons: dict[str, str]


def _cpuinfo() -> tuple[str, str, frozenset[str]]:
    """(model name with family / model numbers, vendor, flags) of the first processor in /proc/cpuinfo."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key:
                    if fields:
                        break  # end of the first processor's block
                    continue
                fields.setdefault(key, value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    if "cpu family" in fields:  # a name like "AMD EPYC" covers several generations (Zen 4: 25/17, Zen 5: 26)
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = frozenset((fields.get("flags") or fields.get("Features") or "").lower().split())
    return model, fields.get("vendor_id", "unknown"), flags


@lru_cache(maxsize=1)
def detect() -> Hardware:
    """The machine this process runs on (read once)."""
    model, vendor, flags = _cpuinfo()
    try:
        onednn_bf16 = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn_bf16 = False
    cuda = torch.cuda.is_available()
    return Hardware(
        cpu_model=model, vendor=vendor, flags=flags,
        onednn_isa_cap=(os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
        or None,
        aten_capability=torch.backends.cpu.get_cpu_capability(), onednn_bf16=onednn_bf16,
        threads=torch.get_num_threads(), cuda=cuda,
        cuda_name=torch.cuda.get_device_name() if cuda else None,
        cuda_bf16=bool(cuda and torch.cuda.is_bf16_supported()),
    )


def choose(hw: Hardware, device: str | torch.device | None = None) -> Choices:
    """The defaults for `device` (None: CUDA when present, else CPU) on machine `hw`."""
    dev = torch.device(device) if device is not None else torch.device("cuda" if hw.cuda else "cpu")
    reasons = {}
    if dev.type == "cuda":
        precision = "bf16" if hw.cuda_bf16 else "fp32"
        reasons["precision"] = f"{hw.cuda_name or 'CUDA'}: bf16 {'supported' if hw.cuda_bf16 else 'not supported'}"
    elif hw.cpu_native_bf16:
        precision = "bf16"
        reasons["precision"] = "CPU has native bf16 (AVX512-BF16 / AMX)"
    else:
        precision = "fp32"
        why = ("oneDNN capped below AVX512_CORE_BF16" if hw.flags & {"avx512_bf16", "amx_bf16"}
               else "no native bf16 in this CPU")
        reasons["precision"] = f"{why}: bf16 would be emulated, slower than fp32"
    fast_linear = dev.type == "cpu"
    reasons["fast_linear"] = ("raced against torch's default GEMM per shape class on first use"
                              if fast_linear else "not a CPU device")
    return Choices(device=str(dev), precision=precision, fast_linear=fast_linear, reasons=reasons)


def _named(device: str | torch.device | None) -> torch.device:
    """`device` as torch reads it, else CUDA when present, else CPU; a name torch does not know is a ValueError."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:  # torch's own message lists the device types it knows
        raise ValueError(f"device {str(device)!r}: {e}") from None


def _count(kind: str) -> int:
    """How many devices of type `kind` (cuda, xpu, mps, ...) this process can use."""
    backend = getattr(torch, kind, None)
    if not getattr(backend, "is_available", lambda: False)():
        return 0
    return backend.device_count() if hasattr(backend, "device_count") else 1


def available_devices(also: str | None = None) -> list[str]:
    """The devices this process can run on: cpu, then each CUDA device (and each of type `also`)."""
    found = ["cpu"]
    for kind in dict.fromkeys(k for k in ("cuda", also) if k not in (None, "cpu", "meta")):
        found += [f"{kind}:{i}" for i in range(_count(kind))]
    return found


def resolve_device(device: str | torch.device | None = None, *, present: bool = True) -> torch.device:
    """`device` as given, else CUDA when present, else CPU: the one default every recipe uses.

    A name torch does not know, or (when `present`) a device this machine lacks, is a ValueError that
    names the device asked for and the ones there are, before any work starts. `present=False` lets a
    caller ask about a device elsewhere (`plmkit info --hardware --device cuda` on a CPU machine).
    """
    dev = _named(device)
    # cpu is always there; meta holds shapes only (conversion checks at real sizes)
    if present and dev.type not in ("cpu", "meta") and (dev.index or 0) >= _count(dev.type):
        have = available_devices(also=dev.type)
        raise ValueError(f"device {str(device)!r}: this machine has {_count(dev.type)} {dev.type} device"
                         f"{'' if _count(dev.type) == 1 else 's'} (torch {torch.__version__}); "
                         f"found: {', '.join(have)}")
    return dev


def inference_device(device: str | torch.device | None = None, precision: str = "fp32") -> torch.device:
    """resolve_device for running a model at an inference precision (pretrained.INFERENCE_PRECISIONS).

    int8 is dynamic quantisation, which runs on the CPU: its default device is the CPU whatever else is
    present, and any other device is a ValueError.
    """
    if precision != "int8":
        return resolve_device(device)
    dev = _named("cpu" if device in (None, "auto") else device)
    if dev.type != "cpu":
        raise ValueError(f"precision int8 (dynamic quantisation) runs on the CPU, found device {str(device)!r}")
    return dev


_warned: set[str] = set()


def resolve_precision(precision: str, device: str | torch.device | None = None,
                      hw: Hardware | None = None) -> str:
    """"auto" -> what choose() picks for `device`; "bf16" where it is emulated warns once; returns fp32 / bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, found {precision!r}")
    hw = hw or detect()
    choices = choose(hw, _named(device))  # a device elsewhere may be asked about
    if precision == "auto":
        return choices.precision
    if precision == "bf16" and choices.precision != "bf16" and torch.device(choices.device).type == "cpu":
        key = f"bf16:{choices.device}"
        if key not in _warned:
            _warned.add(key)
            warnings.warn(f"precision 'bf16' on this CPU ({hw.cpu_model}): {choices.reasons['precision']}; "
                          "expect it to run many times slower than 'fp32' (precision 'auto' picks fp32 here)",
                          stacklevel=2)
    return precision


def report(hw: Hardware | None = None, device: str | torch.device | None = None) -> dict[str, object]:
    """What was detected and chosen, as `plmkit info --hardware` prints it and runs record it."""
    hw = hw or detect()
    c = choose(hw, _named(device))  # what plmkit would choose there, present or not
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in hw.flags]
    return {
        "cpu": hw.cpu_model, "vendor": hw.vendor, "isa_flags": " ".join(isa) or "none",
        "onednn_isa_cap": hw.onednn_isa_cap or "none", "aten_capability": hw.aten_capability,
        "threads": hw.threads, "cuda": hw.cuda_name or "none", "torch": torch.__version__,
        "device": c.device, "precision_auto": c.precision, "precision_why": c.reasons["precision"],
        "onednn_avx512": hw.onednn_avx512, "fast_fp32_linear": c.fast_linear,
        "fast_fp32_linear_why": c.reasons["fast_linear"],
    }


def fast_linear_for(device: str | torch.device) -> bool:
    """Whether fp32 inference on `device` takes the oneDNN linear path in this process."""
    if torch.device(device).type != "cpu":
        return False
    from .modules.linear import fast_cpu_linear_enabled
    return fast_cpu_linear_enabled()


def describe(precision: str, device: str | torch.device) -> str:
    """One line for the start of a run: device, precision and kernels, with the reason."""
    hw = detect()
    c = choose(hw, device)
    dev = torch.device(device)
    where = hw.cuda_name if dev.type == "cuda" else f"{hw.cpu_model}, {torch.get_num_threads()} threads"
    line = f"device {dev} ({where}); precision {precision}"
    if precision == c.precision:
        line += f" ({c.reasons['precision']})"
    if dev.type == "cpu":
        line += f"; fp32 inference linears: {'raced per shape (oneDNN vs default)' if fast_linear_for(dev) else 'torch default'}"
    return line
