"""ScheduleAreas: the areas under a learning-rate schedule that the loss forecast fits with.

S1(s) is the sum of the (peak-normalised) learning rates of steps 1..s. Two anneal terms are
kept, and the forecast averages the laws fitted with each by how well they fit. S2(s) is the
annealing area of Tissue et al. (2024): the sum, over steps up to s, of the rate's drops
carried with momentum (m_i = decay * m_(i-1) + drop_i). LD(s) is the loss-drop shape of the
multi-power law (Luo et al. 2025, "A Multi-Power Law for Loss
Curve Prediction Across Learning Rate Schedules"): LD(s) = sum over steps k <= s of
(eta_(k-1) - eta_k) * G(eta_k^-gamma * S_k(s)), G(x) = 1 - (x / tau + 1)^-beta, with S_k(s)
the rate's area from step k to s. Each drop of the rate lowers the loss by an amount that
grows, then saturates, with the area trained after it, faster the lower the rate. The
forecast fits LD's size (B); gamma and beta are the paper's order of magnitude (0.5), and tau,
the area over which a drop takes effect, is a fixed share of the whole run's area (the paper's
C is fitted per model in raw learning-rate units; a share keeps it the same for a 300-step
and a 5,000,000-step run). The areas are made once for a run and kept, so a forecast at each
report only looks them up.

A long run's schedule is read on a grid of at most MAX_POINTS steps (every step for runs up
to that size), so that a multi-million-step run pays for MAX_POINTS calls of its schedule
once, not for millions; between grid points S1 is interpolated. The drops are summed into at
most DROP_BLOCKS blocks (a drop is placed at its block's end, at most total_steps /
DROP_BLOCKS steps late), so LD at the ~50 steps a fit needs costs a 50 x DROP_BLOCKS sum.
"""

from __future__ import annotations

import math
from typing import Callable

MAX_POINTS = 65_536
ANNEAL_MOMENTUM = 0.999         # lambda of S2's momentum (Tissue et al.)
CHUNK = 512
DROP_BLOCKS = 1024
# The multi-power law's G: tuned on the "tune" half of benchmarks/bench_forecast.py's curves,
# where tau from 0.005 to 0.1 of the run's area and gamma 0 or 0.5 changed errors by < 0.1 point.
DROP_TAU = 0.02                 # a drop takes effect over this share of the run's rate area
DROP_GAMMA = 0.5                # ...faster after a low rate: the area is scaled by eta_k^-gamma
DROP_BETA = 0.5                 # ...and saturates as a power law of it


class ScheduleAreas:
    """S1, S2 and the loss-drop shape LD of one run's schedule, for steps 1..total_steps.
    ``rates``: the learning rate at ``grid`` steps (1, 1 + stride, ...), each standing for ``stride`` steps."""

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
        self._drops = _drop_blocks(np, drops, rate, self.s1)
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

    def anneal_terms(self):
        """The anneal terms the forecast fits, each a function of the step: the multi-power
        law's loss drop LD and the LR-annealing law's S2."""
        return (self.loss_drop, self.annealing_area)

    def annealing_area(self, step):
        """S2 at ``step``."""
        return self.np.interp(step, self.grid, self.s2)

    def loss_drop(self, step):
        """LD at ``step`` (a number or an array of them), per unit of the law's B."""
        np = self.np
        drop, rate, area_at = self._drops
        area = np.interp(np.atleast_1d(np.asarray(step, dtype=float)), self.grid, self.s1)
        since = area[:, None] - area_at[None, :]     # the area trained since each drop
        scaled = np.maximum(since, 0.0) * rate[None, :] ** -DROP_GAMMA / (DROP_TAU * self.s1[-1])
        taken = np.where(since >= 0, drop[None, :] * (1 - (scaled + 1) ** -DROP_BETA), 0.0)
        out = taken.sum(axis=1)
        return out if np.ndim(step) else float(out[0])


def _drop_blocks(np, drops, rate, s1):
    """The rate's drops summed into at most DROP_BLOCKS blocks, the blocks where it fell: each
    one's total drop, and the rate and S1 at its last step (the rate floored at a thousandth of
    the peak, so that a decay to zero gives eta^-gamma a finite value)."""
    per = -(-rate.size // DROP_BLOCKS)
    starts = np.arange(0, rate.size, per)
    ends = np.minimum(starts + per - 1, rate.size - 1)
    total = np.add.reduceat(drops, starts)
    fell = total > 0
    return total[fell], np.maximum(rate[ends][fell], 1e-3), s1[ends][fell]


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
