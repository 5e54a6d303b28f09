"""A slow sink cannot keep stalling training: it is timed, moved off the training thread,
and switched off if it stays slow.

A sink is called on the training thread, so that a healthy one's output is in place before
``step()`` returns (the console block where the loop's own prints expect it, the JSONL line
on disk) and a healthy run has no extra thread. A call that takes longer than
``SINK_TIME_LIMIT_S`` (``START_TIME_LIMIT_S`` for ``start()``, which may open a connection
before training begins) moves the sink to a thread of its own, with one warning: training
waits for it that once, never again. If it stays slow there, so that ``MAX_PENDING``
messages pile up, it is switched off with one more warning. Anything a sink raises,
SystemExit included, switches it off and never reaches training.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Sink

__all__ = ["CLOSE_TIME_LIMIT_S", "MAX_PENDING", "SINK_TIME_LIMIT_S", "START_TIME_LIMIT_S", "SinkRunner"]

# Seconds a sink call may take on the training thread; rendering a report takes milliseconds.
SINK_TIME_LIMIT_S = 1.0
# start() may connect somewhere (W&B starts a service process), before training begins.
START_TIME_LIMIT_S = 30.0
# Messages waiting for a background sink before it counts as too slow to keep.
MAX_PENDING = 16
# Seconds close() gives the background sinks together to finish.
CLOSE_TIME_LIMIT_S = 15.0

_STOP = None


class SinkRunner:
    """One sink: called directly while it is quick, on a thread of its own once it was not.

    ``call(method, args)`` returns None when the sink is fine, else why it must be switched
    off (after which everything sent to it is dropped)."""

    def __init__(self, sink: "Sink") -> None:
        self.sink = sink
        self.name = type(sink).__name__
        self._error: str | None = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    @property
    def background(self) -> bool:
        """Whether the sink runs on its own thread (after a slow call)."""
        return self._thread is not None

    @property
    def error(self) -> str | None:
        """Why the sink failed, or None."""
        return self._error

    def _failed(self, method: str, error: BaseException) -> None:
        self._error = f"failed in {method}() ({type(error).__name__}: {error})"

    def call(self, method: str, args: tuple[Any, ...]) -> str | None:
        if self._error is not None:
            return self._error
        if self._queue is not None:
            if self._queue.qsize() >= MAX_PENDING:
                self._error = f"stays slow ({self._queue.qsize()} messages waiting)"
                return self._error
            self._queue.put((method, args))
            return None
        started = time.perf_counter()
        try:
            getattr(self.sink, method)(*args)
        except (Exception, SystemExit) as error:  # KeyboardInterrupt is the user's: it goes through
            self._failed(method, error)
            return self._error
        if time.perf_counter() - started > (START_TIME_LIMIT_S if method == "start" else SINK_TIME_LIMIT_S):
            self._move_to_thread()
        return None

    def _move_to_thread(self) -> None:
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=_work, args=(self._queue, self.sink, weakref.ref(self)),
                                        name=f"trainprogress-{self.name}", daemon=True)
        self._thread.start()
        # A tracker dropped without close() must not leave the thread waiting forever.
        weakref.finalize(self, self._queue.put, _STOP)

    def close(self) -> None:
        """Close the sink: now, or on its thread (then ``join`` waits for it)."""
        if self._error is None:
            self.call("close", ())
        self.stop()

    def stop(self) -> None:
        """Let the sink's thread, if any, end once it has handled what is queued."""
        if self._queue is not None:
            self._queue.put(_STOP)

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the sink's thread, if any, to end; whether it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


def _work(messages: queue.Queue, sink: "Sink", runner: weakref.ref) -> None:
    """A slow sink's thread. It holds the runner only weakly, so that dropping the runner
    ends it; once the sink has failed or been switched off, what is queued is dropped."""
    while True:
        item = messages.get()
        if item is _STOP:
            return
        method, args = item
        owner = runner()
        if owner is not None and owner.error is None:
            try:
                getattr(sink, method)(*args)
            except BaseException as error:  # noqa: BLE001 - SystemExit from a sink must not end training either
                owner._failed(method, error)
        del owner
