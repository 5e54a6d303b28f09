"""trainprogress.report_schedule: when reports are due, through real trackers on a fake clock."""

import math

import pytest
from helpers import FakeClock, RecordingSink
from hypothesis import given, settings
from hypothesis import strategies as st

from trainprogress import ProgressTracker
from trainprogress.report_schedule import ReportSchedule

# Intervals as a person types them: whole and fractional percents.
intervals = st.sampled_from([0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 7.0, 10.0, 12.5, 25.0, 30.0, 33.0, 50.0, 100.0])


def run_tracker(total, interval, start_iter=0):
    """The scheduled reports of a run. No loss is given: when a report is due does not depend
    on it, and without one no report fits a loss forecast (milliseconds each, thousands of
    reports per example here)."""
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(total, start_iter=start_iter, interval_percent=interval, sinks=[sink], clock=clock, is_master=True)
    returned = []
    for _ in range(start_iter, total):
        clock.advance(0.01)
        report = tracker.step(lr=1e-3)
        if report is not None:
            returned.append(report)
    tracker.close()
    scheduled = [r for r in sink.reports if r.kind == "scheduled"]
    assert [r.iteration for r in returned] == [r.iteration for r in scheduled]
    return scheduled


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 3000), interval=intervals)
def test_full_run_report_count_and_order(total, interval):
    reports = run_tracker(total, interval)
    iterations = [r.iteration for r in reports]
    expected_count = math.ceil(100 / interval)
    if total >= expected_count:
        assert len(reports) == expected_count
    else:
        assert len(reports) <= total
    assert iterations == sorted(set(iterations)), "in order, no duplicates"
    assert iterations[-1] == total and reports[-1].percent == 100.0
    assert all(r.percent == pytest.approx(100 * r.iteration / total) for r in reports)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), total=st.integers(1, 3000), interval=intervals)
def test_resume_continues_from_the_right_percent(data, total, interval):
    start = data.draw(st.integers(0, total - 1))
    full = [r.iteration for r in run_tracker(total, interval)]
    resumed = [r.iteration for r in run_tracker(total, interval, start_iter=start)]
    assert resumed == [it for it in full if it > start]


@pytest.mark.parametrize(
    "total, interval, expected",
    [
        (100, 1.0, list(range(1, 101))),
        (1000, 25.0, [250, 500, 750, 1000]),
        (4, 30.0, [1, 2, 3, 4]),  # four boundaries (30/60/90/100%), four iterations: one each
        (10, 1.0, list(range(1, 11))),  # a short run: one report per iteration, real percents
        (2000, 0.5, [10 * k for k in range(1, 201)]),
        (150, 25.0, [37, 75, 112, 150]),  # floor: the last iteration at or below each boundary
    ],
)
def test_due_iterations_by_hand(total, interval, expected):
    assert ReportSchedule(total, interval).due_iterations() == expected


def test_short_run_reports_state_real_percent():
    reports = run_tracker(7, 1.0)
    assert [r.iteration for r in reports] == [1, 2, 3, 4, 5, 6, 7]
    assert reports[0].percent == pytest.approx(100 / 7)


@pytest.mark.parametrize("bad", [0, -1, 100.5, float("nan"), float("inf")])
def test_bad_interval_names_the_fix(bad):
    with pytest.raises(ValueError, match=r"interval_percent must be in \(0, 100\]"):
        ProgressTracker(100, interval_percent=bad, sinks=[])


def test_bad_totals_and_resume_points():
    with pytest.raises(ValueError, match="total_iters must be >= 1"):
        ProgressTracker(0, sinks=[])
    with pytest.raises(TypeError, match="total_iters must be an int"):
        ProgressTracker(10.5, sinks=[])
    with pytest.raises(ValueError, match="start_iter .* is past total_iters"):
        ProgressTracker(10, start_iter=11, sinks=[])
