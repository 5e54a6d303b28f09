"""StepClock: the wall clock of a training run, read in groups of steps.

The clock is read once per step when steps take at least ``MIN_SAMPLE_S``, which real
training steps do. Faster loops are timed in groups of steps spanning about that long, as
tqdm does, so that timing never costs more than the loop it measures. Time that is not
training (marked pauses, the tracker's own reporting) is taken out of the step times.
"""

from __future__ import annotations

from typing import Callable

MIN_SAMPLE_S = 1e-3
MAX_STRIDE = 1024

# Timed groups kept before the owner must take them: bounds memory between far-apart reports.
MAX_PENDING_GROUPS = 256


class StepClock:
    """Times groups of steps on ``clock`` (seconds), starting at iteration ``start_iter``.

    The owner calls ``sample(iteration)`` when ``iteration`` reaches ``next_sample`` (or at
    any boundary): it closes the group of steps since the last sample. ``take_groups()``
    hands the closed groups over, each as (seconds, steps). ``exclude(seconds)`` takes time
    that was not a step out of the group being timed.

    A clock set back (``clock`` need not be monotonic) makes the steps timed across the
    jump count as 0 s, and the elapsed time stand still instead of going back.
    """

    __slots__ = ("_clock", "_groups", "_sampled_iter", "_t_last", "next_sample", "paused_s", "t_start")

    def __init__(self, clock: Callable[[], float], start_iter: int) -> None:
        self._clock = clock
        self._groups: list[tuple[float, int]] = []
        self._sampled_iter = start_iter
        self.t_start = self._t_last = clock()
        #: The iteration at which the current group closes.
        self.next_sample = start_iter + 1
        #: Seconds spent in marked pauses since the start.
        self.paused_s = 0.0

    def now(self) -> float:
        """The clock's current reading, in seconds."""
        return self._clock()

    def sample(self, iteration: int) -> float:
        """Close the group of steps up to ``iteration``: its duration becomes a sample, and
        its speed sets how many steps the next group spans. Returns the clock reading."""
        now = self._clock()
        if now < self._t_last:  # set back (NTP, a restored VM): those steps took 0 s, elapsed stands still
            self.t_start -= self._t_last - now
            self._t_last = now
        steps = iteration - self._sampled_iter
        if steps > 0:
            seconds = now - self._t_last
            self._groups.append((seconds, steps))
            self._sampled_iter = iteration
            self._t_last = now
            per_step = seconds / steps
            stride = 1 if per_step >= MIN_SAMPLE_S else min(MAX_STRIDE, int(MIN_SAMPLE_S / max(per_step, 1e-9)) + 1)
            self.next_sample = iteration + stride
        return now

    @property
    def backlog(self) -> int:
        """Closed groups not taken yet; take them before it reaches ``MAX_PENDING_GROUPS``."""
        return len(self._groups)

    def take_groups(self) -> tuple[list[tuple[float, int]], int]:
        """The closed groups, oldest first, each (seconds, steps), and the iteration the
        first of them starts at; the clock forgets them."""
        groups, self._groups = self._groups, []
        first_iter = self._sampled_iter - sum(steps for _, steps in groups) + 1
        return groups, first_iter

    def exclude(self, seconds: float, *, paused: bool = False) -> None:
        """Keep ``seconds`` that just passed out of the current group's time; ``paused``
        counts them as a marked pause too. A negative span (the clock set back) counts as 0 s."""
        seconds = max(0.0, seconds)
        self._t_last += seconds
        if paused:
            self.paused_s += seconds

    def elapsed_s(self, now: float) -> float:
        """Seconds from the start to ``now``, pauses included; never below 0."""
        return max(0.0, now - self.t_start)

    def unsampled_s(self, now: float) -> float:
        """Seconds of training since the last sample, as of ``now``; never below 0."""
        return max(0.0, now - self._t_last)
