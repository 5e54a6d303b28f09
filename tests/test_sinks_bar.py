"""The progress bar in a real subprocess: live on a pseudo-terminal without garbling the
report blocks, and quiet (or plain occasional lines) on a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from trainprogress.sinks.bar import BarSink, status_text

pytest.importorskip("tqdm")

ROOT = Path(__file__).resolve().parents[1]

# A real run on the real clock: 500 steps of about 4 ms, a block every 50% (about 1 s
# apart, so live ticks, every 0.5 s, come between them).
SCRIPT = r"""
import sys, time
from trainprogress import ProgressTracker
from trainprogress.sinks import ConsoleSink, BarSink
plain = None if sys.argv[1] == "none" else float(sys.argv[1])
with ProgressTracker(500, interval_percent=50, sinks=[ConsoleSink(), BarSink(plain_interval_s=plain)]) as tracker:
    for it in range(500):
        time.sleep(0.004)
        tracker.step(loss=2.0 - it / 500, lr=1e-3)
"""

HEADERS = ["🔄 TRAINING PROGRESS: 50% (250/500 iterations)", "🔄 TRAINING PROGRESS: 100% (500/500 iterations)"]
TITLES = {"📊 Metrics:", "⏱️ Time:", "💾 Memory:", "✅ TRAINING COMPLETE!"}


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"}


def run_on_pty(plain: str = "none") -> str:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, plain], stdin=slave, stdout=slave, stderr=slave, env=env(), cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode("utf-8")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: carriage returns move back to the start of
    the line and later characters overwrite earlier ones; a few cursor escapes are handled."""
    lines: list[str] = []
    line: list[str] = []
    col = 0
    i = 0
    while i < len(raw):
        escape = re.match(r"\x1b\[(\d*)([A-Za-z])", raw[i:])
        if escape:
            if escape.group(2) == "K":  # erase to the end of the line
                del line[col:]
            elif escape.group(2) == "A" and lines:  # cursor up
                line, col = list(lines.pop()), 0
            i += escape.end()
            continue
        ch = raw[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        else:
            line[col:col + 1] = [ch]
            col += 1
        i += 1
    if "".join(line).strip():
        lines.append("".join(line).rstrip())
    return lines


def test_bar_is_live_on_a_terminal_and_never_garbles_the_blocks():
    raw = run_on_pty()
    # The bar was drawn (with the tracker's ETA, speed and loss) and redrawn in place.
    assert re.search(r"\d+%\|[^\n]*\| \d+/500, ETA \d\d:\d\d:\d\d, [\d.]+ iter/s, loss \d\.\d{6}", raw)
    assert raw.count("\r") > 6
    lines = [line for line in screen(raw) if line]
    # What stays on the screen is exactly the blocks: no bar left over, nothing mixed in.
    assert [line for line in lines if "TRAINING PROGRESS" in line] == HEADERS
    for line in lines:
        assert line == "=" * 80 or line in HEADERS or line in TITLES or line.startswith("   • "), repr(line)
    assert lines[-1] == "=" * 80


def test_on_a_pipe_there_is_no_bar_and_no_carriage_return():
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "60"], capture_output=True, env=env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert "\r" not in out + err
    # A run shorter than plain_interval_s: only the line that says it started.
    assert err == "trainprogress: started at iteration 0/500; a status line here every 60 s\n"
    assert [line for line in out.splitlines() if "TRAINING PROGRESS" in line] == HEADERS


def test_on_a_pipe_plain_lines_are_occasional():
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "0.2"], capture_output=True, env=env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0
    err = proc.stderr.decode()
    assert "\r" not in err
    start, *lines = err.splitlines()
    assert start == "trainprogress: started at iteration 0/500; a status line here every 0.2 s"
    # At most one per live tick (0.5 s) that comes 0.2 s or more after the last line, over
    # a run of about 2 s: a handful, never a flood.
    assert 1 <= len(lines) <= 10
    for line in lines:
        # (the loss is known from the first report on: ticks never sync a device)
        assert re.fullmatch(r"trainprogress: [\d.]+% \(\d+/500\), ETA \d\d:\d\d:\d\d, [\d.]+ iter/s(, loss \d\.\d{6})?", line), line


def test_status_text():
    assert status_text(None, None, None) == "ETA --:--:--"
    assert status_text(3723.4, 17.234, 1.2345678) == "ETA 01:02:03, 17.23 iter/s, loss 1.234568"
    assert status_text(90000, 0.5, None) == "ETA 1d 01:00:00, 0.5 iter/s"


def test_missing_tqdm_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"pip install tqdm .*trainprogress\[bar\]"):
        BarSink()


def test_plain_interval_must_be_positive():
    with pytest.raises(ValueError, match="plain_interval_s"):
        BarSink(plain_interval_s=0)


def test_off_a_terminal_reports_do_not_silence_the_status_lines():
    """A first line at once, then one a minute, even though reports (which may go to another
    stream) come every 30 s."""
    import io

    from helpers import FakeClock, RecordingSink

    from trainprogress import ProgressTracker

    clock, out, recorder = FakeClock(), io.StringIO(), RecordingSink()
    tracker = ProgressTracker(30_000, sinks=[BarSink(out, interactive=False, clock=clock), recorder], clock=clock)
    assert out.getvalue().splitlines() == ["trainprogress: started at iteration 0/30,000; a status line here every 60 s"]
    for _ in range(3_000):  # 300 s at 0.1 s a step
        clock.advance(0.1)
        tracker.step(loss=2.0)
    assert [r.iteration for r in recorder.reports] == [300, 600, 900, 1200, 1500, 1800, 2100, 2400, 2700, 3000]
    status = out.getvalue().splitlines()[1:]
    at = [int(re.search(r"\(([\d,]+)/", line).group(1).replace(",", "")) for line in status]
    assert len(at) == 4 and all(0 <= it - 600 * k < 10 for k, it in enumerate(at, start=1)), at  # at the next tick
