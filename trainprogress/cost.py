"""What a run costs: device-hours, energy, money and CO2, so far and at the end.

- Device-hours: ``devices`` x wall seconds / 3600, so far (the tracker's elapsed time,
  pauses included: a paused GPU is still rented) and at the end (elapsed + ETA). ``devices``
  is ``CostConfig.devices`` when given, else the job's world size (torch.distributed's, else
  torchrun's WORLD_SIZE, else 1): one device per process, as torchrun launches them.
- Energy: measured by the hardware's own counters (``trainprogress.energy``: NVML on the
  GPU, RAPL on the CPU packages), never estimated from a TDP. At the end: the energy so far
  plus the mean power since metering began times the ETA. Under torchrun with
  ``cross_rank=True`` every rank's counters travel with the cross-rank exchange and rank 0
  adds them up counting each device once.
- Money: device-hours x ``price_per_device_hour`` plus kWh x ``price_per_kwh``, in the
  ``currency`` given (shown as given, never guessed). CO2: kWh x ``grid_kg_co2_per_kwh``.
  No PUE is applied unless it is in the prices given.

Where energy cannot be measured, ``RunCost.energy_note`` says why in one line and the
device-hours and the money per device-hour still show.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from .energy import RAPL_ROOT, NvmlMeter, RaplMeter, cuda_uuids
from .ranks import world_size

NO_GPU = "no NVIDIA GPU"
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class CostConfig:
    """Prices and settings for the cost figures; every price is optional."""

    price_per_device_hour: float | None = None
    """Money per device (GPU) per hour, e.g. a cloud's hourly rate divided by its GPUs."""

    price_per_kwh: float | None = None
    """Money per kilowatt-hour of measured energy."""

    currency: str | None = None
    """The currency code or symbol to show with money ("USD", "EUR", "€"); None shows bare numbers."""

    grid_kg_co2_per_kwh: float | None = None
    """The grid's carbon intensity, kilograms of CO2 per kWh, for the CO2 figures."""

    devices: int | None = None
    """Devices the run rents; None: the world size (one device per process)."""

    rapl_root: str = RAPL_ROOT
    """Where the RAPL powercap tree is (tests point it at a fake one)."""

    def __post_init__(self) -> None:
        for name in ("price_per_device_hour", "price_per_kwh", "grid_kg_co2_per_kwh"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < math.inf):
                raise ValueError(f"CostConfig.{name} must be a number >= 0 or None, got {value!r}")
        if self.devices is not None and (isinstance(self.devices, bool) or not isinstance(self.devices, int)
                                         or self.devices < 1):
            raise ValueError(f"CostConfig.devices must be an int >= 1 or None (the world size), got {self.devices!r}")


