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


class RunAheadDevice:
    """A device that runs ahead of the host, on a fake clock: queuing a step takes the host
    ``queue_s``; the device runs the queued steps one after another, ``step_s`` each; reading
    a step's loss (``float()``, as for any value the tracker materialises) blocks the host
    until the device has finished that step. With ``depth``, the host also blocks when that
    many steps are unfinished (CUDA's bounded queue); without, it never does (JAX)."""

    def __init__(self, clock: FakeClock, step_s: float, queue_s: float = 0.001, depth: int | None = None) -> None:
        self.clock, self.step_s, self.queue_s, self.depth = clock, step_s, queue_s, depth
        self.done_at: list[float] = []  # when the device finishes each queued step

    def queue_step(self, loss: float) -> "PendingLoss":
        if self.depth is not None and len(self.done_at) >= self.depth:
            self.wait_until(self.done_at[-self.depth])
        self.clock.advance(self.queue_s)
        start = max(self.clock.now, self.done_at[-1] if self.done_at else 0.0)
        self.done_at.append(start + self.step_s)
        return PendingLoss(self, self.done_at[-1], loss)

    def wait_until(self, t: float) -> None:
        self.clock.now = max(self.clock.now, t)


class PendingLoss:
    def __init__(self, device: RunAheadDevice, ready_at: float, value: float) -> None:
        self.device, self.ready_at, self.value = device, ready_at, value

    def __float__(self) -> float:
        self.device.wait_until(self.ready_at)
        return self.value


@pytest.mark.parametrize("depth", [None, 30])
def test_a_device_that_runs_ahead_is_timed_at_its_true_speed(depth):
    # 34 steps/s on the device, queued at 1,000/s by the host: the wait at each report is training.
    clock, sink = FakeClock(), RecordingSink()
    device = RunAheadDevice(clock, step_s=1 / 34, depth=depth)
    tracker = ProgressTracker(2000, interval_percent=5, sinks=[sink], clock=clock)
    for it in range(1, 2001):
        tracker.step(loss=device.queue_step(2.0))
    tracker.close()
    scheduled = [r for r in sink.reports if r.kind == "scheduled"]
    assert len(scheduled) == 20
    for report in scheduled:
        assert report.iters_per_s == pytest.approx(34, rel=0.05), report.iteration
    assert sink.reports[-1].iters_per_s == pytest.approx(34, rel=0.05)  # the summary's average
