"""Where and how training runs: device, mixed precision, torch.compile and DDP.

``setup_runtime`` picks the device (cuda > mps > cpu for "auto") and the autocast dtype, and
joins the process group when launched by ``torchrun`` (which sets RANK, LOCAL_RANK and
WORLD_SIZE). A plain ``python train.py`` is a single process of world size 1.

``dtype="auto"`` picks the dtype that trains fastest where the run is, not merely one the
hardware supports (see :func:`auto_dtype`):

* CUDA: bf16 where the GPU computes it natively, else fp16 with a GradScaler.
* CPU: bf16 only where the CPU has AMX tiles (Intel Sapphire Rapids and later), whose bf16
  matrix units make the CPU preset faster than fp32; fp32 everywhere else, including CPUs
  with AVX512-BF16 but no AMX (AMD Zen 4, Intel Cooper Lake), where bf16 autocast trained
  the preset 1.6x to 2.7x slower than fp32 (a user's measurement), and 1.23x to 1.30x slower here with
  AMX switched off in oneDNN. ``python benchmarks/bench_dtype.py`` measures it.
* MPS: fp32, as nanoGPT.

Several processes assume one shared filesystem: rank 0 prepares the data and writes the
checkpoint, and every rank reads them from the same paths.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

import torch

from trainkit.config import ConfigError

__all__ = ["Runtime", "auto_dtype", "setup_runtime", "env_world_size", "want_compile", "split_grad_accum"]

T = TypeVar("T")
CPUINFO_PATH = "/proc/cpuinfo"  # Linux's CPU feature flags, read where torch has no AMX probe
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """The resolved runtime of this process. ``dtype`` is the autocast dtype (float32 means
    no autocast). ``rank``/``world_size`` come from torchrun (0 and 1 without it)."""

    device: torch.device
    dtype: torch.dtype
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    dtype_reason: str = ""  # why this dtype: "auto: <the rule's reason>" or "as --dtype asked"

    @property
    def device_type(self) -> str:
        return self.device.type

    @property
    def ddp(self) -> bool:
        return self.world_size > 1

    @property
    def is_master(self) -> bool:
        """The one process that prints, evaluates for the log and writes checkpoints."""
        return self.rank == 0

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def precision(self) -> str:
        """The matmul precision for the tracker's peak-FLOPs table: "bf16", "fp16", or for
        float32 "tf32" on CUDA (enabled in setup_runtime) and "fp32" elsewhere."""
        names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
        return names.get(self.dtype, "tf32" if self.device_type == "cuda" else "fp32")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context for forward passes (a no-op in float32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for float16 (bf16 and fp32 need no loss scaling)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)

    def print(self, *args: object) -> None:
        """``print`` on the master only: the other ranks stay silent."""
        if self.is_master:
            print(*args, flush=True)

    def barrier(self) -> None:
        if self.ddp:
            torch.distributed.barrier()

    def share(self, items: Iterable[T]) -> Iterator[T]:
        """This rank's share of ``items``: every world_size-th one, from the rank's index.
        Every rank walks all of them, so any random draws stay in step across ranks."""
        for index, item in enumerate(items):
            if index % self.world_size == self.rank:
                yield item

    def sum_across_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (on this process's device) summed over all ranks, in place; unchanged
        in a single process. Every rank must call it (a collective)."""
        if self.ddp:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def close(self) -> None:
        """Leave the process group (no-op without DDP)."""
        if self.ddp and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _resolve_device(name: str, local_rank: int) -> torch.device:
    mps_ok = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device '{name}' is not a device torch knows. Fix: --device=auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' requested but CUDA is not available. Fix: --device=auto or --device=cpu.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device '{name}' requested but only {count} GPU(s) are visible (as CUDA_VISIBLE_DEVICES "
                              f"allows). Fix: --device=cuda:N with N below {count}, or --device=auto.")
        if device.index is None and local_rank >= count:
            raise ConfigError(f"process {local_rank} of this node (LOCAL_RANK) has no GPU of its own: {count} visible. "
                              f"Fix: torchrun --nproc_per_node={count}, or --device=cpu.")
        device = torch.device("cuda", local_rank if device.index is None else device.index)
    elif device.type == "mps" and not mps_ok:
        raise ConfigError(f"device '{name}' requested but MPS is not available. Fix: --device=auto or --device=cpu.")
    return device


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles the OS lets torch use (torch's own probe, which also
    checks that the kernel enabled them); without that probe, /proc/cpuinfo's amx_bf16 flag.
    No when oneDNN is told to stop below AMX (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16, say):
    then bf16 runs on AVX-512 alone, slower than fp32 (benchmarks/bench_dtype.py)."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    if limit and limit not in ("ALL", "DEFAULT") and "AMX" not in limit:
        return False
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        return bool(probe())
    try:
        with open(CPUINFO_PATH) as cpuinfo:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in cpuinfo)
    except OSError:
        return False


