"""The Report, an immutable snapshot of where a training run stands, and the other messages
the tracker sends its sinks: RunInfo (the run starts), Event (between reports), Tick (live
progress).

The tracker computes every number in a Report; sinks only render it. Units are in the
field names (``_s`` seconds, ``_bytes`` bytes, ``_per_s`` per wall second), and ``mfu`` is
a fraction in [0, 1] (sinks show it as a percentage).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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


def _described(doc: str, **default: object) -> object:
    """A Report field with its one description (``field_docs``), and its default if any."""
    return field(metadata={"doc": doc}, **default)


_EMPTY = {"default_factory": lambda: MappingProxyType({})}


@dataclass(frozen=True)
class Report:
    """Everything known about a run at one moment. Build one with the tracker, never by hand
    in a sink.

    Each field's meaning is written once, in its ``doc`` metadata below (``field_docs()``):
    the JSONL schema (``trainprogress.sinks.jsonl``) lists it from there, and a test keeps
    the README's "Report fields" table equal to it. Resumed steps count in ``iteration`` and
    ``tokens_processed``; in a run sized in tokens or seconds ``total_iters`` is an estimate.
    """

    kind: str = _described('"scheduled", "anomaly" (an extra report an anomaly triggered) or "final" (the summary)')
    iteration: int = _described("optimizer steps completed, resumed ones included")
    total_iters: int = _described("optimizer steps in the whole run (sized in tokens or seconds: estimated from the progress so far)")
    percent: float = _described("100 x iteration / total_iters (sized in tokens or seconds: tokens or elapsed over their total)")
    elapsed_s: float = _described("wall seconds since this process's tracker started, pauses included")
    paused_s: float = _described("the part of elapsed_s spent in marked pauses")
    eta_s: float | None = _described("estimated wall seconds to the end (None until it can be estimated)")
    iters_per_s: float | None = _described("steps per second over the speed window, pauses excluded (final: the run's average)")
    ms_per_iter: float | None = _described("milliseconds per step, likewise")
    loss: float | None = _described("the latest loss (with several ranks: their mean)", default=None)
    smoothed_loss: float | None = _described("the mean of the recent losses (with several ranks: their mean)", default=None)
    lr: float | None = _described("the latest learning rate", default=None)
    best_val_loss: float | None = _described("the lowest validation loss seen", default=None)
    mfu: float | None = _described("model FLOP utilisation, a fraction of peak_flops", default=None)
    peak_flops: float | None = _described("the peak mfu is a fraction of, in FLOP/s", default=None)
    peak_flops_source: str | None = _described(
        'where that peak comes from: "given", "table: NVIDIA H100 SXM bf16", "measured: CPU fp32"', default=None)
    tokens_processed: int | None = _described("tokens of every step done, resumed ones included", default=None)
    tokens_per_s: float | None = _described("tokens per second over the speed window", default=None)
    memory: tuple[MemoryStats, ...] = _described(
        "a MemoryStats per backend: {device, used_bytes, total_bytes, reserved_bytes, peak_bytes, name}", default=())
    metrics: Mapping[str, object] = _described("the caller's further named values passed to step (the latest of each)", **_EMPTY)
    sections: tuple[Section, ...] = _described("the caller's Sections: {title, lines: [[label, value], ...], into}", default=())
    anomalies: tuple[Anomaly, ...] = _described(
        "the Anomalies being reported: {kind, message, since_iter, severity, subject, steady}", default=())
    ranks: Mapping[str, float] = _described(
        'the cross-rank figures {"ranks/...": number} when exchanged at this report (cross_rank=True), else empty', **_EMPTY)
    start_iter: int = _described("the iteration this process resumed at", default=0)
    outcome: str | None = _described(
        'None, except in the final summary: how the run ended, "completed", "stopped" or "crashed"', default=None)
    error: str | None = _described(
        'None, except in the final summary of a crash: the exception, "RuntimeError: CUDA out of memory"', default=None)
    wall_time: float = _described("Unix time at which the report was made (the JSONL record's time)", default=0.0)
    progress_unit: str = _described(
        'what the run is sized in and percent counts: "iters", "tokens" or "seconds" (a time budget)', default="iters")
    progress_total: float | None = _described("the run's size in that unit (steps, tokens, or seconds of budget)", default=None)
    epoch: int | None = _described("the epoch (1-based) of iteration, in a run sized in epochs, else None", default=None)
    epochs: int | None = _described("the epochs in the run, else None", default=None)
    run_cost: RunCost | None = _described(
        "the device-hours, energy, money and CO2 so far and at the end (the tracker's cost=), else None", default=None)
    loss_forecast: float | None = _described(
        "the loss forecast for the run's last step (None while too early; trainprogress.forecast)", default=None)
    loss_forecast_low: float | None = _described(
        "the low end of the forecast's band, which should hold the final loss", default=None)
    loss_forecast_high: float | None = _described("the high end of that band", default=None)

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


def field_docs(cls: type = Report) -> dict[str, str]:
    """Each field of a dataclass of this module by name, with its one description."""
    return {f.name: f.metadata["doc"] for f in fields(cls)}
