"""A run as its JSONL log tells it: one :class:`Segment` per process, and the :class:`Run`
they make together, with the records of iterations redone after a crash superseded (see
:mod:`trainprogress.reading.runlog`, which reads them from a file)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RUNNING", "Record", "Run", "Segment"]

Record = Mapping[str, Any]

# Statuses a run can have: the run_end record's, or "running" while the last process has
# written no end (still running, or killed before it could).
RUNNING = "running"


@dataclass
class Segment:
    """What one process of a run wrote: its ``run_start`` record (None when the file begins
    without one), its reports (scheduled, anomaly and final, in file order), its events and
    its ``run_end`` record (None while it runs, or when it was killed), and its ``gap``
    records (where records that could not be written were dropped)."""

    start: Record | None
    reports: list[Record] = field(default_factory=list)
    events: list[Record] = field(default_factory=list)
    end: Record | None = None
    gaps: list[Record] = field(default_factory=list)

    @property
    def start_iter(self) -> int:
        """Iterations done before this process started."""
        if self.start is not None:
            return int(self.start.get("start_iter") or self.start["iteration"])
        first = self.reports[:1] or self.events[:1]
        return int(first[0]["iteration"]) if first else 0

    @property
    def start_time(self) -> float | None:
        """Unix time (s) at which this process started, as far as the log tells: its first
        record's (records are ordered as written, never by their wall time, which a clock
        set back mid-run makes go backwards)."""
        first = self.start or self._first(self.reports[:1] + self.events[:1])
        return first["time"] if first is not None else None

    @staticmethod
    def _first(records: list[Record]) -> Record | None:
        return min(records, key=lambda r: r["iteration"], default=None)

    @property
    def last_record(self) -> Record | None:
        """The latest record this process wrote: its end, else the furthest in iterations
        of its last report and last event (a report after an event at the same iteration).
        Never chosen by wall time, which a clock set back mid-run makes go backwards."""
        if self.end is not None:
            return self.end
        candidates = [r for r in (self.start, *self.events[-1:], *self.reports[-1:]) if r is not None]
        # max keeps the first of equals: reversed, so that the later kind wins a tie.
        return max(reversed(candidates), key=lambda r: r["iteration"], default=None)

    @property
    def final(self) -> Record | None:
        """This process's final summary report, if it wrote one: its last report, since a
        process writes it as it ends."""
        last = self.reports[-1] if self.reports else None
        return last if last is not None and last.get("kind") == "final" else None


@dataclass
class Run:
    """One training run: one segment per process (a resumed run has several).

    ``reports`` and ``events`` are the reconstructed view: every segment's scheduled and
    anomaly reports (finals are in ``final``) and events, with the records of iterations
    that a later segment did again dropped; ``superseded`` counts those."""

    name: str
    segments: list[Segment]

    def __post_init__(self) -> None:
        self._views: tuple[int, list[Record], list[Record], int] | None = None
        self._timeline_cache: tuple[int, list[float], list[float]] | None = None

    def _reconstruct(self) -> tuple[list[Record], list[Record], int]:
        size = sum(len(s.reports) + len(s.events) for s in self.segments)
        if self._views is None or self._views[0] != size:
            reports: list[Record] = []
            events: list[Record] = []
            superseded = 0
            for segment in self.segments:
                resume_at = segment.start_iter
                kept_reports = [r for r in reports if r["iteration"] <= resume_at]
                kept_events = [e for e in events if e["iteration"] <= resume_at]
                superseded += len(reports) - len(kept_reports) + len(events) - len(kept_events)
                reports = kept_reports + [r for r in segment.reports if r.get("kind") != "final"]
                events = kept_events + segment.events
            self._views = (size, reports, events, superseded)
        return self._views[1:]

    @property
    def reports(self) -> list[Record]:
        """Scheduled and anomaly report records, each iteration's latest, in order."""
        return self._reconstruct()[0]

    @property
    def events(self) -> list[Record]:
        """Event records (pauses, phase changes, anomalies, crashes, ...), superseded ones dropped."""
        return self._reconstruct()[1]

    @property
    def superseded(self) -> int:
        """Records dropped because a later segment redid their iterations after a resume."""
        return self._reconstruct()[2]

    @property
    def start(self) -> Record | None:
        """The first segment's run_start record."""
        return self.segments[0].start

    @property
    def config(self) -> dict[str, Any]:
        """The caller's run configuration, as the latest segment recorded it."""
        for segment in reversed(self.segments):
            if segment.start is not None and isinstance(segment.start.get("config"), dict):
                return segment.start["config"]
        return {}

    @property
    def final(self) -> Record | None:
        """The final summary report of the latest segment (None while it runs)."""
        return self.segments[-1].final

    @property
    def end(self) -> Record | None:
        """The latest segment's run_end record (None while it runs)."""
        return self.segments[-1].end

    @property
    def latest_report(self) -> Record | None:
        """The newest report of any kind: the final summary once there is one."""
        last = self.segments[-1]
        if last.reports:
            return last.reports[-1]
        return self.reports[-1] if self.reports else None

    @property
    def last_record(self) -> Record | None:
        """The newest record of the run."""
        return self.segments[-1].last_record

    @property
    def total_iters(self) -> int | None:
        """The run's planned iterations, as the latest record says."""
        for record in (self.latest_report, self.segments[-1].start):
            if record is not None and record.get("total_iters") is not None:
                return int(record["total_iters"])
        return None

    @property
    def iteration(self) -> int:
        """Iterations completed, as the newest record says."""
        last = self.last_record
        return int(last["iteration"]) if last is not None else 0

    @property
    def gaps(self) -> list[Record]:
        """The gap records of every process: records the log could not hold were dropped there."""
        return [gap for segment in self.segments for gap in segment.gaps]

    @property
    def status(self) -> str:
        """How the run ended, from its latest process's ``run_end`` record, else from that
        process's final report: "completed", "stopped" or "crashed". Only a latest process
        with neither is "running" (still running, or killed without a chance to write
        them). A gap in the log changes nothing: a log with a gap and a ``run_end`` is the
        run that ended so, with the gap noted (``gaps``)."""
        end = self.end
        if end is not None and end.get("status"):
            return str(end["status"])
        final = self.final
        if final is None:
            return RUNNING
        if final.get("outcome"):
            return str(final["outcome"])
        if self.error is not None:
            return "crashed"
        total = self.total_iters
        return "completed" if total is not None and final["iteration"] >= total else "stopped"

    @property
    def error(self) -> str | None:
        """What stopped a crashed run, from its end record, final report or crash event."""
        last = self.segments[-1]
        for record in (last.end, last.final):
            if record is not None and record.get("error"):
                return str(record["error"])
        for event in reversed(last.events):
            if event.get("event") == "crash":
                data = event.get("data")
                return str(data.get("error", "")) if isinstance(data, dict) else ""
        return None

    @property
    def resumes(self) -> list[Record]:
        """The run_start records of the segments after the first, one per resume."""
        return [s.start for s in self.segments[1:] if s.start is not None]

    def _timeline(self) -> tuple[list[float], list[float]]:
        """Each segment's start time and the active seconds before it."""
        size = sum(len(s.reports) + len(s.events) + (s.end is not None) for s in self.segments)
        if self._timeline_cache is None or self._timeline_cache[0] != size:
            starts, offsets = [], []
            offset = 0.0
            for segment in self.segments:
                begin, last = segment.start_time, segment.last_record
                if begin is None or last is None:
                    continue
                starts.append(begin)
                offsets.append(offset)
                offset += max(0.0, last["time"] - begin)
            self._timeline_cache = (size, starts, offsets)
        return self._timeline_cache[1:]

    def active_seconds(self, unix_time: float) -> float:
        """Seconds from the run's start to ``unix_time`` counting only the time its processes
        ran: the gaps between a crash and its resume are left out, so that a resumed run's
        timeline has no hole."""
        starts, offsets = self._timeline()
        if not starts:
            return 0.0
        i = max(0, bisect_right(starts, unix_time) - 1)
        return offsets[i] + unix_time - starts[i]
