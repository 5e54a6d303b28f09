"""RunSize: how long a run is, owned in one place. The tracker's parts that need the size
(the report builder, the pace, the ETA, the scheduler, the forecaster, the memory
detector) read it from here, so a change of size mid-run (``set_total``, ``wrap(epochs=)``)
changes one object. Pure: it reads no clock."""

from __future__ import annotations

import math
from typing import Any

from .arguments import check_int
from .progress_units import SECONDS, TOKENS, ProgressUnits, epoch_length, size_run

# The step count a run sized in tokens or seconds is given in place of a total: no
# step-based boundary is ever reached, so its boundaries come from ProgressUnits alone.
UNCOUNTED_ITERS = 2**62


class RunSize:
    """A run of ``total_iters`` optimizer steps, or, with ``units``, of so many tokens or
    seconds (``total_iters`` is then UNCOUNTED_ITERS). ``epochs`` and ``iters_per_epoch``:
    the epochs it was sized in, when it was."""

    __slots__ = ("epochs", "iters_per_epoch", "total_iters", "units")

    def __init__(self, total_iters: int | None, units: ProgressUnits | None = None, *, epochs: int | None = None,
                 iters_per_epoch: int | None = None) -> None:
        self.total_iters = UNCOUNTED_ITERS if units is not None else total_iters
        self.units = units
        self.epochs = epochs
        self.iters_per_epoch = iters_per_epoch

    @classmethod
    def resolve(cls, total_iters: int | None, *, epochs: int | None, iters_per_epoch: int | None, loader: Any,
                total_tokens: int | None, time_budget_s: float | None, interval_percent: float) -> "RunSize":
        """The size from the tracker's sizing arguments (exactly one way; see
        ``progress_units.size_run``, which raises naming the fix)."""
        steps, units, epoch_len = size_run(total_iters, epochs=epochs, iters_per_epoch=iters_per_epoch, loader=loader,
                                           total_tokens=total_tokens, time_budget_s=time_budget_s,
                                           interval_percent=interval_percent)
        return cls(steps, units, epochs=epochs, iters_per_epoch=epoch_len)

    @property
    def in_steps(self) -> bool:
        """True for a run sized in optimizer steps (or epochs), False in tokens or seconds."""
        return self.units is None

    @property
    def known_steps(self) -> int | None:
        """The run's steps when it is sized in steps; None in tokens or seconds."""
        return self.total_iters if self.units is None else None

    @property
    def in_tokens(self) -> bool:
        return self.units is not None and self.units.unit == TOKENS

    @property
    def in_seconds(self) -> bool:
        return self.units is not None and self.units.unit == SECONDS

    def complete(self, iteration: int) -> bool:
        """Whether the whole size is done after ``iteration`` steps (tokens and seconds as
        last counted)."""
        return self.units.complete if self.units is not None else iteration >= self.total_iters

    def progress(self, iteration: int) -> tuple[float, int]:
        """Percent done and the run's total in optimizer steps at ``iteration``. A run sized
        in tokens or seconds knows its steps only as an estimate from its progress so far."""
        units = self.units
        if units is None:
            return 100.0 * iteration / self.total_iters, self.total_iters
        percent = units.percent
        return percent, (round(iteration * 100 / percent) if percent > 0 else iteration)

    @property
    def unit(self) -> str:
        """The report's progress unit: "iters", "tokens" or "seconds"."""
        return "iters" if self.units is None else self.units.unit

    def total_in_unit(self, total_iters: int) -> float:
        """The run's total in its unit (``total_iters``: its steps, as ``progress`` gives them)."""
        return total_iters if self.units is None else self.units.total

    def epoch(self, iteration: int) -> int | None:
        """The epoch (1-based) that step ``iteration`` belongs to, or None when not sized in epochs."""
        if self.iters_per_epoch is None:
            return None
        return max(1, -(-iteration // self.iters_per_epoch))

    def add_step_tokens(self, iteration: int, tokens: Any) -> bool:
        """Step ``iteration`` of a run sized in tokens trained on ``tokens`` (an int >= 0, else
        a TypeError naming the fix). Returns whether a report boundary is reached."""
        if type(tokens) is not int or tokens < 0:
            raise TypeError(f"step(tokens=...) takes the step's token count as an int >= 0, got {tokens!r}; "
                            "pass e.g. tokens=x.numel() (an int, read without a device sync)")
        self.units.add_tokens(iteration, tokens)
        return self.units.due

    def set_total(self, total: Any, iteration: int) -> bool:
        """Change the size to ``total`` in its unit, as of ``iteration`` steps done (a
        ValueError or TypeError naming the fix when it cannot be). Returns True when the
        size in steps changed (the step-based parts then follow)."""
        if self.units is not None:
            if isinstance(total, bool) or not isinstance(total, (int, float)) or not 0 < total < math.inf:
                raise ValueError(f"set_total takes a positive number of {self.units.unit}, got {total!r}")
            self.units.set_total(total)
            return False
        self.total_iters = check_int("total", total, max(1, iteration),
                                     "pass the optimizer steps of the whole run, at least those done")
        return True

    def epochs_of(self, epochs: int, loader: Any) -> int:
        """Size the run as ``epochs`` passes over ``loader`` (with len()); returns its steps,
        for ``set_total``. A run sized in tokens or seconds cannot be."""
        if self.units is not None:
            raise ValueError(f"wrap(epochs=...) sizes the run in steps, but it is sized in {self.units.unit}; "
                             "call wrap(loader) without epochs")
        self.iters_per_epoch = epoch_length(epochs, None, loader)
        self.epochs = epochs
        return epochs * self.iters_per_epoch
