"""A training loop stand-in for the torchrun tests: rank r passes the loss r + 1 at every
step, so the report's loss must be the mean over ranks, not rank 0's.

    torchrun --nproc_per_node=2 tests/rank_worker.py OUT_JSONL MAX_ITERS [QUIT_AT]

With QUIT_AT, the last rank leaves (exit 0) after QUIT_AT steps and the others carry on:
their next exchange must fail within its 3-second timeout, not hang the report.

With FAKE_RAPL_ROOT set (a fake powercap tree with one package, intel-rapl:0), cost is on
and every rank meters that package, which rank 0 advances by 1 J per step: the ranks share
one device, which must count once.
"""

import datetime
import os
import sys
import time

import torch
import torch.distributed as dist

from pathlib import Path

from trainprogress import CrossRankConfig, ProgressTracker
from trainprogress.cost import CostConfig
from trainprogress.sinks import build_sinks


def main(jsonl: str, max_iters: int, quit_at: int | None) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    leaves = quit_at is not None and rank == dist.get_world_size() - 1
    rapl = os.environ.get("FAKE_RAPL_ROOT")
    tracker = ProgressTracker(max_iters, interval_percent=25, sinks=build_sinks(ascii=True, jsonl=jsonl),
                              cross_rank=CrossRankConfig(timeout_s=3), cost=CostConfig(rapl_root=rapl) if rapl else False)
    with tracker:
        for it in range(max_iters):
            if leaves and it == quit_at:
                sys.stdout.flush()
                os._exit(0)
            with tracker.data_wait():
                time.sleep(0.002)
            if rapl and rank == 0:
                (Path(rapl) / "intel-rapl:0" / "energy_uj").write_text(f"{(it + 1) * 1_000_000}\n")
            tracker.step(loss=torch.tensor(float(rank + 1)))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
