"""Anomaly detection for adaptive verbosity: what the tracker checks at every report and,
between reports, as often as ``CheckCadence`` allows (every ``check_percent`` of the run,
but at most one check per ``min_check_steps`` steps and ``min_check_interval_s`` seconds),
and what makes it report at once and more often.

Five detectors, each fed what the tracker already has at a check (no extra device syncs
beyond the one that materialises the losses):

- ``nonfinite_loss``: a loss since the last check is NaN or infinite.
- ``loss_spike``: the median loss of the last ``pool_steps`` or more steps is far above
  the median of its ``history_checks`` previous values: by more than ``loss_spike_sigmas``
  robust standard deviations (1.4826 x their median absolute deviation) and by more than
  ``loss_spike_min_rise`` of that median. Only rises count: a falling loss is the point of
  training. The pooled median ignores one bad batch; a spike that lasts moves it.
- ``throughput_drop``: the median step time of the last ``pool_steps`` or more steps is so
  far above the median of its previous values that the speed lost more than
  ``throughput_drop`` of itself. The median ignores a single GC pause or data-loader
  hiccup; a sustained slowdown moves it.
- ``memory_growth`` (a probable leak): memory grows steadily, at a roughly constant rate,
  where warm-up would not (``LeakDetector``). Memory is judged by levels, each the median of
  3 consecutive checks: one odd probe is ignored, and a single step up (buffers allocated at
  the first eval, a larger model after a growth step) moves one level only. The threshold
  is ``memory_growth`` of the memory the growth is measured from, and at least
  ``memory_min_growth_bytes``. Two rules, either one enough:

  - off a plateau (fast, a leak that starts mid-run): memory that stayed within half the
    threshold over ``memory_plateau_checks`` checks levelled off there. The last three
    levels rising at a steady rate (each rise at least a quarter of the threshold, three
    times the probes' own scatter, and a quarter of both rises) to more than the threshold
    above the highest such plateau is a leak, called 5 or 6 checks after it starts. Warm-up
    never passes: it comes before any plateau, and growth that slows down cannot rise
    further above a plateau than it rose across it. Memory back at a level it held before
    is no leak either. A leak stays reported while memory keeps rising.
  - past warm-up (slow, a leak that starts with the process): over the last
    ``memory_window_checks`` checks, all past the first ``memory_warmup_percent`` of the
    run, the window's four quarters have medians each above the one before by a third of the
    threshold (of the memory when this rule first judged) and twice the probes' scatter.
- ``grad_explosion``: the latest ``grad_norm`` is not finite, above ``grad_norm_max``, or
  more than ``grad_norm_factor`` times the median of its recent values.

A gradient explosion or a throughput drop must show at ``persist_checks`` checks in a row
to be an anomaly; shown at one check, it is a blip (``AnomalyMonitor.blips``): worth a
short line, not a report.

The detectors that compare against history stay silent until they have
``min_history_checks`` values. Their history includes the anomalous values, so a lasting
new level (a new curriculum phase, a bigger model after a growth step) becomes the baseline
within about half the history and its anomaly clears. An anomaly clears once its condition
has been absent for ``clear_after_checks`` checks in a row; its ``since_iter`` is the
iteration at which its episode began.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from statistics import median
from typing import NamedTuple, Optional, Sequence

from .report import Anomaly
from .boundaries import ReportSchedule, parse_interval

_GIB = 1024.0**3
_MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation is 1.4826 x its MAD
# Memory is judged by medians of this many checks: odd, so that a single step up lands in
# one level or the next, never half in each.
_LEVEL_CHECKS = 3


@dataclass(frozen=True)
class AnomalyConfig:
    """When the detectors run, how sure they must be, and how reports change meanwhile."""

    check_percent: float = 0.1
    """Percent of the run between checks. Every report is a check too (it syncs anyway);
    a check between reports costs one host-device sync when the losses are tensors, and
    one memory probe, so those are also bounded by ``min_check_steps`` and
    ``min_check_interval_s``."""

    min_check_steps: int = 100
    """Least steps between two checks that do not come with a report."""

    min_check_interval_s: float = 10.0
    """Least seconds between two checks that do not come with a report."""

    dense_percent: float = 0.1
    """Percent of the run between reports while an anomaly is active."""

    clear_after_checks: int = 5
    """Checks in a row without its condition before an anomaly clears (for the loss-spike
    and throughput detectors: pools of steps, see ``pool_steps``)."""

    history_checks: int = 50
    """Values of history the baselines cover: one per check (memory, gradient norm) or per
    pool of steps (loss, step time)."""

    min_history_checks: int = 10
    """Values a baseline needs before its detector may raise anything."""

    warmup_checks: int = 10
    """Checks at the start of each process whose step times and memory are ignored
    (compilation, autotuning, allocator warm-up, a resume's reload)."""

    loss_spike_sigmas: float = 6.0
    """How many robust standard deviations above the median of its history the pooled median
    loss must be to count as a spike."""

    loss_spike_min_rise: float = 0.1
    """The least rise that counts as a spike, as a fraction of the recent median loss
    (0.1: 10% above it), so that a near-constant loss does not make every blip a spike."""

    throughput_drop: float = 0.4
    """Fraction of its typical speed the run must lose to count as a throughput drop (0.4:
    steps take 1.67x as long; a 2x slowdown is caught with room to spare for jitter)."""

    pool_steps: int = 10
    """Least steps whose median loss and median step time the spike and throughput
    detectors judge; the steps of consecutive checks are pooled until there are this many."""

    memory_plateau_checks: int = 18
    """Checks in a row whose memory levels stay within half the leak threshold to make a
    plateau, against which the fast rule measures growth. Longer than the 9 checks the fast
    rule looks at, so that growth that slows down can never pass it. The fast rule needs
    several checks per percent of the run to call a leak within 1%: at the tracker's
    cadence, runs of 100,000 steps or more (a check every 100 steps and 10 seconds)."""

    memory_window_checks: int = 50
    """Checks the slow rule looks back over (its four quarters): growth that went on steadily
    for about 30 checks past the warm-up allowance is a leak."""

    memory_warmup_percent: float = 10.0
    """Percent of the run, from this process's first check after ``warmup_checks``, whose
    memory growth the slow rule takes for warm-up (caching allocators, compilation, optimizer
    state, eval buffers, a resume's reload). Needs the run's length
    (``AnomalyMonitor(total_iters=...)``, as the tracker passes); without it the slow rule
    judges from the first full window."""

    memory_growth: float = 0.05
    """Growth that counts as a probable leak, as a fraction of the level it grew from (0.05:
    5%)."""

    memory_min_growth_bytes: int = 64 * 1024**2
    """The least growth in bytes that counts as a probable leak."""

    grad_norm_factor: float = 10.0
    """How many times its recent median the gradient norm must be to count as exploding."""

    grad_norm_max: float | None = None
    """A gradient norm above this counts as exploding; None: no absolute limit."""

    persist_checks: int = 3
    """Checks in a row a gradient explosion or a throughput drop must show before it is an
    anomaly. Shown at one check only (one bad batch, clipped; a moment of contention on a
    shared machine), it is a blip: one short line, no report."""

    def __post_init__(self) -> None:
        parse_interval(self.check_percent, "check_percent")
        parse_interval(self.dense_percent, "dense_percent")
        for name in ("clear_after_checks", "history_checks", "min_history_checks", "pool_steps",
                     "min_check_steps", "persist_checks", "memory_window_checks", "memory_plateau_checks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AnomalyConfig.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.warmup_checks, bool) or not isinstance(self.warmup_checks, int) or self.warmup_checks < 0:
            raise ValueError(f"AnomalyConfig.warmup_checks must be an int >= 0, got {self.warmup_checks!r}")
        if self.min_history_checks > self.history_checks:
            raise ValueError(
                f"AnomalyConfig.min_history_checks ({self.min_history_checks}) exceeds history_checks "
                f"({self.history_checks}); a baseline could never be complete. Lower it or raise history_checks."
            )
        for name in ("loss_spike_sigmas", "loss_spike_min_rise", "memory_growth", "memory_min_growth_bytes",
                     "memory_warmup_percent"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"AnomalyConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.min_check_interval_s >= 0:
            raise ValueError(f"AnomalyConfig.min_check_interval_s must be >= 0 seconds, got {self.min_check_interval_s!r}")
        if not 0 < self.throughput_drop < 1:
            raise ValueError(f"AnomalyConfig.throughput_drop must be a fraction in (0, 1), got {self.throughput_drop!r}")
        if not self.grad_norm_factor > 1:
            raise ValueError(f"AnomalyConfig.grad_norm_factor must be > 1, got {self.grad_norm_factor!r}")
        if self.grad_norm_max is not None and not self.grad_norm_max > 0:
            raise ValueError(f"AnomalyConfig.grad_norm_max must be > 0 or None, got {self.grad_norm_max!r}")


class Finding(NamedTuple):
    """A detector's verdict at one check (a detector returns None when it could not judge:
    nothing new to look at)."""

    present: bool  # whether the anomalous condition holds now
    message: str  # one human sentence saying what was seen
    since_iter: int  # the iteration at which an episode starting now would begin


class CheckCadence:
    """When the checks run. Every report is a check, since it copies the losses to the host
    anyway. Between reports a check is due on the ``check_percent`` grid, but no sooner
    than ``min_check_steps`` steps and ``min_check_interval_s`` seconds after the previous
    check: whatever the run's length or speed, checks add at most one host-device sync per
    that many steps and seconds, and none at all when reports come that often."""

    def __init__(self, total_iters: int, config: AnomalyConfig, start_iter: int = 0) -> None:
        self._grid = ReportSchedule(total_iters, config.check_percent)
        self._min_steps = config.min_check_steps
        self._min_s = config.min_check_interval_s
        # The start counts as a check: the first one between reports comes the bounds after it.
        self._last_iter = start_iter
        self._last_s: float | None = None

    def next_due(self, iteration: int) -> float:
        """The first iteration after ``iteration`` at which a check may be due (math.inf
        when none is left)."""
        due = self._grid.next_due(max(iteration, self._last_iter + self._min_steps - 1))
        return math.inf if due is None else due

    def allows(self, now_s: float) -> bool:
        """Whether enough seconds passed since the last check for one between reports (the
        first time it is asked, the seconds start counting)."""
        if self._last_s is None:
            self._last_s = now_s
        return now_s - self._last_s >= self._min_s

    def checked(self, iteration: int, now_s: float) -> None:
        """A check ran at ``iteration``, at clock time ``now_s``."""
        self._last_iter, self._last_s = iteration, now_s


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

    def __init__(self, config: AnomalyConfig, total_iters: int | None = None) -> None:
        self.config = config
        history = config.history_checks
        self._checks = 0
        self._loss_pool = _PooledMedian(config.pool_steps)
        self._loss_medians: deque[float] = deque(maxlen=history)
        self._step_pool = _PooledMedian(config.pool_steps)
        self._step_medians: deque[float] = deque(maxlen=history)
        self._leak = LeakDetector(config, total_iters)
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

    @property
    def total_iters(self) -> int | None:
        """The run's length in iterations, when known: it sizes the memory warm-up allowance
        (``AnomalyConfig.memory_warmup_percent``). May be changed mid-run."""
        return self._leak.total_iters

    @total_iters.setter
    def total_iters(self, total: int | None) -> None:
        self._leak.total_iters = total

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
            "memory_growth": self._leak.judge(iteration, memory_bytes, leaking="memory_growth" in self._active)
            if warm and memory_bytes is not None else None,
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
        present, message, since = finding
        if not present:
            self._present[kind] = 0
        elif kind not in self._active:
            shown = self._present.get(kind, 0) + 1
            self._present[kind] = shown
            if shown == 1:
                self._first_seen[kind] = since  # an episode starts at its first showing
            if shown < self._persist.get(kind, 1):
                return Anomaly(kind, message, since) if shown == 1 else None
        if present:
            old = self._active.get(kind)
            self._active[kind] = Anomaly(kind, message, old.since_iter if old else self._first_seen.get(kind, since))
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
            sigma = _MAD_TO_SIGMA * median(abs(x - center) for x in history)
            rise = value - center
            threshold = max(self.config.loss_spike_sigmas * sigma, self.config.loss_spike_min_rise * abs(center))
            if sigma > 0:
                message = f"loss {value:.4g} is {rise / sigma:.1f}σ above its recent median {center:.4g}"
            else:
                message = f"loss {value:.4g} is above its constant recent value {center:.4g}"
            finding = Finding(rise > threshold, message, iteration)
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
            finding = Finding(slow, message, iteration)
        history.append(recent)
        return finding

    def _grad(self, iteration: int, grad_norm: float | None) -> Optional[Finding]:
        if not isinstance(grad_norm, (int, float)) or isinstance(grad_norm, bool):
            return None
        g = float(grad_norm)
        if not math.isfinite(g):
            return Finding(True, f"gradient norm is {g}", iteration)
        cfg = self.config
        history = self._grad_norms
        finding = Finding(False, "", iteration)
        if cfg.grad_norm_max is not None and g > cfg.grad_norm_max:
            finding = Finding(True, f"gradient norm {g:.4g} exceeds the limit {cfg.grad_norm_max:.4g}", iteration)
        elif len(history) >= cfg.min_history_checks:
            typical = median(history)
            if g > cfg.grad_norm_factor * typical:
                ratio = g / typical if typical > 0 else math.inf
                finding = Finding(True, f"gradient norm {g:.4g} is {ratio:.0f}x its recent median {typical:.4g}", iteration)
        history.append(g)
        return finding


class LeakDetector:
    """The ``memory_growth`` detector (see the module's description): memory at each check,
    judged by levels of 3 checks, against the plateau it levelled off at (fast) and over a
    long window past the warm-up allowance (slow)."""

    def __init__(self, config: AnomalyConfig, total_iters: int | None = None) -> None:
        self.config = config
        self.total_iters = total_iters
        """The run's length in iterations (None: unknown; the slow rule then starts at once)."""
        self._first_iter: int | None = None  # this process's first judged check
        self._samples: deque[tuple[int, int]] = deque(
            maxlen=max(4, config.memory_window_checks, config.memory_plateau_checks, 3 * _LEVEL_CHECKS))
        self._plateau: float | None = None  # the highest level memory levelled off at (bytes)
        self._warm_memory: float | None = None  # memory at the slow rule's first judgement (bytes)

    def judge(self, iteration: int, memory_bytes: int, *, leaking: bool) -> Optional[Finding]:
        """One check's memory (bytes) at ``iteration``. ``leaking``: a leak is active, so
        it stays while memory keeps rising. None until there is enough to judge."""
        if self._first_iter is None:
            self._first_iter = iteration
        self._samples.append((iteration, memory_bytes))
        samples = [m for _, m in self._samples]
        tail = samples[len(samples) % _LEVEL_CHECKS:]
        levels = [median(tail[i:i + _LEVEL_CHECKS]) for i in range(0, len(tail), _LEVEL_CHECKS)]
        # The probes' own scatter (a standard deviation, bytes), from the changes between
        # consecutive checks: a step up or a spike is one or two of them, which the median
        # ignores.
        changes = [abs(b - a) for a, b in zip(samples, samples[1:])]
        noise = _MAD_TO_SIGMA * median(changes) / math.sqrt(2) if changes else 0.0
        finding = self._rise_off_plateau(iteration, levels, noise, leaking)
        if finding is None or not finding.present:
            finding = self._growth_past_warmup(iteration, noise) or finding
        self._learn_plateau(levels)
        return finding

    def _threshold(self, level: float) -> float:
        """The least growth from ``level`` (bytes) that counts as a probable leak."""
        return max(self.config.memory_growth * level, self.config.memory_min_growth_bytes)

    def _learn_plateau(self, levels: list[float]) -> None:
        """Memory that stayed within half the threshold over the last
        ``memory_plateau_checks`` checks levelled off; the highest plateau so far is kept, so
        that memory back at a level it held before (buffers freed, then the training state
        grown back) is never a rise."""
        if len(levels) * _LEVEL_CHECKS < self.config.memory_plateau_checks:
            return
        recent = levels[-max(1, self.config.memory_plateau_checks // _LEVEL_CHECKS):]
        top = max(recent)
        if top - min(recent) <= self._threshold(min(recent)) / 2:
            self._plateau = top if self._plateau is None else max(self._plateau, top)

    def _rise_off_plateau(self, iteration: int, levels: list[float], noise: float, leaking: bool) -> Optional[Finding]:
        """The fast rule: the last three levels rise at a steady rate, to more than the
        threshold above the plateau. Each rise must be at least a quarter of the threshold,
        three times the probes' scatter (``noise``, bytes) and a quarter of both rises, so that
        a step up followed by noise or by a small allocation is no rise; once a leak is
        active, rising at all keeps it."""
        if self._plateau is None or len(levels) < 3:
            return None
        first, middle, last = levels[-3:]
        growth = last - self._plateau
        needed = self._threshold(self._plateau)
        if leaking:
            steady = last > first
        else:
            steady = min(middle - first, last - middle) >= max(needed / 4, 3 * noise, (last - first) / 4)
        message = (
            f"memory rose steadily to {last / _GIB:.2f} GiB, {growth / _GIB:.2f} GiB "
            f"(+{growth / max(self._plateau, 1):.0%}) above where it had levelled off, over the last "
            f"{3 * _LEVEL_CHECKS} checks: a probable leak"
        )
        return Finding(steady and growth >= needed, message, iteration)

    def _growth_past_warmup(self, iteration: int, noise: float) -> Optional[Finding]:
        """The slow rule: steady growth over the whole window, all of it past the warm-up
        allowance: each quarter's median above the one before by a third of the threshold and
        twice the probes' scatter (``noise``, bytes). The quarters have an odd number of
        checks, so that a step up moves one quarter's median or the next, never half of it
        into each."""
        size = max(4, self.config.memory_window_checks)
        if len(self._samples) < size:
            return None
        window = list(self._samples)[-size:]
        if self.total_iters is not None and self._first_iter is not None:
            allowance = self.config.memory_warmup_percent / 100 * self.total_iters
            if window[0][0] - self._first_iter < allowance:
                return None
        quarter = size // 4 if size // 4 % 2 else size // 4 - 1
        samples = [m for _, m in window][size - 4 * quarter:]
        medians = [median(samples[i * quarter:(i + 1) * quarter]) for i in range(4)]
        if self._warm_memory is None:
            self._warm_memory = medians[0]
        # Growth is measured against the memory once warm, not the window's own start, so
        # that a leak at a constant rate stays a leak as the memory it has taken adds up.
        needed = self._threshold(self._warm_memory)
        growth = medians[-1] - medians[0]
        steady = all(later - earlier >= max(needed / 3, 2 * noise) for earlier, later in zip(medians, medians[1:]))
        message = (
            f"memory grew steadily by {growth / _GIB:.2f} GiB (+{growth / max(medians[0], 1):.0%}) "
            f"over the last {4 * quarter} checks: a probable leak"
        )
        return Finding(steady and growth >= needed, message, iteration)
