"""Report boundaries: at which iterations a report (or an anomaly check) is due. Pure
arithmetic on iteration counts; the learning-rate schedule is ``trainkit.schedule``."""

from __future__ import annotations

import math
from fractions import Fraction


def parse_interval(percent: float, what: str = "interval_percent") -> Fraction:
    """A percentage in (0, 100] as an exact fraction (0.1 is 1/10, not the nearest binary
    float), so boundaries land on the iterations a person would compute by hand."""
    if isinstance(percent, bool) or not isinstance(percent, (int, float, Fraction)):
        raise TypeError(f"{what} must be a number of percent such as 1.0 or 0.5, got {percent!r}")
    if not math.isfinite(percent) or not 0 < percent <= 100:
        raise ValueError(f"{what} must be in (0, 100] percent, got {percent!r}; use e.g. 1.0 for a report every 1%")
    return Fraction(str(percent)) if isinstance(percent, float) else Fraction(percent)


class ReportSchedule:
    """Boundaries every ``interval`` percent of ``total_iters``.

    Boundary k (k = 1 .. ceil(100/interval)) is due at iteration floor(k·interval·total/100),
    the last iteration at or below k·interval percent; the last boundary is the final
    iteration. Flooring (rather than rounding up) keeps the boundaries distinct whenever
    the run has at least ceil(100/interval) iterations, so such a run gets exactly that
    many reports. A shorter run gets one report per distinct iteration, at its real
    percent. Boundaries at iteration 0 or at or before a resume point are skipped.
    """

    def __init__(self, total_iters: int, interval_percent: float) -> None:
        self.total_iters = total_iters
        self.interval = parse_interval(interval_percent)
        # Iterations per boundary, exactly.
        self._step = self.interval * total_iters / 100
        self.count = math.ceil(100 / self.interval)

    def next_due(self, iteration: int) -> int | None:
        """The first boundary iteration after ``iteration``, or None when none is left."""
        if iteration >= self.total_iters:
            return None
        k = math.ceil((iteration + 1) / self._step)
        if k >= self.count:
            return self.total_iters
        return min(self.total_iters, math.floor(k * self._step))

    def due_iterations(self, start_iter: int = 0) -> list[int]:
        """Every iteration after ``start_iter`` at which a report is due, in order."""
        out = []
        nxt = self.next_due(start_iter)
        while nxt is not None:
            out.append(nxt)
            nxt = self.next_due(nxt)
        return out
