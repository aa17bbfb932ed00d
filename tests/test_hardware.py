"""The precision and kernel choices: one function, driven here with each kind of machine."""
import warnings

import pytest
import torch

from plmkit import hardware
from plmkit.hardware import Hardware, choose, resolve_precision

AVX512 = frozenset({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"})
ZEN5 = Hardware(cpu_model="AMD EPYC (Zen 5)", vendor="AuthenticAMD", flags=AVX512 | {"avx512_bf16"},
                onednn_bf16=True)
ZEN3 = Hardware(cpu_model="AMD EPYC (Zen 3)", vendor="AuthenticAMD", flags=frozenset({"avx2", "fma"}))
SKYLAKE = Hardware(cpu_model="Intel Xeon (Skylake)", vendor="GenuineIntel", flags=AVX512, onednn_bf16=True)
SAPPHIRE = Hardware(cpu_model="Intel Xeon (Sapphire Rapids)", vendor="GenuineIntel",
                    flags=AVX512 | {"avx512_bf16", "amx_bf16", "amx_tile"}, onednn_bf16=True)


def test_native_bf16_cpu_gets_bf16():
    c = choose(ZEN5, "cpu")
    assert (c.precision, c.fast_linear) == ("bf16", True)  # the linear kernels are raced per shape on CPUs


def test_avx2_only_cpu_gets_fp32():
    c = choose(ZEN3, "cpu")
    assert (c.precision, c.fast_linear) == ("fp32", True)
    assert "emulated" in c.reasons["precision"]


def test_avx512_without_bf16_instructions_is_fp32():
    # oneDNN reports bf16 "support" on any AVX-512 core, but without AVX512-BF16 it is emulated
    assert choose(SKYLAKE, "cpu").precision == "fp32"


def test_amx_counts_as_native():
    assert choose(SAPPHIRE, "cpu").precision == "bf16"


def test_onednn_isa_cap_is_honoured():
    # how an AVX-512 machine plays an AVX2 one: ONEDNN_MAX_CPU_ISA=AVX2
    capped = Hardware(**{**ZEN5.__dict__, "onednn_isa_cap": "AVX2"})
    assert choose(capped, "cpu").precision == "fp32" and not capped.onednn_avx512
    below_bf16 = Hardware(**{**ZEN5.__dict__, "onednn_isa_cap": "AVX512_CORE"})
    assert choose(below_bf16, "cpu").precision == "fp32" and below_bf16.onednn_avx512
    assert choose(Hardware(**{**ZEN5.__dict__, "onednn_isa_cap": "ALL"}), "cpu").precision == "bf16"


def test_cuda_device_choices():
    gpu = Hardware(**{**ZEN3.__dict__, "cuda": True, "cuda_name": "NVIDIA H100", "cuda_bf16": True})
    c = choose(gpu)  # no device named: CUDA when present
    assert (c.device, c.precision, c.fast_linear) == ("cuda", "bf16", False)
    old = Hardware(**{**ZEN3.__dict__, "cuda": True, "cuda_name": "Tesla V100", "cuda_bf16": False})
    assert choose(old).precision == "fp32"
    assert choose(gpu, "cpu").precision == "fp32"  # the CPU of that machine is still AVX2-only


def test_resolve_precision_auto_and_warning_once():
    hardware._warned.clear()
    assert resolve_precision("auto", "cpu", hw=ZEN5) == "bf16"
    assert resolve_precision("auto", "cpu", hw=ZEN3) == "fp32"
    assert resolve_precision("fp32", "cpu", hw=ZEN5) == "fp32"
    with pytest.warns(UserWarning, match="many times slower"):
        assert resolve_precision("bf16", "cpu", hw=ZEN3) == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_precision("bf16", "cpu", hw=ZEN3)  # once per process
        resolve_precision("bf16", "cpu", hw=ZEN5)  # native: no warning
    with pytest.raises(ValueError, match="precision: expected one of auto, fp32, bf16, found 'fp16'"):
        resolve_precision("fp16", "cpu", hw=ZEN5)


def test_detect_reads_this_machine_consistently():
    hw = hardware.detect()
    assert hw.aten_capability == torch.backends.cpu.get_cpu_capability()
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert ("avx512_bf16" in flags) == ("avx512_bf16" in hw.flags)


def test_trainer_resolves_auto_with_the_same_function(monkeypatch):
    from plmkit.training import Trainer

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for hw, expected in ((ZEN5, "bf16"), (ZEN3, "fp32")):
        monkeypatch.setattr(hardware, "detect", lambda hw=hw: hw)
        assert Trainer(model, lambda m, b: m(b).sum(), opt, progress=False).precision == expected
