"""dtype=auto: the rule that picks the fastest dtype where the run is, with the hardware
probes replaced so that each kind of machine can be tried on this one."""

from __future__ import annotations

import pytest
import torch

from trainkit import runtime
from trainkit.runtime import auto_dtype, setup_runtime


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has (or lacks) AMX tiles and AVX512-BF16, oneDNN free to use them."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)

    def pretend(*, amx: bool, avx512_bf16: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)

    return pretend


def test_a_cpu_with_amx_trains_in_bf16(cpu_with):
    cpu_with(amx=True, avx512_bf16=True)
    dtype, reason = auto_dtype(torch.device("cpu"))
    assert dtype == torch.bfloat16 and "AMX" in reason


def test_a_cpu_with_avx512_bf16_but_no_amx_trains_in_fp32(cpu_with):
    cpu_with(amx=False, avx512_bf16=True)
    dtype, reason = auto_dtype(torch.device("cpu"))
    assert dtype == torch.float32 and "no usable AMX" in reason


def test_amx_that_onednn_may_not_use_does_not_count(cpu_with, monkeypatch):
    cpu_with(amx=True, avx512_bf16=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert auto_dtype(torch.device("cpu"))[0] == torch.float32
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert auto_dtype(torch.device("cpu"))[0] == torch.bfloat16


def test_a_plain_cpu_trains_in_fp32(cpu_with):
    cpu_with(amx=False, avx512_bf16=False)
    assert auto_dtype(torch.device("cpu"))[0] == torch.float32


def test_without_torchs_probe_the_cpuinfo_flag_decides(monkeypatch, tmp_path):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(runtime, "CPUINFO_PATH", str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert auto_dtype(torch.device("cpu"))[0] == torch.bfloat16
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert auto_dtype(torch.device("cpu"))[0] == torch.float32
    cpuinfo.unlink()  # no cpuinfo at all (not Linux): fp32
    assert auto_dtype(torch.device("cpu"))[0] == torch.float32


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_takes_bf16_where_native_else_fp16(monkeypatch, native_bf16, expected):
    # Every GPU torch runs on can emulate bf16; only the native answer may count.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or native_bf16)
    dtype, reason = auto_dtype(torch.device("cuda", 0))
    assert dtype == expected and "GPU" in reason


def test_mps_trains_in_fp32():
    assert auto_dtype(torch.device("mps"))[0] == torch.float32


@pytest.mark.parametrize("amx", [True, False])
def test_the_runtime_carries_the_choice_and_its_reason(cpu_with, amx):
    cpu_with(amx=amx, avx512_bf16=True)
    rt = setup_runtime("cpu", "auto")
    assert rt.dtype == (torch.bfloat16 if amx else torch.float32)
    assert rt.dtype_reason.startswith("auto: ") and ("no usable AMX" in rt.dtype_reason) != amx
    asked = setup_runtime("cpu", "bfloat16")  # an explicit dtype is kept whatever the CPU
    assert asked.dtype == torch.bfloat16 and asked.dtype_reason == "as --dtype asked"
