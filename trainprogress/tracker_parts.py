"""Builds a ProgressTracker's parts from its checked arguments (trainprogress.arguments):
the step clock and the pace, the value buffer, the report builder and its sections, the
boundary scheduler, the anomaly checks, the cross-rank exchange and the cost meter, all
driven by one BoundaryWork (trainprogress.boundary_work); then tells the sinks the run
started."""

from __future__ import annotations

import time

from .anomaly import AnomalyConfig
from .anomaly.checks import AnomalyChecks
from .anomaly.dense import DenseReports
from .arguments import Settings, TrackerArguments
from .boundary_scheduler import BoundaryScheduler
from .boundary_work import BoundaryWork
from .builder import ReportBuilder, Sections
from .cost import make_cost_meter
from .eta import EtaEstimator
from .flops import DevicePeak
from .forecaster import Forecaster
from .pace import Pace
from .pauses import Pauses
from .ranks import RanksAtBoundary, make_cross_rank
from .report import RunInfo
from .sinks.base import Sink, SinkGroup
from .speed import SpeedWindow
from .timing import StepClock
from .value_buffer import ValueBuffer


def build_sinks(settings: Settings) -> list[Sink]:
    """The master's sinks (the default one when none were given); none elsewhere."""
    if not settings.is_master:
        return []
    if settings.sinks is None:
        from .sinks.notebook import default_sink

        return [default_sink()]
    return settings.sinks


def build_boundary_work(given: TrackerArguments, settings: Settings, pauses: Pauses) -> BoundaryWork:
    """Every part of the tracker's work at its boundaries. Only the master renders: other
    ranks get no sinks, no checks, no forecast, and no report boundaries."""
    size, is_master, start_iter, clock = settings.size, settings.is_master, given.start_iter, given.clock
    peak = DevicePeak(given.precision, given.peak_flops, given.device) if is_master and given.flops_per_iter is not None else None
    sinks = SinkGroup(build_sinks(settings))
    checks = None
    if settings.anomaly is not None and is_master:
        # The run's length sizes the memory warm-up allowance; a run sized in tokens or
        # seconds has none in steps.
        checks = AnomalyChecks(settings.anomaly, size if size.in_steps else None)
    dense = DenseReports(settings.anomaly or AnomalyConfig())  # the dense-report rules also apply to stragglers
    forecaster = Forecaster(size, given.lr_schedule, given.target_loss) if is_master and size.in_steps else None
    buffer = ValueBuffer(start_iter, given.loss_window, keep_unchecked=checks is not None, history=forecaster)
    if size.in_steps:
        buffer.fit_loss_window(size.total_iters * given.interval_percent / 100)
    sections = Sections()
    builder = ReportBuilder(size, start_iter, tokens_per_iter=given.tokens_per_iter, flops_per_iter=given.flops_per_iter,
                            peak=peak.peak if peak is not None else None,  # None until settled
                            sections=sections, forecaster=forecaster)
    cross_rank = make_cross_rank(settings.cross_rank, clock, start_iter)
    # Every rank meters when ranks exchange (rank 0 sums them); else only the master.
    cost = make_cost_meter(given.cost, clock, given.device) if is_master or cross_rank is not None else None
    ranks = RanksAtBoundary(cross_rank, cost, pauses) if cross_rank is not None else None
    if ranks is not None and is_master:
        sections.set("🛰️ Ranks", ranks.section_lines, None)
    timer = StepClock(clock, start_iter)
    pace = Pace(timer, EtaEstimator(size, settings.window), SpeedWindow(settings.window), size.units)
    boundaries = BoundaryScheduler(size, given.interval_percent, start_iter, reports=is_master,
                                   checks=checks.monitor.config if checks else None, exchanges=ranks is not None)
    return BoundaryWork(size=size, is_master=is_master, timer=timer, pace=pace, buffer=buffer, builder=builder,
                        boundaries=boundaries, checks=checks, dense=dense, sinks=sinks, peak=peak, ranks=ranks,
                        cost=cost, forecaster=forecaster)


def start_sinks(given: TrackerArguments, work: BoundaryWork) -> None:
    """Tell the sinks the run started, now."""
    peak = work.builder.peak
    work.sinks.start(RunInfo(
        total_iters=work.size.known_steps or 0, start_iter=given.start_iter, interval_percent=given.interval_percent,
        tokens_per_iter=given.tokens_per_iter, flops_per_iter=given.flops_per_iter,
        peak_flops=peak.flops_per_s if peak else None,
        peak_flops_source=peak.source if peak else None,
        config=dict(given.run_config or {}), wall_time=time.time(),
    ))
