"""No sink can stall training for long, nor hang it: every call into a sink runs on that
sink's own thread, and the training thread waits for it only up to a time limit.

A healthy sink's call returns within the limit, so its output is in place before ``step()``
returns (the console block where the loop's own prints expect it, the JSONL line on disk).
A call still running after ``SinkLimits.call_s`` (``start_s`` for ``start()``, which may open
a connection before training begins) is left to finish on the sink's thread, with one
warning: from then on training queues the sink's messages without waiting. If they pile up
(``max_pending`` waiting: the sink stays slow, or never returns), it is switched off with one
more warning. ``close()`` waits for the sinks together at most ``close_s`` (then ``call_s``
for each one still to close). So a sink whose call never returns costs training ``call_s``
once, and ``close()`` at most ``close_s`` plus ``call_s`` per sink.
Anything a sink raises, SystemExit included, switches it off and never reaches training.
"""

from __future__ import annotations

import queue
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Sink

__all__ = ["DEFAULT_LIMITS", "SinkLimits", "SinkRunner"]


@dataclass(frozen=True)
class SinkLimits:
    """How long training waits for sinks, in seconds, and how many messages a sink that
    stopped keeping up may have waiting before it is switched off."""

    call_s: float = 1.0  # rendering a report takes milliseconds
    start_s: float = 30.0  # start() may connect somewhere (W&B starts a service process)
    close_s: float = 15.0  # all sinks together, at close()
    max_pending: int = 16


DEFAULT_LIMITS = SinkLimits()

_STOP = None


class SinkRunner:
    """One sink and its thread. ``call(method, args)`` returns None when the sink is fine,
    else why it must be switched off (after which everything sent to it is dropped)."""

    def __init__(self, sink: "Sink", limits: SinkLimits) -> None:
        self.sink = sink
        self.name = type(sink).__name__
        self._limits = limits
        self._error: str | None = None
        self._background = False
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=_work, args=(self._queue, sink, weakref.ref(self)),
                                        name=f"trainprogress-{self.name}", daemon=True)
        self._thread.start()
        # A tracker dropped without close() must not leave the thread waiting forever.
        weakref.finalize(self, self._queue.put, _STOP)

    @property
    def background(self) -> bool:
        """Whether training has stopped waiting for the sink (after a call past the limit)."""
        return self._background

    @property
    def error(self) -> str | None:
        """Why the sink failed, or None."""
        return self._error

    def _failed(self, method: str, error: BaseException) -> None:
        self._error = f"failed in {method}() ({type(error).__name__}: {error})"

    def call(self, method: str, args: tuple[Any, ...]) -> str | None:
        if self._error is not None:
            return self._error
        if self._background:
            if self._queue.qsize() >= self._limits.max_pending:
                self._error = f"stays slow ({self._queue.qsize()} messages waiting)"
                return self._error
            self._queue.put((method, args, None))
            return None
        done = threading.Event()
        self._queue.put((method, args, done))
        if not done.wait(self._limits.start_s if method == "start" else self._limits.call_s):
            self._background = True
        return self._error

    def close(self) -> None:
        """Ask the sink to close on its thread (``join`` waits for it), and its thread to end."""
        if self._error is None:
            self._queue.put(("close", (), None))
        self.stop()

    def stop(self) -> None:
        """Let the sink's thread end once it has handled what is queued."""
        self._queue.put(_STOP)

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the sink's thread to end; whether it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


def _work(messages: queue.Queue, sink: "Sink", runner: weakref.ref) -> None:
    """A sink's thread. It holds the runner only weakly, so that dropping the runner ends
    it; once the sink has failed or been switched off, what is queued is dropped."""
    while True:
        item = messages.get()
        if item is _STOP:
            return
        method, args, done = item
        owner = runner()
        if owner is not None and owner.error is None:
            try:
                getattr(sink, method)(*args)
            except BaseException as error:  # noqa: BLE001 - SystemExit from a sink must not end training either
                owner._failed(method, error)
        del owner
        if done is not None:
            done.set()
