"""Model FLOPs utilisation: FLOPs per token of a GPT, and the peak FLOP/s of the device.

The peak is that of the device the run trains on (``device=``, else the first tensor the
tracker sees) and comes from, in order: an explicit value; a table of known accelerators
(dense, no sparsity, from the vendors' data sheets) looked up by device name and precision;
on a CPU, a short matmul probe measured once per process. An unknown accelerator gets no
peak, and so no MFU, rather than a wrong one. Nothing here initialises CUDA for a run that
does not train on it, or draws from a global random stream.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from typing import Iterable

from .materialise import is_tensor

TFLOPS = 1e12

# (pattern on torch.cuda.get_device_name(), label, {precision: dense peak TFLOP/s}, source).
# Dense means without 2:4 sparsity (data sheets often print the sparse figure, twice these);
# fp16 and bf16 are tensor-core rates with fp32 accumulation. Order matters: the first
# match wins, so variants (PCIe, NVL, GH200) come before the base name, and patterns are
# anchored so that "RTX A1000" is no A100, "H20" no H200, "RTX 4090 D" no RTX 4090.
_HOPPER_SXM = {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}
_HOPPER_NVL = {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}
_PEAKS: tuple[tuple[str, str, dict[str, float], str], ...] = (
    (r"\bGH200\b", "NVIDIA GH200", _HOPPER_SXM,
     "https://resources.nvidia.com/en-us-grace-cpu/grace-hopper-superchip"),
    (r"\bH200 NVL\b", "NVIDIA H200 NVL", _HOPPER_NVL,
     "https://www.nvidia.com/en-us/data-center/h200/"),
    (r"\bH200\b", "NVIDIA H200", _HOPPER_SXM,
     "https://www.nvidia.com/en-us/data-center/h200/"),
    (r"\bH100 PCIe\b", "NVIDIA H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2},
     "https://www.nvidia.com/en-us/data-center/h100/"),
    (r"\bH100 NVL\b", "NVIDIA H100 NVL", _HOPPER_NVL,
     "https://www.nvidia.com/en-us/data-center/h100/"),
    (r"\bH100\b", "NVIDIA H100 SXM", _HOPPER_SXM,
     "https://www.nvidia.com/en-us/data-center/h100/"),
    (r"\bA100\b", "NVIDIA A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
     "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"),
    (r"\bA10$", "NVIDIA A10", {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2},
     "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf"),
    (r"\bL40S$", "NVIDIA L40S", {"bf16": 362.05, "fp16": 362.05, "tf32": 183.0, "fp32": 91.6},
     "https://www.nvidia.com/en-us/data-center/l40s/"),
    (r"\bL40$", "NVIDIA L40", {"bf16": 181.05, "fp16": 181.05, "tf32": 90.5, "fp32": 90.5},
     "https://www.nvidia.com/en-us/data-center/l40/"),
    (r"\bL4$", "NVIDIA L4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3},
     "https://www.nvidia.com/en-us/data-center/l4/"),
    (r"GeForce RTX 4090$", "NVIDIA GeForce RTX 4090", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6},
     "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf"),
    (r"GeForce RTX 3090$", "NVIDIA GeForce RTX 3090", {"bf16": 71.0, "fp16": 71.0, "tf32": 35.6, "fp32": 35.6},
     "https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf"),
    # Volta and Turing have no bf16 or tf32 tensor cores: those run at the fp32 rate.
    (r"\bV100S-PCIE\b", "NVIDIA V100S PCIe", {"fp16": 130.0, "bf16": 16.4, "tf32": 16.4, "fp32": 16.4},
     "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"),
    (r"\bV100-PCIE\b", "NVIDIA V100 PCIe", {"fp16": 112.0, "bf16": 14.0, "tf32": 14.0, "fp32": 14.0},
     "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"),
    (r"\bV100-SXM2\b", "NVIDIA V100 SXM2", {"fp16": 125.0, "bf16": 15.7, "tf32": 15.7, "fp32": 15.7},
     "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"),
    (r"\bT4$", "NVIDIA T4", {"fp16": 65.0, "bf16": 8.1, "tf32": 8.1, "fp32": 8.1},
     "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf"),
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
    name = device_name.strip()
    for pattern, label, peaks, _source in _PEAKS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return PeakFlops(peaks[precision] * TFLOPS, f"table: {label} {precision}")
    return None


_cpu_peaks: dict[str, PeakFlops] = {}


def measure_cpu_peak(precision: str = "fp32", seconds: float = 0.25, size: int = 512, *,
                     again: bool = False) -> PeakFlops | None:
    """Measure the CPU's matmul FLOP/s at ``precision`` ("bf16" runs bf16 matmuls, anything
    else fp32) with torch, once per process and precision (later calls return the first
    result, unless ``again``: then the better of it and a new measurement): the best of
    repeated size x size matmuls over about ``seconds``. None when torch is not installed.
    The matrices come from a private generator: the caller's random streams are never
    drawn from."""
    kind = "bf16" if precision == "bf16" else "fp32"
    earlier = _cpu_peaks.get(kind)
    if earlier is not None and not again:
        return earlier
    try:
        import torch
    except ImportError:
        return None
    dtype = torch.bfloat16 if kind == "bf16" else torch.float32
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.rand(size, size, generator=generator).to(dtype)
    b = torch.rand(size, size, generator=generator).to(dtype)
    torch.mm(a, b)  # warm-up: thread pool start and first-touch of memory
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    peak = PeakFlops(2.0 * size**3 / best, f"measured: CPU {kind} matmul, {torch.get_num_threads()} threads")
    if earlier is not None and earlier.flops_per_s >= peak.flops_per_s:
        return earlier
    _cpu_peaks[kind] = peak
    return peak


def default_precision(device_index: int) -> str:
    """The precision a run on CUDA device ``device_index`` most likely trains in: bf16
    where the device runs it natively (compute capability 8.0, Ampere, and later), else
    fp16. Pass the real one to the tracker when it is known."""
    torch = sys.modules["torch"]
    return "bf16" if torch.cuda.get_device_capability(device_index) >= (8, 0) else "fp16"


def peak_for_device(device: object, precision: str | None = None) -> PeakFlops | None:
    """The peak FLOP/s of ``device`` (a torch.device or a string such as "cuda:1" or
    "cpu") at ``precision``: a CUDA device's from the table (None when its name is not in
    it), a CPU's measured (in fp32 unless ``precision`` is "bf16"), None for any other
    device (Apple GPUs publish no comparable dense peak; no MFU beats a wrong one). CUDA is
    consulted only for a CUDA device."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    device = torch.device(device)
    if device.type == "cpu":
        return measure_cpu_peak(precision or "fp32")
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return lookup_peak(torch.cuda.get_device_name(index), precision or default_precision(index))


