"""Following a live run from another terminal: the latest report block and a live bar,
redrawn as records arrive, until the run ends.

The log is read as another process appends to it: only complete lines are parsed (a line
still being written waits for its end), a file that does not exist yet is waited for, and a
file that is replaced or truncated is read again from its start.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from .. import format as fmt
from ..sinks.console import ConsoleSink, stream_takes, to_ascii
from .runlog import LogBytes, LogFileError, LogReader, check_regular_file, report_from_record, resolve_log_path
from .runs import Record, Run

# Exit codes of `trainprogress watch`: the run completed, or it stopped early or crashed.
COMPLETED_EXIT, NOT_COMPLETED_EXIT = 0, 2
BAR_WIDTH = 30
CLEAR_SCREEN = "\x1b[H\x1b[2J"
CLEAR_LINE = "\r\x1b[2K"
# A file with this many complete lines and not one record is no progress log.
FOREIGN_LINES_LIMIT = 20


class LogFollower:
    """Returns the complete lines appended to a file since the last call, with where in the
    file they begin."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self._identity: tuple[int, int] | None = None

    def poll(self) -> tuple[bytes, int, bool]:
        """(the new complete lines, each ending in a newline; the file offset at which they
        begin; whether the file was replaced or truncated since the last call, so that what
        was read before no longer holds). No lines while it is missing."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return b"", self._offset, False
        check_regular_file(self.path)
        identity = (stat.st_dev, stat.st_ino)
        restarted = self._identity is not None and (identity != self._identity or stat.st_size < self._offset)
        if restarted:
            self._offset, self._partial = 0, b""
        self._identity = identity
        begin = self._offset - len(self._partial)
        if stat.st_size == self._offset:
            return b"", begin, restarted
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        data = self._partial + data if self._partial else data  # a long log's first read is not copied
        self._offset = begin + len(data)
        complete = data.rfind(b"\n") + 1
        self._partial = data[complete:]
        return data if complete == len(data) else data[:complete], begin, restarted


def progress_bar(percent: float, ascii: bool = False) -> str:
    """A text bar of BAR_WIDTH cells for ``percent`` (0 to 100)."""
    filled = max(0, min(BAR_WIDTH, round(BAR_WIDTH * percent / 100)))
    full, empty = ("#", ".") if ascii else ("█", "░")
    return f"|{full * filled}{empty * (BAR_WIDTH - filled)}|"


def status_line(run: Run, now: float, ascii: bool = False) -> str:
    """The live bar: percent, iteration, the ETA counted down since the latest report, speed,
    loss, and how long ago the log last changed."""
    report = run.latest_report or {}
    last = run.last_record or {}
    total = run.total_iters or 0
    percent = 100.0 * run.iteration / total if total else 0.0
    parts = [f"{progress_bar(percent, ascii)} {fmt.format_percent(percent)} {fmt.format_count(run.iteration)}/{fmt.format_count(total)}"]
    eta = report.get("eta_s")
    if run.status == "running" and isinstance(eta, (int, float)):
        parts.append(f"ETA {fmt.format_eta(max(0.0, eta - max(0.0, now - report['time'])))}")
    if isinstance(report.get("iters_per_s"), (int, float)):
        parts.append(fmt.format_rate(report["iters_per_s"]))
    if isinstance(report.get("smoothed_loss"), (int, float)):
        parts.append(f"loss {report['smoothed_loss']:.4f}")
    if last:
        parts.append(f"updated {fmt.format_duration(max(0.0, now - last['time']))} ago")
    return " · ".join(parts) if not ascii else " - ".join(parts)


def end_lines(run: Run) -> list[str]:
    """What the watch says when the run ends, below its final summary block."""
    where = f"iteration {fmt.format_count(run.iteration)}/{fmt.format_count(run.total_iters or 0)}"
    lines = [f"Run {run.status} at {where}."]
    if run.error and run.final is None:  # the final summary block, when there is one, shows the error
        lines.append(f"Error: {run.error}")
    return lines


class Watcher:
    """Draws a live run on ``stream``: on a terminal, the screen is redrawn with the latest
    report block and a live bar; elsewhere (a pipe, a file) each new report block is written
    once, followed by its bar line."""

    def __init__(self, path: str | os.PathLike[str], stream: TextIO | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = resolve_log_path(path)
        self.stream = stream or sys.stdout
        self.console = ConsoleSink(self.stream)
        self.live = self.stream.isatty()
        self.ascii = not stream_takes(self.stream, "█░·")
        self.clock = clock
        self._follower = LogFollower(self.path)
        self._reader = LogReader(self.path)
        self._source: LogBytes | None = None  # what the reports read their lines from, once the file exists
        self._lines_seen = 0
        self._shown: Record | None = None

    def _write(self, text: str) -> None:
        self.stream.write(to_ascii(text) if self.ascii else text)
        self.stream.flush()

    def update(self) -> Run | None:
        """Read what was appended and redraw what changed; returns the latest run (None
        before the first record)."""
        lines, offset, restarted = self._follower.poll()
        if restarted:
            self._reader, self._source, self._lines_seen = LogReader(self.path), None, 0
        if lines:
            self._source = self._source or LogBytes(self.path)
            self._lines_seen += lines.count(b"\n")
            self._reader.feed_buffer(lines, len(lines), self._source, offset)
        if self._reader.records == 0 and self._lines_seen >= FOREIGN_LINES_LIMIT:
            raise LogFileError(
                f"{self.path} is not a trainprogress JSONL log: none of its first {self._lines_seen} lines is a "
                f"record with 'schema' and 'type' keys. Fix: watch the file the JSONL sink writes "
                f"(out_dir/progress.jsonl with --jsonl_log=True)."
            )
        if not self._reader.runs:
            return None
        run = self._reader.runs[-1]
        report = run.latest_report
        if report is not None and report is not self._shown:
            self._shown = report
            self._draw_block(report)
        elif self.live:
            self._write(CLEAR_LINE + status_line(run, self.clock(), self.ascii))
        return run

    def _draw_block(self, report: Record) -> None:
        run = self._reader.runs[-1]
        if self.live:
            self._write(CLEAR_SCREEN)
        self.console.report(report_from_record(report))
        bar = status_line(run, self.clock(), self.ascii)
        self._write(bar if self.live else bar + "\n")

    def show_once(self) -> None:
        """Write the latest report block, the bar, and how the run ended if it did; no redrawing."""
        self.live = False
        run = self.update()
        if run is not None and (run.end is not None or run.final is not None):
            self._write("\n".join(end_lines(run)) + "\n")

    def run(self, *, interval_s: float = 0.5, timeout_s: float | None = None) -> int:
        """Follow the log until its latest run ends (or ``timeout_s`` passes); returns the exit
        code: 0 when the run completed, 2 when it stopped or crashed (or the timeout came)."""
        started = time.monotonic()
        waiting_said = False
        while True:
            run = self.update()
            if run is None and not waiting_said and not self.path.exists():
                self._write(f"Waiting for {self.path} to be created (Ctrl-C to stop)...\n")
                waiting_said = True
            if run is not None and (run.end is not None or run.final is not None):
                self._write(("\n" if self.live else "") + "\n".join(end_lines(run)) + "\n")
                return COMPLETED_EXIT if run.status == "completed" else NOT_COMPLETED_EXIT
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                return NOT_COMPLETED_EXIT
            time.sleep(interval_s)
