"""A graceful stop for training loops: SIGINT (Ctrl-C) and SIGTERM (what SLURM, Kubernetes,
torchrun and ``kill`` send) ask the loop to stop after its current optimizer step, so that it
can save a checkpoint, write its summary and exit, losing no work. A second signal stops at
once, as without this helper (the process dies by the signal after one line, with no
KeyboardInterrupt traceback; a save under way is abandoned whole, so the last complete
checkpoint stays); a repeat of the first signal within REPEAT_WINDOW_S seconds counts as the
same request, because a terminal's Ctrl-C reaches torchrun and its workers
together, and torchrun then forwards it to the workers again.

Only trainers install it; the library (``trainprogress``) never touches signal handlers. A
loop uses it like this::

    with GracefulStop() as stop:
        with tracker:
            for it in range(start, max_iters):
                ...                        # forward, backward, optimizer step
                tracker.step(loss=loss)
                if stop.requested:         # a plain attribute read: free on every step
                    save(it + 1)           # the work since the last save is kept
                    break                  # the tracker closes as "stopped"
    if stop.requested:
        sys.exit(stop.exit_code)           # 130 after SIGINT, 143 after SIGTERM

The exit code is 128 + the signal number, as a shell reports a process the signal ended:
the checkpoint is saved, but the run is not complete, so ``train.py && next_step`` does not
go on and schedulers see the job as stopped, not finished. Under torch.distributed each rank
gets the signal at its own moment: combine the ranks' flags (an all-reduce of ``requested``
as a max, every few steps) before breaking, so that all of them stop at the same step.

A process started in the background by a non-interactive shell (``python train.py &`` in a
script) inherits SIGINT as ignored, so Ctrl-C-style stops would do nothing; inside the
``with`` block SIGINT is handled again. On leaving the block the previous handlers (ignored
ones included) are restored.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Any, Callable, Iterable

__all__ = ["GracefulStop", "REPEAT_WINDOW_S"]

REPEAT_WINDOW_S = 1.0

_Handler = Callable[[int, FrameType | None], Any] | int | None


class GracefulStop:
    """Context manager turning the first SIGINT or SIGTERM into a request to stop
    (``requested``, ``signal_name``, ``exit_code``), and the second into an immediate stop:
    death by the signal, after one line saying so. Enter it in
    the main thread (Python delivers signals only there)."""

    def __init__(self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self._signals = tuple(signals)
        self._previous: dict[int, _Handler] = {}
        self.requested = False
        self.signal_name: str | None = None
        self.signum: int | None = None
        self._requested_at = 0.0

    @property
    def exit_code(self) -> int:
        """128 + the number of the signal that asked to stop (130 SIGINT, 143 SIGTERM); 0
        when none did."""
        return 0 if self.signum is None else 128 + self.signum

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("GracefulStop must be entered in the main thread, where Python handles signals")
        for signum in self._signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == self.signum and time.monotonic() - self._requested_at < REPEAT_WINDOW_S:
            return  # the same request delivered twice (a terminal's and torchrun's copy of Ctrl-C)
        if self.requested:
            # Die by the signal, as without this helper but with no KeyboardInterrupt traceback.
            # A save under way is abandoned whole: saves are atomic, so the last complete checkpoint stays.
            self._restore()
            os.write(2, f"\n{name} again: stopping now, without saving. The last complete checkpoint is kept.\n".encode())
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = True
        self._requested_at = time.monotonic()
        self.signal_name = name
        self.signum = signum
        # os.write, not print: a handler may run in the middle of a print to the same stream.
        os.write(2, f"\n{name} received: stopping after this step and saving a checkpoint "
                    f"(send it again to stop at once, without saving).\n".encode())
