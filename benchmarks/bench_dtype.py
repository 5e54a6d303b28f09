"""Speed and loss of the CPU preset at each dtype, and whether dtype=auto picks the fastest.

    python benchmarks/bench_dtype.py [--iters 200] [--chunk 10] [--device cpu]

Trains the model of `config/train_shakespeare_char.py` once per dtype the device can train
in (float32 and bfloat16; float16 on CUDA only, as the trainer refuses it on a CPU), in
this process, with train.py's own pieces: the same Training (model, AdamW, loss scaler,
gradient clipping), the same batches (one seed) and the same learning-rate schedule. The
dtypes take turns every --chunk iterations, so that each sees the same machine state (the
machine may be shared), after 5 untimed warm-up steps each. Printed per dtype: ms/iter over
all its chunks, the median of its per-round time relative to float32 (the figure least
moved by other processes, and the one that names the fastest), its training loss over the last chunk and the validation loss
train.py would print at the end (eval_iters batches); then what `auto` picks here and
whether that is the fastest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from train import TrainConfig, estimate_loss  # noqa: E402  (after the path above)
from trainkit.config import load_config  # noqa: E402
from trainkit.data import TokenData, ensure_prepared  # noqa: E402
from trainkit.model import GPT  # noqa: E402
from trainkit.runtime import auto_dtype, setup_runtime  # noqa: E402
from trainkit.training import Training  # noqa: E402

PRESET = str(REPO / "config" / "train_shakespeare_char.py")
WARMUP_STEPS = 5


class DtypeRun:
    """The preset training in one dtype: its own model, optimizer and batch stream."""

    def __init__(self, dtype: str, device: str, iters: int) -> None:
        self.cfg = load_config(TrainConfig, [PRESET, f"--dtype={dtype}", f"--device={device}", f"--max_iters={iters}"],
                               prog="bench_dtype")
        self.rt = setup_runtime(self.cfg.device, self.cfg.dtype)
        dataset_dir = os.path.join(REPO, self.cfg.data_dir, self.cfg.dataset)
        ensure_prepared(dataset_dir)
        torch.manual_seed(self.cfg.seed)  # the same initial weights for every dtype
        self.data = TokenData(dataset_dir, self.cfg.block_size, self.rt.device, seed=self.cfg.seed)
        self.training = Training(self.cfg, self.rt, GPT, self.data, saves=False)
        self.schedule = self.cfg.schedule()
        self.batch = self.data.get_batch("train", self.cfg.batch_size)
        self.iteration = 0
        self.seconds = 0.0
        self.chunk_seconds: list[float] = []
        self.last_losses: list[float] = []

    def _micro_loss(self) -> torch.Tensor:
        with self.rt.autocast():
            _, loss = self.training.model(*self.batch)
        self.batch = self.data.get_batch("train", self.cfg.batch_size)  # fetched as train.py does
        return loss

    def train(self, steps: int, timed: bool = True) -> None:
        """``steps`` optimizer steps, timed (the losses read once, at the end)."""
        start = time.perf_counter()
        losses = []
        for _ in range(steps):
            loss, _ = self.training.step(self.schedule(self.iteration), self._micro_loss)
            losses.append(loss)
            self.iteration += 1
        if self.rt.device_type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        self.last_losses = [float(loss) for loss in losses]
        if timed:
            self.seconds += elapsed
            self.chunk_seconds.append(elapsed)

    def val_loss(self) -> float:
        return estimate_loss(self.training.fast_model, self.data, self.rt, self.cfg)["val"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200, help="timed iterations per dtype (default 200)")
    parser.add_argument("--chunk", type=int, default=10, help="iterations per turn (default 10)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    names = ["float32", "bfloat16"] + (["float16"] if args.device.startswith("cuda") else [])

    runs = {name: DtypeRun(name, args.device, WARMUP_STEPS + args.iters) for name in names}
    for run in runs.values():
        run.train(WARMUP_STEPS, timed=False)
    for done in range(0, args.iters, args.chunk):
        for run in runs.values():
            run.train(min(args.chunk, args.iters - done))

    base = runs["float32"]
    relative = {name: statistics.median(mine / theirs for mine, theirs in zip(run.chunk_seconds, base.chunk_seconds))
                for name, run in runs.items()}
    print(f"CPU preset (config/train_shakespeare_char.py), {args.iters} iterations per dtype in turns of {args.chunk}, "
          f"device {args.device}, {torch.get_num_threads()} threads:")
    for name, run in runs.items():
        print(f"  {name:>8}: {1000 * run.seconds / args.iters:7.1f} ms/iter, time / float32 {relative[name]:.2f} (median of "
              f"{len(run.chunk_seconds)} turns); train loss {statistics.fmean(run.last_losses):.6f} (last turn), "
              f"val loss {run.val_loss():.6f}")
    picked, reason = auto_dtype(torch.device(args.device))
    picked_name = str(picked).removeprefix("torch.")
    fastest = min(relative, key=relative.get)  # by the median ratio: totals move with the machine's load
    verdict = "the fastest here" if picked_name == fastest else f"NOT the fastest here ({fastest} is)"
    print(f"auto picks {picked_name} ({reason}): {verdict}")


if __name__ == "__main__":
    main()
