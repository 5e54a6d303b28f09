"""Stopping every process of a run at the same step when one of them is asked to stop.

Each process gets a signal at its own moment (torchrun, SLURM and Kubernetes send SIGTERM to
every worker, a few milliseconds apart), but all of them must stop after the same optimizer
step: they save one checkpoint together, and a rank that went on alone would wait forever
in the next gradient all-reduce. :class:`StopAgreement` combines the ranks' requests with
one all-reduce of two CPU numbers on a gloo side group (never on the GPU stream, so no
host-device sync), every ``k`` steps, where ``k`` is chosen so that the checks come about
once per ``check_every_s`` seconds. The ranks compute ``k`` from the reduced (shared)
figures, so they always check at the same steps. A stop therefore takes effect at most about
``check_every_s`` seconds (default 1 s) plus one step after the signal. A single process
checks its flag at every step (a plain attribute read).
"""

from __future__ import annotations

import time

import torch

from trainkit.runtime import Runtime
from trainkit.signals import GracefulStop

__all__ = ["StopAgreement"]

MAX_STEPS_BETWEEN_CHECKS = 10_000


class StopAgreement:
    """Whether the loop stops after the step just done: the same answer on every rank.
    Every rank must call ``should_stop`` after every optimizer step (it is a collective at
    the steps where the ranks compare their flags)."""

    def __init__(self, stop: GracefulStop | None, rt: Runtime, check_every_s: float = 1.0) -> None:
        self.stop, self.rt, self.check_every_s = stop, rt, check_every_s
        self.signum = 0  # the signal every rank agreed to stop for (the largest number among them)
        self._group = None
        self._next_check: int | None = None  # the step of the first check: the first one seen
        self._last_check_step = 0
        self._last_check_time = time.monotonic()
        if rt.ddp:
            # A side group on gloo: CPU tensors, so the check never waits on the GPU stream.
            self._group = torch.distributed.new_group(backend="gloo")

    @property
    def exit_code(self) -> int:
        """128 + the agreed signal's number (130 SIGINT, 143 SIGTERM); 0 while none."""
        return 128 + self.signum if self.signum else 0

    def _local_signum(self) -> int:
        return (self.stop.signum or 0) if self.stop is not None and self.stop.requested else 0

    @property
    def signal_pending(self) -> bool:
        """Whether a signal reached this process (no collective): for a long pass to poll
        between its batches."""
        return bool(self._local_signum())

    def agree_now(self) -> bool:
        """Like ``should_stop``, but the ranks compare their flags now, whatever the cadence:
        for a point every rank reaches together (after an evaluation a signal cut short)."""
        if self.rt.ddp:
            figures = torch.tensor([float(self._local_signum())], dtype=torch.float64)
            torch.distributed.all_reduce(figures, op=torch.distributed.ReduceOp.MAX, group=self._group)
            self.signum = int(figures[0])
        else:
            self.signum = self._local_signum()
        return bool(self.signum)

    def should_stop(self, done: int) -> bool:
        """True when the loop should stop after ``done`` optimizer steps (on every rank alike)."""
        if not self.rt.ddp:
            self.signum = self._local_signum()
            return bool(self.signum)
        if self._next_check is None:
            self._next_check, self._last_check_step = done, done - 1
        if done < self._next_check:
            return False
        now = time.monotonic()
        figures = torch.tensor([float(self._local_signum()), now - self._last_check_time], dtype=torch.float64)
        torch.distributed.all_reduce(figures, op=torch.distributed.ReduceOp.MAX, group=self._group)
        signum, slowest_s = int(figures[0]), float(figures[1])
        steps = done - self._last_check_step
        # Same inputs on every rank (the reduced figures), so the same next check step.
        every = steps if slowest_s <= 0 else round(steps * self.check_every_s / slowest_s)
        self._next_check = done + min(MAX_STEPS_BETWEEN_CHECKS, max(1, every))
        self._last_check_step, self._last_check_time = done, now
        self.signum = signum
        return bool(signum)
