"""Speed over a recent window of steps (pure: fed durations, never reads a clock)."""

from __future__ import annotations

from collections import deque


class SpeedWindow:
    """Training speed (steps and tokens per second) over at least the last ``size`` optimizer
    steps, in whole stretches between the moments the tracker reads the loop's values.

    A device that runs ahead of the host (CUDA's queue, JAX's async dispatch) finishes the
    steps' work only when a value is read: until then the host times each step as the time
    to queue it, and the wait at the read is the rest. So the window is made of stretches
    from one read to the next (``end_stretch``), each its steps over its wall time, marked
    pauses and the tracker's own reporting left out. It holds the latest stretches that
    together have at least ``size`` steps: one stretch alone when it is longer than that.
    Steps since the last read count as the host timed them until a read ends their stretch
    (a report always does, so a report's speed is whole stretches). A stall inside a step
    (an unwrapped eval, a GC pause) counts: it is what the run really did.
    """

    __slots__ = ("_closed_steps", "_open", "_size", "_stretches")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"speed window size must be >= 1, got {size}")
        self._size = size
        # Ended stretches, oldest first, each [seconds, steps, tokens].
        self._stretches: deque[list[float]] = deque()
        self._closed_steps = 0
        self._open = [0.0, 0, 0.0]  # the stretch since the last read

    def add_group(self, seconds: float, steps: int, tokens: float = 0.0) -> None:
        """Add ``steps`` steps (carrying ``tokens`` tokens, when counted) timed together in
        ``seconds``, to the stretch since the last read."""
        self._open[0] += seconds
        self._open[1] += steps
        self._open[2] += tokens

    def end_stretch(self, waited_s: float) -> None:
        """The loop's values were read: ``waited_s`` seconds went to waiting for them, the
        device finishing the stretch's steps. The stretch ends, its steps timed in full."""
        seconds, steps, tokens = self._open
        self._open = [0.0, 0, 0.0]
        if not steps:  # nothing new since the last read: its wait belongs to the last stretch
            if self._stretches:
                self._stretches[-1][0] += seconds + waited_s
            return
        self._stretches.append([seconds + waited_s, steps, tokens])
        self._closed_steps += steps
        while len(self._stretches) > 1 and self._closed_steps - self._stretches[0][1] >= self._size:
            self._closed_steps -= self._stretches.popleft()[1]

    def _totals(self) -> tuple[float, int, float]:
        """Seconds, steps and tokens of the window: the open stretch and as many of the
        latest ended ones as make ``size`` steps."""
        seconds, steps, tokens = self._open
        for stretch_s, stretch_steps, stretch_tokens in reversed(self._stretches):
            if steps >= self._size:
                break
            seconds, steps, tokens = seconds + stretch_s, steps + stretch_steps, tokens + stretch_tokens
        return seconds, int(steps), tokens

    @property
    def seconds_per_iter(self) -> float | None:
        """Mean seconds per step over the window, None while empty."""
        seconds, steps, _ = self._totals()
        return seconds / steps if steps else None

    @property
    def iters_per_s(self) -> float | None:
        """Steps per second over the window, None while empty or when no time passed."""
        seconds, steps, _ = self._totals()
        return steps / seconds if steps and seconds > 0 else None

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens per second over the same window (the tokens fed with the groups), None
        while no token or no time was counted."""
        seconds, _, tokens = self._totals()
        return tokens / seconds if tokens and seconds > 0 else None
