"""Paths that are not a log file: a device (/dev/zero would be read until memory runs
out), a FIFO with no writer (would block for good), a folder; an endless pipe; and where a
PNG cannot be written. Each ends with one line naming the problem and the fix, exit 1."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time

import pytest

from helpers import FakeClock
from logwriter import write_log
from trainprogress.reading import cli, runlog
from trainprogress.reading.runlog import LogFileError, read_log
from trainprogress.reading.series import build_series
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


def corrupt_losses(path, bad, only_iteration=None) -> int:
    """Rewrite the log's report lines (or the one at ``only_iteration``) as a hand edit
    would: ``bad`` as the loss, smoothed loss, learning rate and metrics' val_loss. Returns
    how many lines were changed."""
    lines, changed = [], 0
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "report" and only_iteration in (None, record["iteration"]):
            record.update(loss=bad, smoothed_loss=bad, lr=bad)
            record["metrics"]["val_loss"] = bad
            changed += 1
        lines.append(json.dumps(record))  # the key order stays: the reader's fast path still finds the line
    path.write_text("\n".join(lines) + "\n")
    return changed


@pytest.mark.parametrize("bad", ["abc", [1, 2], {"v": 1}, True])
@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_a_report_whose_loss_is_not_a_number_reads_as_missing(capsys, tmp_path, bad, subcommand):
    log = tmp_path / "progress.jsonl"
    write_log(log, 40, clock=FakeClock(), eval_every=10)
    assert corrupt_losses(log, bad) == 11
    args = [a.format(tmp=tmp_path) for a in subcommand]
    code, out, err = run_cli(capsys, args[0], log, *args[1:])
    assert code == 0 and "Traceback" not in err, err
    if args[0] == "plot":
        assert (tmp_path / "x.png").stat().st_size > 0
    elif args[1:] == ["--json"]:
        summary = json.loads(out)
        assert summary["status"] == "completed" and summary["iteration"] == 40
        assert summary["loss"] is None and summary["smoothed_loss"] is None
    else:
        assert "completed at 40/40" in out or "Run completed at iteration 40/40" in out, out
        assert "Loss " not in out and "smoothed" not in out and "· loss" not in out, out  # shown as missing


@pytest.mark.parametrize("bad", ["abc", [1, 2], True])
def test_read_log_drops_a_corrupted_value_and_keeps_the_rest(tmp_path, bad):
    log = tmp_path / "progress.jsonl"
    write_log(log, 40, clock=FakeClock(), eval_every=10)
    assert corrupt_losses(log, bad, only_iteration=20) == 1
    (run,) = read_log(log).runs
    (edited,) = [r for r in run.reports if r["iteration"] == 20]
    assert edited.get("loss") is None and edited.get("lr") is None and "val_loss" not in edited["metrics"]
    assert edited["percent"] == 50.0 and edited["iters_per_s"] == pytest.approx(20.0)
    series = build_series(run, x_axis="iteration")
    assert 20.0 not in series.loss.x and len(series.loss.x) == len(run.reports) - 1 == 9


@pytest.mark.parametrize("bad", ["abc", [1, 2], True])
@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_a_corrupted_forecast_or_cost_figure_reads_as_missing(capsys, tmp_path, bad, subcommand):
    """Every number field of a report, the forecast's and the cost figures' too, is read as
    missing when a line holds something else there."""
    log = tmp_path / "progress.jsonl"
    write_log(log, 40, clock=FakeClock(), eval_every=10)
    lines = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "report":
            record.update(loss_forecast=bad, loss_forecast_low=bad, loss_forecast_high=bad, devices=bad,
                          device_hours=bad, device_hours_total=bad, energy_j=bad, cost=bad)
        lines.append(json.dumps(record))
    log.write_text("\n".join(lines) + "\n")
    args = [a.format(tmp=tmp_path) for a in subcommand]
    code, out, err = run_cli(capsys, args[0], log, *args[1:])
    assert code == 0 and "Traceback" not in err, err
    assert "Final-loss forecasts" not in out and "Cost:" not in out and "device-hours" not in out, out
