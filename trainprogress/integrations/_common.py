"""What the framework integrations share: the step loss averaged over ranks without a
collective per step, finding the object whose hook is running, and reading the learning-rate
schedule from a scheduler without stepping it."""

from __future__ import annotations

import sys
from typing import Any, Callable

from ..report_schedule import ReportSchedule
from ..value_buffer import LOSS_RING


class RankMeanLoss:
    """The step loss averaged over the processes of a torch.distributed job, as the
    frameworks' own logs report it, without a collective or a host sync per step.

    Each step's loss (a device tensor) is copied into a slot of a small buffer on its
    device, and the tracker is given that slot by reference. At each scheduled report
    boundary, which every rank computes the same way, all ranks average the buffer in
    place (one collective per report) before the master's tracker reads it. Averaging a
    slot again changes nothing, since every rank then holds the same value. On one
    process, and for losses that are not tensors, the loss passes through unchanged.
    """

    def __init__(self, total_iters: int, start_iter: int, interval_percent: float) -> None:
        torch = sys.modules.get("torch")
        dist = None if torch is None else torch.distributed
        distributed = dist is not None and dist.is_available() and dist.is_initialized()
        self._dist = dist
        self._world = dist.get_world_size() if distributed else 1
        self._schedule = ReportSchedule(total_iters, interval_percent)
        self._next_due = self._schedule.next_due(start_iter)
        self._buffer: Any = None

    def __call__(self, iteration: int, loss: Any) -> Any:
        """The loss to give the tracker for optimizer step ``iteration`` (resumed steps
        counted)."""
        if self._world == 1 or not hasattr(loss, "detach"):
            return loss
        if self._buffer is None:
            # A slot per entry of the tracker's ring of loss references: not overwritten while it may still read it.
            self._buffer = loss.new_zeros(LOSS_RING, dtype=sys.modules["torch"].float32)
        slot = self._buffer[iteration % LOSS_RING]
        slot.copy_(loss.detach())
        if iteration == self._next_due:
            # SUM then divide: the gloo backend (CPU) has no AVG.
            self._dist.all_reduce(self._buffer, op=self._dist.ReduceOp.SUM)
            self._buffer.div_(self._world)
            self._next_due = self._schedule.next_due(iteration)
        return slot


def find_caller_self(cls: type, max_depth: int = 12) -> Any:
    """The nearest ``self`` of type ``cls`` up the call stack, or None. Frameworks whose
    callbacks are not handed their trainer (Hugging Face's) are found this way, once, from
    inside one of the trainer's own calls."""
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, cls):
            return candidate
        frame = frame.f_back
    return None


def lambda_schedule(scheduler: Any) -> Callable[[int], float] | None:
    """The learning rate of every 1-based optimizer step, read from a torch ``LambdaLR``
    (Hugging Face's ``get_*_schedule_with_warmup`` make one) without stepping it: step k runs
    at ``base_lr * lr_lambdas[0](k - 1)``, the scheduler being stepped after each optimizer
    step. None for any other scheduler: their rate at a future step is not knowable without
    stepping them (or copying their state), so the forecast runs without the schedule."""
    torch = sys.modules.get("torch")
    if torch is None or type(scheduler) is not torch.optim.lr_scheduler.LambdaLR:
        return None  # a subclass may override get_lr, and then the lambdas do not tell
    lr_lambda, base_lr = scheduler.lr_lambdas[0], scheduler.base_lrs[0]
    return lambda step: base_lr * lr_lambda(step - 1)


def batch_tokens(batch: Any) -> int | None:
    """Tokens in one micro-batch, from the shape of its ``input_ids`` (a tensor, or a
    mapping holding one): padding included, and no device sync. None when unknown."""
    ids = batch.get("input_ids") if hasattr(batch, "get") else None
    return int(ids.numel()) if hasattr(ids, "numel") else None


class FrameworkPauses:
    """Pause hooks for an adapter whose ``tracker`` (a ProgressTracker, or None before
    training starts and after it ends) sees a framework's begin and end hooks, which may
    come unpaired (an end with no begin, a begin inside an open pause): one pause at a time."""

    tracker: Any = None

    def _begin_pause(self, name: str) -> None:
        if self.tracker is not None and not self.tracker.paused:
            self.tracker.begin_pause(name)

    def _end_pause(self) -> None:
        if self.tracker is not None and self.tracker.paused:
            self.tracker.end_pause()
