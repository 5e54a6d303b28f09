"""Pace: how fast a run goes and how long it has left, from the step clock's timed groups
(trainprogress.timing), through the ETA estimator (trainprogress.eta) and the speed window
(trainprogress.speed). No device value is read: the tracker says when it read them, and
how long it waited for the device."""

from __future__ import annotations

from .eta import EtaEstimator
from .progress_units import TOKENS, ProgressUnits
from .speed import SpeedWindow
from .timing import StepClock


class Pace:
    """The speed and the ETA of a run timed by ``timer``, sized in optimizer steps or, with
    ``units``, in tokens or seconds.

    ``drain()`` hands the groups the clock has closed to ``eta`` (converted to reference
    steps in a run sized in tokens) and to ``speed``, and returns them; the figures are as
    of the last drain. Times are seconds, speeds optimizer steps per second.
    """

    __slots__ = ("_timer", "_units", "eta", "speed")

    def __init__(self, timer: StepClock, eta: EtaEstimator, speed: SpeedWindow, units: ProgressUnits | None) -> None:
        self._timer = timer
        self._units = units
        self.eta = eta
        self.speed = speed

    def drain(self) -> list[tuple[float, int]]:
        """Feed the clock's closed groups, (seconds, steps) each, to the ETA and the speed
        window (with their tokens, in a run sized in tokens); returns them, oldest first."""
        groups, first_iter = self._timer.take_groups()
        if not groups:
            return groups
        units = self._units
        tokens = units.group_tokens(groups, first_iter) if units is not None and units.unit == TOKENS else None
        self.eta.add_groups(groups if tokens is None else units.to_reference_steps(groups, tokens), first_iter)
        for i, (seconds, steps) in enumerate(groups):
            self.speed.add_group(seconds, steps, tokens[i] if tokens is not None else 0.0)
        return groups

    def add_pause(self, name: str, duration_s: float, iteration: int) -> None:
        """Time that was not training (a marked pause, the tracker's own report work) after
        ``iteration`` steps: the ETA counts it at the rate it recurs."""
        self.eta.add_pause(name, duration_s, iteration)

    def values_read(self, waited_s: float, iteration: int) -> None:
        """The loop's values were read at ``iteration`` (after a ``drain``), waiting
        ``waited_s`` seconds for the device to finish the steps since the previous read:
        training time, which ends the speed window's stretch and enters the ETA as the
        recurring cost it is."""
        self.speed.end_stretch(waited_s)
        if waited_s > 0:
            self.add_pause("device", waited_s, iteration)

    @property
    def iters_per_s(self) -> float | None:
        """Steps per second over the recent speed window; None before any step was timed."""
        return self.speed.iters_per_s

    def remaining_s(self, iteration: int, now: float) -> float | None:
        """Estimated seconds to the end of the run after ``iteration``, at clock time ``now``;
        None until it can be estimated."""
        if self._units is None:
            return self.eta.remaining_s(iteration)
        return self._units.remaining_s(self.eta.seconds_per_iter(iteration), self._timer.elapsed_s(now))

    def eta_s(self, iteration: int, now: float, paused: bool) -> float | None:
        """``remaining_s``, less the training time since the clock's last sample (a run in
        steps, outside a pause), so that the estimate counts down between samples."""
        remaining = self.remaining_s(iteration, now)
        if remaining is None or paused or self._units is not None:
            return remaining
        return max(0.0, remaining - self._timer.unsampled_s(now))

    def run_iters_per_s(self, done: int, now: float) -> float | None:
        """The whole run's speed: ``done`` steps over the time since the start, pauses
        excluded; None before a step or a moment of training."""
        training_s = self._timer.elapsed_s(now) - self._timer.paused_s
        return done / training_s if done and training_s > 0 else None

    def tokens_per_s(self) -> float | None:
        """Tokens per second over the speed window, in a run sized in tokens; else None."""
        return self.speed.tokens_per_s
