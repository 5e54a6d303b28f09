"""The Report, an immutable snapshot of where a training run stands, and the other messages
the tracker sends its sinks: RunInfo (the run starts), Event (between reports), Tick (live
progress).

The tracker computes every number in a Report; sinks only render it. Units are in the
field names (``_s`` seconds, ``_bytes`` bytes, ``_per_s`` per wall second), and ``mfu`` is
a fraction in [0, 1] (sinks show it as a percentage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from .cost import RunCost

from .format import GIB, format_percent

# What kind of moment a Report describes.
SCHEDULED = "scheduled"  # a regular interval boundary (every 1% by default)
ANOMALY = "anomaly"  # an extra report triggered by an anomaly detector
FINAL = "final"  # the end-of-run summary from tracker.close()

# How a run ended: the ``outcome`` of its final Report.
COMPLETED = "completed"  # every iteration done
STOPPED = "stopped"  # ended early without an exception (a deliberate stop, Ctrl-C)
CRASHED = "crashed"  # ended by an exception; ``Report.error`` says which

# The built-in blocks of a progress report that a Section may join (``Section.into``).
BLOCKS = ("metrics", "time", "memory")


@dataclass(frozen=True)
class MemoryStats:
    """Memory of one backend at the moment of a report, in bytes.

    ``device`` is "cuda", "mps" or "cpu". For CUDA, ``used_bytes`` is memory allocated by
    tensors, ``reserved_bytes`` what the caching allocator holds, ``peak_bytes`` the peak
    allocation, and ``total_bytes`` the device's capacity. For MPS, ``used_bytes`` is the
    current allocation and ``total_bytes`` the recommended working-set limit. For the CPU,
    ``used_bytes`` is this process's resident set size and ``total_bytes`` the system's
    memory. A value that a backend cannot tell is None.
    """

    device: str
    used_bytes: int
    total_bytes: int | None = None
    reserved_bytes: int | None = None
    peak_bytes: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class Anomaly:
    """Something a detector found unhealthy: what, since which iteration, and how bad."""

    kind: str  # "nonfinite_loss", "loss_spike", "throughput_drop", "memory_growth", "grad_explosion", "straggler"
    message: str  # one human sentence, e.g. "loss 9.81 is 7.2σ above its recent mean 2.10"
    since_iter: int  # the first iteration at which it was seen in this episode
    severity: float | None = None  # how bad, larger is worse, in the kind's unit (AnomalyConfig.worse_factor)
    subject: str = ""  # whom it is about, e.g. "rank 3"; "" for the whole run
    steady: bool = False  # reported densely and holding steady: regular reports, message "still: ..."


@dataclass(frozen=True)
class Section:
    """A caller-supplied block of ``label: value`` lines, e.g. the NanEcho "🧠 Model State".

    ``title`` may start with an emoji; the ASCII console mode strips it. ``into`` names the
    built-in block ("metrics", "time" or "memory", see ``BLOCKS``) whose lines these join
    (the title then only names the section); None gives the section a block of its own.
    Values are already materialised (numbers or strings); the console renders integers with
    thousands separators.
    """

    title: str
    lines: tuple[tuple[str, object], ...]
    into: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """What is known when a run starts: its size, where it resumes, how often it reports,
    and the caller's configuration (for W&B's run config, the JSONL start event, ...).
    ``total_iters`` is 0 when the run is sized in tokens or seconds (the steps are unknown;
    Ticks and Reports carry an estimate)."""

    total_iters: int
    start_iter: int
    interval_percent: float
    tokens_per_iter: int | None = None
    flops_per_iter: float | None = None
    peak_flops: float | None = None
    peak_flops_source: str | None = None
    config: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    wall_time: float = 0.0  # Unix time the tracker started

    def sizes(self) -> dict[str, object]:
        """The run's size and rates by field name, without the caller's config and the time:
        what the JSONL ``run_start`` record and the W&B run config both carry."""
        return {name: getattr(self, name) for name in ("total_iters", "start_iter", "interval_percent", "tokens_per_iter",
                                                       "flops_per_iter", "peak_flops", "peak_flops_source")}


@dataclass(frozen=True)
class Event:
    """Something that happened between reports: a pause ("pause", with name and duration_s),
    a phase change, a connection growth, an anomaly raised or cleared, or any kind the
    caller names with ``tracker.event``."""

    kind: str
    iteration: int
    wall_time: float
    data: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Tick:
    """Live progress between reports, for sinks with ``wants_ticks`` (the progress bar).
    Holds only what is known without a device sync: ``smoothed_loss`` is the smoothed loss
    as of the last report or check, not the current step's loss."""

    iteration: int
    total_iters: int
    percent: float
    eta_s: float | None
    iters_per_s: float | None
    smoothed_loss: float | None


