"""begin_pause/end_pause: the hook form of pause, for frameworks with begin and end hooks."""

import pytest
from helpers import FakeClock, RecordingSink

from trainprogress import ProgressTracker


def test_begin_end_pause_is_excluded_from_speed_like_the_with_form():
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(10, interval_percent=100, sinks=[sink], clock=clock, is_master=True)
    for i in range(10):
        clock.advance(0.5)
        tracker.step(loss=1.0)
        if i == 4:
            tracker.begin_pause("eval")
            assert tracker.paused
            tracker.begin_pause("inner")  # nested: counted once, under the outer name
            clock.advance(20.0)
            tracker.end_pause()
            assert tracker.paused
            tracker.end_pause()
            assert not tracker.paused
    report = sink.reports[0]
    assert report.iters_per_s == pytest.approx(2.0)
    assert report.paused_s == pytest.approx(20.0) and report.elapsed_s == pytest.approx(25.0)
    pauses = [e for e in sink.events if e.kind == "pause"]
    assert [(e.data["name"], e.data["duration_s"], e.iteration) for e in pauses] == [("eval", 20.0, 5)]
    tracker.close()


def test_end_pause_without_begin_names_the_fix():
    tracker = ProgressTracker(10, sinks=[], is_master=True)
    with pytest.raises(RuntimeError, match="begin_pause"):
        tracker.end_pause()
    with tracker.pause("eval"):
        assert tracker.paused
    assert not tracker.paused
    tracker.close()