def cuda_has_native_bf16() -> bool:
    """Whether the current GPU computes bf16 in hardware (Ampere and later), not emulated."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def auto_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype ``dtype="auto"`` trains in on ``device``, and why, in a few words for the
    run's start lines. The rule (module docstring) follows measured speed, not support."""
    if device.type == "cuda":
        if cuda_has_native_bf16():
            return torch.bfloat16, "the GPU computes bf16 natively"
        return torch.float16, "the GPU has no native bf16; fp16 with loss scaling"
    if device.type == "cpu":
        if cpu_has_amx():
            return torch.bfloat16, "the CPU has AMX bf16 tiles, faster than fp32 there"
        return torch.float32, "the CPU has no usable AMX; bf16 autocast is slower than fp32 without it"
    return torch.float32, f"fp32 on {device.type}"


def _resolve_dtype(name: str, device: torch.device) -> tuple[torch.dtype, str]:
    """The dtype named ``name`` on ``device``, and why it was chosen."""
    if name == "auto":
        dtype, reason = auto_dtype(device)
        return dtype, f"auto: {reason}"
    if name not in _DTYPES:
        raise ConfigError(f"dtype '{name}' is unknown. Fix: --dtype=auto, float32, bfloat16 or float16.")
    dtype = _DTYPES[name]
    if dtype == torch.float16 and device.type != "cuda":
        raise ConfigError(f"dtype float16 needs a CUDA device (device is {device}). Fix: --dtype=bfloat16 or float32.")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU does not support bfloat16. Fix: --dtype=float16 (with loss scaling) or auto.")
    return dtype, "as --dtype asked"


def env_world_size() -> int:
    """The number of processes torchrun launched (WORLD_SIZE), 1 without torchrun. Known
    before joining the process group, so settings can be checked against it first."""
    return int(os.environ.get("WORLD_SIZE", 1))


def setup_runtime(device: str = "auto", dtype: str = "auto", backend: str = "auto", timeout_s: float | None = None) -> Runtime:
    """Resolve device and dtype, and under torchrun join the process group with ``backend``
    ("auto": nccl for CUDA, else gloo); a collective that waits longer than ``timeout_s``
    seconds fails (None: the backend's default). Raises ConfigError for an unavailable choice."""
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = env_world_size()
    dev = _resolve_device(device, local_rank)
    dt, dtype_reason = _resolve_dtype(dtype, dev)
    if world_size > 1:
        if backend == "auto":
            backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = None if timeout_s is None else datetime.timedelta(seconds=timeout_s)
        torch.distributed.init_process_group(backend=backend, timeout=timeout)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        # TF32 matmuls: about 8x the fp32 rate on Ampere+, accuracy ample for training.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif dev.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Processes on one machine share its cores; oversubscribing threads slows all of them.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // local_world))
    return Runtime(dev, dt, rank, local_rank, world_size, dtype_reason)


def want_compile(flag: bool | None, device_type: str) -> bool:
    """Whether to torch.compile: as ``flag`` says, or with None (auto) on CUDA only; on CPU
    the compile time outweighs the gain for the small models that train there."""
    return flag if flag is not None else device_type == "cuda"


def split_grad_accum(steps: int, world_size: int) -> int:
    """Micro-steps per process: the ``gradient_accumulation_steps`` of the whole run are
    shared among the ``world_size`` processes, so the global batch does not change with it."""
    if steps % world_size:
        raise ConfigError(
            f"gradient_accumulation_steps ({steps}) is not divisible by the world size ({world_size}). "
            f"Fix: make it a multiple of {world_size}, e.g. --gradient_accumulation_steps={world_size * max(1, steps // world_size)}."
        )
    return steps // world_size
