"""ProgressTracker: counts steps, owns the clock, and emits Reports to sinks."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import deque
from contextlib import contextmanager
from statistics import fmean
from typing import Any, Callable, Iterable, Iterator, Mapping

from .eta import EtaEstimator
from .flops import PeakFlops, detect_peak
from .memory import probe_memory
from .report import ANOMALY, FINAL, SCHEDULED, Report, Section
from .schedule import ReportSchedule
from .sinks.base import Event, RunInfo, Sink, SinkGroup, Tick
from .speed import SpeedWindow
from .values import is_tensor, materialise

logger = logging.getLogger(__name__)

SectionSource = Mapping[str, object] | Callable[[], Mapping[str, object]]

# Seconds between live ticks for sinks that want them (the bar): often enough to look live,
# rarely enough that the bar costs nothing measurable.
TICK_INTERVAL_S = 0.5

# The clock is read once per step when steps take at least this long, which real training
# steps do. Faster loops are timed in groups of steps spanning about this long, as tqdm
# does, so the tracker never costs more than the loop it measures.
MIN_SAMPLE_S = 1e-3
MAX_STRIDE = 1024

# Losses are kept by reference in a ring of this many entries, indexed by iteration; the
# step below masks with the literal LOSS_RING - 1 (127), cheaper than an attribute lookup.
# Small on purpose: a loss passed without .detach() keeps its autograd graph's nodes alive.
LOSS_RING = 128


def detect_is_master() -> bool:
    """True on rank 0 of a torch.distributed job (or when RANK says so), and outside one."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _check_int(name: str, value: Any, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}; {fix}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}; {fix}")
    return value


