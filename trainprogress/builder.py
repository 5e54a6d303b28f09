"""Report building: the caller's extra sections, and the ReportBuilder that turns what the
tracker measured (timing, materialised values, memory, anomalies) into a Report or a Tick.
Pure: it reads no clock and touches no device."""

from __future__ import annotations

import logging
import time
from typing import Callable, Mapping

from .value_buffer import Values
from .cost import RunCost
from .flops import PeakFlops
from .forecaster import Forecaster
from .report import BLOCKS, Anomaly, MemoryStats, Report, Section, Tick
from .run_size import RunSize

logger = logging.getLogger(__name__)

SectionSource = Mapping[str, object] | Callable[[], Mapping[str, object]]


class Sections:
    """The caller's report sections, by title, in the order they were first set."""

    def __init__(self) -> None:
        self._sources: dict[str, tuple[SectionSource, str | None]] = {}

    def set(self, title: str, source: SectionSource | None, into: str | None = None) -> None:
        """Add or replace the section ``title`` (None removes it). ``source``: a mapping of
        label to value, or a zero-argument callable returning one, called at each build.
        ``into``: the built-in block its lines join ("metrics", "time", "memory"), or None
        for a block of its own under ``title``."""
        if into is not None and into not in BLOCKS:
            raise ValueError(f"section {title!r}: into must be one of {', '.join(map(repr, BLOCKS))} or None, got {into!r}")
        if source is None:
            self._sources.pop(title, None)
        else:
            self._sources[title] = (source, into)

    def build(self) -> tuple[Section, ...]:
        """Every section's lines as of now. A source that raises is removed with one
        warning: a broken section must not stop training."""
        sections = []
        for title, (source, into) in list(self._sources.items()):
            try:
                lines = source() if callable(source) else source
                sections.append(Section(title, tuple((str(k), v) for k, v in lines.items()), into))
            except Exception as exc:
                del self._sources[title]
                logger.warning("trainprogress: section %r failed and is removed; training goes on (%s: %s)",
                               title, type(exc).__name__, exc)
        return tuple(sections)


class ReportBuilder:
    """Builds the Reports and Ticks of one run of ``size`` (read at each build) resumed at
    ``start_iter``: derives percent, ms/iter, MFU (with ``flops_per_iter`` FLOP per step and
    the ``peak``) and token counts (``tokens_per_iter``), and adds the ``sections`` and the
    ``forecaster``'s final-loss forecast (a run sized in steps only)."""

    def __init__(
        self,
        size: RunSize,
        start_iter: int,
        *,
        tokens_per_iter: int | None,
        flops_per_iter: float | None,
        peak: PeakFlops | None,
        sections: Sections,
        forecaster: Forecaster | None = None,
    ) -> None:
        self.size = size
        self.start_iter = start_iter
        self.tokens_per_iter = tokens_per_iter
        self.flops_per_iter = flops_per_iter
        self.peak = peak
        self.sections = sections
        self.forecaster = forecaster

    def mfu(self, iters_per_s: float | None) -> float | None:
        """Model FLOPs utilisation, a fraction of the peak, at ``iters_per_s`` optimizer steps
        per second; None without FLOPs per step, a peak or a speed."""
        if self.peak is None or self.flops_per_iter is None or iters_per_s is None:
            return None
        return self.flops_per_iter * iters_per_s / self.peak.flops_per_s

    def report(
        self,
        kind: str,
        values: Values,
        *,
        elapsed_s: float,
        paused_s: float,
        eta_s: float | None,
        iters_per_s: float | None,
        memory: tuple[MemoryStats, ...],
        anomalies: tuple[Anomaly, ...],
        ranks: Mapping[str, float] | None = None,
        units_tokens_per_s: float | None = None,
        run_cost: RunCost | None = None,
        outcome: str | None = None,
        error: str | None = None,
    ) -> Report:
        """A Report of ``kind`` at ``values.iteration``; the arguments are in the units of the
        Report fields of the same names (``units_tokens_per_s``: the token speed of a run
        sized in tokens)."""
        iteration = values.iteration
        tokens = self.tokens_per_iter
        mfu = self.mfu(iters_per_s)
        size = self.size
        percent, total_iters = size.progress(iteration)
        tokens_processed = None if tokens is None else tokens * iteration
        tokens_per_s = None if tokens is None or iters_per_s is None else tokens * iters_per_s
        if size.in_tokens:
            tokens_processed, tokens_per_s = int(size.units.done), units_tokens_per_s
        forecast = None
        if self.forecaster is not None and size.in_steps:
            forecast = self.forecaster.forecast(iteration)
        return Report(
            kind=kind,
            iteration=iteration,
            total_iters=total_iters,
            percent=percent,
            elapsed_s=elapsed_s,
            paused_s=paused_s,
            eta_s=eta_s,
            iters_per_s=iters_per_s,
            ms_per_iter=None if iters_per_s is None else 1000.0 / iters_per_s,
            loss=values.loss,
            smoothed_loss=values.smoothed_loss,
            lr=values.lr,
            best_val_loss=values.best_val_loss,
            mfu=mfu,
            peak_flops=self.peak.flops_per_s if self.peak else None,
            peak_flops_source=self.peak.source if self.peak else None,
            tokens_processed=tokens_processed,
            tokens_per_s=tokens_per_s,
            memory=memory,
            metrics=values.metrics,
            sections=self.sections.build(),
            anomalies=anomalies,
            ranks=ranks or {},
            start_iter=self.start_iter,
            outcome=outcome,
            error=error,
            wall_time=time.time(),
            progress_unit=size.unit,
            progress_total=size.total_in_unit(total_iters),
            epoch=size.epoch(iteration),
            epochs=size.epochs,
            run_cost=run_cost,
            loss_forecast=forecast.final if forecast else None,
            loss_forecast_low=forecast.low if forecast else None,
            loss_forecast_high=forecast.high if forecast else None,
        )

    def tick(self, iteration: int, *, eta_s: float | None, iters_per_s: float | None, smoothed_loss: float | None) -> Tick:
        """Live progress at ``iteration`` for the sinks that want ticks (the bar)."""
        percent, total_iters = self.size.progress(iteration)
        return Tick(
            iteration=iteration,
            total_iters=total_iters,
            percent=percent,
            eta_s=eta_s,
            iters_per_s=iters_per_s,
            smoothed_loss=smoothed_loss,
        )
