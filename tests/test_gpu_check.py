"""benchmarks/gpu_check.py: its no-CUDA path, and the peak-label rule it checks GPUs with."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path; on a GPU the script runs its checks")
def test_without_cuda_it_says_so_and_exits_0():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device here" in result.stdout and "nothing to check" in result.stdout


@pytest.mark.parametrize("source, device, precision, ok", [
    ("table: NVIDIA H100 SXM bf16", "NVIDIA H100 80GB HBM3", "bf16", True),
    ("table: NVIDIA H100 SXM bf16", "NVIDIA H100 PCIe", "bf16", False),  # a PCIe card given the SXM peak
    ("table: NVIDIA H100 PCIe bf16", "NVIDIA H100 PCIe", "bf16", True),
    ("table: NVIDIA H100 NVL fp16", "NVIDIA H100 NVL", "fp16", True),
    ("table: NVIDIA A100 bf16", "NVIDIA A100-SXM4-80GB", "bf16", True),
    ("table: NVIDIA V100 SXM2 fp16", "Tesla V100-SXM2-16GB", "fp16", True),
    ("table: NVIDIA GeForce RTX 4090 bf16", "NVIDIA GeForce RTX 4090", "bf16", True),
    ("table: NVIDIA A100 bf16", "NVIDIA A100-SXM4-80GB", "fp16", False),  # wrong precision column
    ("table: NVIDIA L4 bf16", "NVIDIA L40S", "bf16", False),
    ("given", "NVIDIA H100 80GB HBM3", "bf16", False),
])
def test_peak_label_must_name_the_device_and_precision(source, device, precision, ok):
    assert load_gpu_check().peak_label_matches(source, device, precision) is ok


def test_the_table_prints_every_row_with_its_verdict(capsys):
    gpu_check = load_gpu_check()
    gpu_check.print_table([gpu_check.Row("dtype auto", "bfloat16", "bfloat16", True),
                           gpu_check.Row("MFU, GPT-2 small", "15% to 70%", "3.1%", False)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["check", "expected", "measured", "verdict"]
    assert lines[2].split()[-1] == "PASS" and lines[3].split()[-1] == "FAIL"


def test_power_samples_integrate_to_joules_over_the_window():
    gpu_check = load_gpu_check()
    # 100 W for 1 s then 300 W, sampled at 0.5 s steps inside the window [0, 3].
    samples = [(0.5, 100.0), (1.0, 100.0), (1.5, 300.0), (2.0, 300.0), (2.5, 300.0)]
    # 0-0.5 held at 100 (50 J), trapezoids 50 + 100 + 150 + 150 J, 2.5-3 held at 300 (150 J)
    assert gpu_check.integrate_power(samples, 0.0, 3.0) == pytest.approx(650.0)


def test_the_counter_is_interpolated_between_polls():
    gpu_check = load_gpu_check()
    polls = [(10.0, 1000.0), (10.5, 1500.0), (11.0, 2500.0)]
    assert gpu_check.counter_at(polls, 10.75) == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="no counter polls"):
        gpu_check.counter_at(polls, 12.0)
