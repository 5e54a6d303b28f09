"""Memory probes: CUDA, MPS and the process's resident memory. A backend that is missing or
fails shows nothing and never raises. torch is only consulted when the caller already
imported it, and CUDA only when the caller already initialised it, so a probe never starts
a CUDA context of its own."""

from __future__ import annotations

import logging
import os
import sys

from .report import MemoryStats

logger = logging.getLogger(__name__)


def cuda_memory() -> MemoryStats | None:
    """Allocated, reserved and peak bytes of the current CUDA device, against its total."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    try:
        device = torch.cuda.current_device()
        return MemoryStats(
            device="cuda",
            used_bytes=torch.cuda.memory_allocated(device),
            reserved_bytes=torch.cuda.memory_reserved(device),
            peak_bytes=torch.cuda.max_memory_allocated(device),
            total_bytes=torch.cuda.get_device_properties(device).total_memory,
            name=torch.cuda.get_device_name(device),
        )
    except Exception:  # a driver error must not stop training
        logger.debug("CUDA memory probe failed", exc_info=True)
        return None


def mps_memory() -> MemoryStats | None:
    """Bytes allocated on Apple's MPS device against its recommended working-set limit."""
    torch = sys.modules.get("torch")
    mps = getattr(torch, "mps", None) if torch is not None else None
    if mps is None or not torch.backends.mps.is_available():
        return None
    try:
        limit = mps.recommended_max_memory() if hasattr(mps, "recommended_max_memory") else None
        return MemoryStats(
            device="mps",
            used_bytes=mps.current_allocated_memory(),
            reserved_bytes=mps.driver_allocated_memory(),
            total_bytes=limit or None,
        )
    except Exception:
        logger.debug("MPS memory probe failed", exc_info=True)
        return None


def process_memory() -> MemoryStats | None:
    """This process's resident set size against the system's total memory (psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        rss = psutil.Process(os.getpid()).memory_info().rss
        return MemoryStats(device="cpu", used_bytes=rss, total_bytes=psutil.virtual_memory().total)
    except Exception:
        logger.debug("process memory probe failed", exc_info=True)
        return None


def probe_memory() -> tuple[MemoryStats, ...]:
    """Every backend that answers, accelerators first, the process's memory last."""
    found = (cuda_memory(), mps_memory(), process_memory())
    return tuple(stats for stats in found if stats is not None)
