"""ProgressTracker: counts steps and, at the steps where something is due, hands over to
its BoundaryWork (trainprogress.boundary_work), which drives the parts and hands the
Reports to the sinks. The run's size is one RunSize (trainprogress.run_size); the
arguments are checked and resolved in trainprogress.arguments and the parts built in
trainprogress.tracker_parts: ``StepClock`` (trainprogress.timing) times groups of steps,
``Pace`` (trainprogress.pace) turns them into speed and ETA, ``ValueBuffer``
(trainprogress.value_buffer) keeps losses and values and materialises them, ``ReportBuilder`` and
``Sections`` (trainprogress.builder) make Reports, ``BoundaryScheduler``
(trainprogress.boundary_scheduler) says when reports, checks and exchanges are due,
``AnomalyChecks`` (trainprogress.anomaly.checks) runs the detectors, ``RanksAtBoundary``
(trainprogress.ranks) does the cross-rank exchange, and ``Pauses`` (trainprogress.pauses)
keeps the marked pauses and the loop's phase.

The run is sized in ``total_iters`` optimizer steps, or else (exactly one way): ``epochs=`` with ``iters_per_epoch=`` or ``loader=``
(a loader with len()); ``total_tokens=``, each ``step(tokens=n)`` passing the step's
token count as an int (percent, boundaries and ETA in tokens); or ``time_budget_s=``
(percent is wall time over the budget; ``should_stop`` turns True once it is used).
``set_total(n)`` changes the size mid-run; ``wrap(loader, epochs=)`` yields the
batches of every epoch (trainprogress.progress_units).

Wrap time that is not training (eval, checkpoint, sampling) in ``with
tracker.pause("eval"):`` so it stays out of the speed and enters the ETA only at the
rate it recurs (see ``trainprogress.eta``).

Speed (iter/s, ms/iter, and tokens/s in a run sized in tokens) is steps (tokens) over
training time across at least the last ``window`` steps, in whole stretches between the
reads of the loop's values (reports, checks, exchanges), so that the wait for a device
that runs ahead of the host counts as the training it is (``trainprogress.speed``); the
ETA uses the window's step times. ``window`` defaults to 2% of the run, at least 10 and
at most 2,000 steps.
The smoothed loss is the mean of the last losses, as many as there are steps between two
regular reports and at most ``loss_window`` (default 100): it averages out the noise of
the latest steps, and on a falling loss it lags by at most half a report interval's
decline (a fixed 100 steps would be a quarter of a 400-step run).

Extra report lines: ``set_section(title, source, into=...)``.

MFU (with ``flops_per_iter``) is measured against the peak of the device the run trains
on: ``peak_flops`` when given, else that of ``device`` ("cuda:0", "cpu", a
torch.device) when given, else that of the first loss tensor, settled at the first report.

Only the master (rank 0) renders: other ranks get no sinks, never build reports, and
``step`` returns None there.

Several processes: with ``cross_rank=True`` (or a ``CrossRankConfig``) every rank joins
one small exchange at each scheduled boundary, and the report carries every rank's data
and compute time, memory and host, the loss averaged over ranks, and straggler warnings
(``trainprogress.ranks``); mark data waiting with ``with tracker.data_wait():``.
``watchdog=True`` (or a ``WatchdogConfig``) reports a stall when steps stop coming
(``trainprogress.watchdog``).

Cost: ``cost=True`` (or a ``CostConfig`` with prices) adds device-hours, the energy the
GPU's and CPU's own counters measured, money and CO2, so far and at the end, to every
report (``trainprogress.cost``); with ``cross_rank`` every rank's energy is summed.

Where the run will end: each report from about 10% on carries a forecast of the final
loss with a band (``trainprogress.forecast``); ``lr_schedule`` (step -> learning rate,
1-based steps) makes it much sharper. With ``target_loss``, from half-way on, an anomaly
line says so when the whole band lies above the target (``trainprogress.forecaster``).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

from .arguments import LOSS_TYPES, TrackerArguments, check_loss_and_lr, check_named_numbers, resolve_arguments
from .report_schedule import ReportSchedule
from .builder import SectionSource
from .pauses import DataWaitTimer, Pauses
from .report import Report
from .sinks.base import Sink
from .tracker_parts import build_boundary_work, start_sinks
from .watchdog import start_watchdog

logger = logging.getLogger(__name__)


class ProgressTracker:
    """Tracks a training run of ``total_iters`` optimizer steps and reports every
    ``interval_percent`` of it. Call ``step(loss=..., lr=..., **named_values)`` after each
    completed optimizer step; it returns the Report at a boundary, else None. Between
    boundaries a step only stores references (and now and then reads the clock): a loss
    tensor is never synchronised per step. At a boundary the recent losses and any tensor
    values are copied to the host together, in one device sync.

    How to size the run, pause it, read its speed and smoothed loss, MFU, several ranks,
    cost and the loss forecast: see the module doc (trainprogress.tracker).
    """

    # Slots, not a __dict__: attribute access in step() stays a fixed-offset load.
    __slots__ = (
        "_buffer", "_closed", "_iter", "_loss_ring", "_lr", "_next_due", "_pauses", "_size", "_warned_after_close",
        "_watchdog", "_work", "interval_percent", "is_master", "start_iter",
    )

    def __init__(
        self,
        total_iters: int | None = None,
        *,  # the run's size, one way, and where it resumes
        epochs: int | None = None, iters_per_epoch: int | None = None, loader: Any = None,
        total_tokens: int | None = None, time_budget_s: float | None = None, start_iter: int = 0,
        # what is reported, where, and how often
        interval_percent: float = 1.0, is_master: bool | None = None, sinks: Iterable[Sink] | None = None,
        run_config: Mapping[str, object] | None = None, window: int | None = None, loss_window: int = 100,
        # tokens, FLOP and the device's peak (MFU)
        tokens_per_iter: int | None = None, flops_per_iter: float | None = None, peak_flops: float | None = None,
        precision: str | None = None, device: Any = None, clock: Callable[[], float] = time.perf_counter,
        # options
        anomaly: Any = None, cross_rank: Any = False, watchdog: Any = False, cost: Any = False,
        lr_schedule: Callable[[int], float] | None = None, target_loss: float | None = None,
    ) -> None:
        given = TrackerArguments(
            total_iters, epochs, iters_per_epoch, loader, total_tokens, time_budget_s, start_iter, interval_percent,
            tokens_per_iter, flops_per_iter, peak_flops, is_master, sinks, clock, precision, window, loss_window,
            anomaly, run_config, cross_rank, watchdog, device, cost, lr_schedule, target_loss,
        )
        settings = resolve_arguments(given)
        self.start_iter, self.interval_percent, self.is_master = start_iter, interval_percent, settings.is_master
        self._size = settings.size
        self._pauses = Pauses(clock)
        self._work = build_boundary_work(given, settings, self._pauses)
        # The hot path touches only these.
        self._iter = start_iter
        self._buffer = self._work.buffer
        self._loss_ring = self._buffer.loss_ring
        self._lr: Any = None
        self._closed = False
        self._warned_after_close = False
        self._next_due = self._work.next_due()
        start_sinks(given, self._work)
        self._watchdog = start_watchdog(settings.watchdog, lambda: self._iter, self._pauses.current_phase,
                                        self._work.sinks.event if self.is_master else None)

    @property
    def schedule(self) -> ReportSchedule:
        """The regular report boundaries (every ``interval_percent`` of the run)."""
        return self._work.boundaries.schedule

    @property
    def tokens_per_iter(self) -> int | None:
        """Tokens per optimizer step, as given."""
        return self._work.builder.tokens_per_iter

    @property
    def flops_per_iter(self) -> float | None:
        """FLOP per optimizer step, as given."""
        return self._work.builder.flops_per_iter

    @property
    def total_iters(self) -> int:
        """The run's optimizer steps (2**62 for a run sized in tokens or seconds)."""
        return self._size.total_iters

    # ------------------------------------------------------------------ hot path
    def step(self, loss: Any = None, lr: Any = None, **values: Any) -> Report | None:
        """Record one completed optimizer step. ``loss`` and any named ``values`` may be
        floats or one-element tensors (kept by reference, read at the next report). Returns
        the Report when one is due at this step, else None. A ``loss`` of another type
        raises TypeError at the first step and at every step where the clock is read (every
        step of a loop slower than 1 ms per step): a type check, never a device sync. After
        ``close()`` a step is ignored, with one warning."""
        it = self._iter + 1
        self._iter = it
        self._loss_ring[it & 127] = loss  # LOSS_RING - 1
        self._lr = lr
        if values:
            self._record(values)
        if it >= self._next_due:
            return self._on_due()
        return None

    def _on_due(self) -> Report | None:
        """A step where something is due: its loss and lr are type-checked here, off the fastest
        path, and the work is BoundaryWork's (trainprogress.boundary_work)."""
        if self._closed:
            return self._step_after_close()
        loss = self._loss_ring[self._iter & 127]
        if type(loss) not in LOSS_TYPES or type(self._lr) not in LOSS_TYPES:  # off the fastest path, where the clock is read
            try:
                check_loss_and_lr(loss, self._lr)
            except TypeError:
                self._loss_ring[self._iter & 127] = None
                self._iter -= 1  # the rejected step does not count
                raise
        report, self._next_due = self._work.due(self._iter, self._lr)
        return report

    def _step_after_close(self) -> None:
        self._iter -= 1  # the step is ignored: the run is over
        if not self._warned_after_close and self.is_master:
            self._warned_after_close = True
            logger.warning("trainprogress: step() called after close() is ignored; the run's summary is already "
                           "written. Call close() once, after the last step (or use the tracker as a context manager).")

    def _record(self, values: dict[str, Any]) -> None:
        """Named values of a step; in a run sized in tokens, ``tokens`` advances the progress.
        A value of the wrong type raises TypeError, and the rejected step does not count."""
        try:
            if "tokens" in values and self._size.in_tokens:
                if self._size.add_step_tokens(self._iter, values.pop("tokens")):
                    self._next_due = self._iter  # a token boundary is reached
            check_named_numbers(values)
        except TypeError:
            self._iter -= 1
            raise
        if values:
            self._buffer.record(values)

    # ------------------------------------------------------------------ public, off the hot path
    def set_section(self, title: str, source: SectionSource | None, into: str | None = None) -> None:
        """Add (or replace, or with None remove) a block of extra report lines: ``source``, a
        mapping of label to value or a callable returning one, called only at a report. With
        ``into="metrics"``, ``"time"`` or ``"memory"`` the lines end that built-in block; with
        None they are a block titled ``title`` after the built-in ones, in order of first set."""
        self._work.builder.sections.set(title, source, into)

    def event(self, kind: str, **data: object) -> None:
        """Tell the sinks that something happened (a phase change, a connection growth, ...);
        log sinks record it with the current iteration."""
        self._work.event(self._iter, kind, data)

    def begin_pause(self, name: str = "pause") -> None:
        """Start time that is not training (eval, checkpoint, sampling) from a begin hook;
        ``end_pause()`` ends it. Pauses may nest: only the outermost counts, under its name."""
        self._pauses.begin(name)

    def end_pause(self) -> None:
        """End the pause that ``begin_pause`` started. The pause is left out of the speed,
        and recurring pauses enter the ETA at the rate they occur."""
        ended = self._pauses.end()
        if ended is not None:
            self._work.pause_ended(self._iter, *ended)

    @property
    def paused(self) -> bool:
        """True between ``begin_pause`` and its ``end_pause`` (or inside ``with pause()``)."""
        return self._pauses.active

    @contextmanager
    def pause(self, name: str = "pause") -> Iterator[None]:
        """Mark time that is not training (eval, checkpoint, sampling): ``with
        tracker.pause("eval"): evaluate()``. The same as ``begin_pause(name)`` and
        ``end_pause()`` around the block."""
        self.begin_pause(name)
        try:
            yield
        finally:
            self.end_pause()

    def data_wait(self) -> DataWaitTimer:
        """``with tracker.data_wait():`` around the wait for the next batch: data time in the
        cross-rank figures (the rest of a step is compute), and the phase a stall names; two
        clock reads, no sync. ``tracker.data_wait().add(seconds)`` adds a wait measured elsewhere."""
        return self._pauses.data_wait

    @property
    def iteration(self) -> int:
        """Optimizer steps completed, resumed ones included."""
        return self._iter

    @property
    def should_stop(self) -> bool:
        """True once the run's whole size (steps, ``total_tokens`` or ``time_budget_s``) is done
        as of the last step: the loop's cue to end (``while not tracker.should_stop:``). Reads
        no clock: a time budget is checked when step() reads it."""
        return self._size.complete(self._iter)

    def set_total(self, total: int) -> None:
        """Change the run's size mid-run, in its unit (optimizer steps, tokens or seconds of
        budget): percent, the report boundaries and the ETA all follow. Boundaries already
        passed are not reported again."""
        if self._size.set_total(total, self._iter):  # the run's one size; in steps, the boundaries follow
            self._next_due = self._work.resize(self._iter, self.interval_percent)

    def wrap(self, loader: Iterable[Any], epochs: int | None = None) -> Iterator[Any]:
        """Yield the batches of ``loader`` over ``epochs`` passes (the tracker's ``epochs``
        when not given, else 1), tqdm-style: ``for batch in tracker.wrap(loader, epochs=3):``;
        the loop still calls ``tracker.step(loss=...)`` once per optimizer step. With ``epochs``
        given, the run is sized ``epochs x len(loader)`` steps (without len() it raises)."""
        if epochs is not None:
            self.set_total(self._size.epochs_of(epochs, loader))
        for _ in range(epochs or self._size.epochs or 1):
            yield from loader

    @property
    def eta_seconds(self) -> float | None:
        """Estimated wall seconds until ``total_iters`` steps are done, as of now; None until
        it can be estimated."""
        return self._work.eta_s(self._iter, self._pauses.active)

    @property
    def iters_per_s(self) -> float | None:
        """Training speed in optimizer steps per second over the recent speed window (pauses
        excluded), as the next report would show it; None before any step was timed. Reads
        no device value: no sync."""
        return self._work.iters_per_s()

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation as a fraction of the peak, at ``iters_per_s``; None
        without flops_per_iter, without a known peak, on non-master ranks, or before any
        step was timed. No sync."""
        return self._work.builder.mfu(self.iters_per_s)

    def close(self, error: BaseException | None = None, **values: Any) -> Report | None:
        """End the run: send the final summary (on the master) and close the sinks; later calls
        do nothing and return None. ``error``, when the run ends by an exception, goes to the
        sinks as a "crash" event first and makes the summary's ``outcome`` CRASHED (else
        COMPLETED when the whole size is done, STOPPED when not). Named ``values`` measured
        after the last step (``close(val_loss=v)``) go into the final report as ``step()``'s would."""
        if self._closed:
            return None
        if values:
            check_named_numbers(values, "close")
            self._buffer.record(values)
        self._closed = True
        self._next_due = 0  # every later step() goes to _on_due, which ignores it
        if self._watchdog is not None:
            self._watchdog.close()
        return self._work.finish(self._iter, self._lr, error)

    def __enter__(self) -> "ProgressTracker":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(error=exc if isinstance(exc, Exception) else None)
