"""BoundaryWork: what the tracker does at a step where something is due (its hot path hands
over when a step reaches ``next_due``): the step clock's sample, one read of the loop's
values for everything due, the cross-rank exchange, the anomaly check, the report and the
live tick, then the next boundary. Also the run's final report. The parts it drives are
built by trainprogress.tracker_parts."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace

from .anomaly.checks import AnomalyChecks
from .anomaly.dense import DenseReports
from .boundary_scheduler import BoundaryScheduler
from .builder import ReportBuilder
from .cost import CostMeter
from .flops import DevicePeak
from .forecaster import Forecaster
from .memory import probe_memory
from .pace import Pace
from .ranks import RanksAtBoundary
from .report import ANOMALY, COMPLETED, CRASHED, FINAL, SCHEDULED, STOPPED, Event, MemoryStats, Report
from .run_size import RunSize
from .sinks.base import SinkGroup
from .timing import MAX_PENDING_GROUPS, StepClock
from .value_buffer import ValueBuffer

logger = logging.getLogger(__name__)

# Seconds between live ticks for sinks that want them (the bar): often enough to look live,
# rarely enough that the bar costs nothing measurable.
TICK_INTERVAL_S = 0.5


class BoundaryWork:
    """The work of the due steps of one run, on the parts the tracker was built with. Each
    entry point is given the step it works at (``iteration``, and the learning rate ``lr``
    of that step where it builds a report); ``due`` and ``resize`` return the next step at
    which the tracker must call ``due`` again."""

    def __init__(self, *, size: RunSize, is_master: bool, timer: StepClock, pace: Pace, buffer: ValueBuffer,
                 builder: ReportBuilder, boundaries: BoundaryScheduler, checks: AnomalyChecks | None,
                 dense: DenseReports, sinks: SinkGroup, peak: DevicePeak | None, ranks: RanksAtBoundary | None,
                 cost: CostMeter | None, forecaster: Forecaster | None) -> None:
        self.size, self.is_master = size, is_master
        self.timer, self.pace, self.buffer, self.builder = timer, pace, buffer, builder
        self.boundaries, self.checks, self.dense, self.sinks = boundaries, checks, dense, sinks
        self.peak, self.ranks, self.cost, self.forecaster = peak, ranks, cost, forecaster
        self.anomalies: tuple = ()
        self._iter = builder.start_iter
        self._lr = None
        self._last_report_iter = builder.start_iter  # in a run sized in tokens or seconds, to size the loss window
        self._overrun_warned = False
        self._next_tick = timer.t_start + TICK_INTERVAL_S if sinks.wants_ticks else math.inf

    def next_due(self) -> float:
        """The next step at which something is due (or the step clock samples)."""
        return self.boundaries.next_due(self.timer.next_sample)

    def due(self, iteration: int, lr: object) -> tuple[Report | None, float]:
        """A boundary of any kind at ``iteration``: the step clock's group closes; an anomaly
        check, a report and a live tick run when due. A check and a report at the same step
        share one materialisation and one memory probe. Returns the report (or None) and
        the next due step."""
        self._iter, self._lr = iteration, lr
        it = iteration
        now = self.timer.sample(it)
        units = self.size.units
        if units is not None:
            if self.size.in_seconds:
                units.done = self.timer.elapsed_s(now)
            if units.due and self.is_master:
                self.boundaries.next_report = it
        boundaries = self.boundaries
        reporting_from = self._read_values(now) if boundaries.values_due(it, now) else now
        if self.timer.backlog >= MAX_PENDING_GROUPS:
            self.drain_step_times()
        self._warn_overrun()
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
        next_due = self._advance()
        if report is not None or ticked or checked:
            self._account_reporting(now, reporting_from)
        return report, next_due

    def _account_reporting(self, now: float, reporting_from: float) -> None:
        """The time spent reporting is the tracker's, not the next step's: keep it out of the
        step times, and let the ETA count it as the recurring cost it is."""
        if self.sinks.wants_ticks:
            self._next_tick = now + TICK_INTERVAL_S
        cost = self.timer.now() - reporting_from
        self.timer.exclude(cost)
        self.pace.add_pause("report", cost, self._iter)

    def _warn_overrun(self) -> None:
        if self._iter > self.size.total_iters and not self._overrun_warned:
            self._overrun_warned = True
            logger.warning(
                "trainprogress: step() called past total_iters=%d; percent now exceeds 100. "
                "Call step() once per optimizer step and pass the real total.", self.size.total_iters,
            )

    def _read_values(self, sampled_at: float) -> float:
        """Copy the loop's values to the host, once for everything due at this boundary (the
        exchange, the check and the report then share the snapshot), and return the clock
        after. The wait since ``sampled_at`` is the device finishing the steps queued since
        the last read (a device that runs ahead of the host): training time, not the
        tracker's, so it completes those steps' stretch of the speed window and enters the
        ETA, and the step clock leaves it out of the next group."""
        self.buffer.materialise(self._iter, self._lr)
        now = self.timer.now()
        waited = now - sampled_at
        self.timer.exclude(waited)
        self.drain_step_times()
        self.pace.values_read(waited, self._iter)
        return now

    def _advance(self) -> float:
        if self.boundaries.advance(self._iter, self.dense.wanted) and self.size.units is not None:
            self.size.units.passed()
            # Reports come every so many tokens or seconds: smooth over the steps the last interval took.
            self.buffer.fit_loss_window(self._iter - self._last_report_iter)
            self._last_report_iter = self._iter
        return self.next_due()

    def resize(self, iteration: int, interval_percent: float) -> float:
        """The run's size in steps changed (``RunSize.set_total``) at ``iteration``: the loss
        window and the boundaries follow. Returns the next due step."""
        self.buffer.fit_loss_window(self.size.total_iters * interval_percent / 100)
        self.boundaries.resize(iteration, self.dense.wanted)
        self._overrun_warned = False
        return self.next_due()

    def drain_step_times(self) -> None:
        """Feed the step clock's timed groups to the ETA and the speed window (and, as
        per-step means, to the anomaly monitor's next check)."""
        groups = self.pace.drain()
        if groups and self.checks is not None:
            self.checks.add_step_times(groups)

    def _check_anomalies(self, memory: tuple[MemoryStats, ...]) -> Report | None:
        """Run the detectors; tell the sinks what was raised or cleared, and return an
        anomaly report when something new was raised."""
        self.drain_step_times()
        values = self.buffer.materialise(self._iter, self._lr)
        found = self.checks.run(self._iter, self.buffer.take_unchecked_losses(), values.metrics.get("grad_norm"),
                                memory[0].used_bytes if memory else None, self.anomalies,
                                self.ranks.anomalies if self.ranks is not None else ())
        worse = self._take_anomalies(found.anomalies, found.events)
        return self._emit(ANOMALY, memory) if found.raised or worse else None

    def _take_anomalies(self, anomalies: tuple, events: list[tuple[str, dict[str, object]]]) -> bool:
        """Keep the anomalies active now and send the events of what changed; switch between
        the dense and the regular report schedule, keeping this boundary, when a new or
        worse anomaly asks for dense reports or none does any more. Returns whether a
        steady anomaly got worse."""
        dense = self.dense.wanted
        self.anomalies = anomalies
        worse = self.dense.judge(anomalies)
        for kind, data in events:
            self.event(self._iter, kind, data)
        if self.dense.wanted != dense:
            self.boundaries.replan(self._iter, not dense)
        return worse

    def _sync_ranks(self) -> None:
        """Every rank, at each scheduled boundary: the cross-rank exchange (trainprogress.ranks).
        On rank 0 a straggler joins the anomalies; its naming or clearing is an event."""
        self.drain_step_times()
        values = self.buffer.materialise(self._iter, self._lr)
        events = self.ranks.exchange(self._iter, values, self.timer.paused_s)
        self._take_anomalies(self.ranks.with_stragglers(self.anomalies), events)

    def _emit(self, kind: str, memory: tuple[MemoryStats, ...] | None = None, **end: str | None) -> Report:
        """Build a Report of ``kind`` (with ``memory`` when already probed at this step) and
        send it to the sinks. ``end``: the final report's ``outcome`` and ``error``."""
        self.drain_step_times()
        values = self.buffer.materialise(self._iter, self._lr)
        now = self.timer.now()
        iters_per_s = self.pace.run_iters_per_s(self._iter - self.builder.start_iter, now) if kind == FINAL else self.pace.iters_per_s
        self._settle_peak(iters_per_s)
        # Losses are the mean over ranks when this iteration's cross-rank figures are in.
        figures = self.ranks.figures_at(self._iter) if self.ranks is not None else None
        if figures is not None:
            values = replace(values, loss=figures.global_loss, smoothed_loss=figures.global_smoothed_loss)
        elapsed_s, eta_s = self.timer.elapsed_s(now), self.pace.remaining_s(self._iter, now)
        run_cost = None
        if self.cost is not None:
            self.cost.read()
            run_cost = self.cost.figures(elapsed_s, eta_s, final=kind == FINAL)
        report = self.builder.report(
            kind, values, ranks=figures.scalars() if figures else None, elapsed_s=elapsed_s,
            paused_s=self.timer.paused_s, eta_s=eta_s, iters_per_s=iters_per_s,
            memory=probe_memory() if memory is None else memory, anomalies=self.dense.shown(self.anomalies),
            units_tokens_per_s=self.pace.tokens_per_s(), run_cost=run_cost, **end,
        )
        if kind != FINAL:  # it counts for the dense schedule; the next boundary follows whether it is still on
            self.dense.reported()
        self.sinks.report(report)
        if self.forecaster is not None and kind != FINAL:
            for event_kind, data in self.forecaster.warning_events(report.percent, self.forecaster.forecast(self._iter)):
                self.event(self._iter, event_kind, data)
        return report

    def _settle_peak(self, iters_per_s: float | None) -> None:
        """The device's peak, settled from the first loss tensor at the first report; a
        measured speed above it (MFU > 1) means the peak was wrong."""
        if self.peak is not None:
            self.builder.peak = self.peak.settle(self.buffer.loss_ring)
            if (self.builder.mfu(iters_per_s) or 0.0) > 1.0:
                self.builder.peak = self.peak.exceeded()

    def _send_tick(self) -> None:
        self.drain_step_times()
        self.sinks.tick(self.builder.tick(
            self._iter, eta_s=self.pace.remaining_s(self._iter, self.timer.now()), iters_per_s=self.pace.iters_per_s,
            smoothed_loss=self.buffer.smoothed_loss,
        ))

    def event(self, iteration: int, kind: str, data: dict[str, object]) -> None:
        """Send the sinks the event ``kind`` at ``iteration``."""
        self.sinks.event(Event(kind=kind, iteration=iteration, wall_time=time.time(), data=dict(data)))

    def eta_s(self, iteration: int, paused: bool) -> float | None:
        """Estimated wall seconds to the end after ``iteration`` steps, as of now (see Pace.eta_s)."""
        self.drain_step_times()
        return self.pace.eta_s(iteration, self.timer.now(), paused)

    def iters_per_s(self) -> float | None:
        """Steps per second over the recent speed window, as of now."""
        self.drain_step_times()
        return self.pace.iters_per_s

    def pause_ended(self, iteration: int, name: str, duration: float) -> None:
        """A marked pause of ``duration`` seconds ended after ``iteration`` steps: out of the
        step times, into the ETA as a recurring cost, and an event."""
        self.timer.exclude(duration, paused=True)
        self.pace.add_pause(name, duration, iteration)
        self.event(iteration, "pause", {"name": name, "duration_s": duration})

    def finish(self, iteration: int, lr: object, error: BaseException | None) -> Report | None:
        """End the run after ``iteration`` steps: the final report (on the master; CRASHED with
        ``error``, a "crash" event first), then close the exchange, the meters and the sinks."""
        self._iter, self._lr = iteration, lr
        if self.ranks is not None:
            self.ranks.close()
        if not self.is_master:
            if self.cost is not None:
                self.cost.close()
            return None
        if error is not None:
            message = f"{type(error).__name__}: {error}"
            self.event(iteration, "crash", {"error": message})
            report = self._emit(FINAL, outcome=CRASHED, error=message)
        else:
            if self.size.in_seconds:
                self.size.units.done = self.timer.elapsed_s(self.timer.now())
            report = self._emit(FINAL, outcome=COMPLETED if self.size.complete(iteration) else STOPPED)
        if self.cost is not None:
            self.cost.close()
        self.sinks.close()
        return report
