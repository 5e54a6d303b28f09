"""Reading a JSONL progress log back: the runs in the file, their reports and events.

The log is the one :class:`trainprogress.sinks.jsonl.JsonlSink` writes (its module
docstring has the schema). One file can hold several runs: every process appends a
``run_start`` record, and a ``run_start`` with ``start_iter`` > 0 continues (resumes) the
run before it, while one starting at iteration 0 begins a new run. A resumed run's
processes are its *segments*. Iterations that a crashed process did after its last
checkpoint are done again by the next segment; their first records are *superseded*, so
that the reconstructed view holds every scheduled report once.

Records are read-only mappings of the JSON lines' keys (unknown keys are kept and
ignored). A report line is parsed in full only when a key other than its ``iteration`` and
``kind`` is first read, from the file: finding the runs, their segments and their ends
needs only those, and a summary only a few whole reports, which keeps reading a
100,000-report log well under a second (``benchmarks/bench_read_log.py``).
:func:`report_from_record` rebuilds a :class:`trainprogress.report.Report` from a record
when a renderer needs it.

    from trainprogress import read_log
    log = read_log("out/progress.jsonl")
    run = log.runs[-1]
    print(run.status, run.iteration, len(run.reports), log.skipped_lines)
"""

from __future__ import annotations

import json
import mmap
import os
import re
import select
import stat
import sys
import weakref
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from ..cost import RunCost
from ..report import Anomaly, MemoryStats, Report, Section
from ..sinks.jsonl import SCHEMA_VERSION
from .runs import Record, Run, Segment

__all__ = ["LazyReport", "LogFileError", "LogReader", "RunLog", "check_regular_file", "read_log", "report_from_record",
           "resolve_log_path"]

# The head of a report line as the JSONL sink writes it (json.dumps keeps the key order).
# It begins with a literal, which lets the regex engine scan a whole buffer for it quickly.
_REPORT_LINE = re.compile(
    rb'\{"schema": %d, "type": "report", "time": [-0-9.eE+]+, "iteration": (\d+), "kind": "(\w+)", ' % SCHEMA_VERSION
)
# How a whole report line ends: with its ``scalars`` object. A line cut short by a crash
# does not, and is parsed in full (and skipped) instead.
_REPORT_LINE_ENDS = (b"}}", b"}}\r")
_NOT_SPACE = re.compile(rb"\S")


def _report_head(data: bytes | mmap.mmap, line_start: int, end: int) -> re.Match[bytes] | None:
    """The first report head in ``data[line_start:end]`` that begins a line (a head quoted
    inside a line, say in a text sample, is none)."""
    position = line_start
    while (head := _REPORT_LINE.search(data, position, end)) is not None:
        if head.start() == line_start or data[head.start() - 1] == 0x0A:
            return head
        position = head.start() + 1
    return None


# A report's number fields (the Report's and its cost figures', from their declared types). A
# hand-edited or corrupted line can hold anything there ("loss": "abc", [1, 2], true): such a
# value is read as missing.
_NUMBER_FIELDS = tuple(f.name for cls in (Report, RunCost) for f in fields(cls)
                       if set(f.type.replace(" ", "").split("|")) <= {"int", "float", "None"})
_NUMBER_TYPES = (int, float, type(None))  # None (null, or the key absent): not measured


