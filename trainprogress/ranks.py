"""Cross-rank figures: one small collective per scheduled report, on a side process group.

At each scheduled report boundary (every rank computes the same ones) every rank sends one
row of numbers: its mean time per step waiting for data and computing since the last
report (milliseconds), its peak memory, and its latest and smoothed loss. The rows travel
in a single ``all_gather`` on a gloo group of CPU tensors created with a timeout, so the
exchange never enters the accelerator's stream and a dead rank delays a report by at most
the timeout; after a failed exchange the figures are switched off with one warning and
training goes on. Host names are gathered once, when the group is made.

Rank 0 turns the rows into ``RankFigures``: the report's global loss (the mean over ranks),
the "🛰️ Ranks" section, the flat ``ranks/...`` scalars, and the straggler detector's input.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from statistics import median
from typing import TYPE_CHECKING, Callable, Mapping

from . import format as fmt
from .energy import key_code, sum_distinct
from .report import Anomaly
from .stragglers import SlowRank, StragglerConfig, StragglerDetector, find_slow_ranks, medians_of_others

if TYPE_CHECKING:
    from .value_buffer import Values
    from .cost import CostMeter
    from .pauses import Pauses

logger = logging.getLogger(__name__)

# The row each rank sends: iteration, steps, data ms/step, compute ms/step, peak memory
# bytes, latest loss, smoothed loss, then ENERGY_SLOTS pairs (device key code, joules) of
# its energy meters (trainprogress.energy; with cost=). Unknown values travel as NaN.
ENERGY_SLOTS = 4
_ENERGY_AT = 7
_FIELDS = _ENERGY_AT + 2 * ENERGY_SLOTS


@dataclass(frozen=True)
class CrossRankConfig:
    """How the cross-rank exchange runs and when a rank counts as a straggler."""

    timeout_s: float = 300.0
    """Seconds the per-report exchange waits for every rank before giving up (then the
    figures are switched off and training goes on)."""

    stragglers: StragglerConfig = field(default_factory=StragglerConfig)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"CrossRankConfig.timeout_s must be > 0 seconds, got {self.timeout_s!r}")


@dataclass(frozen=True)
class RankFigures:
    """Every rank's figures at one scheduled report, indexed by rank. Times are means per
    step since the previous report, in milliseconds; memory is each rank's peak in bytes
    (CUDA's peak allocation where CUDA is in use, else the process's peak resident memory);
    losses are NaN where a rank passed none. ``exchange_ms`` is what the collective took on
    rank 0, waiting for the last rank included. ``nodes`` counts torchrun's nodes (its
    GROUP_RANK), else distinct host names."""

    iteration: int
    hosts: tuple[str, ...]
    nodes: int
    data_ms: tuple[float, ...]
    compute_ms: tuple[float, ...]
    peak_memory_bytes: tuple[float, ...]
    loss: tuple[float, ...]
    smoothed_loss: tuple[float, ...]
    exchange_ms: float
    slow: tuple[SlowRank, ...] = ()
    energy_j: float | None = None  # every rank's metered energy, each device counted once; None: none metered

    @property
    def world_size(self) -> int:
        return len(self.hosts)

    @property
    def global_loss(self) -> float | None:
        """The mean of the ranks' latest losses: the loss of the whole global batch."""
        return _mean_known(self.loss)

    @property
    def global_smoothed_loss(self) -> float | None:
        """The mean of the ranks' smoothed losses."""
        return _mean_known(self.smoothed_loss)

    def scalars(self) -> dict[str, float]:
        """The flat ``ranks/...`` numbers for JSONL, TensorBoard and W&B."""
        out = {
            "ranks/world_size": float(self.world_size),
            "ranks/nodes": float(self.nodes),
            "ranks/exchange_ms": self.exchange_ms,
            "ranks/stragglers": float(len(self.slow)),
        }
        for name, values in (("data_ms", self.data_ms), ("compute_ms", self.compute_ms)):
            top = _argmax(values)
            out[f"ranks/{name}_median"] = median(values)
            out[f"ranks/{name}_max"] = values[top]
            out[f"ranks/{name}_max_rank"] = float(top)
        known = [(m, r) for r, m in enumerate(self.peak_memory_bytes) if math.isfinite(m)]
        if known:
            peak, rank = max(known)
            out["ranks/peak_memory_gib_max"] = peak / fmt.GIB
            out["ranks/peak_memory_gib_max_rank"] = float(rank)
        losses = [x for x in self.smoothed_loss if math.isfinite(x)]
        if losses:
            out["ranks/loss_smoothed_min"] = min(losses)
            out["ranks/loss_smoothed_max"] = max(losses)
        return out

    def section_lines(self) -> dict[str, object]:
        """The "🛰️ Ranks" section's lines."""
        nodes = "1 node" if self.nodes == 1 else f"{self.nodes} nodes"
        lines: dict[str, object] = {"Ranks": f"{self.world_size} ({nodes}), at iteration {fmt.format_count(self.iteration)}"}
        for label, values in (("Data wait", self.data_ms), ("Compute", self.compute_ms)):
            top = _argmax(values)
            others = medians_of_others(values)[top] if self.world_size > 1 else values[top]
            lines[label] = f"max {values[top]:.1f} ms/iter on rank {top} ({self.hosts[top]}), the others' median {others:.1f} ms"
        known = [(m, r) for r, m in enumerate(self.peak_memory_bytes) if math.isfinite(m)]
        if known:
            (low, _), (high, rank) = min(known), max(known)
            lines["Peak memory"] = f"max {fmt.format_gib(high)} on rank {rank}, min {fmt.format_gib(low)}"
        finite = [(x, r) for r, x in enumerate(self.smoothed_loss) if math.isfinite(x)]
        if len(finite) > 1:
            (low, low_rank), (high, high_rank) = min(finite), max(finite)
            lines["Loss spread"] = (f"{fmt.format_loss(low)} (rank {low_rank}) to "
                                    f"{fmt.format_loss(high)} (rank {high_rank}); the loss above is their mean")
        if self.slow:
            lines["Slow now"] = "; ".join(s.describe() for s in self.slow)
        lines["Exchange"] = f"{self.exchange_ms:.1f} ms"
        return lines


