"""Progress measured in something other than optimizer steps: tokens, or wall seconds of a
time budget. Pure: fed token counts, clock readings and step-time groups, it reads no clock.

``ProgressUnits`` holds how far the run is in its unit and where its report boundaries
lie: boundary k of ``ceil(100 / interval_percent)`` is at k x interval percent of the total,
the last one at the total. A report is due at the first step that reaches a boundary;
boundaries a single step jumps over are passed, not reported one by one.

Time left, in tokens: steps of different sizes are brought to one scale before the step
times reach the ``EtaEstimator``. Each timed group's seconds become the seconds it would
have taken had every step carried as many tokens as the first step did (the reference
step), so a batch-size or sequence-length ramp is not a change of speed, and the time left
is the remaining tokens, in reference steps, at the estimator's seconds per step. In a
time budget, the time left is what remains of the budget.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from fractions import Fraction

from .report_schedule import parse_interval

TOKENS = "tokens"
SECONDS = "seconds"


class ProgressUnits:
    """A run of ``total`` ``unit`` ("tokens" or "seconds"), with a report boundary every
    ``interval_percent`` of it."""

    def __init__(self, unit: str, total: float, interval_percent: float) -> None:
        if unit not in (TOKENS, SECONDS):
            raise ValueError(f"unit must be {TOKENS!r} or {SECONDS!r}, got {unit!r}")
        self.unit = unit
        self._interval = parse_interval(interval_percent)
        self._count = math.ceil(100 / self._interval)
        self.done: float = 0
        self.total: float = total
        self._next_k = 1
        self.next_boundary = self._boundary(1)
        # Cumulative tokens after each step that passed tokens, as (iteration, tokens) in
        # two lists, kept only for the steps whose times the ETA has not taken yet.
        self._iters: list[int] = []
        self._cumulative: list[float] = []
        self._before = 0.0  # cumulative tokens before the first kept step
        self.reference_tokens: float | None = None

    def _boundary(self, k: int) -> float:
        if k > self._count:
            return math.inf
        if k == self._count:
            return self.total
        return float(Fraction(self.total) * k * self._interval / 100)

    @property
    def percent(self) -> float:
        """How far the run is, in percent of the total (above 100 past it)."""
        return 100.0 * self.done / self.total

    @property
    def complete(self) -> bool:
        """True once the whole total is done."""
        return self.done >= self.total

    @property
    def due(self) -> bool:
        """True when the run has reached a boundary that has not been reported yet."""
        return self.done >= self.next_boundary

    def passed(self) -> None:
        """The boundaries reached so far are reported: the next one is the first beyond."""
        k = math.floor(Fraction(self.done) * 100 / (Fraction(self.total) * self._interval)) + 1
        self._next_k = max(self._next_k, k)
        self.next_boundary = self._boundary(self._next_k)

    def set_total(self, total: float) -> None:
        """Change the total; boundaries already passed stay passed."""
        self.total = total
        self._next_k = 1
        self.passed()

    # ------------------------------------------------------------------ tokens
    def add_tokens(self, iteration: int, tokens: float) -> None:
        """Step ``iteration`` processed ``tokens`` tokens."""
        if self.reference_tokens is None and tokens > 0:
            self.reference_tokens = tokens
        self.done += tokens
        self._iters.append(iteration)
        self._cumulative.append(self.done)

    def _tokens_through(self, iteration: int) -> float:
        i = bisect_right(self._iters, iteration)
        return self._cumulative[i - 1] if i else self._before

    def group_tokens(self, groups: list[tuple[float, int]], first_iter: int) -> list[float]:
        """The tokens of each step-time group (seconds, steps), the first starting at
        ``first_iter``; the token counts of these steps are then forgotten."""
        tokens = []
        start = self._tokens_through(first_iter - 1)
        last = first_iter - 1
        for _, steps in groups:
            last += steps
            end = self._tokens_through(last)
            tokens.append(end - start)
            start = end
        keep = bisect_right(self._iters, last)
        if keep:
            self._before = self._cumulative[keep - 1]
            del self._iters[:keep], self._cumulative[:keep]
        return tokens

    def to_reference_steps(self, groups: list[tuple[float, int]], tokens: list[float]) -> list[tuple[float, int]]:
        """Step-time groups (seconds, steps) carrying ``tokens`` tokens each (``group_tokens``),
        with each group's seconds scaled to reference steps (see the module doc)."""
        if self.reference_tokens is None:
            return groups
        return [(seconds * self.reference_tokens * steps / n if n > 0 else seconds, steps)
                for (seconds, steps), n in zip(groups, tokens)]

    def remaining_s(self, seconds_per_reference_step: float | None, elapsed_s: float) -> float | None:
        """Estimated wall seconds to the end: in tokens, the remaining tokens at
        ``seconds_per_reference_step``; in a time budget, what is left of it after
        ``elapsed_s``."""
        if self.unit == SECONDS:
            return max(0.0, self.total - elapsed_s)
        if self.complete:
            return 0.0
        if seconds_per_reference_step is None or self.reference_tokens is None:
            return None
        return (self.total - self.done) / self.reference_tokens * seconds_per_reference_step


