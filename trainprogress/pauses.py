"""Pauses: time that is not training (eval, checkpoint, sampling), marked by begin and end
hooks that may nest, and the phase the loop is in, which a stall report names; and the
DataWaitTimer, the loop's waits for its next batch."""

from __future__ import annotations

from typing import Callable


class DataWaitTimer:
    """Adds up the time spent waiting for data: ``with timer:`` around the wait, or
    ``timer.add(seconds)`` for a wait measured elsewhere. Reads the clock twice per use and
    never touches a device."""

    __slots__ = ("_clock", "_start", "active", "total_s")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._start = 0.0
        self.active = False
        self.total_s = 0.0

    def __enter__(self) -> "DataWaitTimer":
        self.active = True
        self._start = self._clock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total_s += max(0.0, self._clock() - self._start)  # a clock set back inside it: 0 s
        self.active = False

    def add(self, seconds: float) -> None:
        """Count ``seconds`` of data waiting measured by the caller."""
        self.total_s += seconds


class Pauses:
    """Marked pauses on ``clock`` (seconds) and the loop's current phase.

    ``begin(name)`` and ``end()`` may nest: only the outermost pause counts, under its
    name, and ``end()`` returns its (name, seconds) when it closes. ``phase`` is "compute",
    the open pause's name, or what the owner sets (e.g. "collective" during a cross-rank
    exchange); ``current_phase()`` says "data" while ``data_wait`` is timing a wait for
    the next batch.
    """

    __slots__ = ("_clock", "_depth", "_name", "_start", "data_wait", "phase")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._depth = 0
        self._name = "pause"
        self._start = 0.0
        self.data_wait = DataWaitTimer(clock)
        self.phase = "compute"

    @property
    def active(self) -> bool:
        """True while a pause is open."""
        return self._depth > 0

    def begin(self, name: str) -> None:
        """Open a pause named ``name``, or nest one inside the open pause."""
        if self._depth == 0:
            self._name = name
            self._start = self._clock()
            self.phase = name  # what a stall report names
        self._depth += 1

    def end(self) -> tuple[str, float] | None:
        """Close the innermost pause. Returns the outermost pause's (name, seconds) when it
        is the one closed, else None; RuntimeError when no pause is open."""
        if self._depth == 0:
            raise RuntimeError("end_pause() called without a matching begin_pause(); call begin_pause(name) first")
        self._depth -= 1
        if self._depth:
            return None
        self.phase = "compute"
        return self._name, max(0.0, self._clock() - self._start)  # a clock set back inside it: 0 s

    def current_phase(self) -> str:
        """What the loop is doing now: "data", "compute", a pause's name, or the owner's phase."""
        return "data" if self.data_wait.active else self.phase
