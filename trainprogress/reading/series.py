"""The numbers a plot of a run draws, taken from its log records (no matplotlib here).

Every series is a pair of lists, x and y, on one of two x axes: the iteration, or the time
since the run started (in a chosen unit, with the gaps between a crash and its resume left
out; see :meth:`trainprogress.reading.runs.Run.active_seconds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..format import GIB
from .runs import Record, Run

ITERATION = "iteration"
TIME = "time"

# The most reports a run's lines draw: a panel is a few hundred pixels wide, so a longer
# log (a report every step of a long run) is thinned to every k-th report, which also
# spares parsing the records in between.
MAX_POINTS = 5000

# (seconds per unit, label) from the smallest; the plot picks the largest unit that keeps
# the run at least two units long.
TIME_UNITS = ((1.0, "s"), (60.0, "min"), (3600.0, "h"), (86400.0, "days"))


def time_unit(duration_s: float) -> tuple[float, str]:
    """The unit (seconds per unit, name) for an axis spanning ``duration_s`` seconds."""
    chosen = TIME_UNITS[0]
    for unit in TIME_UNITS:
        if duration_s >= 2 * unit[0]:
            chosen = unit
    return chosen


@dataclass
class Series:
    """One line of a panel."""

    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def add(self, x: float, y: Any) -> None:
        if isinstance(y, (int, float)) and not isinstance(y, bool) and math.isfinite(y):
            self.x.append(x)
            self.y.append(float(y))

    def add_break(self) -> None:
        """End the line here: matplotlib leaves a gap at a NaN point."""
        if self.x and not math.isnan(self.x[-1]):
            self.x.append(math.nan)
            self.y.append(math.nan)

    def __bool__(self) -> bool:
        return bool(self.x)


@dataclass
class Span:
    """A stretch of the x axis: a pause (name "eval", "checkpoint", ...) or a curriculum phase."""

    start: float
    end: float
    name: str


@dataclass
class RunSeries:
    """Everything one run contributes to the plot, on one x axis."""

    name: str
    loss: Series = field(default_factory=Series)
    smoothed_loss: Series = field(default_factory=Series)
    val_loss: Series = field(default_factory=Series)
    val_loss_by_name: dict[str, Series] = field(default_factory=dict)  # NanEcho's per-dimension losses
    lr: Series = field(default_factory=Series)
    iters_per_s: Series = field(default_factory=Series)
    tokens_per_s: Series = field(default_factory=Series)
    mfu_pct: Series = field(default_factory=Series)
    memory_gib: dict[str, Series] = field(default_factory=dict)  # "cpu used", "cuda peak", ...
    memory_total_gib: dict[str, float] = field(default_factory=dict)  # by device
    estimated_end: Series = field(default_factory=Series)  # in the time unit, from the run's start
    loss_forecast: Series = field(default_factory=Series)  # the final-loss forecast at each report
    loss_forecast_low: Series = field(default_factory=Series)  # its band, on the same x as loss_forecast
    loss_forecast_high: Series = field(default_factory=Series)
    actual_end: float | None = None  # likewise; None until the run completes
    pauses: list[Span] = field(default_factory=list)
    phases: list[Span] = field(default_factory=list)
    anomalies: list[tuple[float, str]] = field(default_factory=list)  # (x, what)
    resumes: list[float] = field(default_factory=list)
    x_end: float = 0.0
    report_stride: int = 1  # every report_stride-th report is drawn (1: all of them)


def run_duration_s(run: Run) -> float:
    """Seconds the run's processes ran (resume gaps left out)."""
    last = run.last_record
    return run.active_seconds(last["time"]) if last else 0.0


def _val_loss_points(reports: list[Record], x_of: Callable[[Record], float], into: Series) -> None:
    """A report's metrics hold the latest val_loss until the next evaluation, so a point is
    drawn where the value changes: at the first report after each evaluation."""
    previous = None
    for report in reports:
        metrics = report.get("metrics")
        value = metrics.get("val_loss") if isinstance(metrics, dict) else None
        if value is not None and value != previous:
            into.add(x_of(report), value)
        previous = value


