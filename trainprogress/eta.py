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
  beyond a typical step is its cost. One to ``max_stall_run`` (4) stalls in a row are one
  stall event (random data-loader waits now and then come three in a row); a longer run of
  slow steps is a change of speed, which the median absorbs instead.
  Stall events that recur (an eval inside the training step every N iterations) are charged
  at the rate they occur; see ``RecurringCost``.
- ``pause_rates``: each kind of marked pause ("eval", "checkpoint", ...) is a recurring
  cost of its own, charged the same way.

A recurring cost's rate is the mean cost of its events after the first, divided by their
mean spacing in iterations (or by a fifth of the iterations since the last one, once that
is longer: events that come at random leave lulls of a few spacings now and then).
So an event seen once (a one-off stall, the eval before step 1, a warm-up) costs nothing;
one that recurs every N iterations is charged its true cost per iteration from its second
occurrence on; and one that stops recurring, such as a cluster of early stalls, fades out.

That model is one of three candidate forecasts of seconds per iteration, kept side by side
at O(1) cost per fed group: the model; the whole-run average (wall seconds so far /
iterations so far, warm-up and pauses included); and the blend, the model pulled halfway
toward the average. Heavy-tailed random stalls (data-loader waits) favour the plain average,
restarts and slow stretches the steadier blend, compile warm-up, evals and speed changes the
model. At each 1% of the run a ``ForecastJudge`` scores each candidate's past forecasts
against what actually happened since each was made, and the estimate follows the candidate
with the lowest error so far (leaving the model takes a clearly lower error, see
``LEAVE_MODEL_MARGIN``). Only the past is used: no candidate is scored on time it has not
seen yet. Judging costs O(judgements kept) once per 1% of the run, nothing per step. (An
exponential moving average of step time, the other usual baseline, is no candidate: it
forgets within a few steps, so between two judgements it is no longer what was judged.)
"""

from __future__ import annotations

from collections import deque
from statistics import fmean, median
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from .run_size import RunSize


# An event that recurs at random comes, now and then, several of its mean spacings after
# the previous one (for events that come at random at a steady rate, beyond five of them
# one time in 150): its cost starts fading only once the wait since the last event
# exceeds this many mean spacings, so a random lull is not taken for an end (with three,
# one report in twenty charged random data-loader stalls too little).
FADE_AFTER_SPACINGS = 5

# The candidates are judged at each 1% boundary of the run (where the tracker reports by
# default); each judgement keeps the forecasts made then.
JUDGEMENTS_PER_RUN = 100
# Past judgements kept (the whole run): bounds the judge's cost per judgement.
MAX_JUDGEMENTS = JUDGEMENTS_PER_RUN
# A candidate replaces the chosen one only with an error this much (relative) lower, and by
# at least SWITCH_MIN_GAP (a squared relative error: 0.1% on one stretch): when candidates
# agree, as on a steady run, their errors differ by rounding and the choice stays put.
SWITCH_MARGIN = 0.01
SWITCH_MIN_GAP = 1e-6
# Leaving the model takes a clearly lower error: the model's past forecasts are judged by
# what it knew then, so between its first two evals (or in the lull after an eval) a
# baseline that lags behind looks better for a while than it is.
LEAVE_MODEL_MARGIN = 0.35


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
        a fifth of the iterations since the last event once that is longer (so an event
        that stops recurring fades out, and a random lull does not)."""
        if self.count < 2:
            return 0.0
        recurrences = self.count - 1
        since_last = (iteration - self._last_iter) / FADE_AFTER_SPACINGS
        spacing = max((self._last_iter - self._first_iter) / recurrences, since_last, 1)
        return self._seconds_after_first / recurrences / spacing


class ForecastJudge:
    """Picks, among rival forecasts of seconds per iteration, the one whose past forecasts
    best predicted the time the run then took."""

    def __init__(self, first_choice: str) -> None:
        self.chosen = first_choice  # a name among the forecasts judged
        # (iteration, elapsed seconds, {candidate: forecast seconds per iteration})
        self._past: deque[tuple[int, float, dict[str, float]]] = deque(maxlen=MAX_JUDGEMENTS)

    def judge(self, iteration: int, elapsed_s: float, forecasts: Mapping[str, float]) -> None:
        """At ``iteration`` with ``elapsed_s`` wall seconds behind, score every candidate and
        remember its ``forecasts`` (seconds per iteration) for the next judgements.

        A candidate's error is the sum, over every earlier judgement, of the squared relative
        error of the time it then predicted for the stretch from there to now: long stretches
        show a steady bias that single steps' noise would hide. The candidate with the lowest
        error is chosen if it clearly beats the current choice (see the margins); the sum over
        all stretches changes little from one judgement to the next, so the choice does not
        flap."""
        errors = dict.fromkeys(forecasts, 0.0)
        for past_iteration, past_elapsed, past_forecasts in self._past:
            stretch_iters, stretch_s = iteration - past_iteration, elapsed_s - past_elapsed
            if stretch_iters > 0 and stretch_s > 0:
                for name in errors:
                    errors[name] += ((past_forecasts[name] * stretch_iters - stretch_s) / stretch_s) ** 2
        if self._past:
            best = min(errors, key=errors.__getitem__)
            margin = LEAVE_MODEL_MARGIN if self.chosen == "model" else SWITCH_MARGIN
            if errors[best] < (1 - margin) * errors[self.chosen] - SWITCH_MIN_GAP:
                self.chosen = best
        self._past.append((iteration, elapsed_s, dict(forecasts)))


