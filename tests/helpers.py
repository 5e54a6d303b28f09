"""Shared test helpers: a fake clock and a sink that keeps what it is sent."""

from __future__ import annotations

from trainprogress import Sink


class FakeClock:
    """A clock the test advances by hand, in seconds."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSink(Sink):
    """Keeps every message, in order."""

    wants_ticks = False

    def __init__(self) -> None:
        self.started = []
        self.reports = []
        self.events = []
        self.ticks = []
        self.closed = 0

    def start(self, run):
        self.started.append(run)

    def report(self, report):
        self.reports.append(report)

    def tick(self, tick):
        self.ticks.append(tick)

    def event(self, event):
        self.events.append(event)

    def close(self):
        self.closed += 1
