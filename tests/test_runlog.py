"""read_log on real logs written by a real tracker through the JSONL sink: runs, resumed
segments, superseded iterations, torn lines, and the errors for bad files."""

from __future__ import annotations

import json
import os
import threading

import pytest

from helpers import FakeClock
from logwriter import write_log
from trainprogress import read_log
from trainprogress.reading.runlog import LogBytes, LogFileError, LogReader, report_from_record
from trainprogress.sinks.console import render_final, render_progress
from trainprogress.sinks.jsonl import SCHEMA_VERSION


def scheduled_iterations(run):
    return [r["iteration"] for r in run.reports if r["kind"] == "scheduled"]


def test_one_completed_run(tmp_path):
    path = tmp_path / "progress.jsonl"
    made = write_log(path, 200, clock=FakeClock(), eval_every=50, phases=[(1, "warm"), (120, "hot")])
    log = read_log(path)
    assert log.skipped_lines == 0 and not log.incomplete_tail
    (run,) = log.runs
    assert run.name == tmp_path.name  # out_dir/progress.jsonl: the folder names the run
    assert run.status == "completed" and run.iteration == 200 and run.total_iters == 200
    assert scheduled_iterations(run) == [20 * k for k in range(1, 11)]
    assert run.final["kind"] == "final" and run.final["iteration"] == 200
    assert [r["iteration"] for r in run.reports] == [r.iteration for r in made if r.kind != "final"]
    assert [e["data"]["name"] for e in run.events if e["event"] == "pause"] == ["eval", "checkpoint"] * 4
    assert [e["data"]["phase"] for e in run.events if e["event"] == "phase_change"] == ["warm", "hot"]
    assert run.resumes == [] and run.superseded == 0 and run.error is None


def test_a_report_rebuilt_from_its_record_renders_as_the_original(tmp_path):
    path = tmp_path / "run.jsonl"
    made = write_log(path, 100, clock=FakeClock(), eval_every=25)
    run = read_log(path).runs[0]
    records = run.reports + [run.final]
    assert len(records) == len(made)
    for original, record in zip(made, records):
        rebuilt = report_from_record(record)
        render = render_final if original.kind == "final" else render_progress
        assert render(rebuilt) == render(original)
        assert rebuilt.scalars() == pytest.approx(original.scalars())


def test_a_crashed_run_resumed_from_its_checkpoint(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock(), crash_at=57)  # reports at 10 ... 50; crash at 57
    write_log(path, 100, clock=FakeClock(), start_iter=40)  # resumed from the checkpoint at 40
    log = read_log(path)
    (run,) = log.runs
    assert len(run.segments) == 2
    assert run.segments[0].end["status"] == "crashed"
    assert "device-side assert" in run.segments[0].end["error"]
    # 50 was reported by the crashed process and again after the resume: the later one counts.
    assert scheduled_iterations(run) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    redone = [r for r in run.reports if r["iteration"] == 50]
    assert len(redone) == 1 and redone[0]["time"] >= run.segments[1].start["time"]
    assert run.superseded >= 1
    assert [r["iteration"] for r in run.resumes] == [40]
    assert run.status == "completed" and run.error is None


def test_a_crash_is_the_runs_state_until_it_resumes(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock(), crash_at=57)
    (run,) = read_log(path).runs
    assert run.status == "crashed" and run.iteration == 57
    assert run.error == "RuntimeError: CUDA error: device-side assert triggered"


def test_runs_from_scratch_in_the_same_file_are_separate_runs(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 50, clock=FakeClock(), stop_at=30)
    write_log(path, 50, clock=FakeClock())
    log = read_log(path)
    assert [run.status for run in log.runs] == ["stopped", "completed"]
    assert [run.name for run in log.runs] == [f"{tmp_path.name} #1", f"{tmp_path.name} #2"]


def test_a_killed_run_has_no_end_and_counts_as_running(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock())
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if '"kind": "final"' not in line and '"run_end"' not in line))
    (run,) = read_log(path).runs
    assert run.status == "running" and run.final is None and run.end is None
    assert run.latest_report["iteration"] == 100


