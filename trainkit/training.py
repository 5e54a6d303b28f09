"""What both trainers set up the same way, and the loop's one checkpoint point.

``start(cfg)`` checks the accumulation steps against torchrun's world size, then joins the
process group (with ``cfg.dist_timeout``). ``Training(cfg, rt, model_class, data)`` checks
that out_dir can be written (CheckpointError naming the folder and the fix) and takes its
lock (OutDirBusyError naming the run that holds it; see trainkit.outdir_lock), then builds the
model (fresh, or resumed from ``out_dir/ckpt.pt`` with its optimizer, loss scaler, best
validation loss and this rank's data-sampler state), the optimizer, torch.compile and DDP. Then a trainer's loop calls ``step`` once per optimizer step, ``save`` wherever it
checkpoints, and ``stop_requested`` after every step; ``save`` is the single place a
checkpoint is written, so stopping early (SIGINT, SIGTERM) saves through it too:

    tracker.step(...)                        # the step's report goes out before its checkpoint
    if due: training.save(done, data_state, loss=loss)
    if training.stop_requested(done):        # the same answer on every rank
        training.save_for_stop(done, data_state, loss=loss)
        break                                # the tracker closes as "stopped"
    ...
    sys.exit(training.stop_exit_code)        # 130 after SIGINT, 143 after SIGTERM

A save refuses NaN or infinite weights or loss (a diverged run never replaces a good
checkpoint) and a NaN validation loss stops the run: both raise NonFiniteStateError on
rank 0, naming the iteration and the fix, and SystemExit(1) on the other ranks.

Several processes share one filesystem: rank 0 writes the checkpoint and every rank reads it.
"""

from __future__ import annotations

import inspect
import math
import os
import signal
from dataclasses import asdict
from typing import Any, Callable, Protocol

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from trainkit.checkpoint import (CheckpointError, NonFiniteStateError, load_for_resume, load_training_state, prepare_out_dir,
                                 require_checkpoint, save_checkpoint)
from trainkit.memory_check import allocation_errors, check_fits
from trainkit.model import GPT, GPTConfig, model_args
from trainkit.outdir_lock import OutDirBusyError, OutDirLock
from trainkit.reporting import build_tracker
from trainkit.runtime import Runtime, env_world_size, setup_runtime, split_grad_accum, want_compile
from trainkit.settings import GPTTrainingConfig
from trainkit.signals import GracefulStop
from trainkit.step import optimizer_step
from trainkit.stopping import StopAgreement

__all__ = ["start", "Training"]

# What a resumable checkpoint holds besides the trainer's own entries.
CORE_KEYS = ("model", "optimizer", "scaler", "data", "model_args", "iter_num", "best_val_loss", "config")


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name if signum else "a stop request"


def _buffer_sync_once() -> dict[str, bool]:
    """DDP's options for buffers (NanEcho's masks) that are synced once at construction and
    then change identically on every rank. torch 2.13 says so with ``forward_sync_buffers``;
    releases before it lack that option and keep their default, which re-broadcasts the
    buffers at every forward: correct, only slower."""
    if "forward_sync_buffers" in inspect.signature(DDP).parameters:
        return {"forward_sync_buffers": False}
    return {}


class SampledData(Protocol):
    """Data whose batch sampler has a state to save and restore (TokenData, NanEchoData)."""

    vocab_size: int

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def start(cfg: GPTTrainingConfig) -> Runtime:
    """The runtime for ``cfg``: the accumulation steps are checked against torchrun's world
    size first (a bad value fails before any process group exists), then the device, dtype
    and, under torchrun, the process group with a ``cfg.dist_timeout`` seconds timeout."""
    split_grad_accum(cfg.gradient_accumulation_steps, env_world_size())
    return setup_runtime(cfg.device, cfg.dtype, cfg.backend, cfg.dist_timeout)


