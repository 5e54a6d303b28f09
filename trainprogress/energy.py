"""Energy meters: the GPU's own energy counter (NVML) and the CPU packages' RAPL counters.

Both are cumulative hardware counters, read by the tracker's own thread at the run's start,
at its reports and cross-rank exchanges, and at its close: no thread, no polling, no CUDA
call that synchronises. Nothing is estimated: a device whose counter cannot be read adds no
energy, and the meter says why in one line.

- GPU: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded; Volta
  and later) through the optional ``nvidia-ml-py`` package (``pip install
  trainprogress[cost]``), imported only once the run is on CUDA. Each CUDA device the run
  uses is matched to its NVML handle by UUID, so CUDA_VISIBLE_DEVICES and NVML's own
  numbering cannot pair the wrong GPUs. CUDA is never initialised here: the GPU side waits
  until the caller's process uses CUDA.
- CPU: the package-level RAPL domains under ``/sys/class/powercap`` (``intel-rapl:N``; their
  sub-domains ``intel-rapl:N:M`` are parts of the package and are not added again, nor are
  the ``intel-rapl-mmio`` duplicates). Their microjoule counters wrap at
  ``max_energy_range_uj``; a decrease between two reads counts as one wrap. Since Linux 5.10
  the files are readable by root only, so most runs see "no readable RAPL".

Every counter is keyed by the device it measures ("gpu:<uuid>", "rapl:<host>:intel-rapl:0"),
so that energies from several processes can be summed counting each device once
(``sum_distinct``: two ranks on one GPU read the same counter).
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import sys
from pathlib import Path
from typing import Any, Hashable, Iterable, Mapping

logger = logging.getLogger(__name__)

RAPL_ROOT = "/sys/class/powercap"
COST_EXTRA = "pip install trainprogress[cost]"
_PACKAGE_DOMAIN = re.compile(r"intel-rapl:\d+")


class CounterTotal:
    """The increase of a cumulative counter over a run, from successive readings. A decrease
    is a wrap when the counter has a ``wrap_range`` (it went past the range once); without
    one it is a reset (a driver reload), and the new reading itself is what the device used
    since: a lower bound of the interval's true use, never a negative amount."""

    __slots__ = ("last", "total", "wrap_range")

    def __init__(self, first: float, wrap_range: float | None = None) -> None:
        self.last = first
        self.total = 0.0
        self.wrap_range = wrap_range

    def update(self, value: float) -> float:
        """Take a new reading; returns the total increase since the first."""
        if value >= self.last:
            self.total += value - self.last
        elif self.wrap_range:
            self.total += value + self.wrap_range - self.last
        else:
            self.total += value
        self.last = value
        return self.total


def sum_distinct(readings: Iterable[Mapping[Hashable, float]]) -> tuple[float, int]:
    """The energy of several processes' readings (each a mapping of device key to joules
    since that process started metering), counting each device once: the largest reading
    of a key (the process that has metered it longest). Returns (joules, devices)."""
    best: dict[Hashable, float] = {}
    for reading in readings:
        for key, joules in reading.items():
            best[key] = max(joules, best.get(key, 0.0))
    return sum(best.values()), len(best)


def key_code(key: str) -> float:
    """A device key as a number that travels exactly in a float64 row (48 bits of a hash)."""
    return float(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=6).digest(), "big"))


def normalise_uuid(uuid: object) -> str:
    """A GPU UUID as NVML and torch both can spell it: lower case, without "GPU-"/"MIG-"."""
    text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
    text = text.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def cuda_uuids(cuda_indices: list[int]) -> list[str]:
    """The UUIDs of CUDA devices (torch's numbering), read from torch's device properties.
    The caller's process must already use CUDA (this would initialise it otherwise)."""
    torch = sys.modules["torch"]
    return [str(torch.cuda.get_device_properties(i).uuid) for i in cuda_indices]


