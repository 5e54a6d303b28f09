"""ProgressTracker: counts steps and, at the boundaries its scheduler sets, orchestrates its
parts (the step clock and the pace, the value buffer, the anomaly checks, the cross-rank
exchange, the report builder), then hands the Reports to the sinks."""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator, Mapping

from .arguments import (
    LOSS_TYPES, check_clock, check_device, check_int, check_loss_and_lr, check_named_numbers, check_options,
    check_run_arguments, check_sinks, detect_is_master, resolve_option,
)
from .anomaly.config import AnomalyConfig
from .anomaly.dense import DenseReports
from .report_schedule import ReportSchedule, parse_interval
from .value_buffer import ValueBuffer
from .builder import ReportBuilder, Sections, SectionSource
from .anomaly.checks import AnomalyChecks
from .cost import make_cost_meter
from .eta import EtaEstimator
from .flops import DevicePeak
from .forecaster import Forecaster
from .memory import probe_memory
from .pace import Pace
from .pauses import DataWaitTimer, Pauses
from .progress_units import SECONDS, TOKENS, epoch_length, size_run
from .ranks import CrossRankConfig, make_cross_rank
from .report import ANOMALY, COMPLETED, CRASHED, FINAL, SCHEDULED, STOPPED, Event, MemoryStats, Report, RunInfo
from .boundary_scheduler import BoundaryScheduler
from .sinks.base import Sink, SinkGroup
from .speed import SpeedWindow
from .timing import MAX_PENDING_GROUPS, StepClock
from .watchdog import WatchdogConfig, start_watchdog

logger = logging.getLogger(__name__)

# The iteration count a run sized in tokens or seconds is given in place of a total: no
# iteration-based boundary is ever reached, so its boundaries come from ProgressUnits alone.
UNCOUNTED_ITERS = 2**62

# Seconds between live ticks for sinks that want them (the bar): often enough to look live,
# rarely enough that the bar costs nothing measurable.
TICK_INTERVAL_S = 0.5


