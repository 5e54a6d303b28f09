"""ValueBuffer: what a training loop passes to ``step()``, kept by reference between
boundaries and copied to the host once per boundary.

Between boundaries a loss is only stored in a ring indexed by iteration (the tracker's hot
path writes it directly), so a loss tensor is never synchronised per step. At a boundary,
``materialise`` copies the new losses, the named values and the learning rate to the host
together, in one device sync, and returns them as a ``Values`` snapshot with named fields.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Mapping

from .materialise import is_number, is_tensor, materialise_named

# Losses are kept by reference in a ring of this many entries, indexed by iteration; the
# tracker's step() masks with the literal LOSS_RING - 1 (127), cheaper than an attribute
# lookup. Small on purpose: a loss passed without .detach() keeps its autograd graph alive.
LOSS_RING = 128


@dataclass(frozen=True)
class Values:
    """The training values as of one iteration, all on the host.

    ``loss``: the latest loss; ``smoothed_loss``: the mean of the last losses, as many as
    the buffer's window (``ValueBuffer.fit_loss_window``); ``lr``: the latest learning rate
    (None when not given or not a number); ``metrics``: the latest of each named value (floats, or as given when not numeric);
    ``best_val_loss``: the lowest finite ``val_loss`` seen (or given as ``best_val_loss``).
    """

    iteration: int
    loss: float | None
    smoothed_loss: float | None
    lr: float | None
    metrics: Mapping[str, object] = field(default_factory=dict)
    best_val_loss: float | None = None


class ValueBuffer:
    """Keeps losses and named values by reference, from iteration ``start_iter`` on, and
    turns them into ``Values`` at boundaries. ``loss_window``: the most losses in the
    smoothed loss (at most ``LOSS_RING``); ``fit_loss_window`` narrows it to the steps
    between reports. ``keep_unchecked``: also keep every new loss until
    ``take_unchecked_losses`` (for the anomaly monitor, whose checks and the reports
    materialise at different iterations). ``history``: an object whose ``add(iterations,
    losses)`` gets the new losses of each materialisation (trainprogress.forecaster)."""

    __slots__ = ("_best_val_loss", "_latest", "_losses", "_materialised_iter", "_snapshot", "_unchecked", "history",
                 "loss_ring", "loss_window")

    def __init__(self, start_iter: int, loss_window: int, *, keep_unchecked: bool = False, history: Any = None) -> None:
        if not 1 <= loss_window <= LOSS_RING:
            raise ValueError(f"loss_window must be between 1 and {LOSS_RING} steps, got {loss_window}")
        #: loss_ring[iteration & (LOSS_RING - 1)] holds the loss passed at that iteration.
        self.loss_ring: list[Any] = [None] * LOSS_RING
        self._latest: dict[str, Any] = {}
        self.loss_window = loss_window
        self._losses: deque[float] = deque(maxlen=loss_window)
        self._unchecked: list[float] | None = [] if keep_unchecked else None
        self._materialised_iter = start_iter
        self._best_val_loss: float | None = None
        self._snapshot: Values | None = None
        #: with ``add(iterations, losses)``: given the new losses at each materialisation (the forecast's points)
        self.history = history

    def fit_loss_window(self, steps_per_report: float) -> None:
        """Smooth over at most the steps between two regular reports (and at most
        ``loss_window``): the smoothed loss then averages the noise of the latest steps
        without lagging a falling loss by more than half a report interval's decline."""
        size = max(1, min(self.loss_window, int(steps_per_report)))
        if size != self._losses.maxlen:
            self._losses = deque(self._losses, maxlen=size)

    def record(self, values: Mapping[str, Any]) -> None:
        """Keep the latest of each named value. None means "not measured at this step"
        (e.g. val_loss=None between evaluations) and keeps the previous value. A
        ``best_val_loss`` (a resumed run's earlier best) only lowers the tracked best."""
        values = {name: value for name, value in values.items() if value is not None}
        self._snapshot = None  # values recorded after a report at this iteration (at close) must reach the next
        val_loss = values.get("val_loss")
        if val_loss is not None and not is_tensor(val_loss):
            self._update_best(float(val_loss))
        best = values.pop("best_val_loss", None)
        if best is not None:
            self._update_best(float(best))
        self._latest.update(values)

    def _update_best(self, val_loss: float) -> None:
        if math.isfinite(val_loss) and (self._best_val_loss is None or val_loss < self._best_val_loss):
            self._best_val_loss = val_loss

    def materialise(self, iteration: int, lr: Any) -> Values:
        """The values as of ``iteration`` (the last step done), ``lr`` being its learning
        rate. Copies what is new since the last call to the host in one sync; a second call
        at the same iteration returns the same snapshot at no cost."""
        if self._snapshot is not None and self._snapshot.iteration == iteration:
            return self._snapshot
        ring, mask = self.loss_ring, LOSS_RING - 1
        first = max(self._materialised_iter, iteration - mask) + 1
        present = [i for i in range(first, iteration + 1) if ring[i & mask] is not None]
        pending = [ring[i & mask] for i in present]
        numeric = {name: value for name, value in self._latest.items() if is_number(value)}
        lr_is_number = lr is not None and is_number(lr)
        # "lr" cannot be a named value's name (it is step()'s own argument), so it can ride along.
        new_losses, numbers = materialise_named(pending, {**numeric, "lr": lr} if lr_is_number else numeric)
        host_lr = numbers.pop("lr", None)
        self._losses.extend(new_losses)
        if self.history is not None and new_losses:
            self.history.add(present, new_losses)
        if self._unchecked is not None:
            self._unchecked.extend(new_losses)
        self._materialised_iter = iteration
        # Keep the floats, so that a value not passed again costs no second sync.
        self._latest.update(numbers)
        val_loss = self._latest.get("val_loss")
        if isinstance(val_loss, float):
            self._update_best(val_loss)
        self._snapshot = Values(
            iteration=iteration,
            loss=self._losses[-1] if self._losses else None,
            smoothed_loss=self.smoothed_loss,
            lr=host_lr if isinstance(host_lr, float) else None,
            metrics=dict(self._latest),
            best_val_loss=self._best_val_loss,
        )
        return self._snapshot

    @property
    def smoothed_loss(self) -> float | None:
        """The mean of the last materialised losses (no sync: what the last boundary read)."""
        return fmean(self._losses) if self._losses else None

    def take_unchecked_losses(self) -> list[float]:
        """The losses materialised since the last call (with ``keep_unchecked``), oldest first."""
        if self._unchecked is None:
            return []
        losses, self._unchecked = self._unchecked, []
        return losses
