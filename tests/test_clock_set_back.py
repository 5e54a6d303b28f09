"""A wall clock set back mid-run (NTP, a VM restored from a snapshot): a log is ordered by
its records, as written, never by their wall time, and no duration shows negative."""

from __future__ import annotations

import json
import math

import pytest

from helpers import FakeClock, RecordingSink
from logwriter import write_log
from trainprogress import ProgressTracker
from trainprogress.reading.runlog import read_log
from trainprogress.reading.summary import format_summary, summarize
from trainprogress.reading.watch import status_line


def set_back(path, after_iteration: int, seconds: float, *, drop_end: bool = False) -> None:
    """Rewrite the log as if the wall clock went back ``seconds`` after ``after_iteration``."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    if drop_end:
        records = [r for r in records if r["type"] != "run_end" and r.get("kind") != "final"]
    for record in records:
        if record["iteration"] > after_iteration:
            record["time"] -= seconds
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_finished_run_whose_clock_went_back_is_completed_at_its_last_iteration(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock())
    set_back(path, 30, 3600.0)
    log = read_log(path)
    summary = summarize(log.runs[-1], log)
    assert summary["status"] == "completed" and summary["iteration"] == 100
    assert summary["wall_s"] >= 0 and summary["seconds_since_last_record"] >= 0
    assert "completed at 100/100 iterations" in "\n".join(format_summary(summary))


def test_a_running_run_whose_clock_went_back_is_at_its_latest_iteration(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock())
    set_back(path, 30, 3600.0, drop_end=True)
    log = read_log(path)
    run = log.runs[-1]
    last_time = run.last_record["time"]
    summary = summarize(run, log, now=last_time - 10.0)  # "now" read before the records' times
    assert summary["status"] == "running" and summary["iteration"] == 100
    assert summary["eta_s"] is None or summary["eta_s"] >= 0
    line = status_line(run, last_time - 10.0, ascii=True)
    assert "100/100" in line and "ETA -" not in line and "updated -" not in line, line


class SettingBackSink(RecordingSink):
    """Sets ``clock`` back by ``seconds`` while it renders its ``at``-th report."""

    def __init__(self, clock: FakeClock, at: int, seconds: float) -> None:
        super().__init__()
        self.clock, self.at, self.seconds = clock, at, seconds

    def report(self, report):
        super().report(report)
        if len(self.reports) == self.at:
            self.clock.advance(-self.seconds)


@pytest.mark.parametrize("step_s", [0.1, 1e-5])  # a step per clock read; groups of ~100 steps per read
@pytest.mark.parametrize("where", ["in a step", "in a pause", "in a data wait", "in a report"])
def test_the_trackers_clock_set_back_shows_no_negative_duration(where, step_s):
    clock = FakeClock()
    sink = SettingBackSink(clock, 5 if where == "in a report" else 0, 3600.0)
    tracker = ProgressTracker(1000, interval_percent=10, sinks=[sink], clock=clock)
    etas = []
    for it in range(1, 1001):
        clock.advance(step_s)
        if it == 500 and where == "in a step":
            clock.advance(-3600.0)
        elif it == 500 and where == "in a pause":
            with tracker.pause("eval"):
                clock.advance(-3600.0)
        elif it == 500 and where == "in a data wait":
            with tracker.data_wait():
                clock.advance(-3600.0)
        tracker.step(loss=1.0)
        if it > 490 and it % 10 == 0:
            etas.append(tracker.eta_seconds)
    tracker.close()
    assert len(sink.reports) == 11
    for report in sink.reports:
        assert report.elapsed_s >= 0 and report.paused_s >= 0, report
        assert report.eta_s is None or report.eta_s >= 0, report
        assert report.iters_per_s is None or 0 < report.iters_per_s < math.inf, report
    assert all(eta is not None and eta >= 0 for eta in etas), etas
    elapsed = [report.elapsed_s for report in sink.reports]
    assert elapsed == sorted(elapsed)  # it stands still across the jump, never goes back
    # The steps timed across the jump count as 0 s (one group of steps at most), the rest as they ran.
    group = 1 if step_s == 0.1 else 200
    assert (1000 - group) * step_s * 0.999 <= sink.reports[-1].elapsed_s <= 1000 * step_s * 1.001
    assert tracker.data_wait().total_s == 0.0
    seventh = sink.reports[6]  # at 70%: the ETA is that of the 300 steps left
    assert seventh.eta_s == pytest.approx(300 * step_s, rel=0.2)