def size_run(
    total_iters: int | None,
    *,
    epochs: int | None,
    iters_per_epoch: int | None,
    loader: object,
    total_tokens: int | None,
    time_budget_s: float | None,
    interval_percent: float,
) -> tuple[int | None, "ProgressUnits | None", int | None]:
    """Resolve how a run is sized: returns (total_iters or None when progress is counted in
    tokens or seconds, the ProgressUnits for those, steps per epoch or None). Exactly one
    way of sizing must be given; the errors name the fix."""
    ways = [name for name, given in (("total_iters", total_iters is not None), ("epochs", epochs is not None),
                                      ("total_tokens", total_tokens is not None),
                                      ("time_budget_s", time_budget_s is not None)) if given]
    if len(ways) != 1:
        raise ValueError(
            "trainprogress: size the run one way: total_iters=N optimizer steps, epochs=E with "
            "iters_per_epoch=N (or loader=), total_tokens=N with step(tokens=n), or time_budget_s=S; "
            + (f"got {' and '.join(ways)}" if ways else "got none")
        )
    if (iters_per_epoch is not None or loader is not None) and epochs is None:
        raise ValueError("iters_per_epoch= and loader= size epochs; pass epochs= too (e.g. epochs=3)")
    if total_tokens is not None:
        if isinstance(total_tokens, bool) or not isinstance(total_tokens, int) or total_tokens < 1:
            raise ValueError(f"total_tokens must be a positive int, got {total_tokens!r}; pass the tokens the whole run trains on")
        return None, ProgressUnits(TOKENS, total_tokens, interval_percent), None
    if time_budget_s is not None:
        if isinstance(time_budget_s, bool) or not isinstance(time_budget_s, (int, float)) or not 0 < time_budget_s < math.inf:
            raise ValueError(f"time_budget_s must be a positive number of seconds, got {time_budget_s!r}; e.g. 3600 for an hour")
        return None, ProgressUnits(SECONDS, float(time_budget_s), interval_percent), None
    if epochs is not None:
        steps_per_epoch = epoch_length(epochs, iters_per_epoch, loader)
        return epochs * steps_per_epoch, None, steps_per_epoch
    return total_iters, None, None


def epoch_length(epochs: int, iters_per_epoch: int | None, loader: object) -> int:
    """Optimizer steps per epoch: ``iters_per_epoch`` when given, else ``len(loader)``."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if iters_per_epoch is None:
        if loader is None:
            raise ValueError("epochs= needs the steps in an epoch: pass iters_per_epoch=N or loader=your_dataloader")
        try:
            iters_per_epoch = len(loader)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"trainprogress: the loader ({type(loader).__name__}) has no len(), so an epoch's steps are unknown; "
                "pass iters_per_epoch=N (optimizer steps per epoch), or size the run with total_iters=, "
                "total_tokens= or time_budget_s="
            ) from None
    if isinstance(iters_per_epoch, bool) or not isinstance(iters_per_epoch, int) or iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be a positive int, got {iters_per_epoch!r}; pass optimizer steps per epoch")
    return iters_per_epoch
