"""Lines appended to a file that may fail for a while (a full disk, a network file system
that drops out): what cannot be written is kept and written later, and what had to be
dropped is replaced by one marked gap line.

A write that raises OSError keeps the line (and the unwritten end of a line written in
part) in memory, up to ``max_pending_bytes``, and tries again at the next line once a
back-off has passed (``retry_first_s``, doubling up to ``retry_max_s``). When the kept lines
would pass the bound, the oldest whole ones are dropped; once the file takes writes again, a
gap line (built by ``gap_line``) is written where they were, saying how many records and
which iterations were lost. ``drain(limit_s)`` tries for up to ``limit_s`` seconds (at
close). One warning when writing fails, one when it works again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import BinaryIO, Callable

logger = logging.getLogger(__name__)


@dataclass
class Line:
    """One line to write, and what it records (for a gap line, should it be dropped)."""

    data: bytes
    iteration: int
    is_report: bool
    droppable: bool = True


@dataclass
class Gap:
    """Records dropped since the last gap line: how many, and which iterations."""

    records: int = 0
    reports: int = 0
    from_iteration: int | None = None
    to_iteration: int | None = None
    error: str = ""

    def add(self, line: Line, error: str) -> None:
        self.records += 1
        self.reports += line.is_report
        if self.from_iteration is None:
            self.from_iteration = line.iteration
        self.to_iteration = line.iteration
        self.error = error


class RetryingWriter:
    """Writes lines to ``file`` (a binary, unbuffered file: ``write`` returns how many bytes
    it wrote), keeping and retrying what fails; see the module docstring. ``name`` is the
    file's name in warnings; ``gap_line(gap)`` returns the bytes of a gap record."""

    def __init__(
        self,
        file: BinaryIO,
        name: str,
        gap_line: Callable[[Gap], bytes],
        *,
        max_pending_bytes: int,
        retry_first_s: float,
        retry_max_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._file, self._name, self._gap_line = file, name, gap_line
        self._max_pending_bytes = max_pending_bytes
        self._retry_first_s, self._retry_max_s = retry_first_s, retry_max_s
        self._clock, self._sleep = clock, sleep
        self._pending: deque[Line] = deque()
        self._pending_bytes = 0
        self._head_written = 0  # bytes of the first pending line already in the file
        self._gap = Gap()
        self._error: str | None = None  # set while writing fails
        self._delay_s = retry_first_s
        self._next_try = 0.0
        self._late = 0  # records written after a failure, this outage
        self.lost_records = 0  # over the whole run

    def write(self, data: bytes, iteration: int, is_report: bool) -> None:
        """Queue one line (``data`` ends with a newline) and write what is due."""
        self._pending.append(Line(data, iteration, is_report))
        self._pending_bytes += len(data)
        self._drop_over_bound()
        if self._error is None or self._clock() >= self._next_try:
            self._try()

    def drain(self, limit_s: float) -> bool:
        """Keep trying, with back-off, for up to ``limit_s`` seconds; whether all is written."""
        deadline = self._clock() + limit_s
        while not self._try():
            left = deadline - self._clock()
            if left <= 0:
                lost = sum(line.droppable for line in self._pending) + self._gap.records
                self.lost_records += lost
                logger.warning("trainprogress: %s still cannot be written (%s); %d records are lost",
                               self._name, self._error, lost)
                return False
            self._sleep(min(self._delay_s, left))
        return True

    def _drop_over_bound(self) -> None:
        """Drop the oldest whole lines while the kept ones pass the bound (never a line
        written in part, nor a gap line)."""
        index = 0
        while self._pending_bytes > self._max_pending_bytes and index < len(self._pending):
            line = self._pending[index]
            if not line.droppable or (index == 0 and self._head_written):
                index += 1
                continue
            del self._pending[index]
            self._pending_bytes -= len(line.data)
            self._gap.add(line, self._error or "")

    def _write_gap(self) -> None:
        """Write the gap line for what was dropped, unless a line is begun (it goes first).
        A gap line written in part becomes the begun line; one not written at all is built
        again, with what is dropped meanwhile, at the next try."""
        if not self._gap.records or self._head_written:
            return
        data = self._gap_line(self._gap)
        written = self._file.write(data) or 0  # OSError: nothing changes
        self.lost_records += self._gap.records
        self._gap = Gap()
        if written < len(data):
            self._pending.appendleft(Line(data, 0, False, droppable=False))
            self._pending_bytes += len(data)
            self._head_written = written

    def _try(self) -> bool:
        """Write what is pending; whether all of it went out."""
        try:
            self._write_gap()
            while self._pending:
                line = self._pending[0]
                self._head_written += self._file.write(line.data[self._head_written:]) or 0
                if self._head_written == len(line.data):
                    self._pending.popleft()
                    self._pending_bytes -= len(line.data)
                    self._head_written = 0
                    self._late += self._error is not None
                    self._write_gap()
        except OSError as exc:
            self._failed(exc)
            return False
        if self._error is not None:
            logger.warning("trainprogress: %s is written again; %d records written late, %d lost so far "
                           "(a gap record marks them)", self._name, self._late, self.lost_records)
            self._error, self._late, self._delay_s = None, 0, self._retry_first_s
        return True

    def _failed(self, exc: OSError) -> None:
        if self._error is None:
            logger.warning("trainprogress: cannot write %s (%s); keeping up to %.3g MiB of records and retrying",
                           self._name, exc.strerror or type(exc).__name__, self._max_pending_bytes / 2**20)
        else:
            self._delay_s = min(self._retry_max_s, 2 * self._delay_s)
        self._error = exc.strerror or type(exc).__name__
        self._next_try = self._clock() + self._delay_s
