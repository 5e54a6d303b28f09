"""LeakDetector: the ``memory_growth`` detector (see :mod:`trainprogress.anomaly` for the
rules and :class:`trainprogress.anomaly.config.AnomalyConfig` for their settings)."""

from __future__ import annotations

import math
from collections import deque
from statistics import median
from typing import TYPE_CHECKING, Optional

from ..format import GIB
from .config import MAD_TO_SIGMA, AnomalyConfig, Finding

if TYPE_CHECKING:
    from ..run_size import RunSize

# Memory is judged by medians of this many checks: odd, so that a single step up lands in
# one level or the next, never half in each.
_LEVEL_CHECKS = 3


class LeakDetector:
    """The ``memory_growth`` detector (see the module's description): memory at each check,
    judged by levels of 3 checks, against the plateau it levelled off at (fast) and over a
    long window past the warm-up allowance (slow)."""

    def __init__(self, config: AnomalyConfig, size: RunSize | None = None) -> None:
        self.config = config
        self.size = size
        """The run's size, read at each judgement (None: unknown; the slow rule then starts at once)."""
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
        noise = MAD_TO_SIGMA * median(changes) / math.sqrt(2) if changes else 0.0
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
            f"memory rose steadily to {last / GIB:.2f} GiB, {growth / GIB:.2f} GiB "
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
        if self.size is not None and self._first_iter is not None:
            allowance = self.config.memory_warmup_percent / 100 * self.size.total_iters
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
            f"memory grew steadily by {growth / GIB:.2f} GiB (+{growth / max(medians[0], 1):.0%}) "
            f"over the last {4 * quarter} checks: a probable leak"
        )
        return Finding(steady and growth >= needed, message, iteration)
