"""The ETA on simulated clocks and on real step-time traces."""

import json
from pathlib import Path

import pytest
from helpers import FakeClock, RecordingSink

from trainprogress import ProgressTracker
from trainprogress.eta import EtaEstimator

DATA = Path(__file__).parent / "data"


def simulate(total, step_time, *, start_iter=0, pause_every=None, pause_s=0.0, interval=1.0):
    """Run a tracker on a fake clock. ``step_time(i)`` gives the wall seconds of iteration i
    (1-based, inside the step); every ``pause_every`` iterations a marked eval of
    ``pause_s`` runs before the step. Returns [(iteration, eta, true_remaining)] at reports."""
    clock = FakeClock()
    sink = RecordingSink()
    tracker = ProgressTracker(total, start_iter=start_iter, interval_percent=interval, sinks=[sink], clock=clock, is_master=True)
    events = []  # (iteration_done, seconds) of everything that takes wall time after it
    seen = []
    for i in range(start_iter + 1, total + 1):
        if pause_every and (i - 1) % pause_every == 0:
            with tracker.pause("eval"):
                clock.advance(pause_s)
            events.append(pause_s)
        dt = step_time(i)
        clock.advance(dt)
        events.append(dt)
        report = tracker.step(loss=1.0)
        if report is not None:
            seen.append((report.iteration, report.eta_s, len(events)))
    tracker.close()
    total_time = sum(events)
    return [(it, eta, total_time - sum(events[:n])) for it, eta, n in seen]


def worst_error(results, total, from_percent):
    errors = [abs(eta - truth) / truth for it, eta, truth in results if it >= total * from_percent / 100 and truth > 0]
    assert errors, "no reports in range"
    return max(errors)


def test_steady_run_is_exact_after_the_first_reports():
    results = simulate(1000, lambda i: 0.1)
    assert worst_error(results, 1000, 3) < 0.01


def test_eta_unknown_until_it_can_be_estimated():
    clock = FakeClock()
    tracker = ProgressTracker(100, sinks=[], clock=clock, is_master=True)
    assert tracker.eta_seconds is None
    clock.advance(1.0)
    report = tracker.step(loss=1.0)
    assert report is not None and report.eta_s is None  # one (warm-up) step says nothing yet
    tracker.close()


def test_slow_first_step_compile_does_not_throw_it_off():
    results = simulate(1000, lambda i: 90.0 if i == 1 else 0.1)
    assert worst_error(results, 1000, 3) < 0.01


def test_one_off_stall_is_ignored():
    results = simulate(1000, lambda i: 30.0 if i == 300 else 0.1)
    after = [(it, eta, truth) for it, eta, truth in results if it >= 300]
    assert worst_error(after, 1000, 30) < 0.01


def assert_off_by_at_most_one_event(results, total, event_s):
    # A rate cannot know where between two events the end falls: the estimate may be off
    # by one event's duration, and otherwise must be close.
    late = [(it, eta, truth) for it, eta, truth in results if it >= total // 4]
    assert late
    for it, eta, truth in late:
        assert abs(eta - truth) <= 0.02 * truth + event_s, (it, eta, truth)


def test_marked_periodic_pauses_enter_at_their_rate():
    # eval of 5 s before iterations 1, 101, 201, ...: a third of the remaining time.
    results = simulate(1000, lambda i: 0.1, pause_every=100, pause_s=5.0)
    assert_off_by_at_most_one_event(results, 1000, 5.0)


def test_unwrapped_recurring_eval_enters_at_its_rate():
    # nanoGPT-style: the eval runs inside every 100th step, unmarked.
    results = simulate(1000, lambda i: 5.1 if i % 100 == 0 else 0.1)
    assert_off_by_at_most_one_event(results, 1000, 5.0)


@pytest.mark.parametrize("factor", [1.5, 2.0, 4.0])
def test_lasting_speed_change_is_followed_within_two_percent(factor):
    total = 2000
    results = simulate(total, lambda i: 0.1 if i <= total // 2 else 0.1 * factor)
    assert worst_error(results, total, 52) < 0.02


def test_resume_first_step_and_percent():
    results = simulate(1000, lambda i: 20.0 if i == 501 else 0.1, start_iter=500)
    assert results[0][0] == 510
    assert worst_error(results, 1000, 53) < 0.01


def test_eta_seconds_counts_down_between_steps():
    clock = FakeClock()
    tracker = ProgressTracker(100, sinks=[], clock=clock, is_master=True)
    for _ in range(10):
        clock.advance(1.0)
        tracker.step(loss=1.0)
    at_step = tracker.eta_seconds
    assert at_step == pytest.approx(90.0)
    clock.advance(0.5)
    assert tracker.eta_seconds == pytest.approx(89.5)
    tracker.close()


def replay(path):
    data = json.loads(path.read_text())
    steps = [s for kind, s in data["events"] if kind == "step"]
    total = data["total_iters"]
    remaining = sum(steps)
    estimator = EtaEstimator(total, window=min(2000, max(10, round(0.02 * total))))
    errors = []
    for i, t in enumerate(steps, start=1):
        estimator.add_steps([t], i)
        remaining -= t
        if i % (total // 100) == 0 and 5 * total <= 100 * i < 99 * total:
            errors.append(abs(estimator.remaining_s(i) - remaining) / remaining)
    return sorted(errors)


def test_real_cpu_trace_with_unwrapped_evals():
    # nanoGPT on 2 CPU cores: eval + checkpoint inside every 250th step.
    errors = replay(DATA / "nanogpt_cpu_shakespeare_char.json")
    assert errors[len(errors) // 2] < 0.05  # median
    assert errors[int(0.9 * len(errors))] < 0.10  # 90th percentile


def test_real_8xh100_trace_with_82s_compile_and_slow_steps():
    errors = replay(DATA / "modded_nanogpt_1p5b_8xh100.json")
    assert errors[-1] < 0.01
