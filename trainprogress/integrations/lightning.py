"""PyTorch Lightning: ``L.Trainer(callbacks=[TrainProgress()])`` is the whole integration.

``TrainProgress`` is a Lightning progress bar, so it replaces the built-in one. It counts
one step per optimizer step (not per micro-batch), reports the step's loss undone from
Lightning's division by ``accumulate_grad_batches`` (the mean over the micro-batches the
step had, the epoch's last and shorter step included), the learning rate the optimizer
used, and the latest logged ``val_loss`` (a validation after the last step reaches the
final summary). The total is ``trainer.estimated_stepping_batches``; a run Lightning cannot
size (a loader without len() and no max_steps) is sized ``max_epochs`` x the
``iters_per_epoch=`` given to ``TrainProgress``, else gets no reports, with one warning.
The sanity check is left out; validation and checkpointing are pauses; a run resumed with
``ckpt_path=`` continues its percent; a crash ends with the tracker's summary. Only global
rank 0 speaks.

The learning-rate schedule reaches the final-loss forecast when the module configures one
optimizer with one torch ``LambdaLR`` stepped every optimizer step (``"interval": "step"``,
``"frequency": 1``): it is read from the scheduler's lambda without stepping it. With any
other scheduler, or an epoch interval, the forecast runs without the schedule (a wider band),
unless ``lr_schedule=`` is passed to ``TrainProgress``.
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
from ._common import FrameworkPauses, RankMeanLoss, lambda_schedule

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
        self._micro_batches = 0
        self._lr: Any = None
        self._val_loss: Any = None
        self._last_global_step = 0

    # Lightning turns bars off on other ranks and around tuning runs (lr finder).
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer, pl_module):
        kwargs = dict(self._tracker_kwargs)
        size = self._run_size(trainer, kwargs.pop("iters_per_epoch", None))
        if size is None:
            return
        start = trainer.global_step
        schedule = self._lr_schedule(trainer)
        if schedule is not None:
            kwargs.setdefault("lr_schedule", schedule)
        if "total_iters" in size:
            start = min(start, size["total_iters"])
        self.tracker = ProgressTracker(
            start_iter=start, is_master=trainer.is_global_zero and self._enabled, **size, **kwargs
        )
        self._rank_mean = RankMeanLoss(self.tracker.total_iters, start, kwargs.get("interval_percent", 1.0))
        self._last_global_step = trainer.global_step
        self._loss_sum = None
        self._micro_batches = 0

    @staticmethod
    def _lr_schedule(trainer: Any):
        """The step -> learning rate of the run's one per-step LambdaLR, or None."""
        configs = getattr(trainer, "lr_scheduler_configs", None) or []
        if len(configs) != 1 or len(trainer.optimizers) != 1:
            return None
        config = configs[0]
        if config.interval != "step" or config.frequency != 1:
            return None
        return lambda_schedule(config.scheduler)

    @staticmethod
    def _run_size(trainer: Any, iters_per_epoch: int | None) -> dict[str, int] | None:
        """The tracker's sizing arguments: Lightning's estimate of the optimizer steps, else
        ``max_epochs`` x the ``iters_per_epoch`` given to TrainProgress (as the README sizes
        a loop whose loader has no len()), else None, with one warning."""
        total = trainer.estimated_stepping_batches
        if math.isfinite(total) and total >= 1:  # -1: an unsized loader and no max_steps
            return {"total_iters": int(total)}
        epochs = trainer.max_epochs
        if iters_per_epoch is not None and epochs is not None and epochs >= 1:
            return {"epochs": epochs, "iters_per_epoch": iters_per_epoch}
        logger.warning(
            "trainprogress: Lightning cannot size this run (a data loader without len() and no max_steps), so it "
            "gets no progress reports; pass Trainer(max_steps=N), or TrainProgress(iters_per_epoch=N) with max_epochs."
        )
        return None

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
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._micro_batches += 1
        if trainer.global_step == self._last_global_step:
            return  # a micro-batch that only accumulated gradients
        self._last_global_step = trainer.global_step
        step_loss, self._loss_sum = self._loss_sum, None
        micro_batches, self._micro_batches = self._micro_batches, 0
        accumulation = trainer.accumulate_grad_batches
        if step_loss is not None and micro_batches != accumulation:
            # Lightning divides every micro-batch's loss by accumulate_grad_batches, also in
            # the epoch's last step when it has fewer micro-batches: rescale that sum to
            # the mean over the micro-batches the step had (a tensor op, no sync).
            step_loss = step_loss * (accumulation / micro_batches)
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
            # A validation after the last step has no step left to carry its loss.
            self.tracker.close(error=error, val_loss=self._val_loss)
            self.tracker = None
            self._val_loss = None
