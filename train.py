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
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from trainkit.checkpoint import load_for_resume, save_checkpoint, strip_compile_prefix
from trainkit.config import ConfigError, format_help, load_config, opt, require
from trainkit.data import TokenData, ensure_prepared
from trainkit.model import GPT, GPTConfig
from trainkit.reporting import build_tracker
from trainkit.runtime import Runtime, env_world_size, setup_runtime, split_grad_accum, want_compile
from trainkit.schedule import CosineSchedule
from trainkit.settings import GPTTrainingConfig, require_positive
from trainkit.step import optimizer_step
from trainprogress.flops import detect_peak

HERE = os.path.dirname(os.path.abspath(__file__))
# The model's shape: a resumed run must match its checkpoint in these (dropout may change).


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
    lr_decay_iters: int = opt(600000, "step at which the cosine reaches min_lr; usually max_iters")
    min_lr: float = opt(6e-5, "floor of the learning rate; usually learning_rate / 10")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, ("eval_interval", "eval_iters"))
        require(self.log_interval >= 0, f"log_interval must be >= 0 (0 turns the log off), got {self.log_interval}.")

    def schedule(self) -> CosineSchedule:
        return CosineSchedule(self.learning_rate, self.warmup_iters, self.lr_decay_iters, self.min_lr, self.decay_lr)


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, data: TokenData, rt: Runtime, cfg: TrainConfig) -> dict[str, float]:
    """Mean loss over eval_iters batches per split. The batches come from a fixed seed, so
    every evaluation sees the same ones and their differences are the model's."""
    model.eval()
    out = {}
    for split in ("train", "val"):
        generator = torch.Generator().manual_seed(cfg.seed)
        total = torch.zeros((), device=rt.device)
        for _ in range(cfg.eval_iters):
            x, y = data.get_batch(split, cfg.batch_size, generator=generator)
            with rt.autocast():
                _, loss = model(x, y)
            total += loss.float()
        out[split] = total.item() / cfg.eval_iters  # one sync per split
    model.train()
    return out


@torch.no_grad()
def full_split_loss(model: torch.nn.Module, data: TokenData, rt: Runtime, split: str, batch_size: int) -> float:
    """Mean loss per token over every token of ``split``, in nats."""
    model.eval()
    total = torch.zeros((), device=rt.device)  # float32: MPS has no float64, and 7 digits suffice
    count = 0
    for x, y, n in data.iter_split(split, batch_size):
        with rt.autocast():
            _, loss = model(x, y)
        total += loss.float() * n
        count += n
    model.train()
    return total.item() / count


def main(argv: list[str]) -> None:
    if "-h" in argv or "--help" in argv:
        print(format_help(TrainConfig, "train.py", __doc__.strip()))
        return
    cfg = load_config(TrainConfig, argv, prog="train.py")
    schedule = cfg.schedule()  # validates the learning-rate settings
    micro_steps = split_grad_accum(cfg.gradient_accumulation_steps, env_world_size())  # before joining DDP
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.backend)
    try:
        train(cfg, schedule, rt, micro_steps)
    finally:
        rt.close()


