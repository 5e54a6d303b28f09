"""Paths that are not a log file: a device (/dev/zero would be read until memory runs
out), a FIFO with no writer (would block for good), a folder; an endless pipe; and where a
PNG cannot be written. Each ends with one line naming the problem and the fix, exit 1."""

from __future__ import annotations

import io
import os
import sys
import threading
import time

import pytest

from helpers import FakeClock
from logwriter import write_log
from trainprogress import cli, runlog
from trainprogress.reading.runlog import LogFileError, read_log
from trainprogress.sinks.plot import ProgressPlotSink

SUBCOMMANDS = [["summary"], ["summary", "--json"], ["plot", "-o", "{tmp}/x.png"], ["watch", "--once"], ["watch"]]


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fifo(tmp_path, monkeypatch):
    monkeypatch.setattr(runlog, "FIFO_WAIT_S", 0.2)
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
@pytest.mark.parametrize("what", ["device", "fifo without a writer"])
def test_a_path_that_is_not_a_regular_file_is_refused(capsys, tmp_path, fifo, subcommand, what):
    path = "/dev/zero" if what == "device" else fifo
    args = [a.format(tmp=tmp_path) for a in subcommand]
    started = time.monotonic()
    code, out, err = run_cli(capsys, args[0], path, *args[1:])
    assert time.monotonic() - started < 3.0  # neither read until memory runs out nor blocked
    assert code == 1 and out == "" and len(err.splitlines()) == 1
    expected = "is a device, not a regular file" if what == "device" else (
        "with no writer after 0.2 s" if args[0] != "watch" else "is a FIFO (named pipe), not a regular file")
    assert expected in err and "Fix:" in err, err


def test_the_trainers_end_of_run_plot_refuses_a_device(tmp_path):
    sink = ProgressPlotSink("/dev/zero", tmp_path / "p.png", stream=io.StringIO())
    sink.start(None)
    with pytest.raises(LogFileError, match="is a device, not a regular file"):
        sink.close()
    assert not (tmp_path / "p.png").exists()


def test_a_fifo_with_a_writer_and_stdin_are_read(tmp_path, fifo, monkeypatch, capsys):
    log = tmp_path / "progress.jsonl"
    write_log(log, 40, clock=FakeClock())
    writer = threading.Thread(target=lambda: fifo.write_bytes(log.read_bytes()))
    writer.start()
    (piped,) = read_log(fifo).runs
    writer.join()
    assert len(piped.reports) == 10
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(log.read_bytes())))
    code, out, err = run_cli(capsys, "summary", "-")
    assert code == 0 and "completed at 40/40" in out, (out, err)


def test_an_endless_pipe_is_refused_past_the_bound(monkeypatch, capsys):
    monkeypatch.setattr(runlog, "MAX_PIPE_BYTES", 1000)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"x" * 5000)))
    code, out, err = run_cli(capsys, "summary", "-")
    assert code == 1 and "standard input streams more than" in err and "Fix: save the log to a file" in err


@pytest.mark.parametrize("where, problem", [
    ("folder", "is a folder. Fix: name the PNG to write"),
    ("under a file", "is a file, not a folder, so nothing can be written under it. Fix:"),
])
def test_plot_output_that_cannot_be_a_file_is_refused(capsys, tmp_path, where, problem):
    log = tmp_path / "progress.jsonl"
    write_log(log, 40, clock=FakeClock())
    (tmp_path / "afile").write_text("x")
    output = tmp_path if where == "folder" else tmp_path / "afile" / "run.png"
    code, out, err = run_cli(capsys, "plot", log, "-o", output)
    assert code == 1 and problem in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("interval", ["nan", "inf", "-1", "0"])
def test_watch_refuses_an_interval_that_is_not_a_positive_number(capsys, tmp_path, interval):
    log = tmp_path / "progress.jsonl"
    write_log(log, 40, clock=FakeClock())
    code, out, err = run_cli(capsys, "watch", log, "--interval", interval)
    assert code == 1 and "--interval must be a positive number of seconds" in err and "Fix:" in err