def _frozen_mapping(values: Mapping[str, float] | None) -> Mapping[str, float]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Report:
    """Everything known about a run at one moment. Build one with the tracker, never by hand
    in a sink.

    Progress: ``iteration`` optimizer steps completed out of ``total_iters`` (resumed steps
    included), ``percent`` = 100 * iteration / total_iters.

    Time: ``elapsed_s`` is wall time since the tracker started in this process, pauses
    included; ``paused_s`` the part of it spent in marked pauses; ``eta_s`` the estimated wall
    seconds until the run ends (None until it can be estimated).

    Speed: ``iters_per_s`` and ``ms_per_iter`` over the recent speed window, pauses excluded.

    Training values: ``loss`` is the latest loss, ``smoothed_loss`` its recent mean, ``lr``
    the latest learning rate, ``metrics`` any further named values passed to ``step`` (their
    latest value each), ``best_val_loss`` the lowest ``val_loss`` seen.

    Throughput: ``tokens_processed`` counts resumed steps too; ``tokens_per_s`` uses the
    speed window. ``mfu`` is a fraction of ``peak_flops`` (FLOP/s), whose origin
    ``peak_flops_source`` names ("given", "table: NVIDIA H100 SXM bf16", "measured: CPU fp32").

    Several processes: ``ranks`` holds the cross-rank figures' flat ``ranks/...`` numbers
    (see ``trainprogress.ranks``) when they were exchanged at this iteration; then ``loss``
    and ``smoothed_loss`` are the means over all ranks.

    Size: ``progress_unit`` says what ``percent`` counts: "iters" (optimizer steps),
    "tokens" (``total_tokens``; ``tokens_processed`` is then the tokens passed to step) or
    "seconds" (``time_budget_s``: percent is elapsed over the budget); ``progress_total``
    is the run's size in that unit. In tokens or seconds, ``total_iters`` is an estimate
    from the progress so far. ``epoch`` of ``epochs`` when the run is sized in epochs.

    Forecast: ``loss_forecast`` is where the loss will end at ``total_iters`` and
    ``loss_forecast_low`` to ``loss_forecast_high`` the band that should hold it (None while
    there is too little to go on; trainprogress.forecast).

    End: ``outcome`` is None until the final report, whose ``outcome`` says how the run ended
    (``COMPLETED``, ``STOPPED`` or ``CRASHED``) and whose ``error`` names the exception of a
    crash ("RuntimeError: CUDA out of memory"); both are set once, by ``tracker.close()``.

    Cost: ``run_cost`` holds the device-hours, measured energy, money and CO2 so far and at
    the end (``trainprogress.cost``) when the tracker's ``cost=`` is on, else None.
    """

    kind: str
    iteration: int
    total_iters: int
    percent: float
    elapsed_s: float
    paused_s: float
    eta_s: float | None
    iters_per_s: float | None
    ms_per_iter: float | None
    loss: float | None = None
    smoothed_loss: float | None = None
    lr: float | None = None
    best_val_loss: float | None = None
    mfu: float | None = None
    peak_flops: float | None = None
    peak_flops_source: str | None = None
    tokens_processed: int | None = None
    tokens_per_s: float | None = None
    memory: tuple[MemoryStats, ...] = ()
    metrics: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    sections: tuple[Section, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    ranks: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    start_iter: int = 0
    outcome: str | None = None
    error: str | None = None
    wall_time: float = 0.0  # Unix time at which the report was made
    progress_unit: str = "iters"  # what the run is sized in: "iters", "tokens" or "seconds"
    progress_total: float | None = None  # the run's size in that unit
    epoch: int | None = None  # the epoch (1-based) of ``iteration``, in a run sized in epochs
    epochs: int | None = None  # epochs in the run
    run_cost: RunCost | None = None  # the cost figures (tracker's cost=), else None
    loss_forecast: float | None = None  # the loss forecast for the run's last step (trainprogress.forecast)
    loss_forecast_low: float | None = None  # the forecast's band, which should hold the final loss
    loss_forecast_high: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", _frozen_mapping(self.metrics))
        object.__setattr__(self, "ranks", _frozen_mapping(self.ranks))

    def __repr__(self) -> str:
        """One short line, for a notebook cell that ends in ``tracker.close()``: "Report(final,
        completed, 100%, iteration 400/400, loss 2.91)". Every field is an attribute; the
        dataclass's equality still compares them all."""
        parts = [self.kind, *([self.outcome] if self.outcome else []), format_percent(self.percent),
                 f"iteration {self.iteration}/{self.total_iters}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        return f"Report({', '.join(parts)})"

    def scalars(self) -> dict[str, float]:
        """The report's numbers under one flat, slash-namespaced key scheme with units in the
        names, shared by every backend (JSONL, TensorBoard, W&B). Missing values and
        non-numeric named values (a phase name) are left out."""
        out: dict[str, float | None] = {
            "train/loss": self.loss,
            "train/loss_smoothed": self.smoothed_loss,
            "train/lr": self.lr,
            "train/best_val_loss": self.best_val_loss,
            "train/loss_forecast": self.loss_forecast,
            "train/loss_forecast_low": self.loss_forecast_low,
            "train/loss_forecast_high": self.loss_forecast_high,
            "progress/percent": self.percent,
            "progress/iteration": float(self.iteration),
            "time/elapsed_s": self.elapsed_s,
            "time/eta_s": self.eta_s,
            "perf/iters_per_s": self.iters_per_s,
            "perf/ms_per_iter": self.ms_per_iter,
            "perf/mfu_pct": None if self.mfu is None else 100.0 * self.mfu,
            "perf/tokens_per_s": self.tokens_per_s,
            "perf/tokens_processed": None if self.tokens_processed is None else float(self.tokens_processed),
        }
        for mem in self.memory:
            out[f"mem/{mem.device}_used_gib"] = mem.used_bytes / GIB
            if mem.reserved_bytes is not None:
                out[f"mem/{mem.device}_reserved_gib"] = mem.reserved_bytes / GIB
            if mem.peak_bytes is not None:
                out[f"mem/{mem.device}_peak_gib"] = mem.peak_bytes / GIB
        out.update(self.ranks)
        if self.run_cost is not None:
            out.update(self.run_cost.scalars())
        for name, value in self.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name if "/" in name else f"metrics/{name}"] = value
        return {k: float(v) for k, v in out.items() if v is not None}
