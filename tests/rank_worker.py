"""A training loop stand-in for the torchrun tests: rank r passes the loss r + 1 at every
step, so the report's loss must be the mean over ranks, not rank 0's.

    torchrun --nproc_per_node=2 tests/rank_worker.py OUT_JSONL MAX_ITERS
"""

import datetime
import sys
import time

import torch
import torch.distributed as dist

from trainprogress import ProgressTracker
from trainprogress.sinks import build_sinks


def main(jsonl: str, max_iters: int) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    tracker = ProgressTracker(max_iters, interval_percent=25, sinks=build_sinks(ascii=True, jsonl=jsonl),
                              cross_rank=True)
    with tracker:
        for _ in range(max_iters):
            with tracker.data_wait():
                time.sleep(0.002)
            tracker.step(loss=torch.tensor(float(rank + 1)))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
