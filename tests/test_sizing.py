"""Runs sized otherwise than in optimizer steps: tokens (with a batch ramp), a time budget,
epochs, a total changed mid-run, and tracker.wrap. Real trackers on an injected clock."""

from __future__ import annotations

import random
from statistics import fmean

import pytest

from trainprogress import ProgressTracker
from trainprogress.report import COMPLETED, SCHEDULED, STOPPED

from helpers import FakeClock, RecordingSink

SECONDS_PER_TOKEN = 2e-6


def ramp_tokens(steps: int) -> list[int]:
    """Tokens per step of a run whose batch grows 4x, linearly, over its first 60% of steps."""
    base = 8 * 1024
    return [base * (1 + 3 * min(1.0, i / (0.6 * steps))) // 1 for i in range(steps)]


def run_ramp(sized_in_tokens: bool, steps: int = 3000, seed: int = 0):
    """A run whose step time is proportional to its tokens (with 5% noise); returns the
    reports and the clock time at which the run ended."""
    rng = random.Random(seed)
    tokens = [int(t) for t in ramp_tokens(steps)]
    durations = [n * SECONDS_PER_TOKEN * rng.uniform(0.95, 1.05) for n in tokens]
    clock, sink = FakeClock(), RecordingSink()
    sizing = {"total_tokens": sum(tokens)} if sized_in_tokens else {"total_iters": steps}
    tracker = ProgressTracker(**sizing, sinks=[sink], clock=clock, is_master=True)
    for n, seconds in zip(tokens, durations):
        clock.advance(seconds)
        if sized_in_tokens:
            tracker.step(loss=2.0, tokens=n)
        else:
            tracker.step(loss=2.0)
    end = clock.now
    final = tracker.close()
    return sink.reports, end, final, clock


def eta_errors(reports, end, start=1000.0):
    """Relative ETA error of each scheduled report between 25% and 95%."""
    out = []
    for r in reports:
        if r.kind == SCHEDULED and 25 <= r.percent <= 95:
            truth = end - (start + r.elapsed_s)
            out.append(abs(r.eta_s - truth) / truth)
    return out


def test_a_token_budget_gives_100_reports_and_an_eta_a_batch_ramp_does_not_fool():
    reports, end, final, _ = run_ramp(sized_in_tokens=True)
    scheduled = [r for r in reports if r.kind == SCHEDULED]
    assert len(scheduled) == 100
    assert scheduled[-1].percent == pytest.approx(100.0)
    assert all(r.progress_unit == "tokens" for r in scheduled)
    # Every report is at the first step at or past its boundary of 1% of the tokens.
    for k, r in enumerate(scheduled, start=1):
        assert k <= r.percent < k + 1.5
    errors = eta_errors(reports, end)
    assert len(errors) >= 69
    assert fmean(errors) < 0.02
    assert final.outcome == COMPLETED and final.tokens_processed == scheduled[-1].progress_total
    # The throughput is the tokens per second the run really had.
    assert scheduled[50].tokens_per_s == pytest.approx(1 / SECONDS_PER_TOKEN, rel=0.05)


def test_the_same_ramp_counted_in_steps_has_an_eta_off_by_the_ramp():
    # What total_tokens fixes: in steps, the ETA takes later, bigger steps for early ones.
    reports, end, _, _ = run_ramp(sized_in_tokens=False)
    assert fmean(eta_errors(reports, end)) > 0.05


def test_a_step_crossing_several_boundaries_reports_once():
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(total_tokens=1000, sinks=[sink], clock=clock, is_master=True)
    clock.advance(0.1)
    tracker.step(loss=1.0, tokens=35)  # 3.5%: boundaries 1, 2, 3 at once
    clock.advance(0.1)
    tracker.step(loss=1.0, tokens=5)  # 4.0%
    assert [round(r.percent, 1) for r in sink.reports] == [3.5, 4.0]
    with pytest.raises(TypeError, match="tokens=x.numel"):
        tracker.step(loss=1.0, tokens=3.5)
    assert tracker.iteration == 2
    tracker.close()


def test_a_time_budget_reports_every_1_percent_of_it_and_ends_completed():
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(time_budget_s=600, sinks=[sink], clock=clock, is_master=True)
    steps = 0
    while not tracker.should_stop:
        clock.advance(0.37)
        tracker.step(loss=1.0)
        steps += 1
    final = tracker.close()
    scheduled = [r for r in sink.reports if r.kind == SCHEDULED]
    assert len(scheduled) == 100
    assert steps == pytest.approx(600 / 0.37, abs=1)
    for k, r in enumerate(scheduled, start=1):
        assert k <= r.percent < k + 0.37 / 6 + 1e-9
        assert r.eta_s == pytest.approx(max(0.0, 600 - r.elapsed_s))
        assert r.progress_unit == "seconds" and r.progress_total == 600
    assert final.outcome == COMPLETED


def test_a_time_budget_stopped_early_ends_stopped():
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(time_budget_s=100, sinks=[sink], clock=clock, is_master=True)
    for _ in range(50):
        clock.advance(1.0)
        tracker.step(loss=1.0)
    assert not tracker.should_stop
    assert tracker.close().outcome == STOPPED


def test_epochs_size_the_run_and_the_report_names_the_epoch():
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(epochs=3, iters_per_epoch=50, sinks=[sink], clock=clock, is_master=True)
    assert tracker.total_iters == 150
    for _ in range(150):
        clock.advance(0.1)
        tracker.step(loss=1.0)
    final = tracker.close()
    by_iter = {r.iteration: r for r in sink.reports}
    assert (by_iter[49].epoch, by_iter[51].epoch, by_iter[150].epoch) == (1, 2, 3)
    assert all(r.epochs == 3 for r in sink.reports)
    assert len([r for r in sink.reports if r.kind == SCHEDULED]) == 100
    assert final.outcome == COMPLETED


def test_epochs_from_a_loader_and_a_loader_without_len_names_the_fix():
    assert ProgressTracker(epochs=2, loader=list(range(40)), sinks=[], is_master=True).total_iters == 80
    unsized = (b for b in range(10))
    with pytest.raises(TypeError, match="no len\\(\\).*iters_per_epoch=N"):
        ProgressTracker(epochs=2, loader=unsized, sinks=[], is_master=True)
    with pytest.raises(ValueError, match="size the run one way"):
        ProgressTracker(sinks=[], is_master=True)
    with pytest.raises(ValueError, match="got total_iters and total_tokens"):
        ProgressTracker(100, total_tokens=10, sinks=[], is_master=True)
    with pytest.raises(ValueError, match="cross_rank=False"):
        ProgressTracker(time_budget_s=10, cross_rank=True, sinks=[], is_master=True)


def test_set_total_moves_schedule_percent_and_eta_together():
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(100, sinks=[sink], clock=clock, is_master=True)
    for _ in range(30):
        clock.advance(1.0)
        tracker.step(loss=1.0)
    tracker.set_total(200)
    for _ in range(170):
        clock.advance(1.0)
        tracker.step(loss=1.0)
    final = tracker.close()
    iterations = [r.iteration for r in sink.reports if r.kind == SCHEDULED]
    # 1..30 while the total was 100; then every 2 steps (1% of 200) from 32 on, nothing repeated.
    assert iterations == list(range(1, 31)) + list(range(32, 201, 2))
    at_100 = next(r for r in sink.reports if r.iteration == 100)
    assert at_100.percent == 50.0 and at_100.total_iters == 200
    assert at_100.eta_s == pytest.approx(100.0, rel=0.02)
    assert final.outcome == COMPLETED
    with pytest.raises(ValueError, match="at least those done"):
        tracker.set_total(10)


def test_set_total_of_a_token_budget_keeps_passed_boundaries():
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(total_tokens=1000, sinks=[sink], clock=clock, is_master=True)
    for _ in range(20):
        clock.advance(0.1)
        tracker.step(loss=1.0, tokens=10)  # 1% each
    tracker.set_total(2000)  # now at 10%: boundaries 1-10% are passed
    for _ in range(180):
        clock.advance(0.1)
        tracker.step(loss=1.0, tokens=10)  # 0.5% each
    percents = [round(r.percent, 1) for r in sink.reports if r.kind == SCHEDULED]
    assert percents[:20] == [float(k) for k in range(1, 21)]
    assert percents[20:] == [float(k) for k in range(11, 101)]
    assert tracker.close().outcome == COMPLETED


def test_wrap_yields_every_batch_of_every_epoch_and_sizes_the_run():
    clock, sink = FakeClock(), RecordingSink()
    loader = list(range(20))
    tracker = ProgressTracker(1, sinks=[sink], clock=clock, is_master=True)
    seen = []
    for batch in tracker.wrap(loader, epochs=3):
        clock.advance(0.1)
        seen.append(batch)
        tracker.step(loss=float(batch))
    final = tracker.close()
    assert seen == loader * 3
    assert final.outcome == COMPLETED and final.total_iters == 60 and final.epoch == 3
    assert sink.reports[-2].loss == 19.0  # the loss the loop passed to step
    with pytest.raises(TypeError, match="iters_per_epoch"):
        next(ProgressTracker(1, sinks=[], is_master=True).wrap(iter(loader), epochs=2))


def test_the_console_header_names_tokens_budget_and_epoch(tmp_path):
    from trainprogress.sinks.console import ConsoleSink

    def header(**sizing):
        out = tmp_path / "out.txt"
        clock = FakeClock()
        with open(out, "w") as stream:
            tracker = ProgressTracker(**sizing, sinks=[ConsoleSink(stream=stream)], clock=clock, is_master=True,
                                      interval_percent=50)
            for _ in range(4):
                clock.advance(30.0)
                tracker.step(loss=1.0, **({"tokens": 250} if "total_tokens" in sizing else {}))
            tracker.close()
        return [line for line in out.read_text().splitlines() if "TRAINING PROGRESS" in line][0]

    assert "(500/1,000 tokens, iteration 2)" in header(total_tokens=1000)
    assert "of a 2.00 min budget, iteration 2)" in header(time_budget_s=120)
    assert "(epoch 1/2, 2/4 iterations)" in header(epochs=2, iters_per_epoch=2)


def test_the_bar_follows_a_run_sized_in_tokens_to_its_end():
    import io

    from trainprogress.sinks.bar import BarSink

    stream, clock = io.StringIO(), FakeClock()
    bar = BarSink(stream, interactive=True)
    tracker = ProgressTracker(total_tokens=1000, sinks=[bar], clock=clock, is_master=True)
    for _ in range(10):
        clock.advance(1.0)
        tracker.step(loss=1.0, tokens=100)
    tracker.close()
    # Sized in tokens, the bar counts steps against the steps the tokens so far imply.
    drawn = stream.getvalue()
    assert "| 5/10" in drawn and "| 10/10" in drawn


def test_tokens_per_s_is_the_tokens_of_the_speed_window_over_its_time_stalls_included():
    # 2,000 steps of 1,000 to 3,000 tokens at 1 us a token, with a 7 ms stall in one step of
    # 8 at random: the stall-free rate is 1M tokens/s, the true one about 0.7M.
    rng = random.Random(1)
    tokens = [rng.randint(1000, 3000) for _ in range(2000)]
    durations = [n * 1e-6 + (0.007 if rng.random() < 1 / 8 else 0.0) for n in tokens]
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(total_tokens=sum(tokens), window=100, sinks=[sink], clock=clock, is_master=True)
    ends = {}
    for it, (n, seconds) in enumerate(zip(tokens, durations), start=1):
        clock.advance(seconds)
        if tracker.step(loss=2.0, tokens=n) is not None:
            ends[it] = tracker.iteration
    tracker.close()
    reads = [0, *ends]  # every report reads the values and ends a stretch of the window
    scheduled = [r for r in sink.reports if r.kind == SCHEDULED]
    assert len(scheduled) == 100
    for k, report in enumerate(scheduled[1:], start=2):
        # The window: the latest stretches between reads that hold at least 100 steps.
        first = k - 1
        while reads[k] - reads[first] < 100 and first > 0:
            first -= 1
        steps = range(reads[first], reads[k])
        window_tokens, window_s = sum(tokens[i] for i in steps), sum(durations[i] for i in steps)
        assert report.tokens_per_s == pytest.approx(window_tokens / window_s, rel=1e-9)
        assert report.iters_per_s == pytest.approx(len(steps) / window_s, rel=1e-9)
    true_rate = sum(tokens) / sum(durations)
    assert 0.6e6 < true_rate < 0.8e6
    assert fmean(r.tokens_per_s for r in scheduled) == pytest.approx(true_rate, rel=0.05)
