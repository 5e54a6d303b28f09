"""PyTorch Lightning: ``L.Trainer(callbacks=[TrainProgress()])`` is the whole integration.

``TrainProgress`` is a Lightning progress bar, so it replaces the built-in one. It counts
one step per optimizer step (not per micro-batch), reports the step's loss undone from
Lightning's division by ``accumulate_grad_batches`` (the sum of the micro-batch losses),
the learning rate the optimizer used, and the latest logged ``val_loss``. The total is
``trainer.estimated_stepping_batches``; the sanity check is left out; validation and
checkpointing are pauses; a run resumed with ``ckpt_path=`` continues its percent; a crash
ends with the tracker's summary. Only global rank 0 speaks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

try:
    from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "trainprogress.integrations.lightning needs lightning: pip install \"trainprogress[lightning]\""
    ) from exc

from ..tracker import ProgressTracker
from ._common import FrameworkPauses, RankMeanLoss

logger = logging.getLogger(__name__)


def _batch_loss(outputs: Any) -> Any:
    if isinstance(outputs, Mapping):
        return outputs.get("loss")
    return outputs if hasattr(outputs, "detach") else None


class TrainProgress(FrameworkPauses, ProgressBar):
    """Progress reports for a Lightning ``Trainer.fit``. Takes ProgressTracker's keyword
    arguments (``sinks=``, ``interval_percent=``, ``tokens_per_iter=``, ``flops_per_iter=``,
    ...), except the run's size and resume point, which come from the Trainer. The tracker
    of the current fit is ``self.tracker``."""

    def __init__(self, **tracker_kwargs: Any) -> None:
        super().__init__()
        for reserved in ("total_iters", "start_iter", "is_master"):
            if reserved in tracker_kwargs:
                raise TypeError(f"TrainProgress takes {reserved} from the Trainer; leave {reserved}= out")
        self._tracker_kwargs = tracker_kwargs
        self._enabled = True
        self.tracker: ProgressTracker | None = None
        self._rank_mean: RankMeanLoss | None = None
        self._loss_sum: Any = None
        self._lr: Any = None
        self._val_loss: Any = None
        self._last_global_step = 0

    # Lightning turns bars off on other ranks and around tuning runs (lr finder).
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module):
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total):
            logger.warning(
                "trainprogress: Lightning cannot size this run (a data loader without len() and no max_steps); "
                "no progress reports. Pass Trainer(max_steps=N) to get them."
            )
            return
        kwargs = dict(self._tracker_kwargs)
        interval = kwargs.get("interval_percent", 1.0)
        start = trainer.global_step
        self.tracker = ProgressTracker(
            int(total), start_iter=min(start, int(total)), is_master=trainer.is_global_zero and self._enabled, **kwargs
        )
        self._rank_mean = RankMeanLoss(int(total), start, interval)
        self._last_global_step = start
        self._loss_sum = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._end_pause()  # a checkpoint written after the previous batch

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        # Before optimizer.step() and long before the scheduler's: the rate this step uses.
        self._lr = optimizer.param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.tracker is None:
            return
        loss = _batch_loss(outputs)
        if loss is not None:
            # Lightning divided each micro-batch's loss by accumulate_grad_batches: the sum
            # over the micro-batches of one optimizer step is that step's mean loss.
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        if trainer.global_step == self._last_global_step:
            return  # a micro-batch that only accumulated gradients
        self._last_global_step = trainer.global_step
        step_loss, self._loss_sum = self._loss_sum, None
        step_loss = self._rank_mean(self.tracker.iteration + 1, step_loss)
        self.tracker.step(loss=step_loss, lr=self._lr, val_loss=self._val_loss)
        self._val_loss = None

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._end_pause()
            self._begin_pause("eval")

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.tracker is None:
            return
        self._end_pause()
        self._val_loss = trainer.callback_metrics.get("val_loss")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        # Lightning calls this while it builds the checkpoint, before writing it; the pause
        # ends at the next hook that follows the write.
        self._begin_pause("checkpoint")

    def on_train_epoch_end(self, trainer, pl_module):
        self._end_pause()

    def on_train_end(self, trainer, pl_module):
        self._close(None)

    def on_exception(self, trainer, pl_module, exception):
        self._close(exception if isinstance(exception, Exception) else None)

    def _close(self, error: BaseException | None) -> None:
        if self.tracker is not None:
            self._end_pause()
            self.tracker.close(error=error)
            self.tracker = None