def numbers_only(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (a report's) without the values of its number fields, and of its metrics'
    ``val_loss``, that are neither numbers nor null (a bool is no number); a ``metrics`` that
    is not an object goes too."""
    for name in _NUMBER_FIELDS:
        if type(record.get(name)) not in _NUMBER_TYPES:
            del record[name]
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        record.pop("metrics", None)
    elif type(metrics.get("val_loss")) not in _NUMBER_TYPES:
        del metrics["val_loss"]
    return record


class LazyReport(Mapping[str, Any]):
    """A report line's record: ``iteration`` and ``kind`` read from its head at once, which
    is all that finding the runs takes; the line is read from ``source`` and parsed the first
    time another key is read. A line that then turns out not to parse, or to be another
    report's (the file was rewritten since), keeps only those two."""

    __slots__ = ("iteration", "kind", "_source", "_start", "_end", "_full")

    def __init__(self, head: re.Match[bytes], source: bytes | LogBytes, start: int, end: int) -> None:
        """The report whose head ``head`` matched (a match of the report head), and whose
        line is ``source[start:end]``."""
        iteration, kind = head.groups()
        self.iteration, self.kind = int(iteration), kind.decode()
        self._source: bytes | LogBytes | None = source
        self._start, self._end = start, end
        self._full: dict[str, Any] | None = None

    def _record(self) -> dict[str, Any]:
        if self._full is None:
            try:
                record = json.loads((self._source or b"")[self._start:self._end])
            except (OSError, ValueError):
                record = None
            same = isinstance(record, dict) and record.get("iteration") == self.iteration and record.get("kind") == self.kind
            self._full = numbers_only(record) if same else {"iteration": self.iteration, "kind": self.kind}
            self._source = None
        return self._full

    def __getitem__(self, key: str) -> Any:
        if key == "iteration":
            return self.iteration
        if key == "kind":
            return self.kind
        return self._record()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._record())

    def __len__(self) -> int:
        return len(self._record())


class LogBytes:
    """A log file's bytes, read by slice when a lazy report is first parsed: a read log
    holds the positions of its report lines, not the lines. The file stays open while
    records refer to it."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")
        weakref.finalize(self, self._file.close)

    def __getitem__(self, span: slice) -> bytes:
        self._file.seek(span.start)
        return self._file.read(span.stop - span.start)


class LogFileError(Exception):
    """A file that cannot be read as a progress log; the message names the problem and the fix."""


def resolve_log_path(path: str | os.PathLike[str]) -> Path:
    """The progress log ``path`` means: ``path`` itself when it exists as a file (or a pipe)
    or names a .jsonl, else the progress.jsonl in the trainer's out_dir ``path`` (one not
    created yet included, which ``watch`` waits for)."""
    path = Path(path)
    if path.is_dir() or (not path.exists() and path.suffix != ".jsonl"):
        return path / "progress.jsonl"
    return path


@dataclass
class RunLog:
    """The runs in one log file, oldest first, and how many lines could not be read:
    ``skipped_lines`` (torn or garbled lines, skipped), ``incomplete_tail`` (the file ends
    in a line still being written)."""

    path: Path
    runs: list[Run]
    skipped_lines: int = 0
    incomplete_tail: bool = False


class LogReader:
    """Builds runs from records as they come: all at once (:func:`read_log`) or as a live
    run appends them (``trainprogress watch``). ``feed`` takes complete lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: list[Run] = []
        self.skipped_lines = 0
        self.records = 0
        self._base_names: list[str] = []

    def _segment_for_record(self) -> Segment:
        if not self.runs:
            self._new_run(None)
        return self.runs[-1].segments[-1]

    def _new_run(self, start: Record | None) -> None:
        run = Run(name=_base_name(self.path, start), segments=[Segment(start)])
        self._base_names.append(run.name)
        self.runs.append(run)

    def feed(self, lines: Iterable[bytes | str]) -> None:
        """Parse complete lines and add their records; unreadable lines are counted in
        ``skipped_lines``. Raises LogFileError for a record of a newer schema version."""
        for line in lines:
            if not line or line.isspace():
                continue
            head = _REPORT_LINE.match(line) if isinstance(line, bytes) else None
            if head is not None and line.endswith(_REPORT_LINE_ENDS):
                self.records += 1
                self._segment_for_record().reports.append(LazyReport(head, line, 0, len(line)))
            else:
                self._parse(line)

    def feed_buffer(self, data: bytes | mmap.mmap, end: int, source: bytes | LogBytes, offset: int = 0) -> None:
        """Add the records of ``data[:end]``, complete lines that begin at ``offset`` in what
        ``source`` reads: like :meth:`feed`, but report lines are found with one scan of the
        buffer and kept unparsed, as positions in ``source`` (see :class:`LazyReport`). The
        loop runs once per report of a long log, so it stays lean."""
        find, search = data.find, _REPORT_LINE.search
        done = 0  # where the lines not yet added begin
        reports: list[Record] | None = None  # the current segment's, while no other record comes
        # Each search starts where the last report line ends, so that the regex engine never
        # scans a report's body: finding its end is a memchr.
        while (head := search(data, done, end)) is not None:
            start = head.start()
            if start != done:
                if data[start - 1] != 0x0A and (head := _report_head(data, done, end)) is None:
                    break
                start = head.start()
                self.feed(data[done:start].split(b"\n"))  # the records between two reports
                reports = None
            line_end = find(b"\n", start, end)
            if data[line_end - 3:line_end].endswith(_REPORT_LINE_ENDS):
                if reports is None:
                    reports = self._segment_for_record().reports
                reports.append(LazyReport(head, source, offset + start, offset + line_end))
                self.records += 1
            else:
                self._parse(data[start:line_end])
                reports = None
            done = line_end + 1
        self.feed(data[done:end].split(b"\n"))

    def _parse(self, line: bytes | str) -> None:
        try:
            record = json.loads(line)
        except ValueError:  # a torn or garbled line (UnicodeDecodeError is one too)
            self.skipped_lines += 1
            return
        if not isinstance(record, dict) or "type" not in record or not isinstance(record.get("schema"), int):
            self.skipped_lines += 1
            return
        if record["schema"] > SCHEMA_VERSION:
            raise LogFileError(
                f"{self.path} was written with log schema version {record['schema']}, and this "
                f"trainprogress reads versions up to {SCHEMA_VERSION}. Fix: upgrade trainprogress "
                f"(pip install -U trainprogress) to read it."
            )
        if not isinstance(record.get("iteration"), int) or not isinstance(record.get("time"), (int, float)):
            self.skipped_lines += 1
            return
        self._add(record)

    def _add(self, record: Record) -> None:
        self.records += 1
        kind = record["type"]
        if kind == "report":
            self._segment_for_record().reports.append(numbers_only(record))
        elif kind == "event":
            self._segment_for_record().events.append(record)
        elif kind == "run_start":
            if self.runs and (record.get("start_iter") or record["iteration"]) > 0:
                self.runs[-1].segments.append(Segment(record))
            else:
                self._new_run(record)
        elif kind == "run_end":
            self._segment_for_record().end = record
        elif kind == "gap":
            self._segment_for_record().gaps.append(record)
        # Other types are newer additions this reader does not use.

    def name_runs(self) -> None:
        """Number the runs' names ("out #1", "out #2") when the file holds several."""
        for index, (run, base) in enumerate(zip(self.runs, self._base_names), start=1):
            run.name = f"{base} #{index}" if len(self.runs) > 1 else base


