"""build_sinks, lazy optional imports, and a failing sink switched off while training goes on."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FakeClock
from trainprogress import ProgressTracker, Sink
from trainprogress.sinks import BarSink, ConsoleSink, JsonlSink, NotifySink, TensorBoardSink, WandbSink, build_sinks

ROOT = Path(__file__).resolve().parents[1]


def test_build_sinks_turns_each_sink_on_by_its_argument(tmp_path, monkeypatch):
    assert [type(s) for s in build_sinks()] == [ConsoleSink]
    assert build_sinks(console=False) == []
    monkeypatch.setenv("TRAINPROGRESS_SLACK_WEBHOOK_URL", "https://hooks.example.org/x")
    sinks = build_sinks(
        bar=True, jsonl=tmp_path / "log.jsonl", tensorboard=tmp_path / "tb", wandb="project", notify=True,
    )
    assert [type(s) for s in sinks] == [ConsoleSink, BarSink, JsonlSink, TensorBoardSink, WandbSink, NotifySink]
    # Building opened nothing: files, writers and runs wait for the (master's) start.
    assert list(tmp_path.iterdir()) == []


def test_build_sinks_console_options_reach_the_console(tmp_path):
    stream = io.StringIO()
    clock = FakeClock()
    with ProgressTracker(10, interval_percent=50, sinks=build_sinks(stream=stream, ascii=True), clock=clock) as tracker:
        for _ in range(10):
            clock.advance(0.1)
            tracker.step(loss=1.0)
    text = stream.getvalue()
    assert "TRAINING PROGRESS: 50% (5/10 iterations)" in text
    assert text.isascii()


def test_importing_the_package_imports_no_optional_dependency():
    code = (
        "import sys, trainprogress, trainprogress.sinks; "
        "print(sorted(m for m in ('tqdm', 'tensorboard', 'wandb', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


class Broken(Sink):
    def report(self, report):
        raise OSError("disk full")


def test_a_failing_sink_is_switched_off_with_one_warning(tmp_path, caplog):
    clock = FakeClock()
    path = tmp_path / "log.jsonl"
    with ProgressTracker(100, interval_percent=10, sinks=[Broken(), JsonlSink(path)], clock=clock) as tracker:
        for _ in range(100):
            clock.advance(0.1)
            tracker.step(loss=1.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Broken failed in report()" in warnings[0].getMessage() and "OSError: disk full" in warnings[0].getMessage()
    reports = [json.loads(line) for line in path.read_text().splitlines() if '"report"' in line]
    assert len(reports) == 11  # ten reports and the summary: the others never noticed


def test_a_sink_that_cannot_start_is_isolated_too(tmp_path, caplog):
    pytest.importorskip("tensorboard")
    blocker = tmp_path / "tb"
    blocker.write_text("a file where the event folder should go")
    clock = FakeClock()
    with ProgressTracker(20, sinks=[TensorBoardSink(blocker), JsonlSink(tmp_path / "log.jsonl")], clock=clock) as tracker:
        for _ in range(20):
            clock.advance(0.1)
            tracker.step(loss=1.0)
    assert [r.getMessage().split(" failed")[0] for r in caplog.records if r.levelno == logging.WARNING] == [
        "trainprogress: sink TensorBoardSink"
    ]
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["status"] == "completed"
