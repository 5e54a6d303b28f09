"""Cost of the per-report cross-rank exchange at 2 and 4 processes (gloo, CPU, torchrun).

    python benchmarks/bench_cross_rank.py [--rounds 200] [--procs 2 4]

Launches ``torchrun --standalone --nproc_per_node=N`` on itself for each N. Every rank makes
the tracker's side group and runs ``rounds`` exchanges, each after a barrier so that what is
timed is the exchange itself (building the row, the all_gather, and on rank 0 the figures
and the straggler check), not one rank waiting for another. Rank 0's times are printed:
median and 90th percentile per exchange, in milliseconds. A run reports 100 times by
default, so the whole run pays about 100 x the median.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median, quantiles

REPO = Path(__file__).resolve().parents[1]


def worker(rounds: int) -> None:
    import torch.distributed as dist

    from trainprogress.ranks import CrossRank, CrossRankConfig

    dist.init_process_group("gloo")
    exchange = CrossRank(CrossRankConfig(timeout_s=60), time.perf_counter, 0)
    times = []
    for k in range(1, rounds + 1):
        dist.barrier(group=exchange._group)
        start = time.perf_counter()
        exchange.exchange(10 * k, 0.0, 0.0, 1.0, 1.0)
        times.append(time.perf_counter() - start)
    if dist.get_rank() == 0:
        ms = sorted(1000 * t for t in times[5:])  # the first few warm the group up
        print(json.dumps({"median_ms": median(ms), "p90_ms": quantiles(ms, n=10)[-1]}))
    exchange.close()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--procs", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.rounds)
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    print(f"cross-rank exchange, gloo on the CPU, {args.rounds} rounds, rank 0's time per exchange")
    print(f"{'processes':>9}  {'median':>9}  {'p90':>9}")
    for procs in args.procs:
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
             __file__, "--worker", "--rounds", str(args.rounds)],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
        )
        if result.returncode != 0:
            sys.exit(f"torchrun with {procs} processes failed:\n{result.stderr[-2000:]}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{procs:>9}  {figures['median_ms']:>7.3f}ms  {figures['p90_ms']:>7.3f}ms")


if __name__ == "__main__":
    main()
