"""Hugging Face Trainer: ``Trainer(..., callbacks=[TrainProgressCallback()])`` is the whole
integration.

The callback replaces HF's progress bar and log printer, and reports at every interval:
the training loss of that very step (the sum of its micro-batch losses as the Trainer
computes them, so gradient accumulation is accounted for; averaged over ranks at each
report), the learning rate the optimizer used for the step, the gradient norm, the latest
eval loss, tokens (from the batches' ``input_ids``) and MFU where the model's config gives
its shape. Evaluation and checkpointing are pauses. A resumed run continues from
``global_step``; only the main process speaks; a crash inside ``trainer.train()`` ends with
the tracker's summary before the exception goes on.

No host-device sync is added per step: losses and gradient norms are kept as tensors by
reference and read once per report.

What the hooks are given, and what they are not. The run's size, resume point and rank
come from ``state``; the precision, world size and accumulation from ``args``; the model
(for MFU) from ``model``; the learning rate from ``optimizer`` in ``on_optimizer_step``;
the eval loss from ``metrics`` in ``on_evaluate``; whether an eval or a save follows from
``control``; the learning-rate schedule, for the final-loss forecast, from ``lr_scheduler``
in ``on_train_begin``: read from a torch ``LambdaLR`` (what every ``lr_scheduler_type`` of
``get_scheduler`` but ``reduce_lr_on_plateau`` makes) without stepping it; with any other
scheduler the forecast runs without the schedule (a wider band), unless ``lr_schedule=`` is
passed. Four things no hook gives (transformers 5.x), and each needs the Trainer:

- the step's loss: no hook receives it. ``on_log`` has it only at ``logging_steps``, as a
  mean since the previous log; forcing logs at our reports would change the numbers the
  user's own logs and loggers record. So ``training_step``'s return value is observed;
- the pre-clip gradient norm: the Trainer hands it only to its private logging; after
  clipping (``on_pre_optimizer_step``) the gradients no longer tell it. So
  ``accelerator.clip_grad_norm_`` is observed;
- a crash: there is no exception hook, and ``on_train_end`` does not run after one. So
  ``train`` is observed, to end the tracker with the crash before the exception goes on;
- HF's own bar and log printer: callbacks are not given the callback handler to remove
  them from.

Callbacks are not given their Trainer either, so it is found once, in ``on_init_end`` (or
``on_train_begin`` for a callback added later), as the ``self`` of the Trainer method that
calls the hook. Only that one instance's bound methods are wrapped; the Trainer class and
every other Trainer are left as they are.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

try:
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils import logging as hf_logging
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "trainprogress.integrations.hf needs transformers and accelerate: pip install \"trainprogress[hf]\""
    ) from exc

from ..flops import gpt_flops_per_token
from ..tracker import ProgressTracker
from ._common import FrameworkPauses, RankMeanLoss, batch_tokens, find_caller_self, lambda_schedule

logger = logging.getLogger(__name__)


def _hf_printers() -> tuple[type, ...]:
    printers: list[type] = [ProgressCallback, PrinterCallback]
    try:
        from transformers.utils.notebook import NotebookProgressCallback

        printers.append(NotebookProgressCallback)
    except ImportError:  # its notebook display needs IPython
        pass
    return tuple(printers)


def model_flops_per_token(model: Any, seq_len: int) -> int | None:
    """Training FLOPs per token of a transformer whose config names its shape
    (``num_hidden_layers``, ``num_attention_heads``, ``hidden_size``), by the PaLM formula
    (``trainprogress.gpt_flops_per_token``); parameters of position embeddings, which do no
    multiplications, are left out. None when the config does not tell."""
    config = getattr(model, "config", None)
    try:
        n_layer, n_head, hidden = config.num_hidden_layers, config.num_attention_heads, config.hidden_size
    except AttributeError:
        return None
    head_dim = getattr(config, "head_dim", None) or hidden // n_head
    n_params = sum(p.numel() for p in model.parameters())
    for name, module in model.named_modules():
        if type(module).__name__ == "Embedding" and ("wpe" in name.split(".") or "position" in name):
            n_params -= sum(p.numel() for p in module.parameters())
    return gpt_flops_per_token(n_params, n_layer, n_head, head_dim, seq_len)


def _precision(args: Any) -> str:
    if getattr(args, "bf16", False):
        return "bf16"
    if getattr(args, "fp16", False):
        return "fp16"
    return "tf32" if getattr(args, "tf32", False) else "fp32"


def _warn_if_each_process_trains_alone(args: Any) -> None:
    """Under torchrun on a machine without a GPU, a Trainer not told ``use_cpu=True`` trains
    one whole run per process (``args.world_size`` is 1 in each), and each prints."""
    dist = sys.modules["torch"].distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > args.world_size == 1:
        if dist.get_rank() == 0:
            logger.warning("trainprogress: %d processes each train the whole run alone (TrainingArguments.world_size "
                           "is 1); on CPU pass TrainingArguments(use_cpu=True) to train them as one run",
                           dist.get_world_size())


class TrainProgressCallback(FrameworkPauses, TrainerCallback):
    """Progress reports for a Hugging Face ``Trainer`` run. Takes ProgressTracker's keyword
    arguments (``sinks=``, ``interval_percent=``, ``anomaly=``, ...), except the run's size
    and resume point, which come from the Trainer (``max_steps``, ``global_step``).
    ``tokens_per_iter`` and ``flops_per_iter`` default to what the first batch and the
    model's config tell. The tracker of the current ``train()`` call is ``self.tracker``."""

    def __init__(self, **tracker_kwargs: Any) -> None:
        for reserved in ("total_iters", "start_iter", "is_master"):
            if reserved in tracker_kwargs:
                raise TypeError(f"TrainProgressCallback takes {reserved} from the Trainer; leave {reserved}= out")
        self._tracker_kwargs = tracker_kwargs
        self.tracker: ProgressTracker | None = None
        self._trainer: Any = None
        self._args: Any = None
        self._state: Any = None
        self._model: Any = None
        self._rank_mean: RankMeanLoss | None = None
        self._micro_losses: list[Any] = []
        self._grad_norm: Any = None
        self._lr: Any = None
        self._val_loss: float | None = None
        self._hf_bars_were_on = False

    # ------------------------------------------------------------------ attaching
    def on_init_end(self, args, state, control, **kwargs):
        self._attach(find_caller_self(Trainer))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self._trainer is None:  # added with trainer.add_callback after the Trainer was built
            self._attach(find_caller_self(Trainer))
        self._args, self._state, self._model = args, state, model
        self._lr_schedule = lambda_schedule(kwargs.get("lr_scheduler"))
        self.tracker = None  # made at the first micro-batch, when the batch's shape is known
        self._micro_losses = []
        # HF's own bars (checkpoint shards, downloads) would write carriage returns between
        # the reports; they are off during training and restored after.
        self._hf_bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()

    def _attach(self, trainer: Any) -> None:
        """Take over HF's console output and observe the Trainer's loss, gradient norm and
        crashes, by wrapping the bound methods of this one Trainer instance."""
        if trainer is None:
            raise RuntimeError(
                "TrainProgressCallback must be called by a transformers Trainer: pass it as "
                "Trainer(..., callbacks=[TrainProgressCallback()])"
            )
        self._trainer = trainer
        printers = _hf_printers()
        handler = trainer.callback_handler
        for callback in handler.callbacks:
            if isinstance(callback, ProgressCallback) and getattr(callback, "training_bar", None) is not None:
                callback.training_bar.close()
        # A new list, not remove(): the handler may be iterating over the old one right now.
        handler.callbacks = [cb for cb in handler.callbacks if not isinstance(cb, printers)]

        training_step = trainer.training_step

        @functools.wraps(training_step)
        def observed_training_step(model, inputs, *args, **kwargs):
            if self.tracker is None:
                self._start(inputs)
            loss = training_step(model, inputs, *args, **kwargs)
            self._micro_losses.append(loss)
            return loss

        trainer.training_step = observed_training_step

        clip_grad_norm = trainer.accelerator.clip_grad_norm_

        @functools.wraps(clip_grad_norm)
        def observed_clip_grad_norm(*args, **kwargs):
            norm = clip_grad_norm(*args, **kwargs)
            self._grad_norm = norm
            return norm

        trainer.accelerator.clip_grad_norm_ = observed_clip_grad_norm

        train = trainer.train

        @functools.wraps(train)
        def reported_train(*args, **kwargs):
            try:
                return train(*args, **kwargs)
            except BaseException as exc:
                self._close(exc if isinstance(exc, Exception) else None)
                raise

        trainer.train = reported_train

    def _start(self, first_batch: Any) -> None:
        args, state, model = self._args, self._state, self._model
        _warn_if_each_process_trains_alone(args)
        kwargs = dict(self._tracker_kwargs)
        micro_tokens = batch_tokens(first_batch)
        world = max(1, args.world_size)
        if micro_tokens is not None and "tokens_per_iter" not in kwargs:
            kwargs["tokens_per_iter"] = micro_tokens * args.gradient_accumulation_steps * world
        if kwargs.get("tokens_per_iter") and "flops_per_iter" not in kwargs and micro_tokens is not None:
            seq_len = first_batch["input_ids"].shape[-1]
            per_token = model_flops_per_token(model, seq_len)
            if per_token is not None:
                # Per device: MFU compares with one device's peak.
                kwargs["flops_per_iter"] = per_token * kwargs["tokens_per_iter"] / world
        kwargs.setdefault("precision", _precision(args))
        if self._lr_schedule is not None:
            kwargs.setdefault("lr_schedule", self._lr_schedule)
        kwargs.setdefault("run_config", {"trainer": type(self._trainer).__name__, "model": type(model).__name__})
        interval = kwargs.get("interval_percent", 1.0)
        self.tracker = ProgressTracker(
            state.max_steps, start_iter=state.global_step, is_master=state.is_world_process_zero, **kwargs
        )
        self._rank_mean = RankMeanLoss(state.max_steps, state.global_step, interval)

    # ------------------------------------------------------------------ steps
    def on_step_begin(self, args, state, control, **kwargs):
        self._end_pause()

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # After optimizer.step() and before the scheduler's step: the rate this step used.
        if optimizer is not None:
            self._lr = optimizer.param_groups[0]["lr"]

    def on_step_end(self, args, state, control, **kwargs):
        if self.tracker is None:
            return
        losses, self._micro_losses = self._micro_losses, []
        loss = None
        if losses:
            loss = losses[0]
            for more in losses[1:]:
                loss = loss + more
            loss = self._rank_mean(state.global_step, loss)
        self.tracker.step(loss=loss, lr=self._lr, grad_norm=self._grad_norm, val_loss=self._val_loss)
        self._grad_norm = None
        self._val_loss = None
        self._begin_pause_if_due(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._begin_pause_if_due(control)

    def _begin_pause_if_due(self, control: Any) -> None:
        # HF has no "evaluation/saving begins" hook; its flow callback, which runs before
        # this one, has just decided whether they follow.
        if control.should_evaluate:
            self._begin_pause("eval")
        elif control.should_save:
            self._begin_pause("checkpoint")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._end_pause()
        if self.tracker is None or not metrics:
            return
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        self.tracker.event("evaluate", **numbers)
        if "eval_loss" in numbers:
            self._val_loss = float(numbers["eval_loss"])
        if control.should_save:
            self._begin_pause("checkpoint")

    def on_save(self, args, state, control, **kwargs):
        self._end_pause()

    def on_train_end(self, args, state, control, **kwargs):
        self._close(None)

    # ------------------------------------------------------------------ pauses and the end
    def _close(self, error: BaseException | None) -> None:
        if self.tracker is not None:
            self._end_pause()
            # An evaluation after the last step has no step left to carry its loss.
            self.tracker.close(error=error, val_loss=self._val_loss)
            self._val_loss = None
        if self._hf_bars_were_on:
            self._hf_bars_were_on = False
            hf_logging.enable_progress_bar()
