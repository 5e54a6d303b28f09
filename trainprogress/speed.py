"""Speed over a recent window of step times (pure: fed durations, never reads a clock)."""

from __future__ import annotations

from collections import deque


class SpeedWindow:
    """Mean step time over the last ``size`` optimizer steps.

    Step times are wall seconds per step with marked pauses already taken out, so the
    speed is training speed. A stall inside a step (an unwrapped eval, a GC pause) is part
    of the mean: it is what the run really did in that window.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"speed window size must be >= 1, got {size}")
        self._times: deque[float] = deque(maxlen=size)

    def add_group(self, seconds: float, steps: int) -> None:
        """Add ``steps`` steps timed together in ``seconds``, each counted as their mean."""
        if steps > 0:
            self._times.extend([seconds / steps] * min(steps, self._times.maxlen))

    @property
    def seconds_per_iter(self) -> float | None:
        """Mean seconds per step over the window, None while empty."""
        if not self._times:
            return None
        # Summed afresh each time: it runs only at reports, and a running sum would drift.
        return sum(self._times) / len(self._times)

    @property
    def iters_per_s(self) -> float | None:
        """Steps per second over the window, None while empty or when no time passed."""
        spi = self.seconds_per_iter
        if spi is None or spi <= 0:
            return None
        return 1.0 / spi
