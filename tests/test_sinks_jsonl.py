"""The JSONL log end to end: a real tracker on a fake clock writes a real file, which is
parsed back line by line; a resumed run appends to it."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields

import pytest

from helpers import FakeClock
from trainprogress import ProgressTracker
from trainprogress.anomaly.config import AnomalyConfig
from trainprogress.report import Report, field_docs
from trainprogress.sinks import jsonl as jsonl_module
from trainprogress.sinks.jsonl import RECORD_KEYS, SCHEMA_VERSION, JsonlSink, report_record


def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]  # json.loads rejects nothing strict JSON allows


def run(path, total, *, start_iter=0, stop_at=None, nan_at=(), crash_at=None, config=None):
    clock = FakeClock()
    tracker = ProgressTracker(
        total, start_iter=start_iter, interval_percent=10, sinks=[JsonlSink(path)], clock=clock,
        anomaly=AnomalyConfig(clear_after_checks=2, min_check_steps=1, min_check_interval_s=0.0), run_config=config or {"lr": 3e-4, "out_dir": "out"},
        tokens_per_iter=1024,
    )
    with tracker:
        for it in range(start_iter + 1, (stop_at or total) + 1):
            clock.advance(0.05)
            tracker.step(loss=math.nan if it in nan_at else 3.0 - it / total, lr=1e-3, connection_ratio=0.5)
            if it == start_iter + 20:
                with tracker.pause("eval"):
                    clock.advance(1.0)
                tracker.event("phase_change", phase="basic", to="advanced")
            if it == crash_at:
                raise RuntimeError("CUDA error: device-side assert")
    return tracker


def test_every_kind_of_line_parses_back(tmp_path):
    path = tmp_path / "logs" / "progress.jsonl"  # the folder is created
    run(path, 200, nan_at={101})
    lines = read(path)
    assert {line["schema"] for line in lines} == {SCHEMA_VERSION}
    assert all(isinstance(line["time"], float) and isinstance(line["iteration"], int) for line in lines)

    start = lines[0]
    assert start["type"] == "run_start"
    assert (start["total_iters"], start["start_iter"], start["interval_percent"]) == (200, 0, 10)
    assert start["config"] == {"lr": 3e-4, "out_dir": "out"}

    reports = [line for line in lines if line["type"] == "report"]
    scheduled = [r for r in reports if r["kind"] == "scheduled"]
    # Every 10%, plus one dense report (checks run every iteration here) while the NaN at
    # 101 is an active anomaly: raised at 101, cleared at 103 after two clean checks.
    assert [r["iteration"] for r in scheduled] == [20, 40, 60, 80, 100, 102, 120, 140, 160, 180, 200]
    assert [r["percent"] for r in scheduled] == [10, 20, 30, 40, 50, 51, 60, 70, 80, 90, 100]
    r = scheduled[0]
    assert r["loss"] == pytest.approx(3.0 - 20 / 200) and r["lr"] == 1e-3
    assert r["tokens_processed"] == 20 * 1024
    assert r["metrics"] == {"connection_ratio": 0.5}
    assert r["scalars"]["train/loss"] == r["loss"]
    assert r["scalars"]["metrics/connection_ratio"] == 0.5
    assert r["scalars"]["perf/tokens_processed"] == 20 * 1024
    assert r["memory"] and {"device", "used_bytes", "total_bytes"} <= set(r["memory"][0])

    # The NaN at 101: an anomaly report whose loss is null (strict JSON has no NaN).
    anomaly = [r for r in reports if r["kind"] == "anomaly"]
    assert len(anomaly) == 1 and anomaly[0]["iteration"] == 101 and anomaly[0]["loss"] is None
    assert anomaly[0]["anomalies"][0]["kind"] == "nonfinite_loss"
    assert anomaly[0]["anomalies"][0]["since_iter"] == 101
    assert anomaly[0]["scalars"]["train/loss"] is None

    events = [(line["event"], line["iteration"]) for line in lines if line["type"] == "event"]
    assert ("pause", 20) in events and ("phase_change", 20) in events
    assert [e for e in events if e[0].startswith("anomaly")] == [("anomaly", 101), ("anomaly_cleared", 103)]
    pause = next(line for line in lines if line.get("event") == "pause")
    assert pause["data"] == {"name": "eval", "duration_s": 1.0}
    phase = next(line for line in lines if line.get("event") == "phase_change")
    assert phase["data"] == {"phase": "basic", "to": "advanced"}

    assert lines[-2]["type"] == "report" and lines[-2]["kind"] == "final"
    assert lines[-1] == {**lines[-1], "type": "run_end", "status": "completed", "iteration": 200}


def test_crash_is_logged_and_ends_the_run(tmp_path):
    path = tmp_path / "progress.jsonl"
    with pytest.raises(RuntimeError):
        run(path, 200, crash_at=57)
    lines = read(path)
    crash = [line for line in lines if line.get("event") == "crash"]
    assert len(crash) == 1 and crash[0]["iteration"] == 57
    assert crash[0]["data"]["error"] == "RuntimeError: CUDA error: device-side assert"
    assert lines[-1]["type"] == "run_end"
    assert lines[-1]["status"] == "crashed" and lines[-1]["iteration"] == 57
    assert lines[-1]["error"] == "RuntimeError: CUDA error: device-side assert"


def test_resume_appends_and_never_truncates(tmp_path):
    path = tmp_path / "progress.jsonl"
    run(path, 200, stop_at=90)
    first = path.read_text(encoding="utf-8")
    assert read(path)[-1]["status"] == "stopped"
    run(path, 200, start_iter=90)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(first)  # the first run's lines are untouched
    lines = read(path)
    starts = [line for line in lines if line["type"] == "run_start"]
    assert [s["start_iter"] for s in starts] == [0, 90]
    second = lines[lines.index(starts[1]):]
    assert [r["iteration"] for r in second if r.get("kind") == "scheduled"] == list(range(100, 201, 20))
    assert second[-1]["status"] == "completed"


def test_a_torn_last_line_does_not_swallow_the_next_run_start(tmp_path):
    """A process killed in the middle of writing a line leaves it partial; the resumed run
    must start on a fresh line, leaving exactly one unreadable line behind."""
    path = tmp_path / "progress.jsonl"
    run(path, 200, stop_at=90)
    whole = path.read_bytes()
    path.write_bytes(whole[: whole.rindex(b"\n", 0, len(whole) - 1) + 20])  # 19 bytes into the last line
    run(path, 200, start_iter=90)
    lines = path.read_text(encoding="utf-8").splitlines()
    unreadable = []
    for line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            unreadable.append(line)
    assert len(unreadable) == 1 and len(unreadable[0]) == 19
    starts = [json.loads(line) for line in lines if line not in unreadable and json.loads(line)["type"] == "run_start"]
    assert [s["start_iter"] for s in starts] == [0, 90]


def test_each_line_is_on_disk_as_soon_as_it_is_written(tmp_path):
    path = tmp_path / "progress.jsonl"
    clock = FakeClock()
    tracker = ProgressTracker(100, interval_percent=50, sinks=[JsonlSink(path)], clock=clock)
    for _ in range(50):
        clock.advance(0.1)
        tracker.step(loss=1.0)
    # Read by another handle while the tracker still holds the file open.
    assert [line["type"] for line in read(path)] == ["run_start", "report"]
    tracker.close()


def test_values_json_cannot_hold_are_written_as_text(tmp_path):
    path = tmp_path / "progress.jsonl"
    run(path, 20, config={"out_dir": tmp_path, "betas": (0.9, 0.95), "inf": math.inf})
    assert read(path)[0]["config"] == {"out_dir": str(tmp_path), "betas": [0.9, 0.95], "inf": None}


def test_a_folder_is_not_a_log_path(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        JsonlSink(tmp_path)


def documented_report_keys():
    """The keys the module docstring lists for a ``report`` line, one bullet each."""
    doc = jsonl_module.__doc__
    part = doc[doc.index("``report`` (each"):doc.index("and ``scalars``")]
    return set(re.findall(r"^- ``(\w+)``:", part, flags=re.M))


def test_the_report_record_is_every_report_field_and_the_docstring_lists_them_from_the_report():
    record = report_record(Report(kind="final", iteration=3, total_iters=3, percent=100.0, elapsed_s=1.0,
                                  paused_s=0.0, eta_s=None, iters_per_s=None, ms_per_iter=None))
    # run_cost is written as flat keys, and only when cost is on (tests/test_cost.py).
    field_keys = {RECORD_KEYS.get(f.name, f.name) for f in fields(Report)} - {"run_cost"}
    assert set(record) == field_keys | {"type", "scalars"}
    # Every Report field is described once, on the field, and the schema lists that text.
    docs = field_docs()
    assert set(docs) == {f.name for f in fields(Report)} and all(len(text) > 10 for text in docs.values())
    assert documented_report_keys() == field_keys - {"time", "iteration"}
    assert f"- ``percent``: {docs['percent']}" in jsonl_module.__doc__
