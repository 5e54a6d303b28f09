"""AnomalyMonitor: runs the detectors that :mod:`trainprogress.anomaly` describes at each
check, and keeps each anomaly's episode (raised, blip, cleared)."""

from __future__ import annotations

import math
from collections import deque
from statistics import median
from typing import TYPE_CHECKING, Optional, Sequence

from ..report import Anomaly
from .config import MAD_TO_SIGMA, AnomalyConfig, Finding
from .leak import LeakDetector

if TYPE_CHECKING:
    from ..run_size import RunSize


class _PooledMedian:
    """Pools values until there are at least ``size``, then gives their median and starts
    a new pool."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool: list[float] = []

    def add(self, values: Sequence[float]) -> float | None:
        self._pool.extend(values)
        if len(self._pool) < self.size:
            return None
        value, self._pool = median(self._pool), []
        return value


class AnomalyMonitor:
    """Runs the detectors at each check and keeps each anomaly's episode: raised when its
    condition first shows, cleared after ``clear_after_checks`` checks without it."""

    def __init__(self, config: AnomalyConfig, size: RunSize | None = None) -> None:
        self.config = config
        history = config.history_checks
        self._checks = 0
        self._loss_pool = _PooledMedian(config.pool_steps)
        self._loss_medians: deque[float] = deque(maxlen=history)
        self._step_pool = _PooledMedian(config.pool_steps)
        self._step_medians: deque[float] = deque(maxlen=history)
        self._leak = LeakDetector(config, size)
        self._grad_norms: deque[float] = deque(maxlen=history)
        self._active: dict[str, Anomaly] = {}
        self._absent: dict[str, int] = {}
        # Kinds that must show at several checks in a row before they are anomalies, and
        # how many checks in a row each has shown so far.
        self._persist = {"grad_explosion": config.persist_checks, "throughput_drop": config.persist_checks}
        self._present: dict[str, int] = {}
        self._first_seen: dict[str, int] = {}
        self.blips: tuple[Anomaly, ...] = ()
        """Conditions seen for the first time at the latest check that are not (yet)
        anomalies: worth one short line, not a report."""

    def observe(
        self,
        *,
        iteration: int,
        losses: Sequence[float],
        step_times_s: Sequence[float],
        grad_norm: float | None = None,
        memory_bytes: int | None = None,
    ) -> tuple[Anomaly, ...]:
        """One check at ``iteration``: the losses and step durations (seconds, pauses
        excluded) since the last check, the latest gradient norm and the memory in use
        (bytes). Returns the anomalies active now, in a fixed order of kinds."""
        self._checks += 1
        warm = self._checks > self.config.warmup_checks
        findings: dict[str, Optional[Finding]] = {
            "nonfinite_loss": self._nonfinite(iteration, losses),
            "loss_spike": self._spike(iteration, losses),
            "throughput_drop": self._throughput(iteration, step_times_s) if warm else None,
            "memory_growth": self._memory(iteration, memory_bytes) if warm and memory_bytes is not None else None,
            "grad_explosion": self._grad(iteration, grad_norm),
        }
        blips = []
        for kind, finding in findings.items():
            blip = self._update(kind, finding)
            if blip is not None:
                blips.append(blip)
        self.blips = tuple(blips)
        return tuple(self._active[kind] for kind in findings if kind in self._active)

    def _update(self, kind: str, finding: Optional[Finding]) -> Anomaly | None:
        """Apply one finding; returns it as a blip when it is present but not yet an anomaly."""
        if finding is None:
            return None
        present, message, since, severity = finding
        if not present:
            self._present[kind] = 0
        elif kind not in self._active:
            shown = self._present.get(kind, 0) + 1
            self._present[kind] = shown
            if shown == 1:
                self._first_seen[kind] = since  # an episode starts at its first showing
            if shown < self._persist.get(kind, 1):
                return Anomaly(kind, message, since, severity) if shown == 1 else None
        if present:
            old = self._active.get(kind)
            self._active[kind] = Anomaly(kind, message, old.since_iter if old else self._first_seen.get(kind, since),
                                         severity)
            self._absent[kind] = 0
        elif kind in self._active:
            self._absent[kind] += 1
            if self._absent[kind] >= self.config.clear_after_checks:
                del self._active[kind]
        return None

    # ------------------------------------------------------------------ detectors
    @staticmethod
    def _nonfinite(iteration: int, losses: Sequence[float]) -> Optional[Finding]:
        if not losses:
            return None
        bad = [i for i, x in enumerate(losses) if not math.isfinite(x)]
        if not bad:
            return Finding(False, "", iteration)
        first = iteration - len(losses) + 1 + bad[0]
        message = f"loss is {losses[bad[-1]]} ({len(bad)} of {len(losses)} losses since the last check not finite)"
        return Finding(True, message, first)

    def _spike(self, iteration: int, losses: Sequence[float]) -> Optional[Finding]:
        value = self._loss_pool.add([x for x in losses if math.isfinite(x)])
        if value is None:
            return None
        history = self._loss_medians
        finding = None
        if len(history) >= self.config.min_history_checks:
            center = median(history)
            sigma = MAD_TO_SIGMA * median(abs(x - center) for x in history)
            rise = value - center
            threshold = max(self.config.loss_spike_sigmas * sigma, self.config.loss_spike_min_rise * abs(center))
            if sigma > 0:
                message = f"loss {value:.4g} is {rise / sigma:.1f}σ above its recent median {center:.4g}"
            else:
                message = f"loss {value:.4g} is above its constant recent value {center:.4g}"
            finding = Finding(rise > threshold, message, iteration, rise)
        history.append(value)
        return finding

    def _throughput(self, iteration: int, step_times_s: Sequence[float]) -> Optional[Finding]:
        recent = self._step_pool.add(step_times_s)
        if recent is None:
            return None
        history = self._step_medians
        finding = None
        if len(history) >= self.config.min_history_checks:
            typical = median(history)
            slow = recent * (1.0 - self.config.throughput_drop) > typical
            lost = 1.0 - typical / recent if recent > 0 else 0.0
            message = (
                f"throughput fell {lost:.0%}: {1000 * recent:.1f} ms/iter against a typical "
                f"{1000 * typical:.1f} ms/iter"
            )
            finding = Finding(slow, message, iteration, recent)
        history.append(recent)
        return finding

    def _memory(self, iteration: int, memory_bytes: int) -> Optional[Finding]:
        finding = self._leak.judge(iteration, memory_bytes, leaking="memory_growth" in self._active)
        return None if finding is None else finding._replace(severity=float(memory_bytes))

    def _grad(self, iteration: int, grad_norm: float | None) -> Optional[Finding]:
        if not isinstance(grad_norm, (int, float)) or isinstance(grad_norm, bool):
            return None
        g = float(grad_norm)
        if not math.isfinite(g):
            return Finding(True, f"gradient norm is {g}", iteration, math.inf)
        cfg = self.config
        history = self._grad_norms
        finding = Finding(False, "", iteration)
        if cfg.grad_norm_max is not None and g > cfg.grad_norm_max:
            finding = Finding(True, f"gradient norm {g:.4g} exceeds the limit {cfg.grad_norm_max:.4g}", iteration, g)
        elif len(history) >= cfg.min_history_checks:
            typical = median(history)
            if g > cfg.grad_norm_factor * typical:
                ratio = g / typical if typical > 0 else math.inf
                finding = Finding(True, f"gradient norm {g:.4g} is {ratio:.0f}x its recent median {typical:.4g}",
                                  iteration, g)
        history.append(g)
        return finding