def _base_name(path: Path, start: Record | None) -> str:
    config = start.get("config") if start else None
    if isinstance(config, dict):
        for key in ("run_name", "wandb_run_name"):
            if config.get(key):
                return str(config[key])
    # A trainer's log is out_dir/progress.jsonl: the folder names the run.
    if path.name == "progress.jsonl" and path.resolve().parent.name:
        return path.resolve().parent.name
    return path.stem


def _map(path: Path) -> bytes | mmap.mmap:
    """The regular file's bytes, mapped rather than copied where the OS can (a non-empty
    file): reading a long log then costs one scan of the page cache."""
    with open(path, "rb") as file:
        try:
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # empty
            return file.read()


# The path that reads a log from standard input (a pipe the user asked for).
STDIN_PATH = "-"
# The most a pipe (standard input, a FIFO, a shell's <(...)) is read: it may never end.
MAX_PIPE_BYTES = 1 << 30
# Seconds a FIFO is given to have a writer: one with none would block for good.
FIFO_WAIT_S = 5.0


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a file"


def check_regular_file(path: Path, *, pipe_allowed: bool = False) -> bool:
    """Raise LogFileError when ``path`` exists but is not a regular file (a FIFO passes
    with ``pipe_allowed``): a device such as /dev/zero would be read until memory runs out.
    Returns whether it is a FIFO; False when it is missing (the caller says so)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if stat.S_ISREG(mode) or (pipe_allowed and stat.S_ISFIFO(mode)):
        return stat.S_ISFIFO(mode)
    piped = " (a pipe is read once by summary and plot, never followed)" if stat.S_ISFIFO(mode) else ""
    raise LogFileError(
        f"{path} is {_kind(mode)}, not a regular file, so it is not read{piped}. Fix: pass the "
        f"progress.jsonl a run writes (or, to summary and plot, '-' to read a log piped to standard input)."
    )


def _read_pipe(file: BinaryIO, name: str) -> bytes:
    """All of a pipe, up to MAX_PIPE_BYTES (an endless stream is refused, not read until
    memory runs out)."""
    data = file.read(MAX_PIPE_BYTES + 1)
    if len(data) > MAX_PIPE_BYTES:
        raise LogFileError(f"{name} streams more than {MAX_PIPE_BYTES >> 20} MiB. Fix: save the log to a file and pass its path.")
    return data


def _read_fifo(path: Path) -> bytes:
    """A FIFO's bytes, once a writer is there: it is given FIFO_WAIT_S to show up."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening does not wait for a writer
    with open(fd, "rb", closefd=True) as file:
        ready, _, _ = select.select([fd], [], [], FIFO_WAIT_S)
        if not ready:
            raise LogFileError(f"{path} is a FIFO (named pipe) with no writer after {FIFO_WAIT_S:g} s. Fix: start "
                               f"what writes into it first, or pass the log file itself.")
        os.set_blocking(fd, True)
        return _read_pipe(file, str(path))


