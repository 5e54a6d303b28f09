"""A wall clock set back mid-run (NTP, a VM restored from a snapshot): a log is ordered by
its records, as written, never by their wall time, and no duration shows negative."""

from __future__ import annotations

import json

from helpers import FakeClock
from logwriter import write_log
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
