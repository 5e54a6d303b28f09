"""ScheduleAreas: the areas under a learning-rate schedule that the loss forecast fits with.

S1(s) is the sum of the (peak-normalised) learning rates of steps 1..s; S2(s) the annealing
area of Tissue et al. (2024): the sum, over steps up to s, of the rate's drops carried with
momentum (m_i = decay * m_(i-1) + drop_i). They are made once for a run and kept, so a
forecast at each report only looks them up.

A long run's schedule is read on a grid of at most MAX_POINTS steps (every step for runs up
to that size), so that a multi-million-step run pays for MAX_POINTS calls of its schedule
once, not for millions; between grid points the areas are interpolated. A smooth schedule
loses nothing that matters to a 48-bin fit; a drop between two grid points is placed at the
next one (at most total_steps / MAX_POINTS steps late).
"""

from __future__ import annotations

import math
from typing import Callable

MAX_POINTS = 65_536
ANNEAL_MOMENTUM = 0.999         # lambda of S2's momentum (Tissue et al.)
CHUNK = 512


class ScheduleAreas:
    """S1 and S2 of one run's schedule, for steps 1..total_steps. ``rates``: the learning
    rate at ``grid`` steps (1, 1 + stride, ...), each standing for ``stride`` steps."""

    def __init__(self, np, rates, stride: int, total_steps: int) -> None:
        rates = np.asarray(rates, dtype=float)
        peak = float(rates.max()) if rates.size else 0.0
        if not (peak > 0 and math.isfinite(peak) and np.isfinite(rates).all()):
            raise ValueError("the learning-rate schedule must be finite with a positive peak")
        self.np = np
        self.total_steps = total_steps
        rate = rates / peak
        self.grid = 1.0 + stride * np.arange(rate.size, dtype=float)
        self.s1 = np.cumsum(rate) * stride
        drops = np.maximum(np.concatenate(([0.0], rate[:-1] - rate[1:])), 0.0)
        decay = ANNEAL_MOMENTUM ** stride
        # Each grid point's momentum lasts `stride` steps, decaying by ANNEAL_MOMENTUM at each.
        span = (1 - decay) / (1 - ANNEAL_MOMENTUM)
        self.s2 = np.cumsum(_momentum(np, drops, decay)) * span
        self.has_anneal = bool(self.s2[-1] > 1e-9)
        self.warmup_end = float(self.grid[int(np.argmax(rate >= 0.99))])

    @classmethod
    def from_rates(cls, np, lrs) -> "ScheduleAreas":
        """From the learning rate of every step 1..len(lrs)."""
        rates = np.asarray(lrs, dtype=float)
        return cls(np, rates, 1, rates.size)

    @classmethod
    def from_schedule(cls, np, schedule: Callable[[int], float], total_steps: int) -> "ScheduleAreas":
        """From a callable step -> rate (1-based), called at most MAX_POINTS times."""
        stride = max(1, -(-total_steps // MAX_POINTS))
        grid = range(1, total_steps + 1, stride)
        rates = np.fromiter((float(schedule(step)) for step in grid), dtype=float, count=len(grid))
        return cls(np, rates, stride, total_steps)

    def progress(self, step):
        """S1 at ``step`` (a number or an array of them)."""
        return self.np.interp(step, self.grid, self.s1)

    def anneal(self, step):
        """S2 at ``step``."""
        return self.np.interp(step, self.grid, self.s2)


def _momentum(np, drops, decay):
    """m_i = decay * m_(i-1) + drops_i, vectorised in blocks (a plain loop is too slow at 72k steps)."""
    out = np.empty_like(drops)
    carry = 0.0
    # blocks short enough that decay^block stays far from underflow (a coarse grid's decay is small)
    block = CHUNK if decay > 0.64 else max(1, int(-200 / math.log10(max(decay, 1e-300))))
    powers = decay ** np.arange(block)
    for begin in range(0, drops.size, block):
        chunk = drops[begin:begin + block]
        n = chunk.size
        # m_j = decay^j * carry + sum_{k<=j} decay^(j-k) chunk_k, via scaled cumulative sums
        out[begin:begin + n] = np.cumsum(chunk / powers[:n]) * powers[:n] + carry * decay * powers[:n]
        carry = out[begin + n - 1]
    return out
