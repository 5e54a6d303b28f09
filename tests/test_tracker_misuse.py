"""The tracker under misuse and misbehaving sinks: steps after close(), losses of the wrong
type, sinks that block for seconds or raise SystemExit. Training must go on, undelayed,
with one clear warning per problem."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
import torch

from helpers import FakeClock, RecordingSink
from trainprogress import ProgressTracker, Sink


def warnings_about(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_steps_after_close_are_ignored_with_one_warning(caplog):
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(100, interval_percent=10, sinks=[sink], clock=clock)
    for _ in range(100):
        clock.advance(0.01)
        tracker.step(loss=1.0)
    tracker.close()
    reports = len(sink.reports)
    for _ in range(50):
        clock.advance(0.01)
        assert tracker.step(loss=1.0) is None
    tracker.event("late", x=1)
    assert len(sink.reports) == reports and [e.kind for e in sink.events if e.kind == "late"] == []
    assert tracker.iteration == 100
    assert len(warnings_about(caplog, "step() called after close() is ignored")) == 1


@pytest.mark.parametrize("bad", ["abc", True, [1.0], {"loss": 1.0}])
def test_a_loss_of_the_wrong_type_is_refused_at_the_call(bad):
    clock = FakeClock()
    tracker = ProgressTracker(100, interval_percent=10, sinks=[], clock=clock)
    with pytest.raises(TypeError, match=r"trainprogress: step\(loss=\.\.\.\) takes a number or a one-element tensor, "
                                        rf"got {type(bad).__name__} .*pass loss\.detach\(\) or float\(loss\)"):
        tracker.step(loss=bad)
    assert tracker.iteration == 0
    for _ in range(40):  # a loop of real steps (10 ms each): every step is checked
        clock.advance(0.01)
        tracker.step(loss=torch.tensor(2.0))
    with pytest.raises(TypeError, match="step\\(loss=...\\)"):
        clock.advance(0.01)
        tracker.step(loss=bad)
    assert tracker.iteration == 40


def test_losses_of_every_numeric_kind_are_accepted():
    clock = FakeClock()
    sink = RecordingSink()
    with ProgressTracker(5, interval_percent=100, sinks=[sink], clock=clock) as tracker:
        for loss in (1.0, 2, np.float32(3.0), torch.tensor(4.0), None):
            clock.advance(0.01)
            tracker.step(loss=loss)
    assert sink.reports[-1].smoothed_loss == pytest.approx(2.5)


class SlowSink(Sink):
    """A sink whose every report takes ``delay_s`` (a dead network share, a hung endpoint)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.reports = 0

    def report(self, report):
        time.sleep(self.delay_s)
        self.reports += 1


def test_a_blocking_sink_does_not_stall_training(caplog):
    slow, healthy = SlowSink(2.0), RecordingSink()
    tracker = ProgressTracker(400, interval_percent=1, sinks=[slow, healthy])
    loop_s = 0.0  # time spent inside step(): what the sink could add to training
    for _ in range(400):
        time.sleep(0.001)
        started = time.perf_counter()
        tracker.step(loss=1.0)
        loop_s += time.perf_counter() - started
    closing = time.perf_counter()
    tracker.close()
    close_s = time.perf_counter() - closing
    # Inline, its 100 reports would take 200 s; training waits for it once (2 s).
    assert loop_s < 4.0, loop_s
    assert close_s < 3.0, close_s
    assert len(healthy.reports) == 101  # the others miss nothing
    assert len(warnings_about(caplog, "sink SlowSink took over 1.0 s in report(); it now runs in the background")) == 1
    off = warnings_about(caplog, "sink SlowSink stays slow")
    assert len(off) == 1 and "is switched off; training goes on" in off[0]
    assert slow.reports < 5
    assert sum(t.name == "trainprogress-SlowSink" for t in threading.enumerate()) <= 1  # ends after its sleep


class ExitingSink(Sink):
    def report(self, report):
        raise SystemExit("a sink called sys.exit()")


def test_a_sink_raising_system_exit_is_switched_off(caplog):
    healthy = RecordingSink()
    clock = FakeClock()
    with ProgressTracker(100, interval_percent=10, sinks=[ExitingSink(), healthy], clock=clock) as tracker:
        for _ in range(100):
            clock.advance(0.01)
            tracker.step(loss=1.0)
    assert tracker.iteration == 100 and len(healthy.reports) == 11
    off = warnings_about(caplog, "sink ExitingSink failed in report() (SystemExit: a sink called sys.exit())")
    assert len(off) == 1 and "switched off; training goes on" in off[0]


class SlowOnceSink(RecordingSink):
    """Slow at its first report only: moved to a thread of its own, then healthy there."""

    def report(self, report):
        if not self.reports:
            time.sleep(1.2)
        super().report(report)


def test_a_sink_slow_once_goes_on_in_the_background_and_its_thread_ends():
    import gc
    import threading

    def sink_threads() -> int:
        return sum(t.name == "trainprogress-SlowOnceSink" for t in threading.enumerate())

    def run() -> tuple[ProgressTracker, SlowOnceSink]:
        clock = FakeClock()
        sink = SlowOnceSink()
        tracker = ProgressTracker(100, interval_percent=10, sinks=[sink], clock=clock)
        for _ in range(100):
            clock.advance(0.01)
            tracker.step(loss=1.0)
        return tracker, sink

    before = sink_threads()
    closed, sink = run()
    dropped = run()
    assert sink_threads() == before + 2
    closed.close()
    assert len(sink.reports) == 11 and sink.closed == 1  # everything reached it, in the background
    del dropped  # without close()
    gc.collect()
    deadline = time.monotonic() + 5
    while sink_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink_threads() == before
