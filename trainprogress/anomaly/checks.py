"""AnomalyChecks: the tracker's anomaly checks. Between checks it gathers the per-step
times; at a check it runs the detectors (trainprogress.anomaly.monitor) and says what changed
since the previous one, as events for the sinks."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Sequence

from ..report import Anomaly
from .config import AnomalyConfig
from .monitor import AnomalyMonitor

if TYPE_CHECKING:
    from ..run_size import RunSize


class CheckResult(NamedTuple):
    """What one check found."""

    anomalies: tuple[Anomaly, ...]  # active now, the monitor's first
    events: list[tuple[str, dict[str, object]]]  # (kind, data) for the sinks, in order
    raised: bool  # a kind is new: an anomaly report is due


class AnomalyChecks:
    """Runs the detectors of ``config`` at each check the tracker makes.

    ``add_step_times(groups)`` takes the step clock's timed groups, (seconds, steps) each,
    as they come; ``run(...)`` hands their per-step means to the monitor with the check's
    losses, gradient norm and memory, and compares what is active with ``active``, what was
    active before the check: a blip, a newly raised anomaly and a cleared one are events.
    ``size``: the run's size in steps (None for a run sized in tokens or time), which sizes
    the memory detector's warm-up allowance.
    """

    __slots__ = ("_step_times", "monitor")

    def __init__(self, config: AnomalyConfig, size: RunSize | None = None) -> None:
        self.monitor = AnomalyMonitor(config, size)
        self._step_times: list[float] = []  # per-step means the monitor has not seen yet

    def add_step_times(self, groups: Sequence[tuple[float, int]]) -> None:
        """Keep the per-step mean seconds of each timed group for the next check."""
        self._step_times.extend(seconds / steps for seconds, steps in groups)

    def run(self, iteration: int, losses: Sequence[float], grad_norm: float | None, memory_bytes: int | None,
            active: tuple[Anomaly, ...], extra: tuple[Anomaly, ...] = ()) -> CheckResult:
        """Check at ``iteration``: the losses since the previous check, the latest gradient
        norm and the memory in use (bytes). ``extra``: anomalies found elsewhere (stragglers)
        that stay active alongside the monitor's."""
        step_times, self._step_times = self._step_times, []
        was = {a.kind for a in active}
        anomalies = self.monitor.observe(
            iteration=iteration,
            losses=losses,
            step_times_s=step_times,
            grad_norm=grad_norm,
            memory_bytes=memory_bytes,
        ) + extra
        now_kinds = {a.kind for a in anomalies}
        events: list[tuple[str, dict[str, object]]] = []
        for blip in self.monitor.blips:
            events.append(("anomaly_blip", {"anomaly": blip.kind, "message": blip.message}))
        for anomaly in anomalies:
            if anomaly.kind not in was:
                events.append(("anomaly", {"anomaly": anomaly.kind, "message": anomaly.message,
                                           "since_iter": anomaly.since_iter}))
        for kind in was - now_kinds:
            events.append(("anomaly_cleared", {"anomaly": kind}))
        return CheckResult(anomalies, events, bool(now_kinds - was))
