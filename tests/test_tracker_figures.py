"""ProgressTracker.iters_per_s and .mfu: the figures a caller's own log line shows, the same
as the next report's, read without any device sync."""

from __future__ import annotations

import pytest

from helpers import FakeClock, RecordingSink
from trainprogress import ProgressTracker


def test_speed_and_mfu_match_the_report_of_the_same_moment():
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(100, interval_percent=10, flops_per_iter=2e9, peak_flops=1e12, sinks=[sink], clock=clock)
    assert tracker.iters_per_s is None and tracker.mfu is None  # nothing timed yet
    for it in range(1, 11):
        clock.advance(0.05 if it % 2 else 0.15)  # mean 0.1 s per step
        report = tracker.step(loss=1.0)
    assert report is not None and report.iteration == 10
    assert tracker.iters_per_s == pytest.approx(report.iters_per_s) == pytest.approx(10.0)
    assert tracker.mfu == pytest.approx(report.mfu) == pytest.approx(2e9 * 10.0 / 1e12)


def test_mfu_is_none_without_flops():
    clock = FakeClock()
    tracker = ProgressTracker(10, sinks=[], clock=clock)
    clock.advance(0.1)
    tracker.step()
    assert tracker.iters_per_s == pytest.approx(10.0) and tracker.mfu is None