class ProgressTracker:
    """Tracks a training run of ``total_iters`` optimizer steps and reports every
    ``interval_percent`` of it.

    Call ``step(loss=..., lr=..., **named_values)`` after each completed optimizer step; it
    returns the Report at a boundary, else None. Between boundaries a step only stores
    references (and now and then reads the clock): a loss tensor is never synchronised per
    step. At a boundary the recent losses and any tensor values are copied to the host
    together, in one device sync.

    Sized otherwise (exactly one way): ``epochs=`` with ``iters_per_epoch=`` or ``loader=``
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
    ``clock`` (seconds; default time.perf_counter) need not be monotonic: steps and pauses
    timed across a clock set back count as 0 s, and no duration or ETA goes below 0.

    Extra report lines: ``set_section(title, source, into=...)``.

    MFU (with ``flops_per_iter``) is measured against the peak of the device the run trains
    on: ``peak_flops`` when given, else that of ``device`` ("cuda:0", "cpu", a
    torch.device) when given, else that of the first loss tensor, settled at the first report.

    Only the master (rank 0) renders: other ranks get no sinks, never build reports, and
    ``step`` returns None there.

    The parts: ``StepClock`` (trainprogress.timing) times groups of steps, and ``Pace``
    (trainprogress.pace) turns them into speed and ETA; ``ValueBuffer``
    (trainprogress.buffer) keeps losses and values and materialises them; ``ReportBuilder``
    and ``Sections`` (trainprogress.builder) make Reports; ``BoundaryScheduler``
    (trainprogress.scheduler) says when reports, checks and exchanges are due;
    ``AnomalyChecks`` (trainprogress.checks) runs the detectors and says what changed;
    ``Pauses`` (trainprogress.pauses) keeps the marked pauses and the loop's phase; its
    arguments are checked in trainprogress.arguments.

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

    # Slots, not a __dict__: more attributes than CPython's shared-key dicts hold would make
    # every attribute access in step() a slower hashed lookup.
    __slots__ = (
        "_anomalies", "_boundaries", "_buffer", "_builder", "_checks", "_closed", "_cost", "_dense", "_forecaster",
        "_iter", "_last_report_iter", "_loss_ring", "_lr", "_next_due", "_next_tick", "_overrun_warned", "_pace",
        "_pauses", "_peak", "_ranks", "_sections", "_sinks",
        "_timer", "_units", "_warned_after_close", "_watchdog", "interval_percent", "is_master", "start_iter",
        "total_iters",
    )

    def __init__(
        self,
        total_iters: int | None = None,
        *,
        epochs: int | None = None,
        iters_per_epoch: int | None = None,
        loader: Any = None,
        total_tokens: int | None = None,
        time_budget_s: float | None = None,
        start_iter: int = 0,
        interval_percent: float = 1.0,
        tokens_per_iter: int | None = None,
        flops_per_iter: float | None = None,
        peak_flops: float | None = None,
        is_master: bool | None = None,
        sinks: Iterable[Sink] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        precision: str | None = None,
        window: int | None = None,
        loss_window: int = 100,
        anomaly: Any = None,
        run_config: Mapping[str, object] | None = None,
        cross_rank: Any = False,
        watchdog: Any = False,
        device: Any = None,
        cost: Any = False,
        lr_schedule: Callable[[int], float] | None = None,
        target_loss: float | None = None,
    ) -> None:
        anomaly = resolve_option("anomaly", anomaly, AnomalyConfig)
        cross_rank = resolve_option("cross_rank", cross_rank, CrossRankConfig)
        watchdog = resolve_option("watchdog", watchdog, WatchdogConfig)
        sinks = check_sinks(sinks)
        check_clock(clock)
        check_device(device)
        check_options(run_config=run_config, peak_flops=peak_flops, precision=precision)
        total_iters, self._units, epoch_len = size_run(
            total_iters, epochs=epochs, iters_per_epoch=iters_per_epoch, loader=loader,
            total_tokens=total_tokens, time_budget_s=time_budget_s, interval_percent=interval_percent)
        if self._units is not None:
            if cross_rank:
                raise ValueError(f"cross_rank exchanges at step boundaries, but this run is sized in {self._units.unit}; "
                                 "size it with total_iters= or epochs=, or pass cross_rank=False")
            total_iters = UNCOUNTED_ITERS
            window = 100 if window is None else window
        window = check_run_arguments(total_iters, start_iter, tokens_per_iter=tokens_per_iter, flops_per_iter=flops_per_iter,
                                     peak_flops=peak_flops, loss_window=loss_window, window=window)
        self.total_iters, self.start_iter = total_iters, start_iter
        parse_interval(interval_percent)
        self.interval_percent = interval_percent
        self.is_master = detect_is_master() if is_master is None else bool(is_master)
        self._peak: DevicePeak | None = None
        if self.is_master and flops_per_iter is not None:
            self._peak = DevicePeak(precision, peak_flops, device)
        peak = self._peak.peak if self._peak is not None else None  # None until settled

        self._sinks = SinkGroup(self._build_sinks(sinks) if self.is_master else [])
        self._checks: AnomalyChecks | None = None
        anomaly_config = anomaly or AnomalyConfig()  # the dense-report rules also apply to stragglers
        if anomaly is not None and self.is_master:
            # The run's length sizes the memory warm-up allowance; a run sized in tokens or
            # seconds has none in steps.
            self._checks = AnomalyChecks(anomaly_config, None if self._units is not None else total_iters)
        self._anomalies: tuple = ()
        self._dense = DenseReports(anomaly_config)

        self._forecaster = Forecaster(total_iters, lr_schedule, target_loss) if self.is_master and self._units is None else None
        self._buffer = ValueBuffer(start_iter, loss_window, keep_unchecked=self._checks is not None, history=self._forecaster)
        if self._units is None:
            self._buffer.fit_loss_window(total_iters * interval_percent / 100)
        self._last_report_iter = start_iter  # in a run sized in tokens or seconds, to size the loss window
        self._sections = Sections()
        self._builder = ReportBuilder(total_iters, start_iter, tokens_per_iter=tokens_per_iter,
                                      flops_per_iter=flops_per_iter, peak=peak, sections=self._sections,
                                      units=self._units, epochs=epochs, iters_per_epoch=epoch_len,
                                      forecaster=self._forecaster)
        self._pauses = Pauses(clock)
        self._ranks = make_cross_rank(cross_rank, clock, start_iter)
        # Every rank meters when ranks exchange (rank 0 sums them); else only the master.
        self._cost = make_cost_meter(cost, clock, device) if self.is_master or self._ranks is not None else None
        if self._ranks is not None and self.is_master:
            self._sections.set("🛰️ Ranks", lambda: self._ranks.figures.section_lines() if self._ranks.figures else {}, None)

        # The hot path touches only these.
        self._iter = start_iter
        self._loss_ring = self._buffer.loss_ring
        self._lr: Any = None

        self._overrun_warned = False
        self._closed = False
        self._warned_after_close = False
        start_wall = time.time()
        self._timer = StepClock(clock, start_iter)
        self._pace = Pace(self._timer, EtaEstimator(total_iters, window), SpeedWindow(window), self._units)
        self._next_tick = self._timer.t_start + TICK_INTERVAL_S if self._sinks.wants_ticks else math.inf
        self._boundaries = BoundaryScheduler(total_iters, interval_percent, start_iter, reports=self.is_master,
                                             checks=self._checks.monitor.config if self._checks else None,
                                             exchanges=self._ranks is not None)
        self._next_due = self._boundaries.next_due(self._timer.next_sample)
        self._sinks.start(RunInfo(
            total_iters=0 if self._units is not None else total_iters, start_iter=start_iter, interval_percent=interval_percent,
            tokens_per_iter=tokens_per_iter, flops_per_iter=flops_per_iter,
            peak_flops=peak.flops_per_s if peak else None,
            peak_flops_source=peak.source if peak else None,
            config=dict(run_config or {}), wall_time=start_wall,
        ))
        self._watchdog = start_watchdog(watchdog, lambda: self._iter, self._pauses.current_phase,
                                        self._sinks.event if self.is_master else None)

    @staticmethod
    def _build_sinks(sinks: Iterable[Sink] | None) -> list[Sink]:
        if sinks is None:
            from .sinks.notebook import default_sink

            return [default_sink()]
        return list(sinks)

    @property
    def schedule(self) -> ReportSchedule:
        """The regular report boundaries (every ``interval_percent`` of the run)."""
        return self._boundaries.schedule

    @property
    def tokens_per_iter(self) -> int | None:
        """Tokens per optimizer step, as given."""
        return self._builder.tokens_per_iter

    @property
    def flops_per_iter(self) -> float | None:
        """FLOP per optimizer step, as given."""
        return self._builder.flops_per_iter

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

    # ------------------------------------------------------------------ boundaries
    def _on_due(self) -> Report | None:
        """A boundary of any kind: the step clock's group closes; an anomaly check, a report
        and a live tick run when due. A check and a report at the same step share one
        materialisation and one memory probe."""
        if self._closed:
            return self._step_after_close()
        loss = self._loss_ring[self._iter & 127]
        if type(loss) not in LOSS_TYPES or type(self._lr) not in LOSS_TYPES:  # here, off the fastest path, where the clock is read
            try:
                check_loss_and_lr(loss, self._lr)
            except TypeError:
                self._loss_ring[self._iter & 127] = None
                self._iter -= 1  # the rejected step does not count
                raise
        it = self._iter
        now = self._timer.sample(it)
        units = self._units
        if units is not None:
            if units.unit == SECONDS:
                units.done = self._timer.elapsed_s(now)
            if units.due and self.is_master:
                self._boundaries.next_report = it
        boundaries = self._boundaries
        reporting_from = self._read_values(now) if boundaries.values_due(it, now) else now
        if self._timer.backlog >= MAX_PENDING_GROUPS:
            self._drain_step_times()
        if it > self.total_iters and not self._overrun_warned:
            self._overrun_warned = True
            logger.warning(
                "trainprogress: step() called past total_iters=%d; percent now exceeds 100. "
                "Call step() once per optimizer step and pass the real total.", self.total_iters,
            )
        if it >= boundaries.next_sync:
            self._sync_ranks()
        checked = boundaries.check_due(it, now)
        memory = probe_memory() if checked else None
        report = self._check_anomalies(memory) if checked else None
        if report is None and it >= boundaries.next_report:
            report = self._emit(SCHEDULED, memory)
        ticked = report is None and now >= self._next_tick
        if ticked:
            self._send_tick()
        self._advance()
        if report is not None or ticked or checked:
            if self._sinks.wants_ticks:
                self._next_tick = now + TICK_INTERVAL_S
            # The time spent reporting is the tracker's, not the next step's: keep it out of
            # the step times, and let the ETA count it as the recurring cost it is.
            cost = self._timer.now() - reporting_from
            self._timer.exclude(cost)
            self._pace.eta.add_pause("report", cost, it)
        return report

    def _read_values(self, sampled_at: float) -> float:
        """Copy the loop's values to the host, once for everything due at this boundary (the
        exchange, the check and the report then share the snapshot), and return the clock
        after. The wait since ``sampled_at`` is the device finishing the steps queued since
        the last read (a device that runs ahead of the host): training time, not the
        tracker's, so it completes those steps' stretch of the speed window and enters the
        ETA, and the step clock leaves it out of the next group."""
        self._buffer.materialise(self._iter, self._lr)
        now = self._timer.now()
        waited = now - sampled_at
        self._timer.exclude(waited)
        self._drain_step_times()
        self._pace.values_read(waited, self._iter)
        return now

    def _step_after_close(self) -> None:
        self._iter -= 1  # the step is ignored: the run is over
        if not self._warned_after_close and self.is_master:
            self._warned_after_close = True
            logger.warning("trainprogress: step() called after close() is ignored; the run's summary is already "
                           "written. Call close() once, after the last step (or use the tracker as a context manager).")

    def _advance(self) -> None:
        if self._boundaries.advance(self._iter, self._dense.wanted) and self._units is not None:
            self._units.passed()
            # Reports come every so many tokens or seconds: smooth over the steps the last interval took.
            self._buffer.fit_loss_window(self._iter - self._last_report_iter)
            self._last_report_iter = self._iter
        self._next_due = self._boundaries.next_due(self._timer.next_sample)

    def _drain_step_times(self) -> None:
        """Feed the step clock's timed groups to the ETA and the speed window (and, as
        per-step means, to the anomaly monitor's next check)."""
        groups = self._pace.drain()
        if groups and self._checks is not None:
            self._checks.add_step_times(groups)

    def _check_anomalies(self, memory: tuple[MemoryStats, ...]) -> Report | None:
        """Run the detectors; tell the sinks what was raised or cleared, and return an
        anomaly report when something new was raised."""
        self._drain_step_times()
        values = self._buffer.materialise(self._iter, self._lr)
        found = self._checks.run(self._iter, self._buffer.take_unchecked_losses(), values.metrics.get("grad_norm"),
                                 memory[0].used_bytes if memory else None, self._anomalies,
                                 self._ranks.anomalies if self._ranks is not None else ())
        worse = self._take_anomalies(found.anomalies, found.events)
        return self._emit(ANOMALY, memory) if found.raised or worse else None

    def _take_anomalies(self, anomalies: tuple, events: list[tuple[str, dict[str, object]]]) -> bool:
        """Keep the anomalies active now and send the events of what changed; switch between
        the dense and the regular report schedule, keeping this boundary, when a new or
        worse anomaly asks for dense reports or none does any more. Returns whether a
        steady anomaly got worse."""
        dense = self._dense.wanted
        self._anomalies = anomalies
        worse = self._dense.judge(anomalies)
        for kind, data in events:
            self._sinks.event(self._event(kind, **data))
        if self._dense.wanted != dense:
            self._boundaries.replan(self._iter, not dense)
        return worse

    def _sync_ranks(self) -> None:
        """Every rank, at each scheduled boundary: the cross-rank exchange (trainprogress.ranks).
        On rank 0 a straggler joins the anomalies; its naming or clearing is an event."""
        self._drain_step_times()
        values = self._buffer.materialise(self._iter, self._lr)
        pauses = self._pauses
        phase, pauses.phase = pauses.phase, "collective"
        energy = self._cost.read() if self._cost is not None else None
        events = self._ranks.exchange(self._iter, self._timer.paused_s, pauses.data_wait.total_s,
                                      values.loss, values.smoothed_loss, energy)
        pauses.phase = phase
        figures = self._ranks.figures
        if self._cost is not None and figures is not None and figures.iteration == self._iter:  # this exchange's
            self._cost.merge_ranks(figures.energy_j)
        self._take_anomalies(tuple(a for a in self._anomalies if a.kind != "straggler") + self._ranks.anomalies, events)

    def _emit(self, kind: str, memory: tuple[MemoryStats, ...] | None = None, **end: str | None) -> Report:
        """Build a Report of ``kind`` (with ``memory`` when already probed at this step) and
        send it to the sinks. ``end``: the final report's ``outcome`` and ``error``."""
        self._drain_step_times()
        values = self._buffer.materialise(self._iter, self._lr)
        now = self._timer.now()
        iters_per_s = self._pace.run_iters_per_s(self._iter - self.start_iter, now) if kind == FINAL else self._pace.iters_per_s
        if self._peak is not None:
            self._builder.peak = self._peak.settle(self._loss_ring)
            if (self._builder.mfu(iters_per_s) or 0.0) > 1.0:
                self._builder.peak = self._peak.exceeded()
        # Losses are the mean over ranks when this iteration's cross-rank figures are in.
        figures = self._ranks.figures if self._ranks is not None else None
        if figures is not None and figures.iteration == self._iter:
            values = replace(values, loss=figures.global_loss, smoothed_loss=figures.global_smoothed_loss)
        else:
            figures = None
        elapsed_s, eta_s = self._timer.elapsed_s(now), self._pace.remaining_s(self._iter, now)
        run_cost = None
        if self._cost is not None:
            self._cost.read()
            run_cost = self._cost.figures(elapsed_s, eta_s, final=kind == FINAL)
        report = self._builder.report(
            kind, values,
            ranks=figures.scalars() if figures else None,
            elapsed_s=elapsed_s,
            paused_s=self._timer.paused_s,
            eta_s=eta_s,
            iters_per_s=iters_per_s,
            memory=probe_memory() if memory is None else memory,
            anomalies=self._dense.shown(self._anomalies),
            units_tokens_per_s=self._pace.tokens_per_s(),
            run_cost=run_cost,
            **end,
        )
        if kind != FINAL:  # it counts for the dense schedule; the next boundary follows whether it is still on
            self._dense.reported()
        self._sinks.report(report)
        if self._forecaster is not None and kind != FINAL:
            for event_kind, data in self._forecaster.warning_events(report.percent, self._forecaster.forecast(self._iter)):
                self._sinks.event(self._event(event_kind, **data))
        return report

    def _send_tick(self) -> None:
        self._drain_step_times()
        self._sinks.tick(self._builder.tick(
            self._iter, eta_s=self._pace.remaining_s(self._iter, self._timer.now()), iters_per_s=self._pace.iters_per_s,
            smoothed_loss=self._buffer.smoothed_loss,
        ))

    def _record(self, values: dict[str, Any]) -> None:
        """Named values of a step; in a run sized in tokens, ``tokens`` advances the progress."""
        units = self._units
        if units is not None and units.unit == TOKENS and "tokens" in values:
            tokens = values.pop("tokens")
            if type(tokens) is not int or tokens < 0:
                self._iter -= 1  # the rejected step does not count
                raise TypeError(f"step(tokens=...) takes the step's token count as an int >= 0, got {tokens!r}; "
                                "pass e.g. tokens=x.numel() (an int, read without a device sync)")
            units.add_tokens(self._iter, tokens)
            if units.due:
                self._next_due = self._iter
            if not values:
                return
        try:
            check_named_numbers(values)
        except TypeError:
            self._iter -= 1  # the rejected step does not count
            raise
        self._buffer.record(values)

    def _event(self, kind: str, **data: object) -> Event:
        return Event(kind=kind, iteration=self._iter, wall_time=time.time(), data=data)

    # ------------------------------------------------------------------ public, off the hot path
    def set_section(self, title: str, source: SectionSource | None, into: str | None = None) -> None:
        """Add (or replace, or with None remove) a block of extra report lines. ``source`` is
        a mapping of label to value, or a callable returning one, called only when a report
        is built. ``into="metrics"``, ``"time"`` or ``"memory"`` adds the lines at the end of
        that built-in block (``title`` then only names the section); with ``into=None`` the
        section is a block of its own, titled ``title``, after the built-in ones, in the
        order the sections were first set."""
        self._sections.set(title, source, into)

    def event(self, kind: str, **data: object) -> None:
        """Tell the sinks that something happened (a phase change, a connection growth, ...);
        log sinks record it with the current iteration."""
        self._sinks.event(self._event(kind, **data))

    def begin_pause(self, name: str = "pause") -> None:
        """Start time that is not training (eval, checkpoint, sampling), for frameworks that
        give begin and end hooks; ``end_pause()`` ends it. Pauses may nest: only the
        outermost counts, under its name."""
        self._pauses.begin(name)

    def end_pause(self) -> None:
        """End the pause that ``begin_pause`` started. The pause is left out of the speed,
        and recurring pauses enter the ETA at the rate they occur."""
        ended = self._pauses.end()
        if ended is not None:
            name, duration = ended
            self._timer.exclude(duration, paused=True)
            self._pace.eta.add_pause(name, duration, self._iter)
            self._sinks.event(self._event("pause", name=name, duration_s=duration))

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
        """``with tracker.data_wait():`` around the wait for the next batch: that time counts as
        data time in the cross-rank figures (the rest of a step is compute) and names the phase
        a stall is reported in. Two clock reads, no device sync. A wait measured elsewhere can be
        added with ``tracker.data_wait().add(seconds)``."""
        return self._pauses.data_wait

    @property
    def iteration(self) -> int:
        """Optimizer steps completed, resumed ones included."""
        return self._iter

    @property
    def should_stop(self) -> bool:
        """True once the run's whole size is done as of the last step: every iteration, every
        token of ``total_tokens``, or all of ``time_budget_s`` (the loop's cue to end: ``while
        not tracker.should_stop:``). Reads no clock: a time budget is checked when step() reads it."""
        if self._units is not None:
            return self._units.complete
        return self._iter >= self.total_iters

    def set_total(self, total: int) -> None:
        """Change the run's size mid-run, in its unit (optimizer steps, tokens or seconds of
        budget): percent, the report boundaries and the ETA all follow. Boundaries already
        passed are not reported again."""
        if self._units is not None:
            if isinstance(total, bool) or not isinstance(total, (int, float)) or not 0 < total < math.inf:
                raise ValueError(f"set_total takes a positive number of {self._units.unit}, got {total!r}")
            self._units.set_total(total)
            return
        check_int("total", total, max(1, self._iter), "pass the optimizer steps of the whole run, at least those done")
        self.total_iters = self._pace.eta.total_iters = self._builder.total_iters = total
        self._buffer.fit_loss_window(total * self.interval_percent / 100)
        self._boundaries.resize(total, self._iter, self._dense.wanted)
        if self._checks is not None:
            self._checks.monitor.total_iters = total
        self._overrun_warned = False
        self._next_due = self._boundaries.next_due(self._timer.next_sample)

    def wrap(self, loader: Iterable[Any], epochs: int | None = None) -> Iterator[Any]:
        """Yield the batches of ``loader`` over ``epochs`` passes (the tracker's ``epochs``
        when not given, else 1), tqdm-style: ``for batch in tracker.wrap(loader, epochs=3):``.
        The loop still calls ``tracker.step(loss=...)`` once per optimizer step, which is how
        the loss reaches the report. With ``epochs`` given, the run is sized ``epochs x
        len(loader)`` steps (a loader without len() raises, naming the fix)."""
        if epochs is not None:
            if self._units is not None:
                raise ValueError(f"wrap(epochs=...) sizes the run in steps, but it is sized in {self._units.unit}; "
                                 "call wrap(loader) without epochs")
            epoch_len = epoch_length(epochs, None, loader)
            self._builder.epochs, self._builder.iters_per_epoch = epochs, epoch_len
            self.set_total(epochs * epoch_len)
        for _ in range(epochs or self._builder.epochs or 1):
            yield from loader

    @property
    def eta_seconds(self) -> float | None:
        """Estimated wall seconds until ``total_iters`` steps are done, as of now; None until
        it can be estimated."""
        self._drain_step_times()
        return self._pace.eta_s(self._iter, self._timer.now(), self._pauses.active)

    @property
    def iters_per_s(self) -> float | None:
        """Training speed in optimizer steps per second over the recent speed window (pauses
        excluded), as the next report would show it; None before any step was timed. Reads
        no device value: no sync."""
        self._drain_step_times()
        return self._pace.iters_per_s

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation as a fraction of the peak, at ``iters_per_s``; None
        without flops_per_iter, without a known peak, on non-master ranks, or before any
        step was timed. No sync."""
        return self._builder.mfu(self.iters_per_s)

    def close(self, error: BaseException | None = None, **values: Any) -> Report | None:
        """End the run: send the final summary (on the master) and close the sinks. Safe to
        call more than once; later calls do nothing and return None. ``error``, when the run
        ends by an exception, is sent to the sinks as a "crash" event first, and makes the
        summary's ``outcome`` CRASHED (else COMPLETED when every iteration is done, STOPPED
        when not). Named ``values`` measured after the last step (an evaluation at the last
        step: ``close(val_loss=v)``) go into the final report as ``step()``'s would."""
        if self._closed:
            return None
        if values:
            check_named_numbers(values, "close")
            self._buffer.record(values)
        self._closed = True
        self._next_due = 0  # every later step() goes to _on_due, which ignores it
        if self._watchdog is not None:
            self._watchdog.close()
        if self._ranks is not None:
            self._ranks.close()
        if not self.is_master:
            if self._cost is not None:
                self._cost.close()
            return None
        if error is not None:
            message = f"{type(error).__name__}: {error}"
            self._sinks.event(self._event("crash", error=message))
            report = self._emit(FINAL, outcome=CRASHED, error=message)
        else:
            if self._units is not None and self._units.unit == SECONDS:
                self._units.done = self._timer.elapsed_s(self._timer.now())
            report = self._emit(FINAL, outcome=COMPLETED if self.should_stop else STOPPED)
        if self._cost is not None:
            self._cost.close()
        self._sinks.close()
        return report

    def __enter__(self) -> "ProgressTracker":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(error=exc if isinstance(exc, Exception) else None)