class ProgressTracker:
    """Tracks a training run of ``total_iters`` optimizer steps and reports every
    ``interval_percent`` of it.

    Call ``step(loss=..., lr=..., **named_values)`` after each completed optimizer step; it
    returns the Report at a boundary, else None. Between boundaries a step only reads the
    clock and keeps references: a loss tensor is never synchronised per step. At a
    boundary the recent losses and any tensor values are copied to the host together, in
    one device sync.

    Wrap time that is not training (eval, checkpoint, sampling) in ``with
    tracker.pause("eval"):`` so it stays out of the speed and enters the ETA only at the
    rate it recurs (see ``trainprogress.eta``).

    Speed (iter/s, ms/iter) is the mean over the last ``window`` steps; the ETA uses their
    median. ``window`` defaults to 2% of the run, at least 10 and at most 2,000 steps.
    The smoothed loss is the mean of the last ``loss_window`` losses (default 100).

    Extra report lines: ``set_section(title, source)`` where source is a mapping of label to
    value or a zero-argument callable returning one, called only when a report is built.

    Only the master (rank 0) renders: other ranks get no sinks, never build reports, and
    ``step`` returns None there.
    """

    # Slots, not a __dict__: more attributes than CPython's shared-key dicts hold would make
    # every attribute access in step() a slower hashed lookup.
    __slots__ = (
        "_anomalies",
        "_best_val_loss",
        "_check_losses",
        "_check_schedule",
        "_check_times",
        "_clock",
        "_closed",
        "_dense_schedule",
        "_eta",
        "_iter",
        "_latest",
        "_loss_ring",
        "_losses",
        "_lr",
        "_materialised_iter",
        "_monitor",
        "_next_check",
        "_next_due",
        "_next_report",
        "_next_sample",
        "_next_tick",
        "_overrun_warned",
        "_pause_depth",
        "_pause_name",
        "_pause_start",
        "_paused_s",
        "_peak",
        "_sampled_iter",
        "_samples",
        "_sections",
        "_sinks",
        "_speed",
        "_start_wall",
        "_t_last",
        "_t_start",
        "_values",
        "flops_per_iter",
        "interval_percent",
        "is_master",
        "schedule",
        "start_iter",
        "tokens_per_iter",
        "total_iters",
    )

    def __init__(
        self,
        total_iters: int,
        *,
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
    ) -> None:
        self.total_iters = _check_int("total_iters", total_iters, 1, "pass the number of optimizer steps in the whole run")
        self.start_iter = _check_int("start_iter", start_iter, 0, "pass the iterations already completed before this process")
        if start_iter > total_iters:
            raise ValueError(f"start_iter ({start_iter}) is past total_iters ({total_iters}); a resumed run needs total_iters >= start_iter")
        if tokens_per_iter is not None:
            _check_int("tokens_per_iter", tokens_per_iter, 1, "pass batch_size x block_size x accumulation steps x world size, or None")
        if flops_per_iter is not None and not flops_per_iter > 0:
            raise ValueError(f"flops_per_iter must be > 0, got {flops_per_iter!r}; pass None to leave out MFU")
        if peak_flops is not None and not peak_flops > 0:
            raise ValueError(f"peak_flops must be > 0 FLOP/s, got {peak_flops!r}; pass None to detect it")
        _check_int("loss_window", loss_window, 1, "use e.g. 100")
        if loss_window > LOSS_RING:
            raise ValueError(f"loss_window must be <= {LOSS_RING} steps, got {loss_window}")

        self.schedule = ReportSchedule(total_iters, interval_percent)
        self.interval_percent = interval_percent
        self.tokens_per_iter = tokens_per_iter
        self.flops_per_iter = flops_per_iter
        self.is_master = detect_is_master() if is_master is None else bool(is_master)
        self._clock = clock

        if window is None:
            window = min(2000, max(10, round(0.02 * total_iters)))
        _check_int("window", window, 1, "use e.g. 100 steps")
        self._eta = EtaEstimator(total_iters, window)
        self._speed = SpeedWindow(window)
        self._peak: PeakFlops | None = None
        if self.is_master and flops_per_iter is not None:
            self._peak = PeakFlops(float(peak_flops), "given") if peak_flops is not None else detect_peak(precision)

        self._sinks = SinkGroup(self._build_sinks(sinks) if self.is_master else [])
        self._monitor = None
        self._check_schedule: ReportSchedule | None = None
        self._dense_schedule: ReportSchedule | None = None
        if anomaly is not None and self.is_master:
            self._init_anomaly(anomaly)

        # Per-step state, kept minimal: the hot path touches only these.
        self._iter = start_iter
        self._loss_ring: list[Any] = [None] * LOSS_RING
        self._lr: Any = None
        self._latest: dict[str, Any] = {}

        # Timing: groups of steps, each (seconds, steps), pauses taken out.
        self._samples: list[tuple[float, int]] = []
        self._sampled_iter = start_iter
        self._next_sample = start_iter + 1

        # Values materialised at reports and checks.
        self._materialised_iter = start_iter
        self._losses: deque[float] = deque(maxlen=loss_window)
        # What the anomaly monitor has not seen yet: reports and ticks between two checks
        # consume the per-step lists, so these keep what piles up until the next check.
        self._check_losses: list[float] = []
        self._check_times: list[float] = []
        self._values: dict[str, Any] = {}
        self._best_val_loss: float | None = None
        self._sections: dict[str, SectionSource] = {}
        self._anomalies: tuple = ()

        self._overrun_warned = False
        self._pause_depth = 0
        self._pause_name = "pause"
        self._pause_start = 0.0
        self._paused_s = 0.0
        self._closed = False
        self._start_wall = time.time()
        self._t_start = self._t_last = clock()
        self._next_tick = self._t_start + TICK_INTERVAL_S if self._sinks.wants_ticks else math.inf
        self._next_report = self._next_check = math.inf
        if self.is_master:
            self._next_report = self.schedule.next_due(start_iter) or math.inf
            if self._check_schedule is not None:
                self._next_check = self._check_schedule.next_due(start_iter) or math.inf
        self._next_due = min(self._next_report, self._next_check, self._next_sample)
        self._sinks.start(RunInfo(
            total_iters=total_iters, start_iter=start_iter, interval_percent=interval_percent,
            tokens_per_iter=tokens_per_iter, flops_per_iter=flops_per_iter,
            peak_flops=self._peak.flops_per_s if self._peak else None,
            peak_flops_source=self._peak.source if self._peak else None,
            config=dict(run_config or {}), wall_time=self._start_wall,
        ))

    @staticmethod
    def _build_sinks(sinks: Iterable[Sink] | None) -> list[Sink]:
        if sinks is None:
            from .sinks.notebook import default_sink

            return [default_sink()]
        return list(sinks)

    def _init_anomaly(self, anomaly: Any) -> None:
        from .anomaly import AnomalyConfig, AnomalyMonitor

        config = AnomalyConfig() if anomaly is True else anomaly
        self._monitor = AnomalyMonitor(config)
        self._check_schedule = ReportSchedule(self.total_iters, config.check_percent)
        self._dense_schedule = ReportSchedule(self.total_iters, config.dense_percent)

    # ------------------------------------------------------------------ hot path
    def step(self, loss: Any = None, lr: Any = None, **values: Any) -> Report | None:
        """Record one completed optimizer step. ``loss`` and any named ``values`` may be
        floats or one-element tensors (kept by reference, read at the next report). Returns
        the Report when one is due at this step, else None."""
        it = self._iter + 1
        self._iter = it
        self._loss_ring[it & 127] = loss  # LOSS_RING - 1
        self._lr = lr
        if values:
            self._record_values(values)
        if it >= self._next_due:
            return self._on_due()
        return None

    def _record_values(self, values: dict[str, Any]) -> None:
        """Keep the latest of each named value. None means "not measured at this step"
        (e.g. val_loss=None between evaluations) and keeps the previous value. A
        ``best_val_loss`` (a resumed run's earlier best) only lowers the tracked best."""
        values = {name: value for name, value in values.items() if value is not None}
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

    # ------------------------------------------------------------------ boundaries
    def _sample_clock(self) -> float:
        """Close the current group of steps: its duration goes to the step-time samples,
        and its speed sets how many steps the next group spans."""
        now = self._clock()
        steps = self._iter - self._sampled_iter
        if steps > 0:
            seconds = now - self._t_last
            self._samples.append((seconds, steps))
            self._sampled_iter = self._iter
            self._t_last = now
            per_step = seconds / steps
            stride = 1 if per_step >= MIN_SAMPLE_S else min(MAX_STRIDE, int(MIN_SAMPLE_S / max(per_step, 1e-9)) + 1)
            self._next_sample = self._iter + stride
            if len(self._samples) >= 256:  # bound memory between far-apart reports
                self._drain_steps()
        return now

    def _on_due(self) -> Report | None:
        now = self._sample_clock()
        if self._iter > self.total_iters and not self._overrun_warned:
            self._overrun_warned = True
            logger.warning(
                "trainprogress: step() called past total_iters=%d; percent now exceeds 100. "
                "Call step() once per optimizer step and pass the real total.", self.total_iters,
            )
        checked = self._iter >= self._next_check
        report = self._check_anomalies() if checked else None
        if report is None and self._iter >= self._next_report:
            report = self._emit(SCHEDULED)
        ticked = report is None and now >= self._next_tick
        if ticked:
            self._send_tick()
        self._advance()
        if report is not None or ticked or checked:
            if self._sinks.wants_ticks:
                self._next_tick = now + TICK_INTERVAL_S
            # The time spent reporting is the tracker's, not the next step's: keep it out of
            # the step times, and let the ETA count it as the recurring cost it is.
            cost = self._clock() - now
            self._t_last += cost
            self._eta.add_pause("report", cost, self._iter)
        return report

    def _advance(self) -> None:
        it = self._iter
        if self._next_report <= it:
            self._next_report = self._next_report_after(it)
        if self._check_schedule is not None and self._next_check <= it:
            self._next_check = self._check_schedule.next_due(it) or math.inf
        self._next_due = min(self._next_report, self._next_check, self._next_sample)

    def _next_report_after(self, iteration: int) -> float:
        nxt = self.schedule.next_due(iteration)
        if self._anomalies and self._dense_schedule is not None:
            dense = self._dense_schedule.next_due(iteration)
            nxt = dense if nxt is None else min(nxt, dense or nxt)
        return math.inf if nxt is None else nxt

    def _check_anomalies(self) -> Report | None:
        self._drain_steps()
        self._materialise()
        memory = probe_memory()
        was = {a.kind for a in self._anomalies}
        losses, self._check_losses = self._check_losses, []
        step_times, self._check_times = self._check_times, []
        self._anomalies = self._monitor.observe(
            iteration=self._iter,
            losses=losses,
            step_times_s=step_times,
            grad_norm=self._values.get("grad_norm"),
            memory_bytes=memory[0].used_bytes if memory else None,
        )
        now_kinds = {a.kind for a in self._anomalies}
        for anomaly in self._anomalies:
            if anomaly.kind not in was:
                self._sinks.event(self._event("anomaly", anomaly=anomaly.kind, message=anomaly.message, since_iter=anomaly.since_iter))
        for kind in was - now_kinds:
            self._sinks.event(self._event("anomaly_cleared", anomaly=kind))
        if now_kinds != was:
            # Switch between the regular and the dense schedule, keeping a boundary at this
            # very iteration (a regular report is not lost when an anomaly clears here).
            self._next_report = self._next_report_after(self._iter - 1)
        if now_kinds - was:
            return self._emit(ANOMALY, memory=memory)
        return None

    def _drain_steps(self) -> None:
        """Feed the timed groups of steps to the estimators (and, as per-step means, to the
        anomaly monitor's next check)."""
        groups, self._samples = self._samples, []
        if groups:
            self._eta.add_groups(groups, self._sampled_iter - sum(n for _, n in groups) + 1)
            for seconds, steps in groups:
                self._speed.add_group(seconds, steps)
            if self._monitor is not None:
                self._check_times.extend(seconds / steps for seconds, steps in groups)

    def _materialise(self) -> None:
        """Copy new losses and tensor values to the host: one sync per device."""
        ring, mask, end = self._loss_ring, LOSS_RING - 1, self._iter
        first = max(self._materialised_iter, end - mask) + 1
        pending = [loss for loss in (ring[i & mask] for i in range(first, end + 1)) if loss is not None]
        n_new = len(pending)
        names = list(self._latest)
        extra = [self._latest[n] for n in names]
        if self._lr is not None:
            extra.append(self._lr)
        numeric = [i for i, v in enumerate(extra) if is_tensor(v) or isinstance(v, (int, float))]
        floats = materialise(pending + [extra[i] for i in numeric])
        new_losses = floats[:n_new]
        self._losses.extend(new_losses)
        if self._monitor is not None:
            self._check_losses.extend(new_losses)
        self._materialised_iter = end
        resolved = dict(zip(names, extra))
        for i, number in zip(numeric, floats[n_new:]):
            if i < len(names):
                resolved[names[i]] = number
            else:
                self._lr = number
        # Keep the floats, so that a second look at this step costs no second sync.
        self._latest = dict(resolved)
        self._values = resolved
        if isinstance(resolved.get("val_loss"), float):
            self._update_best(resolved["val_loss"])

    def _emit(self, kind: str, memory: tuple | None = None) -> Report:
        report = self._build(kind, memory)
        self._sinks.report(report)
        return report

    def _build(self, kind: str, memory: tuple | None = None) -> Report:
        self._drain_steps()
        self._materialise()
        now = self._clock()
        elapsed = now - self._t_start
        if kind == FINAL:
            done = self._iter - self.start_iter
            training_s = elapsed - self._paused_s
            iters_per_s = done / training_s if done and training_s > 0 else None
        else:
            iters_per_s = self._speed.iters_per_s
        tokens = self.tokens_per_iter
        mfu = None
        if self._peak is not None and iters_per_s is not None:
            mfu = self.flops_per_iter * iters_per_s / self._peak.flops_per_s
        return Report(
            kind=kind,
            iteration=self._iter,
            total_iters=self.total_iters,
            percent=100.0 * self._iter / self.total_iters,
            elapsed_s=elapsed,
            paused_s=self._paused_s,
            eta_s=self._eta.remaining_s(self._iter),
            iters_per_s=iters_per_s,
            ms_per_iter=None if iters_per_s is None else 1000.0 / iters_per_s,
            loss=self._losses[-1] if self._losses else None,
            smoothed_loss=fmean(self._losses) if self._losses else None,
            lr=self._lr if isinstance(self._lr, float) else None,
            best_val_loss=self._best_val_loss,
            mfu=mfu,
            peak_flops=self._peak.flops_per_s if self._peak else None,
            peak_flops_source=self._peak.source if self._peak else None,
            tokens_processed=None if tokens is None else tokens * self._iter,
            tokens_per_s=None if tokens is None or iters_per_s is None else tokens * iters_per_s,
            memory=probe_memory() if memory is None else memory,
            metrics=self._values,
            sections=self._build_sections(),
            anomalies=self._anomalies,
            start_iter=self.start_iter,
            wall_time=time.time(),
        )

    def _build_sections(self) -> tuple[Section, ...]:
        sections = []
        for title, source in list(self._sections.items()):
            try:
                lines = source() if callable(source) else source
                sections.append(Section(title, tuple((str(k), v) for k, v in lines.items())))
            except Exception as exc:  # a broken section must not stop training
                del self._sections[title]
                logger.warning("trainprogress: section %r failed and is removed; training goes on (%s: %s)",
                               title, type(exc).__name__, exc)
        return tuple(sections)

    def _send_tick(self) -> None:
        self._drain_steps()
        self._sinks.tick(Tick(
            iteration=self._iter,
            total_iters=self.total_iters,
            percent=100.0 * self._iter / self.total_iters,
            eta_s=self._eta.remaining_s(self._iter),
            iters_per_s=self._speed.iters_per_s,
            loss=fmean(self._losses) if self._losses else None,
        ))

    def _event(self, kind: str, **data: object) -> Event:
        return Event(kind=kind, iteration=self._iter, wall_time=time.time(), data=data)

    # ------------------------------------------------------------------ public, off the hot path
    def set_section(self, title: str, source: SectionSource | None) -> None:
        """Add (or replace, or with None remove) a block of extra report lines. ``source`` is
        a mapping of label to value, or a callable returning one, called only when a report
        is built. Sections render in the order they were first set; one titled like a
        built-in block ("📊 Metrics", "⏱️ Time", "💾 Memory") adds its lines to that block,
        where a line replaces the default line of a named value with the same label (a
        "Phase" line replaces the one of ``phase=``)."""
        if source is None:
            self._sections.pop(title, None)
        else:
            self._sections[title] = source

    def event(self, kind: str, **data: object) -> None:
        """Tell the sinks that something happened (a phase change, a connection growth, ...);
        log sinks record it with the current iteration."""
        self._sinks.event(self._event(kind, **data))

    def begin_pause(self, name: str = "pause") -> None:
        """Start time that is not training (eval, checkpoint, sampling), for frameworks that
        give begin and end hooks; ``end_pause()`` ends it. Pauses may nest: only the
        outermost counts, under its name."""
        if self._pause_depth == 0:
            self._pause_name = name
            self._pause_start = self._clock()
        self._pause_depth += 1

    def end_pause(self) -> None:
        """End the pause that ``begin_pause`` started. The pause is left out of the speed,
        and recurring pauses enter the ETA at the rate they occur."""
        if self._pause_depth == 0:
            raise RuntimeError("end_pause() called without a matching begin_pause(); call begin_pause(name) first")
        self._pause_depth -= 1
        if self._pause_depth == 0:
            duration = self._clock() - self._pause_start
            self._t_last += duration  # so the next step's time excludes the pause
            self._paused_s += duration
            self._eta.add_pause(self._pause_name, duration, self._iter)
            self._sinks.event(self._event("pause", name=self._pause_name, duration_s=duration))

    @property
    def paused(self) -> bool:
        """True between ``begin_pause`` and its ``end_pause`` (or inside ``with pause()``)."""
        return self._pause_depth > 0

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

    @property
    def iteration(self) -> int:
        """Optimizer steps completed, resumed ones included."""
        return self._iter

    @property
    def eta_seconds(self) -> float | None:
        """Estimated wall seconds until ``total_iters`` steps are done, as of now; None until
        it can be estimated."""
        self._drain_steps()
        remaining = self._eta.remaining_s(self._iter)
        if remaining is None or self._pause_depth:
            return remaining
        return max(0.0, remaining - (self._clock() - self._t_last))

    def close(self, error: BaseException | None = None) -> Report | None:
        """End the run: send the final summary (on the master) and close the sinks. Safe to
        call more than once; later calls do nothing and return None. ``error``, when the run
        ends by an exception, is sent to the sinks as a "crash" event first."""
        if self._closed:
            return None
        self._closed = True
        if not self.is_master:
            return None
        if error is not None:
            self._sinks.event(self._event("crash", error=f"{type(error).__name__}: {error}"))
        report = self._emit(FINAL)
        self._sinks.close()
        return report

    def __enter__(self) -> "ProgressTracker":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.close(error=exc if isinstance(exc, Exception) else None)
