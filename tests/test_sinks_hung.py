"""A sink whose call never returns cannot hang training: every sink call runs on the sink's
own thread and training waits for it only up to the runner's limits, which the tests shorten
(``runner.DEFAULT_LIMITS``) so that they do not sleep long."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from helpers import FakeClock, RecordingSink
from trainprogress import ProgressTracker, Sink
from trainprogress.sinks import runner
from trainprogress.sinks.runner import SinkLimits

LIMITS = SinkLimits(call_s=0.05, start_s=0.05, close_s=0.3, max_pending=4)


class HungSink(Sink):
    """Blocks forever in ``method`` (until the test releases it)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.release = threading.Event()
        self.entered = 0

    def _block(self, method: str) -> None:
        if method == self.method:
            self.entered += 1
            self.release.wait()

    def start(self, run):
        self._block("start")

    def report(self, report):
        self._block("report")

    def event(self, event):
        self._block("event")

    def close(self):
        self._block("close")


@pytest.fixture
def short_limits(monkeypatch):
    monkeypatch.setattr(runner, "DEFAULT_LIMITS", LIMITS)


@pytest.mark.parametrize("method", ["start", "report", "event", "close"])
def test_a_sink_that_never_returns_costs_training_at_most_its_limits(short_limits, caplog, method):
    caplog.set_level(logging.WARNING)
    hung, healthy = HungSink(method), RecordingSink()
    clock = FakeClock()
    started = time.monotonic()
    try:
        tracker = ProgressTracker(200, interval_percent=1, sinks=[hung, healthy], clock=clock)
        for i in range(200):
            clock.advance(0.01)
            tracker.step(loss=1.0)
            if i == 50:
                tracker.event("phase_change", phase="two")
        closing = time.monotonic()
        tracker.close()
        close_s = time.monotonic() - closing
        total_s = time.monotonic() - started
    finally:
        hung.release.set()
    assert tracker.iteration == 200 and hung.entered == 1
    assert len(healthy.reports) == 101 and healthy.closed == 1  # the others miss nothing
    # Training waited for the hung call once (call_s), close() at most close_s.
    assert close_s < LIMITS.close_s + 2 * LIMITS.call_s + 0.5, close_s
    assert total_s < LIMITS.call_s + LIMITS.close_s + 3.0, total_s
    messages = [r.getMessage() for r in caplog.records if "HungSink" in r.getMessage()]
    if method == "close":
        assert messages == ["trainprogress: sink HungSink did not finish closing within 0.3 s; it is left behind"]
    else:
        assert sum("now runs in the background" in m for m in messages) == 1
        assert sum("is switched off; training goes on" in m or "left behind" in m for m in messages) == 1


def test_a_healthy_sinks_output_is_in_place_when_step_returns():
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(10, interval_percent=10, sinks=[sink], clock=clock)
    for i in range(10):
        clock.advance(0.01)
        tracker.step(loss=1.0)
        assert len(sink.reports) == i + 1  # a report at every 10%: each one there before step() returns
    tracker.close()
