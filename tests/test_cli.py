"""The trainprogress command as a user runs it (python -m trainprogress), on real logs:
summaries of finished, crashed and resumed runs, the plot, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

from helpers import FakeClock, png_size
from logwriter import write_log
from trainprogress.sinks.jsonl import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"}


def command(*args):
    return subprocess.run([sys.executable, "-m", "trainprogress", *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_the_console_script_is_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, name = scripts["trainprogress"].split(":")
    assert callable(getattr(import_module(module), name))


def test_summary_of_a_completed_run(tmp_path):
    log = tmp_path / "progress.jsonl"
    write_log(log, 100, clock=FakeClock(), eval_every=25)
    result = command("summary", log, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    written = records(log)
    final = next(r for r in written if r["type"] == "report" and r["kind"] == "final")
    vals = [r["metrics"]["val_loss"] for r in written if r["type"] == "report" and "val_loss" in r["metrics"]]
    assert summary["status"] == "completed" and (summary["iteration"], summary["total_iters"]) == (100, 100)
    assert summary["best_val_loss"] == min(vals)
    assert summary["tokens_processed"] == 100 * 256 == final["tokens_processed"]
    assert summary["iters_per_s"] == pytest.approx(final["iters_per_s"])  # the final summary's average
    assert summary["pauses"]["eval"]["count"] == 4 and summary["pauses"]["checkpoint"]["count"] == 4
    assert summary["paused_s"] == pytest.approx(final["paused_s"])
    assert summary["error"] is None and summary["resumed_at"] == []

    text = command("summary", tmp_path)  # the out_dir works too
    assert text.returncode == 0
    assert text.stdout.startswith(f"{tmp_path.name}: completed at 100/100 iterations (100%)")
    assert f"best validation loss {min(vals):.6f}" in text.stdout and "Average speed:" in text.stdout


def test_summary_of_a_crashed_then_resumed_run(tmp_path):
    log = tmp_path / "progress.jsonl"
    write_log(log, 100, clock=FakeClock(), crash_at=57)
    crashed = json.loads(command("summary", log, "--json").stdout)
    assert crashed["status"] == "crashed" and crashed["iteration"] == 57
    assert crashed["error"] == "RuntimeError: CUDA error: device-side assert triggered"
    assert "Error: RuntimeError: CUDA error" in command("summary", log).stdout

    write_log(log, 100, clock=FakeClock(), start_iter=40)
    resumed = json.loads(command("summary", log, "--json").stdout)
    assert resumed["status"] == "completed" and resumed["resumed_at"] == [40]
    assert resumed["superseded_records"] >= 1 and resumed["reports"] == 10
    assert resumed["iters_per_s"] > 0 and resumed["error"] is None


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    log = tmp_path / "progress.jsonl"
    for _ in range(80):  # 80 runs: their summaries are more than a pipe holds
        write_log(log, 10, clock=FakeClock())
    process = subprocess.Popen([sys.executable, "-m", "trainprogress", "summary", str(log), "--json", "--all-runs"],
                               cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"["  # `... | head -1`
    process.stdout.close()
    assert process.wait(timeout=300) == 141
    assert process.stderr.read() == b""  # no traceback
    process.stderr.close()


def test_plot_writes_the_png_next_to_the_log_by_default(tmp_path):
    log = tmp_path / "progress.jsonl"
    write_log(log, 100, clock=FakeClock())
    result = command("plot", log)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Wrote {tmp_path / 'progress.png'} ({tmp_path.name})"
    assert png_size(tmp_path / "progress.png") == (1600, 1000)


def test_torn_lines_are_noted_and_skipped(tmp_path):
    log = tmp_path / "progress.jsonl"
    write_log(log, 100, clock=FakeClock())
    lines = log.read_text().splitlines(keepends=True)
    lines[3] = lines[3][:30] + "\n"
    log.write_text("".join(lines))
    result = command("summary", log)
    assert result.returncode == 0
    assert "1 unreadable line(s) skipped" in result.stderr and "completed at 100/100" in result.stdout


def test_every_command_takes_a_trainers_out_dir(tmp_path):
    out_dir = tmp_path / "out-shakespeare-char"
    write_log(out_dir / "progress.jsonl", 100, clock=FakeClock())
    summary = command("summary", out_dir)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout.startswith("out-shakespeare-char: completed at 100/100 iterations (100%)")
    plot = command("plot", out_dir)
    assert plot.returncode == 0, plot.stderr
    assert plot.stdout.strip() == f"Wrote {out_dir / 'progress.png'} (out-shakespeare-char)"
    assert png_size(out_dir / "progress.png") == (1600, 1000)
    watch = command("watch", out_dir, "--once")
    assert watch.returncode == 0, watch.stderr
    assert "TRAINING COMPLETE" in watch.stdout


@pytest.mark.parametrize("subcommand", [["summary"], ["plot"], ["watch", "--once"]])
def test_an_out_dir_without_a_log_is_named_with_the_fix(tmp_path, subcommand):
    result = command(subcommand[0], tmp_path, *subcommand[1:])
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"trainprogress {subcommand[0]}: error: {tmp_path / 'progress.jsonl'}: no such file: "
                                    f"{tmp_path} holds no progress log. Fix: ")
    assert not list(tmp_path.iterdir())  # nothing drawn


def test_watch_waits_for_an_out_dir_that_the_run_has_not_created_yet(tmp_path):
    out_dir = tmp_path / "out"
    watcher = subprocess.Popen([sys.executable, "-m", "trainprogress", "watch", str(out_dir), "--interval", "0.1"],
                               cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = watcher.stdout.readline()  # the watch has started when it says so
        assert first_line.startswith(f"Waiting for {out_dir / 'progress.jsonl'} to be created")
        write_log(out_dir / "progress.jsonl", 50, clock=FakeClock())
        out, err = watcher.communicate(timeout=120)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    assert out.rstrip().endswith("Run completed at iteration 50/50.")


def bad_files(tmp_path):
    newer = tmp_path / "newer.jsonl"
    write_log(newer, 20, clock=FakeClock())
    with open(newer, "a") as handle:
        handle.write(json.dumps({"schema": SCHEMA_VERSION + 1, "type": "run_start", "time": 1.0, "iteration": 0}) + "\n")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "metrics.csv").write_text("step,loss\n1,2.5\n")
    return {
        tmp_path / "missing.jsonl": "no such file",
        tmp_path / "empty.jsonl": "is empty",
        tmp_path / "metrics.csv": "is not a trainprogress JSONL log",
        newer: f"schema version {SCHEMA_VERSION + 1}",
    }


@pytest.mark.parametrize("subcommand", [["summary"], ["summary", "--json"], ["plot"], ["watch", "--once"]])
def test_bad_input_exits_1_with_the_problem_and_the_fix(tmp_path, subcommand):
    for path, problem in bad_files(tmp_path).items():
        result = command(subcommand[0], path, *subcommand[1:])
        assert result.returncode == 1, (path, result.stdout, result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith(f"trainprogress {subcommand[0]}: error: {path}")
        assert problem in result.stderr and "Fix:" in result.stderr
    assert not list(tmp_path.glob("*.png"))