def train(cfg: TrainConfig, schedule: CosineSchedule, rt: Runtime, micro_steps: int) -> None:
    """Train as ``cfg`` says; ``micro_steps`` is this process's share of the accumulation steps."""
    log = print if rt.is_master else (lambda *args, **kwargs: None)
    tokens_per_iter = micro_steps * rt.world_size * cfg.batch_size * cfg.block_size

    # -------------------------------------------------------------------- data
    data_root = cfg.data_dir if os.path.isabs(cfg.data_dir) else os.path.join(HERE, cfg.data_dir)
    dataset_dir = os.path.join(data_root, cfg.dataset)
    if rt.is_master:
        ensure_prepared(dataset_dir)
    rt.barrier()  # the other ranks read what the master prepared
    torch.manual_seed(cfg.seed + rt.rank)
    data = TokenData(dataset_dir, cfg.block_size, rt.device, seed=cfg.seed + rt.rank)

    # -------------------------------------------------------------------- model
    model_args = dict(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size,
                      bias=cfg.bias, vocab_size=data.vocab_size, dropout=cfg.dropout)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    iter_num, best_val_loss, ckpt = 0, math.inf, None
    if cfg.init_from == "resume":
        ckpt = load_for_resume(ckpt_path, rt.device, model_args, cfg.max_iters, allow_finished=cfg.eval_only)
        iter_num, best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
    raw_model = GPT(GPTConfig(**model_args))
    if ckpt is not None:
        raw_model.load_state_dict(strip_compile_prefix(ckpt["model"]))
    raw_model.to(rt.device)
    optimizer = raw_model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2), rt.device_type)
    scaler = rt.grad_scaler()
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        if "data" in ckpt:
            data.load_state_dict(ckpt["data"])
        ckpt = None  # free the checkpoint's copy of the weights
    flops_per_token = raw_model.flops_per_token()
    fast_model = torch.compile(raw_model) if want_compile(cfg.compile, rt.device_type) else raw_model
    model = DDP(fast_model, device_ids=[rt.local_rank] if rt.device_type == "cuda" else None) if rt.ddp else fast_model

    log(f"model: {raw_model.get_num_params() / 1e6:.2f}M parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
        f"{cfg.n_embd} wide, context {cfg.block_size}; data: {dataset_dir} (vocabulary {data.vocab_size}, "
        f"train {data.num_tokens('train'):,} / val {data.num_tokens('val'):,} tokens)")
    log(f"runtime: {rt.device} {rt.dtype_name}, world size {rt.world_size}, {torch.get_num_threads()} CPU threads, "
        f"compile {fast_model is not raw_model}; {tokens_per_iter:,} tokens per iteration")

    if cfg.eval_only:
        if rt.is_master:
            losses = estimate_loss(fast_model, data, rt, cfg)
            log(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            log(f"val loss over the whole val split: {full_split_loss(fast_model, data, rt, 'val', cfg.batch_size):.4f}")
        return

    # Everything is valid: only now may the run write anything.
    if rt.is_master:
        os.makedirs(cfg.out_dir, exist_ok=True)

    def save(iteration: int, data_state: dict) -> None:
        save_checkpoint(ckpt_path, {
            "model": raw_model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "data": data_state,
            "model_args": model_args,
            "iter_num": iteration,
            "best_val_loss": best_val_loss,
            "config": asdict(cfg),
        })

    # -------------------------------------------------------------------- training loop
    # float32 on CUDA runs matmuls as TF32 (see trainkit.runtime), which sets its peak.
    precision = rt.precision
    flops_per_iter = flops_per_token * tokens_per_iter / rt.world_size  # per device, so MFU is per device
    tracker = build_tracker(cfg, cfg.max_iters, out_dir=cfg.out_dir, tokens_per_iter=tokens_per_iter, flops_per_iter=flops_per_iter,
                            start_iter=iter_num, is_master=rt.is_master, precision=precision)
    peak = detect_peak(precision) if rt.is_master and cfg.log_interval else None  # for the one-line log's MFU
    first_values = {"best_val_loss": best_val_loss} if math.isfinite(best_val_loss) else {}
    final_val_loss = None
    x, y = data.get_batch("train", cfg.batch_size)
    data_state: dict  # the data's state before the latest prefetch, what a checkpoint saves

    def micro_loss() -> torch.Tensor:
        nonlocal x, y, data_state
        with rt.autocast():
            _, loss = model(x, y)
        data_state = data.state_dict()  # before the prefetch: a resumed run must draw that batch again
        x, y = data.get_batch("train", cfg.batch_size)  # fetched while the device computes
        return loss

    t_log, iters_since_log = time.perf_counter(), 0
    with tracker:
        for it in range(iter_num, cfg.max_iters):  # it: optimizer steps done before this one
            lr = schedule(it)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum, grad_norm = optimizer_step(rt, model, optimizer, scaler, micro_loss, micro_steps, cfg.grad_clip,
                                                 raw_model.parameters())
            values = dict(first_values)
            first_values = {}
            if grad_norm is not None:
                values["grad_norm"] = grad_norm
            done = it + 1

            if done % cfg.eval_interval == 0 or done == cfg.max_iters:
                pause_start = time.perf_counter()
                if rt.is_master:
                    with tracker.pause("eval"):
                        losses = estimate_loss(fast_model, data, rt, cfg)
                        if done == cfg.max_iters and cfg.final_full_eval:
                            losses["val"] = final_val_loss = full_split_loss(fast_model, data, rt, "val", cfg.batch_size)
                    values["val_loss"] = losses["val"]
                    if cfg.log_interval:
                        log(f"step {done}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                    if losses["val"] < best_val_loss or cfg.always_save_checkpoint:
                        best_val_loss = min(best_val_loss, losses["val"])
                        with tracker.pause("checkpoint"):
                            save(done, data_state)
                t_log += time.perf_counter() - pause_start  # keep eval time out of the log line's ms/iter

            tracker.step(loss=loss_sum, lr=lr, **values)
            iters_since_log += 1
            if cfg.log_interval and done % cfg.log_interval == 0 and rt.is_master:
                loss_value = loss_sum.item()  # a CPU-GPU sync point, once per log line
                now = time.perf_counter()
                ms = (now - t_log) * 1000 / max(iters_since_log, 1)
                mfu = f", mfu {100 * flops_per_iter / (ms / 1000) / peak.flops_per_s:.2f}%" if peak else ""
                log(f"iter {done}: loss {loss_value:.4f}, time {ms:.2f}ms{mfu}")
                t_log, iters_since_log = now, 0
    if final_val_loss is not None:
        log(f"final val loss over the whole val split ({data.num_tokens('val') - 1:,} tokens): {final_val_loss:.4f}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"train.py: error: {e}")
