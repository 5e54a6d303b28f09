"""Time-remaining estimation (pure: fed step durations, pauses and iteration numbers).

The estimate is

    ETA = remaining_iters x (typical_step + stall_rate + sum of pause_rates)

- ``typical_step`` is the mean of the last ``window`` step times (pauses taken out) that
  are not stalls, i.e. not above ``stall_factor`` x their median. Leaving out stalls keeps
  one-off slow steps (a GC pause, a data-loader hiccup) out; once half the window has
  passed at a new speed the median, and with it the kept steps, switch to it: with the
  default window of 2% of the run, a lasting change of speed is followed within about 1%
  of the run.
- The first step of each process is never counted: it carries compilation, cuDNN
  autotuning, allocator warm-up or a resume's reload.
- ``stall_rate``: a step slower than ``stall_factor`` x typical is a stall, and what it took
  beyond a typical step is its cost. One to ``max_stall_run`` stalls in a row are one stall
  event; a longer run of slow steps is a change of speed, which the median absorbs instead.
  Stall events that recur (an eval inside the training step every N iterations) are charged
  at the rate they occur; see ``RecurringCost``.
- ``pause_rates``: each kind of marked pause ("eval", "checkpoint", ...) is a recurring
  cost of its own, charged the same way.

A recurring cost's rate is the mean cost of its events after the first, divided by their
mean spacing in iterations (or by a third of the iterations since the last one, once that
is longer: events that come at random leave lulls of a few spacings now and then).
So an event seen once (a one-off stall, the eval before step 1, a warm-up) costs nothing;
one that recurs every N iterations is charged its true cost per iteration from its second
occurrence on; and one that stops recurring, such as a cluster of early stalls, fades out.
"""

from __future__ import annotations

from collections import deque
from statistics import fmean, median
from typing import Iterable, Sequence


# An event that recurs at random comes, now and then, several of its mean spacings after
# the previous one (one time in twenty beyond three of them, for events that come at
# random at a steady rate): its cost starts fading only once the wait since the last
# event exceeds this many mean spacings, so a random lull is not taken for an end.
FADE_AFTER_SPACINGS = 3


class RecurringCost:
    """The cost per iteration of an event that may recur (a kind of pause, or stalls)."""

    def __init__(self) -> None:
        self.count = 0
        self._first_iter = 0
        self._last_iter = 0
        self._seconds_after_first = 0.0

    def record(self, iteration: int, seconds: float) -> None:
        """An event costing ``seconds`` happened when ``iteration`` steps were complete."""
        if self.count == 0:
            self._first_iter = iteration
        else:
            self._seconds_after_first += seconds
        self._last_iter = iteration
        self.count += 1

    def seconds_per_iter(self, iteration: int) -> float:
        """Expected seconds of this cost per future iteration, as seen at ``iteration``:
        the mean cost of the events after the first, divided by their mean spacing, or by
        a third of the iterations since the last event once that is longer (so an event
        that stops recurring fades out, and a random lull does not)."""
        if self.count < 2:
            return 0.0
        recurrences = self.count - 1
        since_last = (iteration - self._last_iter) / FADE_AFTER_SPACINGS
        spacing = max((self._last_iter - self._first_iter) / recurrences, since_last, 1)
        return self._seconds_after_first / recurrences / spacing


class EtaEstimator:
    """Estimates wall seconds until ``total_iters`` steps are complete. See the module doc."""

    def __init__(
        self,
        total_iters: int,
        window: int,
        *,
        stall_factor: float = 2.0,
        max_stall_run: int = 2,
        min_samples: int = 2,
    ) -> None:
        if window < 1:
            raise ValueError(f"ETA window must be >= 1 step, got {window}")
        self.total_iters = total_iters
        self._recent: deque[float] = deque(maxlen=window)
        self._stall_factor = stall_factor
        self._max_stall_run = max_stall_run
        self._min_samples = min_samples
        self._seen_first_step = False
        self._slow_run: list[float] = []  # excess seconds of the current run of slow steps
        self._stalls = RecurringCost()
        self._pauses: dict[str, RecurringCost] = {}

    def add_steps(self, step_times_s: Iterable[float], first_iteration: int) -> None:
        """Feed durations (seconds, pauses excluded) of consecutive steps; the first of them
        completed iteration ``first_iteration``."""
        self.add_groups([(t, 1) for t in step_times_s], first_iteration)

    def add_groups(self, groups: Sequence[tuple[float, int]], first_iteration: int) -> None:
        """Feed consecutive groups of steps as (seconds, steps) pairs, each timed as a whole
        (a fast loop is timed a group at a time); the first step of the first group completed
        iteration ``first_iteration``. Each step of a group counts as the group's mean."""
        groups = list(groups)
        iteration = first_iteration - 1
        if not self._seen_first_step and groups:
            self._seen_first_step = True
            seconds, steps = groups[0]
            iteration += 1
            # The first step is dropped; the rest of its group (if any) keeps its mean.
            groups[0] = (seconds * (steps - 1) / steps, steps - 1)
        # Classify against the typical step before this batch; a batch is what passed
        # between two estimates, and a speed change inside it shows as a long slow run.
        typical = self.typical_step_s
        if typical is None:
            means = [s / n for s, n in groups if n]
            typical = median(means) if len(means) >= self._min_samples else None
        maxlen = self._recent.maxlen
        for seconds, steps in groups:
            if not steps:
                continue
            t = seconds / steps
            iteration += steps
            if typical is not None and t > self._stall_factor * typical:
                self._slow_run.append(seconds - typical * steps)
            else:
                self._end_slow_run(iteration)
            self._recent.extend([t] * min(steps, maxlen))

    def _end_slow_run(self, iteration: int) -> None:
        if 0 < len(self._slow_run) <= self._max_stall_run:
            self._stalls.record(iteration, sum(self._slow_run))
        self._slow_run.clear()

    def add_pause(self, name: str, seconds: float, iteration: int) -> None:
        """A marked pause of ``seconds`` ended when ``iteration`` steps were complete."""
        self._pauses.setdefault(name, RecurringCost()).record(iteration, seconds)

    @property
    def typical_step_s(self) -> float | None:
        """Typical step time in seconds over the recent window: the mean of the steps that
        are not stalls (not above ``stall_factor`` x the median). The median alone would
        run low on the right-skewed step times real runs have. None with too few steps."""
        if len(self._recent) < self._min_samples:
            return None
        limit = self._stall_factor * median(self._recent)
        return fmean(t for t in self._recent if t <= limit)

    def seconds_per_iter(self, iteration: int) -> float | None:
        """Expected wall seconds per remaining iteration: typical step plus recurring costs."""
        typical = self.typical_step_s
        if typical is None:
            return None
        overhead = self._stalls.seconds_per_iter(iteration)
        overhead += sum(p.seconds_per_iter(iteration) for p in self._pauses.values())
        return typical + overhead

    def remaining_s(self, iteration: int) -> float | None:
        """Estimated wall seconds from the completion of ``iteration`` to the end of the run;
        0.0 once the run is complete, None while it cannot be estimated yet."""
        remaining = self.total_iters - iteration
        if remaining <= 0:
            return 0.0
        per_iter = self.seconds_per_iter(iteration)
        return None if per_iter is None else remaining * per_iter