def read_log(path: str | os.PathLike[str]) -> RunLog:
    """Read a JSONL progress log (or the progress.jsonl in a trainer's out_dir; ``"-"``:
    standard input; a pipe such as the shell's ``<(...)``).

    Returns a :class:`RunLog` with the runs in the file, oldest first; see :class:`Run` for
    the reconstructed view of a resumed run. Torn and garbled lines are skipped and counted.
    Raises :class:`LogFileError`, naming the problem and the fix, for a missing file, one
    that is neither a regular file nor a pipe (a device such as /dev/zero: never read), a
    FIFO with no writer, an empty file, a file that is not a progress log, or a newer
    schema version."""
    if os.fspath(path) == STDIN_PATH:
        data = _read_pipe(sys.stdin.buffer, "standard input")
        return _parse_log(Path("<stdin>"), data, data)
    path = resolve_log_path(path)
    if not path.exists():
        raise LogFileError(
            f"{path}: no such file. Fix: pass the log a run writes with --jsonl_log=True "
            f"(out_dir/progress.jsonl) or with build_sinks(jsonl=...)."
        )
    try:
        if check_regular_file(path, pipe_allowed=True):
            data = _read_fifo(path)
            return _parse_log(path, data, data)
        data = _map(path)
        source = LogBytes(path) if isinstance(data, mmap.mmap) else data
    except OSError as exc:
        raise LogFileError(f"{path}: cannot be read ({exc.strerror}). Fix: check its permissions.") from exc
    with data if isinstance(data, mmap.mmap) else nullcontext():
        return _parse_log(path, data, source)


def _parse_log(path: Path, data: bytes | mmap.mmap, source: bytes | LogBytes) -> RunLog:
    """The runs in ``data``, a whole log's bytes (``source`` reads them again later)."""
    if _NOT_SPACE.search(data) is None:
        raise LogFileError(
            f"{path} is empty: the run has not written its first record yet. Fix: wait until "
            f"training starts, or check that this is the right file."
        )
    complete = data.rfind(b"\n") + 1  # what follows is a line still being written, if anything
    tail = data[complete:]
    reader = LogReader(path)
    reader.feed_buffer(data, complete, source)
    incomplete = False
    if tail.strip():
        complete_lines = reader.skipped_lines
        reader.feed([tail])
        incomplete = reader.skipped_lines > complete_lines
        reader.skipped_lines = complete_lines
    if reader.records == 0:
        lines = data[:complete].count(b"\n") + bool(tail.strip())
        raise LogFileError(
            f"{path} is not a trainprogress JSONL log: none of its {lines} lines is a "
            f"record with 'schema' and 'type' keys. Fix: pass the file the JSONL sink writes "
            f"(out_dir/progress.jsonl with --jsonl_log=True)."
        )
    reader.name_runs()
    return RunLog(path=path, runs=reader.runs, skipped_lines=reader.skipped_lines, incomplete_tail=incomplete)


_REPORT_FIELDS = {f.name for f in fields(Report)}


def report_from_record(record: Record) -> Report:
    """The :class:`Report` a report record was written from (for the console's renderers);
    keys this version does not know are ignored, missing ones left unknown."""
    values = {name: record.get(name) for name in _REPORT_FIELDS & record.keys()}
    values["wall_time"] = record.get("time", 0.0)
    values.setdefault("kind", "scheduled")
    values.setdefault("total_iters", record["iteration"])
    values["percent"] = values.get("percent") if values.get("percent") is not None else 0.0
    values["elapsed_s"] = values.get("elapsed_s") or 0.0
    values["paused_s"] = values.get("paused_s") or 0.0
    for name in ("eta_s", "iters_per_s", "ms_per_iter"):
        values.setdefault(name, None)
    values["start_iter"] = values.get("start_iter") or 0
    values["metrics"] = {k: v for k, v in (record.get("metrics") or {}).items() if v is not None}
    memory_keys = {f.name for f in fields(MemoryStats)}
    values["memory"] = tuple(
        MemoryStats(**{k: v for k, v in m.items() if k in memory_keys})
        for m in record.get("memory") or () if isinstance(m, dict) and m.get("used_bytes") is not None
    )
    values["sections"] = tuple(
        Section(str(s.get("title", "")), tuple((str(line[0]), line[1]) for line in s.get("lines", ()) if len(line) == 2))
        for s in record.get("sections") or () if isinstance(s, dict)
    )
    values["anomalies"] = tuple(
        Anomaly(str(a.get("kind", "")), str(a.get("message", "")), int(a.get("since_iter") or 0))
        for a in record.get("anomalies") or () if isinstance(a, dict)
    )
    values["run_cost"] = RunCost.from_record(record)
    return Report(**values)