class Training:
    """One run's model, optimizer, loss scaler and resume state, built as ``cfg`` says.

    ``raw_model`` is the plain module (for state dicts, sampling, masks); ``fast_model`` the
    same after torch.compile, for evaluation; ``model`` the one to train (DDP-wrapped under
    torchrun). ``iter_num`` and ``best_val_loss`` are where the run starts; ``extras`` holds
    the trainer's own entries of the checkpoint resumed from (empty for a fresh run).
    ``init_fresh(raw_model)`` runs on a fresh model only (a resumed one has its weights).
    """

    def __init__(
        self,
        cfg: GPTTrainingConfig,
        rt: Runtime,
        model_class: type[GPT],
        data: SampledData,
        *,
        init_fresh: Callable[[GPT], Any] | None = None,
        allow_finished: bool = False,
        saves: bool = True,
        stop: GracefulStop | None = None,
    ) -> None:
        self.cfg, self.rt, self.data = cfg, rt, data
        self.micro_steps = split_grad_accum(cfg.gradient_accumulation_steps, rt.world_size)
        self.tokens_per_iter = self.micro_steps * rt.world_size * cfg.batch_size * cfg.block_size
        self.model_args = model_args(cfg, data.vocab_size)
        self.ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
        self.iter_num, self.best_val_loss, self.extras = 0, math.inf, {}

        if cfg.init_from == "resume":
            require_checkpoint(self.ckpt_path)  # before out_dir is created or locked: a wrong path leaves nothing
        if saves:
            # Before any time is spent building: an unwritable out_dir fails now, with the fix.
            # Every rank checks (a shared filesystem), so none waits in a collective for one that failed.
            prepare_out_dir(cfg.out_dir)
            self._lock_out_dir()  # before reading the checkpoint: no other run writes it now
        # An impossible size fails now, naming its keys; before a checkpoint is loaded onto the
        # device, whose memory would otherwise count as taken.
        check_fits(cfg, data.vocab_size, rt.device)
        ckpt = None
        if cfg.init_from == "resume":
            ckpt = load_for_resume(self.ckpt_path, rt.device, self.model_args, cfg.max_iters, allow_finished=allow_finished)
            missing = [key for key in CORE_KEYS if key not in ckpt]
            if missing:
                raise CheckpointError(f"{self.ckpt_path} has no {', '.join(missing)}: it was not written by this trainer. "
                                      f"Fix: train from scratch (--init_from=scratch) or point --out_dir elsewhere.")
        with allocation_errors("building the model"):
            self.raw_model = model_class(GPTConfig(**self.model_args))
            if init_fresh is not None and ckpt is None:
                init_fresh(self.raw_model)
            self.raw_model.to(rt.device)
        self.optimizer = self.raw_model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                                             rt.device_type)
        self.scaler = rt.grad_scaler()
        if ckpt is not None:
            load_training_state(self.ckpt_path, self.raw_model, self.optimizer, ckpt)
            self.scaler.load_state_dict(ckpt["scaler"])
            self._restore_data_state(ckpt["data"])
            self.iter_num, self.best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
            self.extras = {key: value for key, value in ckpt.items() if key not in CORE_KEYS}
            del ckpt  # free the checkpoint's copy of the weights before compiling

        self.fast_model = torch.compile(self.raw_model) if want_compile(cfg.compile, rt.device_type) else self.raw_model
        self.model = self.fast_model
        if rt.ddp:
            # device_ids: the device this rank runs on (--device=cuda:N may differ from
            # LOCAL_RANK).
            device_ids = [rt.device.index] if rt.device_type == "cuda" else None
            self.model = DDP(self.fast_model, device_ids=device_ids, **_buffer_sync_once())
        self.saved_at = self.iter_num if cfg.init_from == "resume" else None  # the iteration of the latest checkpoint
        self._stop = StopAgreement(stop, rt)

    def _lock_out_dir(self) -> None:
        """One run per out_dir (trainkit.outdir_lock): rank 0 takes the lock for the whole job,
        and every rank learns whether it could, so none waits in a collective for a refused rank 0."""
        refusal = None
        if self.rt.is_master:
            try:
                OutDirLock.acquire(self.cfg.out_dir)
            except OutDirBusyError as exc:
                refusal = exc
        if self.rt.ddp:
            outcome = [refusal is not None]
            torch.distributed.broadcast_object_list(outcome, src=0)
            if outcome[0] and not self.rt.is_master:
                raise SystemExit(1)  # rank 0 says why
        if refusal is not None:
            raise refusal

    def _restore_data_state(self, states: list[dict] | dict) -> None:
        """Give this rank its own sampler state back, so ranks keep drawing different batches."""
        states = states if isinstance(states, list) else [states]  # one process's state
        if self.rt.rank < len(states):
            self.data.load_state_dict(states[self.rt.rank])
        if len(states) != self.rt.world_size:
            self.rt.print(f"note: {self.ckpt_path} holds the data-sampler state of {len(states)} process(es) and this run "
                          f"has {self.rt.world_size}: processes from rank {len(states)} on start their own fresh streams.")

    # ------------------------------------------------------------------ the loop's parts
    def tracker(self, lr_schedule: Callable[[int], float] | None = None):
        """The ProgressTracker of this run, resumed at ``iter_num``, with the sinks that the
        config turns on. MFU is per device and counts dense FLOPs (masked weights still
        multiply densely). ``lr_schedule(it)``: the learning rate of 0-based step ``it``, for
        the final-loss forecast."""
        flops_per_iter = self.raw_model.flops_per_token() * self.tokens_per_iter / self.rt.world_size
        return build_tracker(self.cfg, self.cfg.max_iters, out_dir=self.cfg.out_dir, tokens_per_iter=self.tokens_per_iter,
                             flops_per_iter=flops_per_iter, start_iter=self.iter_num, is_master=self.rt.is_master,
                             precision=self.rt.precision, device=self.rt.device, cross_rank=self.rt.ddp,
                             lr_schedule=None if lr_schedule is None else (lambda step: lr_schedule(step - 1)))

    def first_values(self) -> dict[str, float]:
        """Named values for the first ``tracker.step`` of a resumed run: its earlier best."""
        return {"best_val_loss": self.best_val_loss} if math.isfinite(self.best_val_loss) else {}

    def step(self, lr: float, micro_loss: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step at learning rate ``lr`` over ``micro_steps`` calls of
        ``micro_loss()`` (see trainkit.step.optimizer_step): the step's loss, a device tensor,
        and the gradient norm before clipping (None without clipping)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with allocation_errors("training a step"):
            return optimizer_step(self.rt, self.model, self.optimizer, self.scaler, micro_loss, self.micro_steps,
                                  self.cfg.grad_clip, self.raw_model.parameters())

    def record_val_loss(self, val_loss: float, iteration: int) -> bool:
        """Keep ``val_loss`` (measured after ``iteration`` steps) if it is the best so far;
        True when it is. Raises NonFiniteStateError when it is NaN or infinite: the run has
        diverged, and the last checkpoint must stay the good one."""
        if not math.isfinite(val_loss):  # the same on every rank: the loss is reduced across them
            if not self.rt.is_master:
                raise SystemExit(1)  # rank 0 says why
            kept = (f"the checkpoint of iteration {self.saved_at:,} in {self.ckpt_path} is kept" if self.saved_at is not None
                    else "no checkpoint was saved")
            raise NonFiniteStateError(
                f"the validation loss is {val_loss} after iteration {iteration:,}: the run has diverged; {kept}. "
                f"Fix: resume from the last good checkpoint (--init_from=resume) with a lower --learning_rate "
                f"or a --grad_clip, or check the data.")
        improved = val_loss < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, val_loss)
        return improved

    def save(self, iteration: int, data_state: dict, *, loss: torch.Tensor | float | None = None, **extras: Any) -> None:
        """Checkpoint the run after ``iteration`` optimizer steps: weights, optimizer, loss
        scaler, every rank's data-sampler state (``data_state`` is this rank's, taken where
        the next batch would be drawn), best validation loss, config and the trainer's
        ``extras``. A collective: every rank calls it at the same iteration; rank 0 writes
        (atomically). ``loss``, the step's loss, is checked with the weights: when either is
        NaN or infinite, or the write fails, nothing replaces the previous checkpoint and
        every rank raises (NonFiniteStateError, CheckpointSaveError; SystemExit(1) on the
        other ranks, whose message rank 0 prints)."""
        states = [data_state]
        if self.rt.ddp:
            states = [None] * self.rt.world_size if self.rt.is_master else None
            torch.distributed.gather_object(data_state, states, dst=0)
        failure = None
        if self.rt.is_master:
            try:
                self._write(iteration, states, loss, extras)
            except CheckpointError as exc:
                failure = exc
        if self.rt.ddp:  # every rank learns whether the save failed, so none waits for a rank that stopped
            outcome = [failure is not None]
            torch.distributed.broadcast_object_list(outcome, src=0)
            if outcome[0] and not self.rt.is_master:
                raise SystemExit(1)
        if failure is not None:
            raise failure
        self.saved_at = iteration

    def _write(self, iteration: int, states: list, loss: torch.Tensor | float | None, extras: dict[str, Any]) -> None:
        os.makedirs(self.cfg.out_dir, exist_ok=True)
        save_checkpoint(self.ckpt_path, {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data": states,
            "model_args": self.model_args,
            "iter_num": iteration,
            "best_val_loss": self.best_val_loss,
            "config": asdict(self.cfg),
            **extras,
        }, loss=loss)

    def stop_requested(self, done: int) -> bool:
        """Whether a signal (SIGINT, SIGTERM) asked this run, on any rank, to stop: the same
        answer on every rank after the same step. Every rank calls it after every optimizer
        step (``done`` steps done); see trainkit.stopping for the cost and latency."""
        return self._stop.should_stop(done)

    @property
    def signal_pending(self) -> bool:
        """Whether SIGINT or SIGTERM reached this process (no collective): a long evaluation
        polls it between batches, stops, and says so in its result, which its ranks reduce."""
        return self._stop.signal_pending

    def agree_on_stop(self) -> bool:
        """Whether a signal asked any rank to stop, the ranks comparing their flags now (a
        collective: every rank calls it at the same point); sets ``stop_exit_code``."""
        return self._stop.agree_now()

    def save_for_stop(self, done: int, data_state: dict, *, loss: torch.Tensor | float | None = None, **extras: Any) -> None:
        """The checkpoint of a run stopped after ``done`` steps (unless the loop just saved
        that step), so that only the work of the step in flight is lost; says where (rank 0)."""
        if self.saved_at != done:
            self.save(done, data_state, loss=loss, **extras)
        then = "continue with --init_from=resume" if done < self.cfg.max_iters else f"all {done:,} steps are done"
        self.rt.print(f"stopped by {signal_name(self._stop.signum)} after iteration {done:,}: checkpoint {self.ckpt_path} "
                      f"saved; {then}")

    @property
    def stop_signum(self) -> int:
        """The number of the signal the ranks agreed to stop for; 0 when none."""
        return self._stop.signum

    @property
    def stop_exit_code(self) -> int:
        """The process's exit code after a stop: 128 + the signal's number (130 SIGINT, 143
        SIGTERM), the same on every rank; 0 when no stop was requested."""
        return self._stop.exit_code

    def runtime_line(self) -> str:
        """One line on where and how this run trains, for the start of the log."""
        rt = self.rt
        return (f"runtime: {rt.device} {rt.dtype_name}, world size {rt.world_size}, {torch.get_num_threads()} CPU threads, "
                f"compile {self.fast_model is not self.raw_model}; {self.tokens_per_iter:,} tokens per iteration"
                + (f"; dtype {rt.dtype_reason}" if rt.dtype_reason else ""))
