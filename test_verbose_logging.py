"""A quick demonstration of trainprogress's reports: a small GPT trained on random tokens.

    python test_verbose_logging.py --max_iters 100
    python test_verbose_logging.py --max_iters 1000 --log_every 1     # a report every 1%
    python test_verbose_logging.py --max_iters 400 --log_every 0.5 --bar --jsonl out/demo.jsonl
    torchrun --standalone --nproc_per_node=2 test_verbose_logging.py --max_iters 300 --log_every 5 \
        --straggler_rank 1 --straggler_ms 20      # several processes: rank 1 is slow to get its data

Random tokens have nothing to learn beyond their frequencies, so the loss settles near
ln(vocab_size); what is shown is the reporting: progress, ETA, speed, loss, learning rate,
MFU, memory and tokens, every --log_every percent. Under torchrun the ranks train one model
with DDP on batches of their own, the report adds the cross-rank figures (data and compute
time, memory, the loss averaged over ranks), and --straggler_rank/--straggler_ms make one
rank slow so that the straggler warning shows within a few reports. A hang watchdog reports
a stall after --stall_s seconds without a step. (Not a test module: pytest skips it.)
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time

import torch

from trainkit.model import GPT, GPTConfig
from trainprogress import ProgressTracker
from trainprogress.sinks import build_sinks
from trainprogress.watchdog import WatchdogConfig


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_iters", type=int, default=100, help="optimizer steps (default 100)")
    parser.add_argument("--log_every", type=float, default=1.0, help="percent of the run between reports, e.g. 1 or 0.5")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--block_size", type=int, default=64)
    parser.add_argument("--vocab_size", type=int, default=256)
    parser.add_argument("--n_layer", type=int, default=2)
    parser.add_argument("--n_embd", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ascii", action="store_true", help="plain ASCII blocks, no emoji")
    parser.add_argument("--bar", action="store_true", help="a live progress bar between the blocks")
    parser.add_argument("--jsonl", default=None, help="also write every report to this JSON Lines file")
    parser.add_argument("--no_anomaly", action="store_true", help="turn anomaly detection off")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--straggler_rank", type=int, default=None, help="under torchrun: this rank sleeps while waiting for data")
    parser.add_argument("--straggler_ms", type=float, default=20.0, help="milliseconds the straggler sleeps per batch (default 20)")
    parser.add_argument("--stall_s", type=float, default=300.0, help="seconds without a step that count as a stall (default 300)")
    parser.add_argument("--dist_timeout", type=float, default=600.0, help="seconds a collective may wait under torchrun (default 600)")
    args = parser.parse_args(argv)
    if args.max_iters <= 0:
        parser.error(f"--max_iters must be a positive number of steps, got {args.max_iters}")
    if not 0 < args.log_every <= 100:
        parser.error(f"--log_every must be a percent in (0, 100], got {args.log_every}; e.g. --log_every 1")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.straggler_rank is not None and not 0 <= args.straggler_rank < world_size:
        parser.error(f"--straggler_rank must be a rank in [0, {world_size}), got {args.straggler_rank}; "
                     f"launch with torchrun --nproc_per_node=N for several ranks")
    for name in ("straggler_ms", "stall_s", "dist_timeout"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name} must be > 0, got {getattr(args, name)}")
    return args


def join_process_group(args: argparse.Namespace) -> tuple[int, int]:
    """Under torchrun: join the process group (NCCL on CUDA, else gloo) and pick this rank's
    device. Returns (rank, world size); (0, 1) for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1
    local_rank = int(os.environ["LOCAL_RANK"])
    if args.device.startswith("cuda"):
        if local_rank >= torch.cuda.device_count():
            sys.exit(f"test_verbose_logging.py: error: process {local_rank} of this node (LOCAL_RANK) has no GPU of its "
                     f"own: {torch.cuda.device_count()} visible. Fix: torchrun --nproc_per_node="
                     f"{torch.cuda.device_count()}, or --device cpu.")
        args.device = f"cuda:{local_rank}"
        torch.cuda.set_device(args.device)
    backend = "nccl" if args.device.startswith("cuda") else "gloo"
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=args.dist_timeout))
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    rank, world_size = join_process_group(args)
    torch.manual_seed(args.seed)
    batches = torch.Generator().manual_seed(args.seed + rank)  # each rank its own batches
    config = GPTConfig(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer,
                       n_head=4, n_embd=args.n_embd, dropout=0.0, bias=False)
    model = GPT(config).to(args.device)
    flops_per_token, num_params = model.flops_per_token(), model.get_num_params()
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    tokens_per_iter = args.batch_size * args.block_size * world_size
    straggling = rank == args.straggler_rank

    tracker = ProgressTracker(
        args.max_iters,
        interval_percent=args.log_every,
        tokens_per_iter=tokens_per_iter,
        flops_per_iter=flops_per_token * tokens_per_iter,
        precision="fp32",
        sinks=build_sinks(ascii=True if args.ascii else None, bar=args.bar, jsonl=args.jsonl),
        anomaly=None if args.no_anomaly else True,
        run_config=vars(args),
        cross_rank=world_size > 1,
        watchdog=WatchdogConfig(min_stall_s=args.stall_s, first_step_s=max(args.stall_s, 60.0)),
    )
    tracker.set_section("🧠 Model State", lambda: {
        "Parameters": num_params,
        "Layers x width": f"{args.n_layer} x {args.n_embd}",
        "Batch": f"{args.batch_size} x {args.block_size} tokens",
        "Loss floor (ln vocab)": round(math.log(args.vocab_size), 4),
    })
    with tracker:
        for it in range(args.max_iters):
            # Cosine decay to a tenth of the peak rate.
            lr = args.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * it / args.max_iters)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            with tracker.data_wait():
                x = torch.randint(args.vocab_size, (args.batch_size, args.block_size), generator=batches).to(args.device)
                y = torch.roll(x, shifts=-1, dims=1)
                if straggling:
                    time.sleep(args.straggler_ms / 1000)
            _, loss = model(x, y)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            # Tensors go in as they are: the tracker reads them once per report, not per step.
            tracker.step(loss=loss.detach(), lr=lr, grad_norm=grad_norm)
    if world_size > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
