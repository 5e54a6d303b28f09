"""AnomalyConfig: what each detector looks for, how sure it must be, and how reports change
while an anomaly lasts; and a detector's verdict, the Finding. The detectors themselves are
in ``monitor.py`` and ``leak.py`` (described in this package's docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..report_schedule import parse_interval

MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation is 1.4826 x its MAD


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
    """Percent of the run between reports while an anomaly is new or getting worse."""

    steady_after_reports: int = 3
    """Reports an anomaly gets on the dense schedule (the one that raised it included)
    before, if it holds steady (same kind, same subject such as the same slow rank, not
    worse by ``worse_factor``), it goes back to the regular schedule. It stays in every
    report meanwhile, its message starting "still: ", until it clears. A condition that
    lasts the whole run so costs a few extra reports, not ten times as many."""

    worse_factor: float = 1.5
    """How much worse a steady anomaly must get to have dense reports again: its severity
    (a straggler's excess ms per step over the other ranks' median, a throughput drop's
    median step time, a loss spike's rise above the recent median, a gradient norm,
    memory in use) over this multiple of its highest value while it was reported densely
    (1.5: 50% worse; a 4x slowdown turning into 8x is worse, its jitter is not). A
    non-finite loss is as bad as it gets: it never counts as worse."""

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
        for name in ("clear_after_checks", "history_checks", "steady_after_reports", "min_history_checks", "pool_steps",
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
        if not self.worse_factor > 1:
            raise ValueError(f"AnomalyConfig.worse_factor must be > 1 (e.g. 1.5 for 50% worse), got {self.worse_factor!r}")
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
    severity: float | None = None  # how bad, larger is worse (AnomalyConfig.worse_factor); None: not graded