class EtaEstimator:
    """Estimates wall seconds until the run's ``size`` (its ``total_iters`` steps, read at
    each estimate, so that a resized run needs nothing more) is complete. See the module doc."""

    def __init__(
        self,
        size: RunSize,
        window: int,
        *,
        stall_factor: float = 2.0,
        max_stall_run: int = 4,
        min_samples: int = 2,
    ) -> None:
        if window < 1:
            raise ValueError(f"ETA window must be >= 1 step, got {window}")
        self.size = size
        self._recent: deque[float] = deque(maxlen=window)
        self._stall_factor = stall_factor
        self._max_stall_run = max_stall_run
        self._min_samples = min_samples
        self._seen_first_step = False
        self._slow_run: list[float] = []  # excess seconds of the current run of slow steps
        self._stalls = RecurringCost()
        self._pauses: dict[str, RecurringCost] = {}
        # The whole-run average's totals: wall seconds (warm-up and pauses included) and
        # iterations fed so far.
        self._elapsed_s = 0.0
        self._iters_fed = 0
        self._judge = ForecastJudge("model")
        self._next_judgement = 0

    def add_steps(self, step_times_s: Iterable[float], first_iteration: int) -> None:
        """Feed durations (seconds, pauses excluded) of consecutive steps; the first of them
        completed iteration ``first_iteration``."""
        self.add_groups([(t, 1) for t in step_times_s], first_iteration)

    def add_groups(self, groups: Sequence[tuple[float, int]], first_iteration: int) -> None:
        """Feed consecutive groups of steps as (seconds, steps) pairs, each timed as a whole
        (a fast loop is timed a group at a time); the first step of the first group completed
        iteration ``first_iteration``. Each step of a group counts as the group's mean."""
        groups = list(groups)
        self._elapsed_s += sum(seconds for seconds, _ in groups)
        self._iters_fed += sum(steps for _, steps in groups)
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
        if iteration >= self._next_judgement:
            self._judge_candidates(iteration)

    def forecasts(self, iteration: int) -> dict[str, float] | None:
        """Every candidate's expected seconds per remaining iteration as of ``iteration``,
        by name ("model", "average", "blend"); None until all have one."""
        model = self._model_seconds_per_iter(iteration)
        if model is None:
            return None
        average = self._elapsed_s / self._iters_fed
        return {"model": model, "average": average, "blend": (model + average) / 2}

    def _judge_candidates(self, iteration: int) -> None:
        forecasts = self.forecasts(iteration)
        if forecasts is not None:
            self._judge.judge(iteration, self._elapsed_s, forecasts)
        # The next boundary k x total / JUDGEMENTS_PER_RUN (floored, as the tracker's
        # report boundaries) after this iteration.
        total, per_run = max(1, self.size.total_iters), JUDGEMENTS_PER_RUN
        k = iteration * per_run // total + 1
        self._next_judgement = max(iteration + 1, k * total // per_run)

    def _end_slow_run(self, iteration: int) -> None:
        if 0 < len(self._slow_run) <= self._max_stall_run:
            self._stalls.record(iteration, sum(self._slow_run))
        self._slow_run.clear()

    def add_pause(self, name: str, seconds: float, iteration: int) -> None:
        """A marked pause of ``seconds`` ended when ``iteration`` steps were complete (a
        negative span, timed across a clock set back, counts as 0 s)."""
        seconds = max(0.0, seconds)
        self._pauses.setdefault(name, RecurringCost()).record(iteration, seconds)
        self._elapsed_s += seconds

    @property
    def typical_step_s(self) -> float | None:
        """Typical step time in seconds over the recent window: the mean of the steps that
        are not stalls (not above ``stall_factor`` x the median). The median alone would
        run low on the right-skewed step times real runs have. None with too few steps."""
        if len(self._recent) < self._min_samples:
            return None
        limit = self._stall_factor * median(self._recent)
        return fmean(t for t in self._recent if t <= limit)

    @property
    def chosen(self) -> str:
        """The candidate the estimate follows now: "model", "average" or "blend"."""
        return self._judge.chosen

    def seconds_per_iter(self, iteration: int) -> float | None:
        """Expected wall seconds per remaining iteration, from the candidate chosen (see the
        module doc); None while the model cannot estimate yet."""
        forecasts = self.forecasts(iteration)
        return None if forecasts is None else forecasts[self._judge.chosen]

    def _model_seconds_per_iter(self, iteration: int) -> float | None:
        """The model's seconds per iteration: typical step plus recurring costs."""
        typical = self.typical_step_s
        if typical is None:
            return None
        overhead = self._stalls.seconds_per_iter(iteration)
        overhead += sum(p.seconds_per_iter(iteration) for p in self._pauses.values())
        return typical + overhead

    def remaining_s(self, iteration: int) -> float | None:
        """Estimated wall seconds from the completion of ``iteration`` to the end of the run;
        0.0 once the run is complete, None while it cannot be estimated yet."""
        remaining = self.size.total_iters - iteration
        if remaining <= 0:
            return 0.0
        per_iter = self.seconds_per_iter(iteration)
        return None if per_iter is None else remaining * per_iter