def test_torn_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock())
    lines = path.read_text().splitlines(keepends=True)
    torn = lines[5][: len(lines[5]) // 2] + "\n"  # a write cut short, then the next line appended
    lines[5] = torn
    lines.insert(8, "\x00\x00\x00\n")
    path.write_text("".join(lines) + '{"schema": 1, "type": "rep')  # and one still being written
    log = read_log(path)
    assert log.skipped_lines == 2 and log.incomplete_tail
    assert len(log.runs[0].reports) == 9  # ten scheduled reports, one of them torn


def test_a_report_line_cut_just_past_its_head_is_skipped_not_half_read(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock())
    lines = path.read_text().splitlines(keepends=True)
    report_at = [i for i, line in enumerate(lines) if '"type": "report"' in line]
    for cut_after in ('"kind": "scheduled", ', '"metrics": {'):
        line = lines[report_at[3]]
        lines[report_at[3]] = line[: line.index(cut_after) + len(cut_after)] + "}\n"
        report_at.pop(3)
    path.write_text("".join(lines))
    log = read_log(path)
    assert log.skipped_lines == 2
    assert [r["iteration"] for r in log.runs[0].reports] == [10, 20, 30, 60, 70, 80, 90, 100]


def test_every_record_reads_as_its_line_parsed(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 60, clock=FakeClock(), eval_every=20, crash_at=45)
    write_log(path, 60, clock=FakeClock(), start_iter=40)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    (run,) = read_log(path).runs
    records = [r for segment in run.segments for r in (segment.start, *segment.reports, *segment.events, segment.end)]
    key = lambda r: (r["time"], r["type"], r["iteration"])  # noqa: E731
    assert sorted((dict(r) for r in records), key=key) == sorted(lines, key=key)
    data = path.read_bytes()
    middle = data.index(b"\n", len(data) // 2) + 1
    live = LogReader(path)  # as `trainprogress watch` reads: what was appended, in pieces
    for begin, end in ((0, middle), (middle, len(data))):
        live.feed_buffer(data[begin:end], end - begin, LogBytes(path), begin)
    lines = LogReader(path)  # line by line
    lines.feed(data.splitlines())
    expected = [dict(r) for segment in run.segments for r in segment.reports]
    for reader in (live, lines):
        assert [dict(r) for segment in reader.runs[0].segments for r in segment.reports] == expected


def test_unknown_keys_and_record_types_are_ignored(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 50, clock=FakeClock())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        record["added_later"] = {"x": 1}
    records.insert(3, {"schema": SCHEMA_VERSION, "type": "heartbeat", "time": 1.0, "iteration": 7})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    (run,) = read_log(path).runs
    assert scheduled_iterations(run) == [5 * k for k in range(1, 11)] and run.status == "completed"
    report_from_record(run.reports[0])


def test_out_dir_reads_its_progress_jsonl(tmp_path):
    write_log(tmp_path / "progress.jsonl", 20, clock=FakeClock())
    assert read_log(tmp_path).path == tmp_path / "progress.jsonl"


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("step,loss\n1,2.5\n2,2.4\n", "is not a trainprogress JSONL log"),
    ('{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.4}\n', "is not a trainprogress JSONL log"),
])
def test_bad_files_raise_a_clear_error_naming_the_fix(tmp_path, content, problem):
    path = tmp_path / "run.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LogFileError) as caught:
        read_log(path)
    assert problem in str(caught.value) and str(path) in str(caught.value) and "Fix:" in str(caught.value)


def test_a_newer_schema_version_is_refused_with_the_upgrade_to_make(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 20, clock=FakeClock())
    newer = {"schema": SCHEMA_VERSION + 1, "type": "report", "time": 2.0, "iteration": 1, "kind": "scheduled"}
    with open(path, "a") as handle:
        handle.write(json.dumps(newer) + "\n")
    with pytest.raises(LogFileError, match=f"schema version {SCHEMA_VERSION + 1}.*Fix: upgrade trainprogress"):
        read_log(path)


def test_reading_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 20, clock=FakeClock())
    before = path.read_bytes()
    read_log(path)
    assert path.read_bytes() == before


def test_a_log_read_from_a_pipe_is_whole(tmp_path):
    """`trainprogress summary <(ssh host cat out/progress.jsonl)` reads a pipe, which can
    be neither mapped nor read again later: its reports still parse in full."""
    path = tmp_path / "progress.jsonl"
    write_log(path, 40, clock=FakeClock(), eval_every=20)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(path.read_bytes()))
    writer.start()
    (piped,) = read_log(fifo).runs
    writer.join()
    (run,) = read_log(path).runs
    assert len(piped.reports) == len(run.reports) == 10
    assert [dict(r) for r in piped.reports] == [dict(r) for r in run.reports]


def test_a_report_whose_line_changed_after_reading_keeps_only_its_iteration_and_kind(tmp_path):
    """Reports are parsed from the file when first used: if the file was rewritten since,
    what is now at a report's place is not taken for it."""
    path = tmp_path / "progress.jsonl"
    write_log(path, 40, clock=FakeClock())
    (run,) = read_log(path).runs
    first, second = run.reports[:2]
    line = b'"iteration": %d,' % second["iteration"]
    path.write_bytes(path.read_bytes().replace(line, b'"iteration": 9,'))  # same length: only the check tells
    assert second.get("loss") is None and (second["iteration"], second["kind"]) == (8, "scheduled")
    assert first["loss"] > 0  # a line still as it was reads in full
