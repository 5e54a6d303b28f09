"""The JSONL log through a transient write failure (a full disk for a while): an injected
file object raises ENOSPC for N writes (or writes a line in part), then works again. Every
report point reaches the file, or a gap record says which were lost; the run_end is there,
and the summary calls the run completed."""

from __future__ import annotations

import errno
import json
import logging

import pytest

from helpers import FakeClock
from trainprogress import ProgressTracker
from trainprogress.reading.runlog import read_log
from trainprogress.sinks.jsonl import JsonlSink
from trainprogress.reading.summary import format_summary, summarize


class FlakyFile:
    """A real file whose writes number ``fail_from`` to ``fail_from + failures - 1`` raise
    ENOSPC; with ``partial``, the write before them writes only half its bytes."""

    def __init__(self, path, fail_from: int, failures: int, partial: bool = False) -> None:
        self._file = open(path, "ab", buffering=0)
        self.fail_from, self.failures, self.partial = fail_from, failures, partial
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.fail_from <= self.writes < self.fail_from + self.failures:
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.partial and self.writes == self.fail_from - 1:
            return self._file.write(data[: len(data) // 2])
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()


def flaky_sink(path, *, max_pending_bytes=JsonlSink.MAX_PENDING_BYTES, **flaky):
    class FlakySink(JsonlSink):
        MAX_PENDING_BYTES = max_pending_bytes
        RETRY_FIRST_S = 0.001
        RETRY_MAX_S = 0.002

        def _open(self):
            self.file = FlakyFile(self.path, **flaky)
            return self.file

    return FlakySink(path)


def train(sink, total=100):
    clock = FakeClock()
    with ProgressTracker(total, interval_percent=1, sinks=[sink], clock=clock) as tracker:
        for i in range(total):
            clock.advance(0.1)
            tracker.step(loss=1.0 / (i + 1))


def records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]  # every line whole: a part-written one was completed


@pytest.mark.parametrize("failures, partial", [(1, False), (30, False), (300, False), (30, True)])
def test_a_transient_write_failure_loses_no_report_point(tmp_path, caplog, failures, partial):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "progress.jsonl"
    sink = flaky_sink(path, fail_from=20, failures=failures, partial=partial)
    train(sink)
    lines = records(path)
    scheduled = [r["iteration"] for r in lines if r["type"] == "report" and r["kind"] == "scheduled"]
    assert scheduled == list(range(1, 101))  # every report point, in order
    assert lines[-1]["type"] == "run_end" and lines[-1]["status"] == "completed"
    assert not [r for r in lines if r["type"] == "gap"]
    assert sum("cannot write the JSONL log" in r.getMessage() for r in caplog.records) == 1
    assert sum("is written again" in r.getMessage() for r in caplog.records) == 1
    run = read_log(path).runs[-1]
    assert run.status == "completed" and len(run.reports) == 100


def test_records_past_the_bound_are_dropped_and_a_gap_says_which(tmp_path, caplog):
    path = tmp_path / "progress.jsonl"
    # About 10 report lines fit in the bound; the disk is full for 60 writes.
    sink = flaky_sink(path, max_pending_bytes=20_000, fail_from=20, failures=60)
    train(sink)
    lines = records(path)
    gaps = [r for r in lines if r["type"] == "gap"]
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap["error"] == "No space left on device" and gap["records"] >= 1 and gap["reports"] >= 1
    scheduled = [r["iteration"] for r in lines if r["type"] == "report" and r["kind"] == "scheduled"]
    lost = set(range(gap["from_iteration"], gap["to_iteration"] + 1))
    assert len(lost) == gap["reports"]
    assert sorted(set(scheduled) | lost) == list(range(1, 101)) and not set(scheduled) & lost
    assert lines[-1]["type"] == "run_end" and lines[-1]["status"] == "completed"
    log = read_log(path)
    summary = summarize(log.runs[-1], log)
    assert summary["status"] == "completed" and summary["gaps"][0]["records"] == gap["records"]
    text = "\n".join(format_summary(summary))
    assert "completed at 100/100 iterations" in text and "running" not in text
    assert f"Log gap: {gap['records']} records ({gap['reports']} reports) of iterations" in text


def test_a_file_that_never_works_again_warns_once_at_close_and_training_goes_on(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "progress.jsonl"
    sink = flaky_sink(path, fail_from=5, failures=10**9)
    sink.CLOSE_RETRY_S = 0.05
    train(sink)
    lost = [r.getMessage() for r in caplog.records if "still cannot be written" in r.getMessage()]
    assert len(lost) == 1 and "records are lost" in lost[0]
    assert sum("switched off" in r.getMessage() for r in caplog.records) == 0
