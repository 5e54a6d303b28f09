"""Model FLOPs utilisation: FLOPs per token of a GPT, and the peak FLOP/s of the device.

The peak comes from, in order: an explicit value; a table of known accelerators (dense,
no sparsity, from the vendors' data sheets) looked up by device name and precision; on a
CPU, a short matmul probe measured once per process. An unknown accelerator gets no peak,
and so no MFU, rather than a wrong one.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass

TFLOPS = 1e12

# (pattern on torch.cuda.get_device_name(), label, {precision: dense peak TFLOP/s}).
# Order matters: the first match wins, so more specific names come first.
_PEAKS: tuple[tuple[str, str, dict[str, float]], ...] = (
    (r"H200", "NVIDIA H200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    (r"H100.*PCIe", "NVIDIA H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    (r"H100.*NVL", "NVIDIA H100 NVL", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (r"H100", "NVIDIA H100 SXM", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    (r"A100", "NVIDIA A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (r"A10G", "NVIDIA A10G", {"bf16": 70.0, "fp16": 70.0, "tf32": 35.0, "fp32": 31.2}),
    (r"L40S", "NVIDIA L40S", {"bf16": 362.1, "fp16": 362.1, "tf32": 183.0, "fp32": 91.6}),
    (r"\bL4\b", "NVIDIA L4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    (r"RTX 4090", "NVIDIA GeForce RTX 4090", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6}),
    (r"RTX 3090", "NVIDIA GeForce RTX 3090", {"bf16": 71.0, "fp16": 71.0, "tf32": 35.6, "fp32": 35.6}),
    # Volta has no bf16 or tf32 tensor cores: those run at the fp32 rate.
    (r"V100.*PCI", "NVIDIA V100 PCIe", {"fp16": 112.0, "bf16": 14.0, "tf32": 14.0, "fp32": 14.0}),
    (r"V100", "NVIDIA V100 SXM2", {"fp16": 125.0, "bf16": 15.7, "tf32": 15.7, "fp32": 15.7}),
)

PRECISIONS = ("bf16", "fp16", "tf32", "fp32")


@dataclass(frozen=True)
class PeakFlops:
    """A peak in FLOP/s and where it came from ("given", "table: ...", "measured: ...")."""

    flops_per_s: float
    source: str


def gpt_flops_per_token(n_params: int, n_layer: int, n_head: int, head_dim: int, seq_len: int) -> int:
    """Training FLOPs per token of a GPT (forward and backward): 6·N + 12·L·H·Q·T, as in the
    PaLM paper's appendix B. N is the parameter count (without position embeddings, which
    do no multiplications), L layers, H heads, Q head dimension, T sequence length."""
    return 6 * n_params + 12 * n_layer * n_head * head_dim * seq_len


def lookup_peak(device_name: str, precision: str) -> PeakFlops | None:
    """The dense peak FLOP/s of a known accelerator at ``precision`` (one of PRECISIONS),
    or None when the name is not in the table."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for pattern, label, peaks in _PEAKS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return PeakFlops(peaks[precision] * TFLOPS, f"table: {label} {precision}")
    return None


_cpu_peaks: dict[str, PeakFlops] = {}


def measure_cpu_peak(precision: str = "fp32", seconds: float = 0.25, size: int = 512) -> PeakFlops | None:
    """Measure the CPU's matmul FLOP/s at ``precision`` ("bf16" runs bf16 matmuls, anything
    else fp32) with torch, once per process and precision (later calls return the first
    result): the best of repeated size x size matmuls over about ``seconds``. None when
    torch is not installed."""
    kind = "bf16" if precision == "bf16" else "fp32"
    if kind in _cpu_peaks:
        return _cpu_peaks[kind]
    try:
        import torch
    except ImportError:
        return None
    dtype = torch.bfloat16 if kind == "bf16" else torch.float32
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm-up: thread pool start and first-touch of memory
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    peak = PeakFlops(2.0 * size**3 / best, f"measured: CPU {kind} matmul, {torch.get_num_threads()} threads")
    _cpu_peaks[kind] = peak
    return peak


def default_precision() -> str:
    """The precision a CUDA run most likely trains in: bf16 where the device supports it,
    else fp16. Pass the real one to the tracker when it is known."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp16"


def detect_peak(precision: str | None = None) -> PeakFlops | None:
    """The peak of the device this process trains on: the current CUDA device from the
    table, else a CPU peak measured at ``precision``. Only looks when torch is already imported, so a run
    without torch never pays for importing it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.cuda.current_device())
        return lookup_peak(name, precision or default_precision())
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return None  # Apple GPUs publish no comparable dense peak; no MFU beats a wrong one.
    return measure_cpu_peak(precision or "fp32")
