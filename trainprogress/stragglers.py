"""Straggler detection across ranks: which rank the others wait for, judged once per report.

A rank that is slow to get its data shows in its own data-waiting time. Under DDP the other
ranks then wait for it inside the gradient all-reduce, which lands in their *compute* time,
so wall step times are equal on every rank. So a rank is named:

- for data, when its data time per step is over ``factor`` times the median of the other
  ranks';
- for compute, when its compute time is over ``factor`` times the others' median *and* its
  whole step (data + compute) is too: the time the others spend waiting for a slow rank
  raises their compute but never their whole step above the slow rank's.

The median is the other ranks' (leave-one-out), so that with two ranks the slow one is
compared with the fast one rather than with their average. Either way the excess must also
be at least ``min_excess_fraction`` of the others' median step, so that noise in
sub-millisecond figures names nobody. A rank named at ``reports_in_a_row``
reports in a row becomes a "straggler" anomaly; it clears after as many reports without.
The anomaly's subject is the ranks named, its severity the largest excess in ms per step:
a straggler that stays the same rank at about the same excess is steady (``dense.DenseReports``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .report import Anomaly


@dataclass(frozen=True)
class StragglerConfig:
    """How far from the median a rank must be, and for how long, to be named."""

    factor: float = 1.2
    """A rank's time over this multiple of the median rank's counts as slow (1.2: 20% slower)."""

    reports_in_a_row: int = 3
    """Reports in a row a rank must be slow before it is named (and fine before it clears)."""

    min_excess_fraction: float = 0.05
    """The least excess over the median that counts, as a fraction of the median step time."""

    def __post_init__(self) -> None:
        if not self.factor > 1:
            raise ValueError(f"StragglerConfig.factor must be > 1 (e.g. 1.2 for 20% slower than the median), got {self.factor!r}")
        if isinstance(self.reports_in_a_row, bool) or not isinstance(self.reports_in_a_row, int) or self.reports_in_a_row < 1:
            raise ValueError(f"StragglerConfig.reports_in_a_row must be an int >= 1, got {self.reports_in_a_row!r}")
        if not self.min_excess_fraction >= 0:
            raise ValueError(f"StragglerConfig.min_excess_fraction must be >= 0, got {self.min_excess_fraction!r}")


@dataclass(frozen=True)
class SlowRank:
    """One rank found slow at one report: which, where, in what, and by how much (ms/step)."""

    rank: int
    host: str
    what: str  # "data" or "compute"
    ms: float
    median_ms: float

    @property
    def excess_ms(self) -> float:
        """Milliseconds per step this rank takes over the other ranks' median: what they wait."""
        return self.ms - self.median_ms

    def describe(self) -> str:
        """E.g. "rank 5 on node-b: data 20.6 ms vs median 0.3 ms" (the other ranks' median)."""
        return f"rank {self.rank} on {self.host}: {self.what} {self.ms:.1f} ms vs median {self.median_ms:.1f} ms"


def find_slow_ranks(config: StragglerConfig, hosts: Sequence[str], data_ms: Sequence[float],
                    compute_ms: Sequence[float]) -> list[SlowRank]:
    """The ranks slow at one report, from each rank's mean data and compute time per step
    (milliseconds), by the rules in the module docstring; at most one entry per rank, data
    first."""
    if len(data_ms) < 2:
        return []
    total = [d + c for d, c in zip(data_ms, compute_ms)]
    others_data, others_compute, others_total = (medians_of_others(v) for v in (data_ms, compute_ms, total))
    slow = []
    for rank, host in enumerate(hosts):
        factor, floor = config.factor, config.min_excess_fraction * others_total[rank]
        if data_ms[rank] > factor * others_data[rank] and data_ms[rank] - others_data[rank] > floor:
            slow.append(SlowRank(rank, host, "data", data_ms[rank], others_data[rank]))
        elif (compute_ms[rank] > factor * others_compute[rank] and total[rank] > factor * others_total[rank]
              and compute_ms[rank] - others_compute[rank] > floor):
            slow.append(SlowRank(rank, host, "compute", compute_ms[rank], others_compute[rank]))
    return slow


def medians_of_others(values: Sequence[float]) -> list[float]:
    """For each index, the median of all the other values (at least two values), from one
    sort: O(n log n) for any number of ranks."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ordered = [values[i] for i in order]
    rest = len(values) - 1
    out = [0.0] * len(values)
    for position, index in enumerate(order):
        # The k-th of the remaining values is ordered[k] before the removed one, else ordered[k + 1].
        def kth(k: int) -> float:
            return ordered[k if k < position else k + 1]

        out[index] = (kth((rest - 1) // 2) + kth(rest // 2)) / 2
    return out


class StragglerDetector:
    """Keeps each rank's run of slow (or fine) reports and the resulting anomaly."""

    def __init__(self, config: StragglerConfig) -> None:
        self.config = config
        self._slow_runs: dict[int, int] = {}
        self._fine_runs: dict[int, int] = {}
        self._named: dict[int, SlowRank] = {}
        self._since_iter: int | None = None

    def observe(self, iteration: int, slow: Sequence[SlowRank], world_size: int) -> Anomaly | None:
        """One report's slow ranks; returns the "straggler" anomaly while any rank is named."""
        slow_now = {s.rank: s for s in slow}
        for rank in range(world_size):
            if rank in slow_now:
                self._slow_runs[rank] = self._slow_runs.get(rank, 0) + 1
                self._fine_runs[rank] = 0
                if self._slow_runs[rank] >= self.config.reports_in_a_row or rank in self._named:
                    self._named[rank] = slow_now[rank]
            else:
                self._slow_runs[rank] = 0
                self._fine_runs[rank] = self._fine_runs.get(rank, 0) + 1
                if rank in self._named and self._fine_runs[rank] >= self.config.reports_in_a_row:
                    del self._named[rank]
        if not self._named:
            self._since_iter = None
            return None
        if self._since_iter is None:
            self._since_iter = iteration
        runs = self.config.reports_in_a_row
        named = self.named
        message = "straggler " + "; ".join(s.describe() for s in named)
        ranks = ", ".join(str(s.rank) for s in named)
        subject = ("rank " if len(named) == 1 else "ranks ") + ranks
        return Anomaly("straggler", f"{message} (slow for {runs}+ reports in a row)", self._since_iter,
                       severity=max(s.excess_ms for s in named), subject=subject)

    @property
    def named(self) -> tuple[SlowRank, ...]:
        """The ranks named as stragglers now, by rank."""
        return tuple(s for _, s in sorted(self._named.items()))