@dataclass(frozen=True)
class RunCost:
    """A report's cost figures; ``_total`` ones are projected to the run's end. Energy in
    joules, power in watts, money in ``currency``; None where unknown or no price was given."""

    devices: int
    device_hours: float
    device_hours_total: float
    energy_j: float | None = None
    energy_total_j: float | None = None
    power_w: float | None = None
    energy_source: str | None = None  # "nvml", "rapl" or "nvml+rapl"
    energy_note: str | None = None  # why energy is not (fully) measured
    cost: float | None = None
    cost_total: float | None = None
    currency: str | None = None
    co2_kg: float | None = None
    co2_total_kg: float | None = None

    def record(self) -> dict[str, Any]:
        """The flat JSONL keys (the module docstring of trainprogress.sinks.jsonl)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "RunCost | None":
        """The figures of a JSONL report record, or None when it has none."""
        if record.get("device_hours") is None:
            return None
        return cls(**{f.name: record.get(f.name) for f in fields(cls)})

    def scalars(self) -> dict[str, float | None]:
        """The ``cost/...`` numbers for TensorBoard and W&B."""
        return {
            "cost/device_hours": self.device_hours, "cost/device_hours_total": self.device_hours_total,
            "cost/energy_j": self.energy_j, "cost/energy_total_j": self.energy_total_j, "cost/power_w": self.power_w,
            "cost/money": self.cost, "cost/money_total": self.cost_total,
            "cost/co2_kg": self.co2_kg, "cost/co2_total_kg": self.co2_total_kg,
        }

    def money(self, amount: float) -> str:
        return f"{amount:,.2f}" + (f" {self.currency}" if self.currency else "")

    def lines(self) -> dict[str, str]:
        """The "💰 Cost" block's lines."""
        devices = "1 device" if self.devices == 1 else f"{self.devices} devices"
        lines = {"Device-hours": f"{format_hours(self.device_hours)} so far, "
                                 f"{format_hours(self.device_hours_total)} at the end ({devices})"}
        if self.energy_j is None:
            lines["Energy"] = (self.energy_note or "not measured").removeprefix("energy: ")
        else:
            power = f", {self.power_w:,.0f} W mean" if self.power_w is not None else ""
            lines["Energy"] = (f"{format_energy(self.energy_j)} so far, {format_energy(self.energy_total_j)} at the end "
                               f"({self.energy_source}{power})" + (f"; {self.energy_note}" if self.energy_note else ""))
        if self.cost is not None:
            lines["Cost"] = f"{self.money(self.cost)} so far, {self.money(self.cost_total)} at the end"
        if self.co2_kg is not None:
            lines["CO2"] = f"{self.co2_kg:,.3f} kg so far, {self.co2_total_kg:,.3f} kg at the end"
        return lines

    def final_line(self) -> str:
        """One line for the end-of-run summary: what the run cost."""
        parts = [f"{format_hours(self.device_hours)} device-hours"]
        if self.energy_j is not None:
            parts.append(f"{format_energy(self.energy_j)} ({self.energy_source})")
        if self.cost is not None:
            parts.append(self.money(self.cost))
        if self.co2_kg is not None:
            parts.append(f"{self.co2_kg:,.3f} kg CO2")
        return ", ".join(parts) + (f"; {self.energy_note}" if self.energy_note else "")


def format_hours(hours: float) -> str:
    return f"{hours:.3f}" if hours < 10 else f"{hours:,.1f}"


def format_energy(joules: float) -> str:
    return f"{joules / 3600:,.1f} Wh" if joules < J_PER_KWH else f"{joules / J_PER_KWH:,.2f} kWh"


def job_world_size() -> int:
    """torch.distributed's world size when a process group is up, else torchrun's WORLD_SIZE, else 1."""
    size = world_size()
    return size if size > 1 else max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def cuda_indices(device: Any, decide: bool) -> list[int] | None:
    """The CUDA devices (torch's numbering) this process trains on: [] when not on CUDA,
    None when it cannot tell yet (CUDA not in use so far) and ``decide`` is False. Reads
    only what is there: never initialises CUDA."""
    torch = sys.modules.get("torch")
    if torch is None:
        return [] if decide else None
    where = torch.device(device) if device is not None else None
    if where is not None and where.type != "cuda":
        return []
    if not torch.cuda.is_available():
        return []
    if not torch.cuda.is_initialized():
        return [] if decide else None
    return [where.index if where is not None and where.index is not None else torch.cuda.current_device()]