def _mean_known(values: tuple[float, ...]) -> float | None:
    known = [x for x in values if not math.isnan(x)]
    return sum(known) / len(known) if known else None


def _argmax(values: tuple[float, ...]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def peak_memory_bytes() -> float:
    """This process's peak memory in bytes: CUDA's peak allocation when the caller has
    initialised CUDA, else the peak resident set size; NaN when neither can be told."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        try:
            return float(torch.cuda.max_memory_allocated())
        except Exception:  # a driver error must not stop training
            logger.debug("CUDA peak memory probe failed", exc_info=True)
    try:
        import resource
    except ImportError:  # not on Windows
        return math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def world_size() -> int:
    """The torch.distributed world size when a process group is up, else 1."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return 1
    return torch.distributed.get_world_size()


class CrossRank:
    """The per-report exchange between ranks. Every rank must create one (it makes a
    process group) and call ``exchange`` at the same iterations; rank 0 gets the figures."""

    def __init__(self, config: CrossRankConfig, clock: Callable[[], float], start_iter: int) -> None:
        import torch.distributed as dist

        self.config = config
        self._clock = clock
        self._dist = dist
        self._group = dist.new_group(backend="gloo", timeout=timedelta(seconds=config.timeout_s))
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        where: list[object] = [None] * self.world_size
        host = socket.gethostname()
        dist.all_gather_object(where, (host, os.environ.get("GROUP_RANK", host)), group=self._group)
        self.hosts = tuple(str(h) for h, _ in where)
        self.nodes = len({node for _, node in where})
        self.detector = StragglerDetector(config.stragglers)
        self.figures: RankFigures | None = None
        self.anomaly: Anomaly | None = None
        self._broken = False
        self._last_iter = start_iter
        self._last_time = clock()
        self._last_paused_s = 0.0
        self._last_data_s = 0.0

    @property
    def anomalies(self) -> tuple[Anomaly, ...]:
        """The straggler anomaly while a rank is named (rank 0), else nothing."""
        return () if self.anomaly is None else (self.anomaly,)

    def exchange(self, iteration: int, paused_s: float, data_s: float, loss: float | None,
                 smoothed_loss: float | None, energy: Mapping[str, float] | None = None,
                 ) -> list[tuple[str, dict[str, object]]]:
        """Send this rank's row; on rank 0 keep every rank's figures in ``figures`` and update
        the straggler anomaly. ``paused_s`` and ``data_s`` are the tracker's running totals of
        paused and data-waiting seconds; ``energy`` this rank's joules per device key (at
        most ENERGY_SLOTS devices travel). Returns the events (kind, data) this exchange causes:
        a straggler named ("anomaly") or cleared ("anomaly_cleared"); none on other ranks."""
        if self._broken:
            return []
        import torch

        now = self._clock()
        steps = max(1, iteration - self._last_iter)
        train_s = (now - self._last_time) - (paused_s - self._last_paused_s)
        waited_s = data_s - self._last_data_s
        row = torch.tensor([
            iteration, steps, 1000.0 * waited_s / steps, 1000.0 * max(0.0, train_s - waited_s) / steps,
            peak_memory_bytes(), math.nan if loss is None else loss, math.nan if smoothed_loss is None else smoothed_loss,
            *_energy_slots(energy or {}),
        ], dtype=torch.float64)
        rows = [torch.empty(_FIELDS, dtype=torch.float64) for _ in range(self.world_size)]
        try:
            self._dist.all_gather(rows, row, group=self._group)
        except Exception as exc:  # a dead or hung rank: the report goes on without the figures
            self._broken = True
            logger.warning(
                "trainprogress: rank %d: the cross-rank exchange at iteration %d failed (%s: %s); cross-rank "
                "figures are off from here, training goes on", self.rank, iteration, type(exc).__name__, exc)
            return []
        done = self._clock()
        self._last_iter, self._last_time, self._last_paused_s, self._last_data_s = iteration, done, paused_s, data_s
        if self.rank != 0:
            return []
        table = [r.tolist() for r in rows]
        iterations = {int(r[0]) for r in table}
        if len(iterations) > 1:
            logger.warning("trainprogress: ranks reported at different iterations %s; every rank must call "
                           "step() once per optimizer step", sorted(iterations))
        data_ms, compute_ms = tuple(r[2] for r in table), tuple(r[3] for r in table)
        slow = find_slow_ranks(self.config.stragglers, self.hosts, data_ms, compute_ms)
        self.figures = RankFigures(
            iteration=iteration, hosts=self.hosts, nodes=self.nodes, data_ms=data_ms, compute_ms=compute_ms,
            peak_memory_bytes=tuple(r[4] for r in table), loss=tuple(r[5] for r in table),
            smoothed_loss=tuple(r[6] for r in table), exchange_ms=1000.0 * (done - now), slow=tuple(slow),
            energy_j=_energy_of_ranks(table),
        )
        was_named, self.anomaly = self.anomaly is not None, self.detector.observe(iteration, slow, self.world_size)
        if self.anomaly is not None and not was_named:
            return [("anomaly", {"anomaly": "straggler", "message": self.anomaly.message, "since_iter": self.anomaly.since_iter})]
        if self.anomaly is None and was_named:
            return [("anomaly_cleared", {"anomaly": "straggler"})]
        return []

    def close(self) -> None:
        """Release the side group (collective: every rank calls it, as at the end of a run)."""
        if self._group is not None and not self._broken and self._dist.is_initialized():
            try:
                self._dist.destroy_process_group(self._group)
            except Exception:  # the default group may already be gone
                logger.debug("destroying the cross-rank group failed", exc_info=True)
        self._group = None


class RanksAtBoundary:
    """The tracker's side of the cross-rank exchange: at each scheduled boundary, every rank
    sends its figures (``exchange``) with the loop's phase set to "collective" for the
    watchdog, and its energy when it meters (``cost``); on rank 0 the figures of this
    boundary then give the report the loss averaged over ranks (``figures_at``), the "🛰️
    Ranks" section (``section_lines``), every rank's energy, and the straggler anomaly."""

    __slots__ = ("_cost", "_pauses", "cross_rank")

    def __init__(self, cross_rank: CrossRank, cost: CostMeter | None, pauses: Pauses) -> None:
        self.cross_rank = cross_rank
        self._cost = cost
        self._pauses = pauses

    def exchange(self, iteration: int, values: Values, paused_s: float) -> list[tuple[str, dict[str, object]]]:
        """This rank's part of the exchange at ``iteration`` (``values``: the loop's, read;
        ``paused_s``: the run's paused seconds so far). Returns the straggler events."""
        pauses = self._pauses
        phase, pauses.phase = pauses.phase, "collective"
        energy = self._cost.read() if self._cost is not None else None
        events = self.cross_rank.exchange(iteration, paused_s, pauses.data_wait.total_s,
                                          values.loss, values.smoothed_loss, energy)
        pauses.phase = phase
        figures = self.figures_at(iteration)
        if self._cost is not None and figures is not None:
            self._cost.merge_ranks(figures.energy_j)
        return events

    def figures_at(self, iteration: int) -> RankFigures | None:
        """Every rank's figures when the exchange at ``iteration`` produced them (rank 0)."""
        figures = self.cross_rank.figures
        return figures if figures is not None and figures.iteration == iteration else None

    def section_lines(self) -> dict[str, object]:
        """The "🛰️ Ranks" section as of the latest exchange (empty before the first)."""
        figures = self.cross_rank.figures
        return figures.section_lines() if figures else {}

    def with_stragglers(self, active: tuple[Anomaly, ...]) -> tuple[Anomaly, ...]:
        """``active`` anomalies with the straggler one as of the latest exchange."""
        return tuple(a for a in active if a.kind != "straggler") + self.cross_rank.anomalies

    @property
    def anomalies(self) -> tuple[Anomaly, ...]:
        return self.cross_rank.anomalies

    def close(self) -> None:
        self.cross_rank.close()


def _energy_slots(energy: Mapping[str, float]) -> list[float]:
    """A rank's energy readings as ENERGY_SLOTS (key code, joules) pairs, NaN-padded."""
    pairs = [value for key, joules in list(energy.items())[:ENERGY_SLOTS] for value in (key_code(key), joules)]
    return pairs + [math.nan] * (2 * ENERGY_SLOTS - len(pairs))


def _energy_of_ranks(table: list[list[float]]) -> float | None:
    """Every rank's energy from the exchanged rows, each device counted once; None when no
    rank metered any."""
    readings = [{int(row[i]): row[i + 1] for i in range(_ENERGY_AT, _FIELDS, 2) if math.isfinite(row[i])} for row in table]
    return sum_distinct(readings)[0] if any(readings) else None


def make_cross_rank(setting: object, clock: Callable[[], float], start_iter: int) -> CrossRank | None:
    """The CrossRank for the tracker's ``cross_rank`` argument: None when it is off or the
    job is a single process (which then pays nothing). Raises when it is on and the
    environment says several processes but no process group is up."""
    if not setting:
        return None
    config = CrossRankConfig() if setting is True else setting
    if not isinstance(config, CrossRankConfig):
        raise TypeError(f"cross_rank must be a bool or a CrossRankConfig, got {setting!r}")
    if world_size() == 1:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError("cross_rank=True in a job of several processes (WORLD_SIZE > 1) needs the process "
                               "group first: call torch.distributed.init_process_group() before creating the tracker")
        return None
    return CrossRank(config, clock, start_iter)

