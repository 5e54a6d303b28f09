"""Speed and loss of the CPU preset at each dtype, and what dtype=auto picks here.

    python benchmarks/bench_dtype.py [--iters 200] [--repeats 2] [--device cpu]

Runs `train.py config/train_shakespeare_char.py` for --iters iterations at each dtype the
device can train in (float32 and bfloat16; float16 on CUDA only: the trainer refuses it
on a CPU), as separate processes interleaved round by round, so that every dtype sees the
same machine state. Each run's speed is the tracker's average ms/iter over the run (the
final report, evaluation excluded); a dtype's figure is its best round, the one least
disturbed by other processes. The final loss shows the dtypes train alike. The last lines
give each dtype's time relative to float32 and whether `auto` picked the fastest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainkit.runtime import auto_dtype  # noqa: E402  (after the path above)


def run_preset(dtype: str, device: str, iters: int, out_dir: Path) -> dict:
    """Train the preset for ``iters`` iterations in ``dtype``; the run's final report."""
    command = [sys.executable, str(REPO / "train.py"), "config/train_shakespeare_char.py", f"--dtype={dtype}",
               f"--device={device}", f"--max_iters={iters}", f"--eval_interval={iters}", "--eval_iters=2",
               "--final_full_eval=False", "--log_interval=0", "--report_interval=50", "--jsonl_log=True",
               f"--out_dir={out_dir}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench_dtype: train.py --dtype={dtype} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    records = [json.loads(line) for line in (out_dir / "progress.jsonl").read_text().splitlines()]
    return next(r for r in records if r["type"] == "report" and r["kind"] == "final")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200, help="iterations per run (default 200)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; each dtype's best counts (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    dtypes = ["float32", "bfloat16"] + (["float16"] if args.device.startswith("cuda") else [])

    best_ms: dict[str, float] = {}
    losses: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_dtype_") as scratch:
        for round_index in range(args.repeats):
            for dtype in dtypes:
                final = run_preset(dtype, args.device, args.iters, Path(scratch) / f"{dtype}-{round_index}")
                best_ms[dtype] = min(best_ms.get(dtype, float("inf")), final["ms_per_iter"])
                losses[dtype] = final["loss"]
                print(f"round {round_index + 1}: {dtype:>8}: {final['ms_per_iter']:7.1f} ms/iter, "
                      f"final loss {final['loss']:.4f}", flush=True)

    print(f"\nCPU preset, {args.iters} iterations, device {args.device}, {torch.get_num_threads()} threads, "
          f"best of {args.repeats} interleaved rounds:")
    for dtype in dtypes:
        print(f"  {dtype:>8}: {best_ms[dtype]:7.1f} ms/iter  final loss {losses[dtype]:.4f}  "
              f"time / float32 {best_ms[dtype] / best_ms['float32']:.2f}")
    picked, reason = auto_dtype(torch.device(args.device))
    picked_name = str(picked).removeprefix("torch.")
    fastest = min(best_ms, key=best_ms.get)
    verdict = "the fastest" if picked_name == fastest else f"NOT the fastest ({fastest} is)"
    print(f"auto picks {picked_name} here ({reason}): {verdict}")


if __name__ == "__main__":
    main()
