"""What every sink is: a do-nothing base with one method per kind of message, and the fan-out
that sends each message to every sink and switches off one that fails."""

from __future__ import annotations

import logging
import time
from typing import Iterable

from ..report import Event, Report, RunInfo, Tick
from . import runner as runner_module
from .runner import SinkLimits, SinkRunner

logger = logging.getLogger(__name__)


class Sink:
    """A destination for reports. Every method is a no-op here; a sink overrides what it
    renders. Sinks render; they never compute numbers of their own."""

    #: Whether the tracker should send live ticks between reports (they cost a clock read).
    wants_ticks = False

    def start(self, run: RunInfo) -> None:
        """The run starts (or resumes)."""

    def report(self, report: Report) -> None:
        """A Report: scheduled, triggered by an anomaly, or the final summary (report.kind)."""

    def tick(self, tick: Tick) -> None:
        """Live progress between reports; only sent when ``wants_ticks`` is true."""

    def event(self, event: Event) -> None:
        """Something happened between reports."""

    def close(self) -> None:
        """The run is over: flush and release files, threads and connections."""


class SinkGroup:
    """Sends each message to every sink, each on its own thread, waiting for it only up to
    ``limits`` (see ``runner``; default ``runner.DEFAULT_LIMITS``). A sink that raises
    (SystemExit included) or stays slow is switched off with one clear warning, and the
    others, and training, go on. After ``close()`` nothing is sent."""

    def __init__(self, sinks: Iterable[Sink], limits: SinkLimits | None = None) -> None:
        self._limits = limits or runner_module.DEFAULT_LIMITS
        self._runners = [SinkRunner(sink, self._limits) for sink in sinks]
        self.wants_ticks = any(r.sink.wants_ticks for r in self._runners)

    def __bool__(self) -> bool:
        return bool(self._runners)

    def _switch_off(self, runner: SinkRunner, why: str) -> None:
        self._runners.remove(runner)
        runner.stop()
        self.wants_ticks = any(r.sink.wants_ticks for r in self._runners)
        logger.warning("trainprogress: sink %s %s and is switched off; training goes on", runner.name, why)

    def _call(self, method: str, *args: object) -> None:
        for runner in list(self._runners):
            was_background = runner.background
            why = runner.call(method, args)
            if why is not None:
                self._switch_off(runner, why)
            elif runner.background and not was_background:
                logger.warning(
                    "trainprogress: sink %s took over %s s in %s(); it now runs in the background and "
                    "training no longer waits for it", runner.name,
                    self._limits.start_s if method == "start" else self._limits.call_s, method,
                )

    def start(self, run: RunInfo) -> None:
        self._call("start", run)

    def report(self, report: Report) -> None:
        self._call("report", report)

    def tick(self, tick: Tick) -> None:
        self._call("tick", tick)

    def event(self, event: Event) -> None:
        self._call("event", event)

    def close(self) -> None:
        """Close the sinks in order (the plot sink reads what the JSONL sink wrote as it
        closed), giving them together up to ``limits.close_s``, and each one still to close
        once that has passed ``limits.call_s``: so close() returns within close_s plus
        call_s per sink."""
        runners, self._runners = self._runners, []
        self.wants_ticks = False
        deadline = time.monotonic() + self._limits.close_s
        for runner in runners:
            runner.close()
            if not runner.join(max(self._limits.call_s, deadline - time.monotonic())):
                logger.warning("trainprogress: sink %s did not finish closing within %s s; it is left behind",
                               runner.name, self._limits.close_s)
            elif runner.error is not None:
                logger.warning("trainprogress: sink %s %s; training goes on", runner.name, runner.error)
