"""`trainprogress watch` on a log that another real process is writing: created after the
watch starts, appended to line by line, with lines arriving in pieces."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from helpers import FakeClock
from logwriter import write_log
from trainprogress.reading.watch import LogFollower

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "PYTHONIOENCODING": "utf-8"}
HEADER = re.compile(r"TRAINING PROGRESS: ([\d.]+)% \(([\d,]+)/([\d,]+) iterations\)")


def watch(*args):
    return subprocess.Popen([sys.executable, "-m", "trainprogress", "watch", *args, "--interval", "0.2"],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_watch_follows_a_run_that_starts_after_it_until_the_run_ends(tmp_path):
    log = tmp_path / "out" / "progress.jsonl"
    watcher = watch(str(log))
    time.sleep(1.0)  # the watch is waiting for a file that does not exist yet
    writer = subprocess.run([sys.executable, str(TESTS / "logwriter.py"), str(log), "200", "0.02"],
                            env=ENV, timeout=300)
    assert writer.returncode == 0
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert out.startswith(f"Waiting for {log} to be created")
    percents = [float(m.group(1)) for m in HEADER.finditer(out)]
    assert len(percents) >= 3 and percents == sorted(percents)  # redrawn as the run went on
    assert "TRAINING COMPLETE" in out
    assert re.search(r"\|█{30}\| 100% 200/200", out)  # the bar, full
    assert out.rstrip().endswith("Run completed at iteration 200/200.")


def test_watch_reads_lines_that_arrive_in_pieces(tmp_path):
    source = tmp_path / "source.jsonl"
    write_log(source, 50, clock=FakeClock())
    log = tmp_path / "live.jsonl"
    log.touch()
    watcher = watch(str(log))
    # Another process writes each record in two pieces, flushing and pausing in between, as a
    # writer interrupted mid-line would.
    script = (
        "import sys, time\n"
        "lines = open(sys.argv[1], 'rb').read().splitlines(keepends=True)\n"
        "with open(sys.argv[2], 'ab') as out:\n"
        "    for line in lines:\n"
        "        half = len(line) // 2\n"
        "        out.write(line[:half]); out.flush(); time.sleep(0.03)\n"
        "        out.write(line[half:]); out.flush(); time.sleep(0.03)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(source), str(log)], check=True, timeout=120)
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert err == "" and "TRAINING COMPLETE" in out and "Run completed at iteration 50/50." in out


def test_watch_ends_with_exit_code_2_and_the_error_when_the_run_crashes(tmp_path):
    log = tmp_path / "progress.jsonl"
    write_log(log, 100, clock=FakeClock(), crash_at=33)
    watcher = watch(str(log))
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 2, err
    assert "TRAINING CRASHED" in out and "TRAINING STOPPED" not in out
    assert "Run crashed at iteration 33/100." in out
    assert out.count("Error: RuntimeError: CUDA error: device-side assert triggered") == 1


def test_watch_once_prints_the_current_state_of_a_running_log(tmp_path):
    log = tmp_path / "progress.jsonl"
    write_log(log, 100, clock=FakeClock())
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:6]) + lines[6][:40])  # five reports, and a line being written
    result = subprocess.run([sys.executable, "-m", "trainprogress", "watch", str(log), "--once"], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [m.group(1) for m in HEADER.finditer(result.stdout)] == ["50"]
    assert re.search(r"\| 50% 50/100 · ETA \S+ · [\d.]+ iter/s · loss [\d.]+ · updated", result.stdout)
    assert "Run " not in result.stdout and result.stderr == ""


def test_the_follower_returns_only_complete_lines_and_starts_over_on_a_new_file(tmp_path):
    path = tmp_path / "log.jsonl"
    follower = LogFollower(path)
    assert follower.poll() == (b"", 0, False)  # not there yet
    with open(path, "wb") as handle:
        handle.write(b'{"a": 1}\n{"b"')
        handle.flush()
        assert follower.poll() == (b'{"a": 1}\n', 0, False)
        handle.write(b': 2}\n')
        handle.flush()
        assert follower.poll() == (b'{"b": 2}\n', 9, False)  # from the line's start in the file
        assert follower.poll() == (b"", 18, False)
    path.unlink()
    path.write_bytes(b'{"c": 3}\n')  # replaced, as by a run started again from scratch
    assert follower.poll() == (b'{"c": 3}\n', 0, True)
    path.write_bytes(b"")  # truncated
    assert follower.poll() == (b"", 0, True)