class CostMeter:
    """Reads the energy meters of this process and turns them, with the run's time, into
    RunCost figures. ``device`` is the device the run trains on (None: the current CUDA
    device once the process uses CUDA). Reads at creation; then ``read`` at each report and
    exchange. ``clock`` is the tracker's."""

    def __init__(self, config: CostConfig, clock: Callable[[], float], device: Any = None) -> None:
        self.config = config
        self.devices = config.devices or job_world_size()
        self._clock = clock
        self._device = device
        self._gpu: NvmlMeter | None = None
        self._gpu_reason: str | None = None
        self._gpu_late = False
        self._gpu_settled = False
        self._rapl, self._rapl_reason = RaplMeter.open(config.rapl_root)
        self._since: float | None = clock() if self._rapl is not None else None
        self._local: dict[str, float] = {}
        self._others_j: float | None = None  # other ranks' devices, at the last exchange
        self._settle_gpu(decide=False)

    def _settle_gpu(self, decide: bool) -> None:
        indices = cuda_indices(self._device, decide)
        if indices is None:
            return
        self._gpu_settled = True
        if not indices:
            self._gpu_reason = NO_GPU
            return
        try:
            uuids = cuda_uuids(indices)
        except Exception as exc:  # an old torch without .uuid, a driver error
            self._gpu_reason = f"GPU: UUID unknown ({type(exc).__name__})"
            return
        self._gpu, reason = NvmlMeter.open(uuids)
        self._gpu_reason = None if reason is None else f"GPU: {reason}"
        if self._gpu is not None:
            self._gpu_late = decide  # opened at a report: the start was missed
            self._since = self._clock() if self._since is None else self._since

    def read(self) -> dict[str, float]:
        """Read every meter; returns joules per device key since metering began."""
        if not self._gpu_settled:
            self._settle_gpu(decide=True)
        local: dict[str, float] = {}
        for meter in (self._gpu, self._rapl):
            if meter is not None:
                local.update(meter.read())
        self._local = local
        return local

    def merge_ranks(self, total_j: float | None) -> None:
        """Rank 0, after an exchange: every rank's devices counted once (``total_j``) came to
        this; from now on this process's own reading plus the others' share is shown."""
        if total_j is not None:
            self._others_j = max(0.0, total_j - sum(self._local.values()))

    @property
    def measuring(self) -> bool:
        return self._gpu is not None or self._rapl is not None or self._others_j is not None

    def _note(self, energy_measured: bool) -> str | None:
        gpu, rapl = self._gpu_reason, self._rapl_reason
        if not energy_measured:
            return f"energy: not measured ({'; '.join(r for r in (gpu, rapl) if r)})"
        missing = [r for r in (None if gpu == NO_GPU else gpu, rapl and f"CPU: {rapl}") if r]
        if self._gpu_late:
            missing.append("GPU counted from the first report (CUDA was not in use when the tracker started)")
        return "; ".join(missing) or None

    def figures(self, elapsed_s: float, eta_s: float | None, final: bool = False) -> RunCost:
        """The cost as of the last ``read``, ``elapsed_s`` into the run with ``eta_s`` to go
        (unknown: the end is taken as now; ``final``: the run has ended)."""
        remaining = 0.0 if final or eta_s is None else eta_s
        hours, hours_total = self.devices * elapsed_s / 3600, self.devices * (elapsed_s + remaining) / 3600
        energy = energy_total = power = None
        if self.measuring:
            energy = sum(self._local.values()) + (self._others_j or 0.0)
            metered_s = self._clock() - self._since if self._since is not None else 0.0
            power = energy / metered_s if metered_s > 0 else None
            energy_total = energy + (power or 0.0) * remaining
        cfg = self.config
        cost = cost_total = co2 = co2_total = None
        if cfg.price_per_device_hour is not None or (cfg.price_per_kwh is not None and energy is not None):
            per_hour, per_kwh = cfg.price_per_device_hour or 0.0, cfg.price_per_kwh or 0.0
            cost = hours * per_hour + (energy or 0.0) / J_PER_KWH * per_kwh
            cost_total = hours_total * per_hour + (energy_total or 0.0) / J_PER_KWH * per_kwh
        if cfg.grid_kg_co2_per_kwh is not None and energy is not None:
            co2, co2_total = energy / J_PER_KWH * cfg.grid_kg_co2_per_kwh, energy_total / J_PER_KWH * cfg.grid_kg_co2_per_kwh
        note = self._note(energy is not None)
        if cfg.price_per_kwh is not None and energy is None and cost is not None:
            note += "; the cost leaves out energy"
        return RunCost(devices=self.devices, device_hours=hours, device_hours_total=hours_total, energy_j=energy,
                       energy_total_j=energy_total, power_w=power, energy_source=self._source(), energy_note=note,
                       cost=cost, cost_total=cost_total, currency=cfg.currency, co2_kg=co2, co2_total_kg=co2_total)

    def _source(self) -> str | None:
        names = [name for name, meter in (("nvml", self._gpu), ("rapl", self._rapl)) if meter is not None]
        if self._others_j is not None and not names:
            names.append("other ranks")
        return "+".join(names) or None

    def close(self) -> None:
        for meter in (self._gpu, self._rapl):
            if meter is not None:
                meter.close()


def make_cost_meter(setting: object, clock: Callable[[], float], device: Any) -> CostMeter | None:
    """The CostMeter for the tracker's ``cost`` argument (False/None: off; True: no prices;
    a CostConfig: with its prices)."""
    if not setting:
        return None
    config = CostConfig() if setting is True else setting
    if not isinstance(config, CostConfig):
        raise TypeError(f"cost must be a bool or a CostConfig (trainprogress.cost), got {setting!r}")
    return CostMeter(config, clock, device)
