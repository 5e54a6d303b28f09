"""Make loss curves for benchmarks/bench_forecast.py with this repository's own trainer:
a tiny character GPT (0.1M parameters) on the Shakespeare data, one run per schedule below,
each run's per-iteration loss (the one-line log, --log_interval=1) and the learning rate of
every step (the trainer's own CosineSchedule, the one it set on the optimizer) written as a
CSV into benchmarks/curves/.

    python benchmarks/make_curves.py [NAME ...]      # all runs, or those named

Runs one at a time on one CPU thread (about 40 ms a step on a shared 2-core machine).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from train import TrainConfig  # noqa: E402
from trainkit.config import load_config  # noqa: E402

OUT = ROOT / "benchmarks" / "curves"
TINY = ["config/train_shakespeare_char.py", "--n_layer=2", "--n_head=2", "--n_embd=64", "--block_size=64",
        "--batch_size=16", "--dtype=float32", "--compile=False", "--device=cpu", "--log_interval=1",
        "--eval_interval=100000", "--eval_iters=2", "--final_full_eval=False"]
# name -> (max_iters, learning_rate, warmup_iters, extra keys)
RUNS = {
    "tiny_cosine_300_lr3e-3": (300, 3e-3, 20, []),
    "tiny_cosine_600_lr1e-3": (600, 1e-3, 30, []),
    "tiny_cosine_1000_lr1e-3_to0": (1000, 1e-3, 50, ["--min_lr=0"]),
    "tiny_cosine_1500_lr2e-3": (1500, 2e-3, 50, []),
    "tiny_cosine_2000_lr5e-4": (2000, 5e-4, 100, []),
    "tiny_constant_800_lr1e-3": (800, 1e-3, 0, ["--decay_lr=False"]),
    "tiny_constant_1500_lr3e-3": (1500, 3e-3, 0, ["--decay_lr=False"]),
    "tiny_hold_600_lr3e-3": (600, 3e-3, 20, ["--lr_hold_iters=380"]),
    "tiny_hold_1000_lr1e-3": (1000, 1e-3, 30, ["--lr_hold_iters=670"]),
    "tiny_hold_2000_lr2e-3": (2000, 2e-3, 50, ["--lr_hold_iters=1550"]),
}
LOG_LINE = re.compile(r"^iter (\d+): loss ([0-9.]+|nan|inf)")


def run_arguments(name: str) -> list[str]:
    total, rate, warmup, extra = RUNS[name]
    return TINY + [f"--max_iters={total}", f"--lr_decay_iters={total}", f"--learning_rate={rate}",
                   f"--warmup_iters={warmup}"] + extra


def make(name: str) -> Path:
    arguments = run_arguments(name)
    cfg = load_config(TrainConfig, [str(ROOT / arguments[0])] + arguments[1:], prog="train.py")
    schedule = cfg.schedule()
    with tempfile.TemporaryDirectory() as out_dir:
        command = [sys.executable, "train.py"] + arguments + [f"--out_dir={out_dir}", "--seed=1337"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{name}: train.py failed ({done.returncode}):\n{done.stderr[-2000:]}")
    losses = {int(m[1]): float(m[2]) for m in map(LOG_LINE.match, done.stdout.splitlines()) if m}
    if sorted(losses) != list(range(1, cfg.max_iters + 1)):
        sys.exit(f"{name}: the log holds {len(losses)} of {cfg.max_iters} iteration losses")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    kind = "constant" if not cfg.decay_lr else ("hold_cosine" if cfg.lr_hold_iters else "cosine")
    shape = {"kind": kind, "peak": cfg.learning_rate, "warmup": cfg.warmup_iters, "floor": cfg.min_lr,
             "hold": cfg.lr_hold_iters}
    header = [
        "source: this repository (trainprogress), train.py, run by benchmarks/make_curves.py",
        f"commit: {commit} (the run's parent commit)",
        "license: this repository's",
        f"command: OMP_NUM_THREADS=1 python train.py {shlex.join(arguments)} --seed=1337",
        "model: 0.10M-parameter character GPT (2 layers, 2 heads, 64 wide, context 64), 1,024 tokens a step, CPU",
        "loss: train loss of every step's batch (the one-line log, 4 decimals)",
        "lr_source: trainkit.schedule.CosineSchedule of the run's config, every step (what the trainer set)",
        f"name: {name}",
        f"total_steps: {cfg.max_iters}",
        f"schedule: {json.dumps(shape)}",
    ]
    rows = [f"{step},{losses[step]:.4f},{schedule(step - 1):.6g}," for step in range(1, cfg.max_iters + 1)]
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.csv"
    path.write_text("".join(f"# {line}\n" for line in header) + "step,loss,lr,val_loss\n" + "\n".join(rows) + "\n")
    return path


def main() -> None:
    names = sys.argv[1:] or list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        sys.exit(f"unknown run(s) {', '.join(unknown)}; known: {', '.join(RUNS)}")
    for name in names:
        print(f"{name}: {make(name)}", flush=True)


if __name__ == "__main__":
    main()
