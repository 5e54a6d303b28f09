"""The hang watchdog: a daemon thread that notices when training stops making steps.

It polls the tracker's iteration counter (an int the training thread writes anyway, so a
step costs nothing extra) and learns the typical step from how fast the counter moves.
When the counter has not moved for ``factor`` times the typical step, and at least
``min_stall_s``, it reports a stall once (iteration, seconds stalled, the last known phase:
data, compute, eval, checkpoint, collective, ...); when steps come again it reports the
recovery. It never raises into the training thread, never touches signal handlers, and
stops when the tracker closes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from statistics import median
from typing import Any, Callable

from .report import Event

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchdogConfig:
    """When a pause in steps counts as a stall."""

    factor: float = 10.0
    """A stall is no step for this many typical steps..."""

    min_stall_s: float = 300.0
    """...and for at least this many seconds."""

    first_step_s: float = 1800.0
    """Seconds allowed before the first step (data loading, compilation, a resume's reload)."""

    poll_s: float | None = None
    """Seconds between looks at the counter; None: a tenth of ``min_stall_s``, at most 10 s."""

    def __post_init__(self) -> None:
        if not self.factor >= 1:
            raise ValueError(f"WatchdogConfig.factor must be >= 1 typical steps, got {self.factor!r}")
        for name in ("min_stall_s", "first_step_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"WatchdogConfig.{name} must be > 0 seconds, got {getattr(self, name)!r}")
        if self.poll_s is not None and not self.poll_s > 0:
            raise ValueError(f"WatchdogConfig.poll_s must be > 0 seconds or None, got {self.poll_s!r}")

    @property
    def poll_interval_s(self) -> float:
        return self.poll_s if self.poll_s is not None else min(10.0, self.min_stall_s / 10)


@dataclass(frozen=True)
class Stall:
    """A stall as the watchdog saw it: at ``iteration`` (steps completed), for ``stalled_s``
    seconds, in ``phase``; ``typical_step_s`` is None before the first step."""

    iteration: int
    stalled_s: float
    phase: str
    typical_step_s: float | None
    threshold_s: float


class Watchdog:
    """Watches ``read_iteration()`` from a daemon thread; calls ``on_stall(Stall)`` once per
    stall and ``on_recover(Stall)`` (with the stall's full length) when steps resume. The
    callbacks run in the watchdog thread; an exception there is logged and swallowed."""

    def __init__(self, config: WatchdogConfig, read_iteration: Callable[[], int], read_phase: Callable[[], str],
                 on_stall: Callable[[Stall], None], on_recover: Callable[[Stall], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._read_iteration = read_iteration
        self._read_phase = read_phase
        self._on_stall = on_stall
        self._on_recover = on_recover
        self._clock = clock
        self._step_times: deque[float] = deque(maxlen=32)
        self._last_iter = read_iteration()
        self._last_change = clock()
        self._seen_step = False
        self._stall: Stall | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the daemon thread."""
        self._thread = threading.Thread(target=self._run, name="trainprogress-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and wait for it (at most one poll)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.config.poll_interval_s + 5.0)
        self._thread = None

    @property
    def typical_step_s(self) -> float | None:
        """The median step seen, in seconds; None before two looks saw steps."""
        return median(self._step_times) if self._step_times else None

    def threshold_s(self) -> float:
        """Seconds without a step that count as a stall now."""
        typical = self.typical_step_s
        if typical is None:  # no step yet, or only the first (which includes start-up)
            return max(self.config.first_step_s, self.config.min_stall_s)
        return max(self.config.min_stall_s, self.config.factor * typical)

    def _run(self) -> None:
        while not self._stop.wait(self.config.poll_interval_s):
            try:
                self.poll()
            except Exception:  # the watchdog must never take training down
                logger.warning("trainprogress: the watchdog failed and stops; training goes on", exc_info=True)
                return

    def poll(self) -> None:
        """One look at the counter (the thread calls this; tests may call it directly)."""
        now = self._clock()
        iteration = self._read_iteration()
        if iteration != self._last_iter:
            if self._seen_step:
                self._step_times.append((now - self._last_change) / max(1, iteration - self._last_iter))
            if self._stall is not None:
                stall, self._stall = self._stall, None
                self._on_recover(Stall(stall.iteration, now - self._last_change, stall.phase,
                                       stall.typical_step_s, stall.threshold_s))
            self._seen_step = True
            self._last_iter, self._last_change = iteration, now
            return
        stalled_s = now - self._last_change
        threshold = self.threshold_s()
        if self._stall is None and stalled_s >= threshold:
            self._stall = Stall(iteration, stalled_s, self._read_phase(), self.typical_step_s, threshold)
            self._on_stall(self._stall)


def start_watchdog(setting: Any, read_iteration: Callable[[], int], read_phase: Callable[[], str],
                   emit: Callable[[Event], None] | None) -> Watchdog | None:
    """The started watchdog for the tracker's ``watchdog`` argument (True or a WatchdogConfig),
    or None when it is off. ``emit`` sends its "stalled" and "stall_ended" events (data:
    stalled_s, phase, typical_step_s, threshold_s) to the master's sinks; without it (other
    ranks) a stall is one warning in the log, naming the rank."""
    if not setting:
        return None
    config = WatchdogConfig() if setting is True else setting
    if not isinstance(config, WatchdogConfig):
        raise TypeError(f"watchdog must be a bool or a WatchdogConfig, got {setting!r}")

    def tell(kind: str, stall: Stall) -> None:
        if emit is not None:
            data = {"stalled_s": stall.stalled_s, "phase": stall.phase, "typical_step_s": stall.typical_step_s,
                    "threshold_s": stall.threshold_s}
            emit(Event(kind=kind, iteration=stall.iteration, wall_time=time.time(), data=data))
        elif kind == "stalled":
            logger.warning("trainprogress: rank %s: no step for %.0f s after iteration %d (phase: %s)",
                           os.environ.get("RANK", "?"), stall.stalled_s, stall.iteration, stall.phase)

    dog = Watchdog(config, read_iteration, read_phase, lambda stall: tell("stalled", stall),
                   lambda stall: tell("stall_ended", stall))
    dog.start()
    return dog