def detect_peak(precision: str | None = None) -> PeakFlops | None:
    """The peak of the device a run trains on when no tensor says which: the current CUDA
    device if this process already uses CUDA, else the CPU. Never initialises CUDA. Only
    looks when torch is already imported, so a run without torch never pays for it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    on_cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    return peak_for_device("cuda" if on_cuda else "cpu", precision)


class DevicePeak:
    """The peak a run's MFU is measured against, settled once: ``peak_flops`` when given,
    else the peak of ``device`` when given, else that of the first tensor the run passes
    (see ``settle``)."""

    def __init__(self, precision: str | None, peak_flops: float | None = None, device: object = None) -> None:
        self.precision = precision
        self.peak: PeakFlops | None = None
        self.settled = False
        self._measured_again = False
        if peak_flops is not None:
            self.peak, self.settled = PeakFlops(float(peak_flops), "given"), True
        elif device is not None:
            self.peak, self.settled = peak_for_device(device, precision), True

    def settle(self, values: Iterable[object]) -> PeakFlops | None:
        """Settle the peak, if not yet, from the device of the first tensor in ``values``
        (the losses and values of a report); without one, as ``detect_peak`` does."""
        if not self.settled:
            self.settled = True
            device = next((v.device for v in values if is_tensor(v)), None)
            self.peak = detect_peak(self.precision) if device is None else peak_for_device(device, self.precision)
        return self.peak

    def exceeded(self) -> PeakFlops | None:
        """The peak after the run went faster than it (MFU above 100%). A measured CPU peak
        then was measured while other work held the CPU (a shared machine, a data loader
        starting): it is measured again, once per run, and the better result kept. Any
        other peak stays: the FLOPs per step or the given peak is what is wrong."""
        if self.peak is not None and self.peak.source.startswith("measured") and not self._measured_again:
            self._measured_again = True
            self.peak = measure_cpu_peak(self.precision or "fp32", again=True)
        return self.peak
