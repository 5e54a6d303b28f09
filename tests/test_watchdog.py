"""The hang watchdog: a stall is noticed from the step counter alone, reported once with its
phase, its end is reported, and the thread stops with the tracker."""

import io
import threading
import time

import pytest

from helpers import FakeClock, RecordingSink
from trainprogress import ConsoleSink, ProgressTracker
from trainprogress.report import Event
from trainprogress.watchdog import Stall, Watchdog, WatchdogConfig


def watchdog_threads():
    return [t for t in threading.enumerate() if t.name == "trainprogress-watchdog"]


class Counter:
    def __init__(self):
        self.iteration = 0
        self.phase = "compute"


def make(config, counter, clock):
    stalls, recoveries = [], []
    dog = Watchdog(config, lambda: counter.iteration, lambda: counter.phase, stalls.append, recoveries.append, clock)
    return dog, stalls, recoveries


def test_stall_threshold_follows_the_typical_step_and_is_reported_once():
    clock, counter = FakeClock(), Counter()
    dog, stalls, recoveries = make(WatchdogConfig(factor=10, min_stall_s=5, first_step_s=60), counter, clock)
    # Before the first step only first_step_s counts (compilation, data loading).
    clock.advance(59)
    dog.poll()
    assert stalls == [] and dog.threshold_s() == 60
    for _ in range(20):  # 2 s per look, 4 steps per look: 0.5 s steps
        clock.advance(2)
        counter.iteration += 4
        dog.poll()
    assert dog.typical_step_s == pytest.approx(0.5)
    assert dog.threshold_s() == 5  # 10 x 0.5 s is less than min_stall_s
    counter.phase = "collective"
    clock.advance(4.9)
    dog.poll()
    assert stalls == []
    clock.advance(0.2)
    dog.poll()
    clock.advance(30)
    dog.poll()
    assert len(stalls) == 1
    assert stalls[0] == Stall(iteration=80, stalled_s=pytest.approx(5.1), phase="collective",
                              typical_step_s=pytest.approx(0.5), threshold_s=5)
    counter.iteration += 1
    dog.poll()
    assert len(recoveries) == 1 and recoveries[0].stalled_s == pytest.approx(35.1) and recoveries[0].iteration == 80


def test_slow_steps_raise_the_threshold():
    clock, counter = FakeClock(), Counter()
    dog, stalls, _ = make(WatchdogConfig(factor=10, min_stall_s=5), counter, clock)
    for _ in range(5):
        clock.advance(30)
        counter.iteration += 1
        dog.poll()
    assert dog.threshold_s() == pytest.approx(300)
    clock.advance(200)
    dog.poll()
    assert stalls == []


def test_a_tracker_reports_a_stall_in_a_pause_and_its_end_then_stops_the_thread():
    sink = RecordingSink()
    config = WatchdogConfig(min_stall_s=0.4, first_step_s=0.4, poll_s=0.02)
    tracker = ProgressTracker(1000, sinks=[sink], is_master=True, watchdog=config)
    assert len(watchdog_threads()) == 1
    for _ in range(10):
        time.sleep(0.01)
        tracker.step(loss=1.0)
    with tracker.pause("eval"):
        deadline = time.monotonic() + 10
        while not any(e.kind == "stalled" for e in sink.events) and time.monotonic() < deadline:
            time.sleep(0.02)
    stalled = [e for e in sink.events if e.kind == "stalled"]
    assert len(stalled) == 1
    assert stalled[0].iteration == 10 and stalled[0].data["phase"] == "eval"
    assert stalled[0].data["stalled_s"] >= 0.4
    tracker.step(loss=1.0)
    deadline = time.monotonic() + 10
    while not any(e.kind == "stall_ended" for e in sink.events) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e.kind for e in sink.events if e.kind.startswith("stall")] == ["stalled", "stall_ended"]
    tracker.close()
    assert watchdog_threads() == []


def test_data_wait_is_the_phase_while_waiting_for_data():
    config = WatchdogConfig(min_stall_s=0.3, first_step_s=0.3, poll_s=0.02)
    sink = RecordingSink()
    with ProgressTracker(100, sinks=[sink], is_master=True, watchdog=config) as tracker:
        tracker.step(loss=1.0)
        with tracker.data_wait():
            deadline = time.monotonic() + 10
            while not sink.events and time.monotonic() < deadline:
                time.sleep(0.02)
    assert sink.events[0].kind == "stalled" and sink.events[0].data["phase"] == "data"
    assert watchdog_threads() == []


def test_a_failing_callback_stops_the_watchdog_not_training(caplog):
    counter = Counter()

    def broken(stall):
        raise RuntimeError("sink exploded")

    dog = Watchdog(WatchdogConfig(min_stall_s=0.05, first_step_s=0.05, poll_s=0.01), lambda: counter.iteration,
                   lambda: "compute", broken, broken)
    dog.start()
    deadline = time.monotonic() + 10
    while watchdog_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watchdog_threads() == []
    assert "the watchdog failed and stops; training goes on" in caplog.text
    dog.close()


def test_the_console_prints_a_stall_block():
    stream = io.StringIO()
    sink = ConsoleSink(stream)
    sink.event(Event("stalled", 1234, 0.0, {"stalled_s": 312.0, "phase": "collective", "typical_step_s": 0.058,
                                            "threshold_s": 300.0}))
    sink.event(Event("stall_ended", 1234, 0.0, {"stalled_s": 400.0, "phase": "collective"}))
    text = stream.getvalue()
    assert "⏸️ TRAINING STALLED after iteration 1,234" in text
    assert "Last phase: collective" in text and "No step for: 5.20 min" in text and "Typical step: 58.00ms" in text
    assert "Training goes on at iteration 1,234 after a stall of 6.67 min" in text


@pytest.mark.parametrize("kwargs, message", [
    ({"factor": 0.5}, "factor must be >= 1"),
    ({"min_stall_s": 0}, "min_stall_s must be > 0"),
    ({"poll_s": -1}, "poll_s must be > 0"),
])
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WatchdogConfig(**kwargs)
    with pytest.raises(TypeError, match="watchdog must be True, False or an instance of WatchdogConfig"):
        ProgressTracker(10, sinks=[], watchdog="yes")


def test_other_ranks_log_one_warning_line(caplog, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    config = WatchdogConfig(min_stall_s=0.2, first_step_s=0.2, poll_s=0.02)
    with ProgressTracker(100, is_master=False, watchdog=config) as tracker:
        tracker.step(loss=1.0)
        deadline = time.monotonic() + 10
        while "no step for" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert caplog.text.count("trainprogress: rank 3: no step for") == 1
    assert "after iteration 1 (phase: compute)" in caplog.text
