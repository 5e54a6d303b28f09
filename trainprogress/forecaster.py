"""Forecaster: the tracker's final-loss forecast and slow-convergence warning.

It keeps a few compact points per materialisation of the losses (means of the losses
copied to the host then, at their mean iterations), so it costs nothing per step and needs
no sync of its own; at a report it fits trainprogress.forecast.forecast_loss to those points.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Callable, Sequence

from .forecast import Forecast, forecast_loss
from .schedule_areas import ScheduleAreas

if TYPE_CHECKING:
    from .run_size import RunSize

logger = logging.getLogger(__name__)

SLOW_CONVERGENCE = "slow_convergence"
WARN_FROM_PERCENT = 50.0   # the warning speaks from half-way on
POINTS_PER_ADD = 4         # points kept per materialisation (each a mean of up to 32 of the 128 losses read)


def _loss_text(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


class Forecaster:
    """The forecast of one run of ``size.total_iters`` optimizer steps (read at each forecast,
    so that it follows a resize). ``lr_schedule``: a callable step -> learning rate (step
    1-based), called once per step (at most 65,536 times, on an even grid, for longer runs)
    at the first forecast, and again when the run's size changes; the areas under it are
    kept for every later report. ``target_loss``: the loss the run should reach."""

    def __init__(self, size: RunSize, lr_schedule: Callable[[int], float] | None = None,
                 target_loss: float | None = None) -> None:
        if lr_schedule is not None and not callable(lr_schedule):
            raise TypeError(f"lr_schedule must be a callable step -> learning rate, got {lr_schedule!r}; "
                            "pass e.g. lr_schedule=lambda step: schedule(step - 1)")
        if target_loss is not None and (isinstance(target_loss, bool) or not isinstance(target_loss, (int, float))
                                        or not math.isfinite(target_loss)):
            raise ValueError(f"target_loss must be a finite number, got {target_loss!r}; pass e.g. target_loss=1.9")
        self.size = size
        self.lr_schedule = lr_schedule
        self.target_loss = target_loss
        self._steps: list[float] = []
        self._losses: list[float] = []
        self._areas: ScheduleAreas | None = None
        self._cached: tuple[int, Forecast | None] | None = None
        self._warning: str | None = None
        self._usable = True

    def add(self, iterations: Sequence[int], losses: Sequence[float]) -> None:
        """Keep ``losses`` (those of ``iterations``; finite ones only) as up to POINTS_PER_ADD
        means of consecutive losses, so that a run with few reports still has points to fit."""
        pairs = [(i, v) for i, v in zip(iterations, losses) if math.isfinite(v)]
        size = -(-len(pairs) // POINTS_PER_ADD)
        for begin in range(0, len(pairs), max(size, 1)):
            chunk = pairs[begin:begin + size]
            self._steps.append(sum(i for i, _ in chunk) / len(chunk))
            self._losses.append(sum(v for _, v in chunk) / len(chunk))

    @property
    def total_iters(self) -> int:
        """The run's optimizer steps, as its size says now."""
        return self.size.total_iters

    def forecast(self, iteration: int) -> Forecast | None:
        """The forecast as of ``iteration`` (computed once per iteration), or None."""
        if self._cached is not None and self._cached[0] == iteration:
            return self._cached[1]
        result = None
        if self._usable and self._steps:
            try:
                result = forecast_loss(self._steps, self._losses, self.total_iters, self._schedule())
            except ImportError as error:
                self._usable = False
                if self.lr_schedule is not None or self.target_loss is not None:  # asked for: say why not
                    logger.warning("trainprogress: no final-loss forecast: %s", error)
            except Exception as error:  # a broken schedule callable must not stop training
                self._usable = False
                logger.warning("trainprogress: the final-loss forecast is turned off (%s: %s); training goes on",
                               type(error).__name__, error)
        self._cached = (iteration, result)
        return result

    def _schedule(self) -> ScheduleAreas | None:
        """The areas under the schedule (S1, S2), made at the first forecast and kept."""
        if self.lr_schedule is None:
            return None
        if self._areas is None or self._areas.total_steps != self.total_iters:
            import numpy  # the forecast needs it anyway; an ImportError turns the forecast off

            self._areas = ScheduleAreas.from_schedule(numpy, self.lr_schedule, self.total_iters)
        return self._areas

    def warning_events(self, percent: float, forecast: Forecast | None) -> list[tuple[str, dict[str, object]]]:
        """The slow-convergence events of a report: raised when, from half-way on, the whole
        band lies above ``target_loss`` (again when its line changes), cleared when it no longer does."""
        target = self.target_loss
        if target is None or percent < WARN_FROM_PERCENT or forecast is None:
            return []
        if forecast.low > target:
            message = (f"at this rate the run ends at {_loss_text(forecast.final)} ({_loss_text(forecast.low)} to "
                       f"{_loss_text(forecast.high)}), above the target {_loss_text(target)}")
            if message == self._warning:
                return []
            self._warning = message
            return [("anomaly", {"anomaly": SLOW_CONVERGENCE, "message": message})]
        if self._warning is None:
            return []
        self._warning = None
        message = (f"the forecast {_loss_text(forecast.final)} ({_loss_text(forecast.low)} to "
                   f"{_loss_text(forecast.high)}) reaches the target {_loss_text(target)} again")
        return [("anomaly_cleared", {"anomaly": SLOW_CONVERGENCE, "message": message})]
