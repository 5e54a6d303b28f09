"""What every sink is: a do-nothing base with one method per kind of message, and the fan-out
that sends each message to every sink and switches off one that fails."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from ..report import Report

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """What is known when a run starts: its size, where it resumes, how often it reports,
    and the caller's configuration (for W&B's run config, the JSONL start event, ...)."""

    total_iters: int
    start_iter: int
    interval_percent: float
    tokens_per_iter: int | None = None
    flops_per_iter: float | None = None
    peak_flops: float | None = None
    peak_flops_source: str | None = None
    config: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    wall_time: float = 0.0  # Unix time the tracker started


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


class Sink:
    """A destination for reports. Every method is a no-op here; a sink overrides what it
    renders. Sinks render; they never compute numbers of their own."""

    #: Whether the tracker should send live ticks between reports (they cost a clock read).
    wants_ticks = False

    def start(self, run: RunInfo) -> None:
        """The run starts (or resumes)."""

    def report(self, report: Report) -> None:
        """A Report: scheduled, triggered by an anomaly, or the final summary (report.kind)."""

    def tick(self, tick: Tick) -> None:
        """Live progress between reports; only sent when ``wants_ticks`` is true."""

    def event(self, event: Event) -> None:
        """Something happened between reports."""

    def close(self) -> None:
        """The run is over: flush and release files, threads and connections."""


class SinkGroup:
    """Sends each message to every sink. A sink that raises is switched off with one clear
    warning, and the others, and training, go on."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self._sinks = list(sinks)
        self.wants_ticks = any(s.wants_ticks for s in self._sinks)

    def __bool__(self) -> bool:
        return bool(self._sinks)

    def _call(self, method: str, *args: object) -> None:
        for sink in list(self._sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as exc:
                self._sinks.remove(sink)
                self.wants_ticks = any(s.wants_ticks for s in self._sinks)
                logger.warning(
                    "trainprogress: sink %s failed in %s() and is switched off; training goes on (%s: %s)",
                    type(sink).__name__, method, type(exc).__name__, exc,
                )

    def start(self, run: RunInfo) -> None:
        self._call("start", run)

    def report(self, report: Report) -> None:
        self._call("report", report)

    def tick(self, tick: Tick) -> None:
        self._call("tick", tick)

    def event(self, event: Event) -> None:
        self._call("event", event)

    def close(self) -> None:
        self._call("close")
