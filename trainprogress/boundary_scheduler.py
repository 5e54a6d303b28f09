"""BoundaryScheduler: the next iterations at which the tracker has work to do besides
counting: a report (on the regular schedule, or on the dense one while an anomaly is
new or getting worse), an anomaly check between reports, a cross-rank exchange. The tracker's hot path
compares each step against the earliest of these and the step clock's next sample. The anomaly
checks' own spacing (at most one between reports per so many steps and seconds) is its
CheckCadence."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .anomaly.config import AnomalyConfig
from .report_schedule import ReportSchedule


class CheckCadence:
    """When the checks run. Every report is a check, since it copies the losses to the host
    anyway. Between reports a check is due on the ``check_percent`` grid, but no sooner
    than ``min_check_steps`` steps and ``min_check_interval_s`` seconds after the previous
    check: whatever the run's length or speed, checks add at most one host-device sync per
    that many steps and seconds, and none at all when reports come that often."""

    def __init__(self, total_iters: int, config: AnomalyConfig, start_iter: int = 0) -> None:
        self._grid = ReportSchedule(total_iters, config.check_percent)
        self._min_steps = config.min_check_steps
        self._min_s = config.min_check_interval_s
        # The start counts as a check: the first one between reports comes the bounds after it.
        self._last_iter = start_iter
        self._last_s: float | None = None

    def next_due(self, iteration: int) -> float:
        """The first iteration after ``iteration`` at which a check may be due (math.inf
        when none is left)."""
        due = self._grid.next_due(max(iteration, self._last_iter + self._min_steps - 1))
        return math.inf if due is None else due

    def allows(self, now_s: float) -> bool:
        """Whether enough seconds passed since the last check for one between reports (the
        first time it is asked, the seconds start counting)."""
        if self._last_s is None:
            self._last_s = now_s
        return now_s - self._last_s >= self._min_s

    def checked(self, iteration: int, now_s: float) -> None:
        """A check ran at ``iteration``, at clock time ``now_s``."""
        self._last_iter, self._last_s = iteration, now_s

if TYPE_CHECKING:
    from .run_size import RunSize


class BoundaryScheduler:
    """Report, check and exchange boundaries of a run of ``size.total_iters`` optimizer
    steps that reports every ``interval_percent``, from iteration ``start_iter`` on; after a
    change of size, ``resize`` lays them out again.

    ``reports``: whether this process reports (the master; elsewhere ``next_report`` stays
    math.inf). ``checks``: the AnomalyConfig when anomaly checks run, giving their cadence
    and the dense report schedule; None when they do not. ``exchanges``: whether every
    scheduled report boundary is also a cross-rank exchange, on every rank. A ``dense``
    argument says whether an anomaly is new or getting worse (``dense.DenseReports.wanted``),
    which adds the dense boundaries to the reports. Boundaries are iterations; none left is math.inf.
    """

    __slots__ = ("_checks", "_exchanges", "_reports", "_size", "cadence", "dense", "interval_percent",
                 "next_check", "next_report", "next_sync", "schedule")

    def __init__(self, size: RunSize, interval_percent: float, start_iter: int, *, reports: bool,
                 checks: AnomalyConfig | None, exchanges: bool) -> None:
        self._size = size
        self.interval_percent = interval_percent
        self._reports = reports
        self._checks = checks
        self._exchanges = exchanges
        self.next_report = self.next_check = self.next_sync = math.inf
        self.resize(start_iter, dense=False)

    def resize(self, iteration: int, dense: bool) -> None:
        """Lay the boundaries out for the run's size as it is now, as of ``iteration``:
        boundaries at or before it are not due again."""
        total_iters = self._size.total_iters
        self.schedule = ReportSchedule(total_iters, self.interval_percent)
        self.cadence: CheckCadence | None = None
        self.dense: ReportSchedule | None = None
        if self._checks is not None:
            self.cadence = CheckCadence(total_iters, self._checks, iteration)
            self.dense = ReportSchedule(total_iters, self._checks.dense_percent)
            self.next_check = self.cadence.next_due(iteration)
        if self._reports:
            self.next_report = self.report_after(iteration, dense)
        if self._exchanges:
            self.next_sync = self.schedule.next_due(iteration) or math.inf

    def report_after(self, iteration: int, dense: bool) -> float:
        """The first report boundary after ``iteration`` (math.inf when none is left)."""
        nxt = self.schedule.next_due(iteration)
        if dense and self.dense is not None:
            dense_due = self.dense.next_due(iteration)
            nxt = dense_due if nxt is None else min(nxt, dense_due or nxt)
        return math.inf if nxt is None else nxt

    def replan(self, iteration: int, dense: bool) -> None:
        """Switch between the regular and the dense report schedule, keeping a boundary at
        ``iteration`` itself (a regular report is not lost when an anomaly clears or holds
        steady there)."""
        self.next_report = self.report_after(iteration - 1, dense)

    def check_due(self, iteration: int, now_s: float) -> bool:
        """Whether an anomaly check runs at ``iteration`` (clock ``now_s``, seconds), and if
        so, record it. A report is a check too (it syncs anyway); between reports the
        cadence bounds them."""
        checked = self._check_runs(iteration, now_s)
        if checked:
            self.cadence.checked(iteration, now_s)
        return checked

    def _check_runs(self, iteration: int, now_s: float) -> bool:
        cadence = self.cadence
        return cadence is not None and (iteration >= self.next_report or (iteration >= self.next_check and cadence.allows(now_s)))

    def values_due(self, iteration: int, now_s: float) -> bool:
        """Whether anything due at ``iteration`` (clock ``now_s``) reads the loop's values: an
        exchange, a report or an anomaly check. Records nothing."""
        return iteration >= self.next_sync or iteration >= self.next_report or self._check_runs(iteration, now_s)

    def advance(self, iteration: int, dense: bool) -> bool:
        """Move every boundary reached at ``iteration`` to its next one. Returns whether a
        report boundary was passed."""
        passed = self.next_report <= iteration
        if passed:
            self.next_report = self.report_after(iteration, dense)
        if self.cadence is not None:
            self.next_check = self.cadence.next_due(iteration)
        if self.next_sync <= iteration:
            self.next_sync = self.schedule.next_due(iteration) or math.inf
        return passed

    def next_due(self, next_sample: float) -> float:
        """The earliest boundary, or ``next_sample`` (the step clock's) when that comes first."""
        return min(self.next_report, self.next_check, next_sample, self.next_sync)
