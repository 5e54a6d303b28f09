"""
Train a GPT on a token dataset, reporting progress through trainprogress.

    python train.py config/train_shakespeare_char.py                # CPU preset, about a minute
    python train.py config/train_shakespeare.py --max_iters=3000    # larger model, for a GPU
    python train.py config/train_shakespeare_char.py --init_from=resume --max_iters=3000
    torchrun --standalone --nproc_per_node=4 train.py config/bench_gpt2_124m.py
    python train.py --help                                          # every key, default and meaning

Settings come from the defaults (TrainConfig below; the keys shared with other trainers in
trainkit/settings.py), then config files (`key = value` lines, parsed and never executed, or
JSON), then --key=value flags. A progress report prints every report_interval percent; a
one-line log every log_interval iterations (0: off).

SIGINT (Ctrl-C) or SIGTERM (SLURM, Kubernetes, torchrun, kill) stops the run after its
current step: it saves a checkpoint, writes the summary and exits with 130 or 143; resume
with --init_from=resume. The final pass over the whole val split runs after the last
checkpoint, and a signal stops it at once (saying so; exit 130 or 143). A diverged run (NaN
or infinite loss or weights) stops with exit 1 and keeps its last good checkpoint. A second
run in an out_dir that a live run holds is refused (trainkit/outdir_lock.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from trainkit.config import format_help, load_config, opt, require
from trainkit.data import TokenData, ensure_prepared
from trainkit.model import GPT
from trainkit.run_end import exit_on_config_error, run_until_done
from trainkit.runtime import Runtime
from trainkit.schedule import CosineSchedule
from trainkit.signals import GracefulStop
from trainkit.settings import GPTTrainingConfig, require_positive
from trainkit.training import Training, signal_name, start
from trainprogress import ProgressTracker

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class TrainConfig(GPTTrainingConfig):
    """The defaults train GPT-2 small (124M) as nanoGPT does (GPTTrainingConfig holds the
    batch, model, optimizer and system keys); config files override them."""

    # I/O
    eval_interval: int = opt(2000, "estimate train/val loss every this many iterations (and at the end)")
    log_interval: int = opt(1, "one-line log every this many iterations; 0 turns it off")
    eval_iters: int = opt(200, "batches per split for each loss estimate")
    eval_only: bool = opt(False, "evaluate the model once (resume to evaluate a checkpoint) and exit")
    final_full_eval: bool = opt(True, "at the end, measure val loss over the whole val split")
    # data
    data_dir: str = opt("data", "folder of datasets; a relative path is taken from this script's folder")
    dataset: str = opt("shakespeare_char", "subfolder of data_dir with train.bin, val.bin, meta.pkl")
    # learning-rate schedule
    decay_lr: bool = opt(True, "warm up and decay the learning rate (else constant)")
    warmup_iters: int = opt(2000, "linear warm-up steps")
    lr_hold_iters: int = opt(0, "steps held at the peak rate after the warm-up before the decay starts (warmup-stable-decay)")
    lr_decay_iters: int = opt(600000, "step at which the cosine reaches min_lr; usually max_iters")
    min_lr: float = opt(6e-5, "floor of the learning rate; usually learning_rate / 10")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, ("eval_interval", "eval_iters"))
        require(self.log_interval >= 0, f"log_interval must be >= 0 (0 turns the log off), got {self.log_interval}.")

    def schedule(self) -> CosineSchedule:
        return CosineSchedule(self.learning_rate, self.warmup_iters, self.lr_decay_iters, self.min_lr, self.decay_lr,
                              self.lr_hold_iters)


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, data: TokenData, rt: Runtime, cfg: TrainConfig) -> dict[str, float]:
    """Mean loss over eval_iters batches per split. The batches come from a fixed seed, so
    every evaluation sees the same ones and their differences are the model's. Under DDP
    each rank evaluates its share of them and the sums are added up (every rank calls this)."""
    model.eval()
    out = {}
    for split in ("train", "val"):
        generator = torch.Generator().manual_seed(cfg.seed)
        total = torch.zeros((), device=rt.device)
        for x, y in rt.share(data.get_batch(split, cfg.batch_size, generator=generator) for _ in range(cfg.eval_iters)):
            with rt.autocast():
                _, loss = model(x, y)
            total += loss.float()
        out[split] = rt.sum_across_ranks(total).item() / cfg.eval_iters  # one sync per split
    model.train()
    return out


@torch.no_grad()
def full_split_loss(model: torch.nn.Module, data: TokenData, rt: Runtime, split: str, batch_size: int,
                    stop: Callable[[], bool] = lambda: False) -> tuple[float, int]:
    """Mean loss per token over every token of ``split``, in nats, and the number of tokens
    measured; each rank takes its share of the batches (every rank calls this). ``stop()``
    is asked before each batch: once it is True the pass ends early, on every rank alike (the
    count then falls short of the split's)."""
    model.eval()
    total = torch.zeros((), device=rt.device)  # float32: MPS has no float64, and 7 digits suffice
    count, cut = 0, 0.0
    for x, y, n in rt.share(data.iter_split(split, batch_size)):
        if stop():
            cut = 1.0
            break
        with rt.autocast():
            _, loss = model(x, y)
        total += loss.float() * n
        count += n
    model.train()
    figures = torch.stack([total, torch.tensor(float(count), device=rt.device), torch.tensor(cut, device=rt.device)])
    total, count, cut = rt.sum_across_ranks(figures).tolist()
    return total / max(count, 1), 0 if cut else int(count)


def final_evaluation(training: Training, data: TokenData, tracker: ProgressTracker, cfg: TrainConfig,
                     data_state: dict, loss: torch.Tensor) -> float | None:
    """The loss over the whole val split, measured after the last step's checkpoint (so a
    scheduler's kill during this long pass loses no step). A signal stops the pass at once:
    then the last step is saved (unless it was, for a better val loss), it says so and
    returns None (the caller exits 130 or 143)."""
    rt, tokens = training.rt, data.num_tokens("val") - 1
    with tracker.pause("eval"):
        loss, measured = full_split_loss(training.fast_model, data, rt, "val", cfg.batch_size,
                                         stop=lambda: training.signal_pending)
    if measured:
        return loss
    training.agree_on_stop()
    with tracker.pause("checkpoint"):
        training.save_for_stop(cfg.max_iters, data_state, loss=loss)
    rt.print(f"stopped by {signal_name(training.stop_signum)} during the final evaluation over the whole val split "
             f"({tokens:,} tokens): the pass was cut short, its loss is not measured. Measure it with "
             f"--eval_only=True --init_from=resume.")
    tracker.event("final_evaluation_stopped", signal=signal_name(training.stop_signum), tokens=tokens)
    return None


def log_line(done: int, loss: float, tracker: ProgressTracker) -> str:
    """The one-line log: iteration, loss, and the tracker's own speed and MFU figures."""
    speed, mfu = tracker.iters_per_s, tracker.mfu
    time = f"{1000 / speed:.2f}ms" if speed else "-"
    return f"iter {done}: loss {loss:.4f}, time {time}" + (f", mfu {100 * mfu:.2f}%" if mfu is not None else "")


def main(argv: list[str]) -> None:
    if "-h" in argv or "--help" in argv:
        print(format_help(TrainConfig, "train.py", __doc__.strip()))
        return
    cfg = load_config(TrainConfig, argv, prog="train.py")
    cfg.schedule()  # validates the learning-rate settings before joining any process group
    run_until_done(cfg, start(cfg), train, show_log_location=not cfg.eval_only)


def train(cfg: TrainConfig, rt: Runtime, stop: GracefulStop | None = None) -> int:
    """Train as ``cfg`` says (or with eval_only, evaluate and return). Returns the exit code:
    0, or 128 + the signal's number when ``stop`` was requested and the run stopped early."""
    schedule = cfg.schedule()
    data_root = cfg.data_dir if os.path.isabs(cfg.data_dir) else os.path.join(HERE, cfg.data_dir)
    dataset_dir = os.path.join(data_root, cfg.dataset)
    if rt.is_master:
        ensure_prepared(dataset_dir)
    rt.barrier()  # the other ranks read what the master prepared
    torch.manual_seed(cfg.seed + rt.rank)
    data = TokenData(dataset_dir, cfg.block_size, rt.device, seed=cfg.seed + rt.rank)
    training = Training(cfg, rt, GPT, data, allow_finished=cfg.eval_only, saves=not cfg.eval_only, stop=stop)
    model = training.fast_model  # for evaluation; training.model trains (DDP-wrapped under torchrun)
    rt.print(f"model: {training.raw_model.get_num_params() / 1e6:.2f}M parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
             f"{cfg.n_embd} wide, context {cfg.block_size}; data: {dataset_dir} (vocabulary {data.vocab_size}, "
             f"train {data.num_tokens('train'):,} / val {data.num_tokens('val'):,} tokens)")
    rt.print(training.runtime_line())
    if cfg.eval_only:
        losses = estimate_loss(model, data, rt, cfg)
        rt.print(f"step {training.iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        rt.print(f"val loss over the whole val split: {full_split_loss(model, data, rt, 'val', cfg.batch_size)[0]:.4f}")
        return 0

    tracker = training.tracker(schedule)
    values, final_val_loss = training.first_values(), None
    x, y = data.get_batch("train", cfg.batch_size)
    data_state: dict  # the data's state before the latest prefetch, what a checkpoint saves

    def micro_loss() -> torch.Tensor:
        nonlocal x, y, data_state
        with rt.autocast():
            _, loss = training.model(x, y)
        data_state = data.state_dict()  # before the prefetch: a resumed run must draw that batch again
        with tracker.data_wait():  # data time in the cross-rank figures under torchrun
            x, y = data.get_batch("train", cfg.batch_size)  # fetched while the device computes
        return loss

    with tracker:
        for it in range(training.iter_num, cfg.max_iters):  # it: optimizer steps done before this one
            lr = schedule(it)
            loss, grad_norm = training.step(lr, micro_loss)
            done = it + 1
            evaluated = done % cfg.eval_interval == 0 or done == cfg.max_iters
            if evaluated:
                with tracker.pause("eval"):  # every rank evaluates its share
                    losses = estimate_loss(model, data, rt, cfg)
                values["val_loss"] = losses["val"]
                if cfg.log_interval:
                    rt.print(f"step {done}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            # The step's report goes out before its checkpoint: a kill between them loses no
            # report for good (the resumed run redoes the step and reports it again).
            tracker.step(loss=loss, lr=lr, grad_norm=grad_norm, **values)
            values = {}
            if cfg.log_interval and done % cfg.log_interval == 0 and rt.is_master:
                print(log_line(done, loss.item(), tracker))  # .item(): a host-device sync, once per log line
            if evaluated and (training.record_val_loss(losses["val"], done) or cfg.always_save_checkpoint):
                with tracker.pause("checkpoint"):
                    training.save(done, data_state, loss=loss)
            if done == cfg.max_iters and cfg.final_full_eval:  # after the last save: a stop here loses no step
                final_val_loss = final_evaluation(training, data, tracker, cfg, data_state, loss)
                if final_val_loss is None:
                    return training.stop_exit_code
            if done < cfg.max_iters and training.stop_requested(done):
                with tracker.pause("checkpoint"):
                    training.save_for_stop(done, data_state, loss=loss)
                return training.stop_exit_code  # the tracker closes as stopped
    if final_val_loss is not None:
        rt.print(f"final val loss over the whole val split ({data.num_tokens('val') - 1:,} tokens): {final_val_loss:.4f}")
    return 0


if __name__ == "__main__":
    exit_on_config_error("train.py", main)