class NvmlMeter:
    """The energy counters of the GPUs with the given UUIDs. Open it with ``NvmlMeter.open``,
    which returns the meter or the reason it cannot measure."""

    def __init__(self, nvml: Any, handles: dict[str, Any]) -> None:
        self._nvml = nvml
        self._handles = handles  # device key -> NVML handle
        self._totals = {key: CounterTotal(self._millijoules(h)) for key, h in handles.items()}

    @classmethod
    def open(cls, uuids: list[str]) -> tuple["NvmlMeter | None", str | None]:
        """(meter, None), or (None, reason) for the GPUs of ``uuids`` (as torch or NVML spell them)."""
        wanted = {normalise_uuid(uuid) for uuid in uuids}
        try:
            import pynvml
        except ImportError:
            return None, COST_EXTRA
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            return None, f"NVML unavailable ({exc})"
        try:
            handles = {}
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                uuid = normalise_uuid(pynvml.nvmlDeviceGetUUID(handle))
                if uuid in wanted:
                    handles[f"gpu:{uuid}"] = handle
            if len(handles) < len(wanted):
                raise LookupError("no NVML device has this GPU's UUID")
            return cls(pynvml, handles), None
        except Exception as exc:
            _shutdown(pynvml)
            not_supported = getattr(pynvml, "NVMLError_NotSupported", ())
            if not_supported and isinstance(exc, not_supported):
                return None, "counter not supported on this GPU"
            return None, str(exc) if isinstance(exc, LookupError) else f"counter unreadable ({exc})"

    def _millijoules(self, handle: Any) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    def read(self) -> dict[str, float]:
        """Joules each device used since the meter opened. A failed read keeps the last total."""
        out = {}
        for key, handle in self._handles.items():
            total = self._totals[key]
            try:
                total.update(self._millijoules(handle))
            except Exception:  # a driver hiccup must not stop training
                logger.debug("NVML energy read failed", exc_info=True)
            out[key] = total.total / 1000.0
        return out

    def close(self) -> None:
        _shutdown(self._nvml)


def _shutdown(nvml: Any) -> None:
    """Balance our nvmlInit (NVML counts them); a failure here must not stop anything."""
    try:
        nvml.nvmlShutdown()
    except Exception:
        logger.debug("nvmlShutdown failed", exc_info=True)


class RaplMeter:
    """The package-level RAPL energy counters under ``root``. Open it with ``RaplMeter.open``."""

    def __init__(self, domains: dict[str, tuple[Path, CounterTotal]]) -> None:
        self._domains = domains

    @classmethod
    def open(cls, root: str | Path = RAPL_ROOT) -> tuple["RaplMeter | None", str | None]:
        """(meter, None), or (None, reason) when no package counter can be read."""
        host = socket.gethostname()
        domains: dict[str, tuple[Path, CounterTotal]] = {}
        denied = False
        try:
            candidates = sorted(p for p in Path(root).iterdir() if _PACKAGE_DOMAIN.fullmatch(p.name))
        except OSError:
            candidates = []
        for path in candidates:
            try:
                first = _read_number(path / "energy_uj")
                wrap = _read_number(path / "max_energy_range_uj")
            except PermissionError:
                denied = True
                continue
            except (OSError, ValueError):
                continue
            domains[f"rapl:{host}:{path.name}"] = (path / "energy_uj", CounterTotal(first, wrap))
        if domains:
            return cls(domains), None
        return None, "no readable RAPL" + (" (root only)" if denied else "")

    def read(self) -> dict[str, float]:
        """Joules each package used since the meter opened (wraps corrected)."""
        out = {}
        for key, (path, total) in self._domains.items():
            try:
                total.update(_read_number(path))
            except (OSError, ValueError):
                logger.debug("RAPL read failed", exc_info=True)
            out[key] = total.total / 1e6
        return out

    def close(self) -> None:
        """Nothing to release: every read opens and closes its file."""


def _read_number(path: Path) -> float:
    with open(path, "rb") as f:
        return float(f.read())
