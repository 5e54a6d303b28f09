"""Each sink runs on a thread of its own, so that a slow or hanging sink cannot stall training.

The training thread hands a message to the sink's thread and waits for it up to a time limit
(``SINK_TIME_LIMIT_S``): a healthy sink has finished by then, so its output is in place
before ``step()`` returns (the console block where the loop's own prints expect it, the
JSONL line on disk). A sink that overruns the limit goes on in the background, with one
warning, and training stops waiting for it; if it stays slow, so that ``MAX_PENDING``
messages pile up, it is switched off with one more warning. Anything a sink raises,
SystemExit included, switches it off and never reaches training.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Sink

__all__ = ["CLOSE_TIME_LIMIT_S", "MAX_PENDING", "SINK_TIME_LIMIT_S", "SinkRunner"]

# Seconds the training thread waits for one sink call; rendering a report takes milliseconds.
SINK_TIME_LIMIT_S = 1.0
# Messages waiting for a background sink before it counts as too slow to keep.
MAX_PENDING = 16
# Seconds close() gives all sinks together to finish (a notification's last message).
CLOSE_TIME_LIMIT_S = 15.0

_STOP = None


class SinkRunner:
    """One sink and the thread that runs its methods, one call at a time and in order.

    ``call(method, args)`` returns None when the sink is fine, else why it must be switched
    off (after which the runner drops everything sent to it)."""

    def __init__(self, sink: "Sink", time_limit_s: float = SINK_TIME_LIMIT_S, max_pending: int = MAX_PENDING) -> None:
        self.sink = sink
        self.name = type(sink).__name__
        self.background = False
        self._time_limit_s = time_limit_s
        self._max_pending = max_pending
        self._queue: queue.Queue = queue.Queue()
        self._error: str | None = None
        self._thread = threading.Thread(target=_work, args=(self._queue, sink, weakref.ref(self)),
                                        name=f"trainprogress-{self.name}", daemon=True)
        self._thread.start()
        # A tracker dropped without close() must not leave its threads waiting forever.
        weakref.finalize(self, self._queue.put, _STOP)

    def _failed(self, method: str, error: BaseException) -> None:
        self._error = f"failed in {method}() ({type(error).__name__}: {error})"

    def call(self, method: str, args: tuple[Any, ...]) -> str | None:
        if self._error is not None:
            return self._error
        if self.background:
            if self._queue.qsize() >= self._max_pending:
                self._error = f"stays slow ({self._queue.qsize()} messages waiting)"
                return self._error
            self._queue.put((method, args, None))
            return None
        done = threading.Event()
        self._queue.put((method, args, done))
        if not done.wait(self._time_limit_s):
            self.background = True
        return self._error

    @property
    def error(self) -> str | None:
        """Why the sink failed, or None."""
        return self._error

    def close(self) -> None:
        """Queue the sink's close() (unless it failed) and the thread's end; join() waits."""
        if self._error is None:
            self._queue.put(("close", (), None))
        self.stop()

    def stop(self) -> None:
        """Let the thread end once it has handled what is queued (a close, typically)."""
        self._queue.put(_STOP)

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the thread to end; whether it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


def _work(messages: queue.Queue, sink: "Sink", runner: weakref.ref) -> None:
    """The sink's thread. It holds the runner only weakly, so that dropping the runner ends
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