def _memory(report: Record, x: float, out: RunSeries) -> None:
    for mem in report.get("memory") or ():
        if not isinstance(mem, dict):
            continue
        device = str(mem.get("device", "?"))
        label = "RSS" if device == "cpu" else "used"
        for key, name in (("used_bytes", label), ("peak_bytes", "peak"), ("reserved_bytes", "reserved")):
            if isinstance(mem.get(key), (int, float)):
                out.memory_gib.setdefault(f"{device} {name}", Series()).add(x, mem[key] / GIB)
        if isinstance(mem.get("total_bytes"), (int, float)):
            out.memory_total_gib[device] = mem["total_bytes"] / GIB


def _forecast(report: Record, x: float, out: RunSeries) -> None:
    """The report's final-loss forecast and band, when all three are numbers (the band is drawn between them)."""
    values = (report.get("loss_forecast"), report.get("loss_forecast_low"), report.get("loss_forecast_high"))
    if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        for series, value in zip((out.loss_forecast, out.loss_forecast_low, out.loss_forecast_high), values):
            series.add(x, value)


def build_series(run: Run, x_axis: str = TIME, unit_s: float = 1.0, max_points: int = MAX_POINTS) -> RunSeries:
    """The run's series with x the iteration (``x_axis="iteration"``) or its active time in
    units of ``unit_s`` seconds (``"time"``), from at most about ``max_points`` of its
    reports: every k-th, and the last (``report_stride`` says k). Final summary reports are
    left out: their speed is the whole run's average, not a moment's."""
    out = RunSeries(name=run.name)
    reports = run.reports
    out.report_stride = max(1, -(-len(reports) // max_points))
    if out.report_stride > 1:
        reports = reports[::out.report_stride] + ([reports[-1]] if (len(reports) - 1) % out.report_stride else [])

    def seconds(record: Record) -> float:
        return run.active_seconds(record["time"]) / unit_s

    x_of = seconds if x_axis == TIME else (lambda record: float(record["iteration"]))
    resume_times = [start["time"] for start in run.resumes]
    previous_time = -math.inf
    line_series = (out.loss, out.smoothed_loss, out.lr, out.iters_per_s, out.tokens_per_s, out.mfu_pct, out.estimated_end,
                   out.loss_forecast, out.loss_forecast_low, out.loss_forecast_high)
    for report in reports:
        x = x_of(report)
        if any(previous_time < t <= report["time"] for t in resume_times):
            # No line across a resume: what happened between is another process's story.
            for series in (*line_series, *out.memory_gib.values()):
                series.add_break()
        previous_time = report["time"]
        out.loss.add(x, report.get("loss"))
        out.smoothed_loss.add(x, report.get("smoothed_loss"))
        out.lr.add(x, report.get("lr"))
        out.iters_per_s.add(x, report.get("iters_per_s"))
        out.tokens_per_s.add(x, report.get("tokens_per_s"))
        mfu = report.get("mfu")
        out.mfu_pct.add(x, 100.0 * mfu if isinstance(mfu, (int, float)) else None)
        _memory(report, x, out)
        _forecast(report, x, out)
        eta = report.get("eta_s")
        if isinstance(eta, (int, float)):
            out.estimated_end.add(x, seconds(report) + eta / unit_s)
    _val_loss_points(reports, x_of, out.val_loss)

    last = run.last_record
    out.x_end = x_of(last) if last else 0.0
    if run.status == "completed" and last is not None:
        out.actual_end = seconds(last)
    phase_starts: list[tuple[float, str]] = []
    for event in run.events:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        kind = event.get("event")
        x = x_of(event)
        if kind == "pause":
            duration = float(data.get("duration_s") or 0.0)
            start = x - duration / unit_s if x_axis == TIME else x
            out.pauses.append(Span(start, x, str(data.get("name", "pause"))))
        elif kind == "phase_change":
            phase_starts.append((x, str(data.get("phase", "?"))))
        elif kind == "anomaly":
            out.anomalies.append((x, str(data.get("anomaly", "anomaly"))))
        for key, value in data.items():
            if key.startswith("val_loss/") and key != "val_loss/all":
                out.val_loss_by_name.setdefault(key.split("/", 1)[1], Series()).add(x, value)
    for (start, name), (end, _) in zip(phase_starts, phase_starts[1:] + [(out.x_end, "")]):
        out.phases.append(Span(start, end, name))
    out.resumes = [x_of(start) for start in run.resumes]
    return out
