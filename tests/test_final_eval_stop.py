"""A signal during train.py's final pass over the whole val split: the last step's checkpoint
is written before the pass, the pass stops at the signal and says so, the exit is 143."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import train
from helpers import REPO, TINY_TRAIN
from trainkit.checkpoint import load_checkpoint
from trainkit.data import TokenData
from trainkit.model import GPT, GPTConfig
from trainkit.runtime import setup_runtime
from trainprogress import read_log


def long_val_dataset(folder) -> None:
    """A dataset whose val split (4M tokens) takes train.py's tiny model over a minute (83 s measured) to
    evaluate whole on a CPU, and a small train split."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rng.integers(0, 65, 20_000, dtype=np.uint16).tofile(folder / "train.bin")
    rng.integers(0, 65, 4_000_000, dtype=np.uint16).tofile(folder / "val.bin")
    (folder / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 65}))


@pytest.mark.process
def test_sigterm_during_the_final_full_evaluation_keeps_the_last_step_and_exits_143(tmp_path):
    long_val_dataset(tmp_path / "data" / "long")
    out_dir = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "train.py"), *TINY_TRAIN, "--max_iters=10", "--eval_interval=1000",
           f"--data_dir={tmp_path / 'data'}", "--dataset=long", f"--out_dir={out_dir}", "--jsonl_log=True"]
    with open(tmp_path / "console.txt", "w") as console:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=console, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"})
        deadline = time.monotonic() + 180
        while not (out_dir / "ckpt.pt").exists():  # the last step's checkpoint: the final pass begins
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "console.txt").read_text()
            time.sleep(0.02)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = process.wait(timeout=120)
    waited = time.monotonic() - sent
    text = (tmp_path / "console.txt").read_text()
    assert code == 143, text[-3000:]
    assert waited < 15, f"{waited:.1f} s from SIGTERM to exit"  # the whole pass takes about 80 s here
    assert "stopped by SIGTERM during the final evaluation over the whole val split (3,999,999 tokens)" in text
    assert "final val loss over the whole val split" not in text and "Traceback" not in text
    assert load_checkpoint(str(out_dir / "ckpt.pt"))["iter_num"] == 10
    run = read_log(out_dir / "progress.jsonl").runs[-1]
    assert run.reports[-1]["iteration"] == 10
    assert [e["event"] for e in run.events][-1:] == ["final_evaluation_stopped"]


def test_full_split_loss_stops_at_the_first_true_and_says_so_in_its_count(tmp_path):
    long_val_dataset(tmp_path / "long")
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=65, dropout=0.0, bias=False))
    rt = setup_runtime("cpu", "float32")
    asked = []
    _, measured = train.full_split_loss(model, TokenData(str(tmp_path / "long"), 32, "cpu", seed=0), rt, "val", 4,
                                        stop=lambda: asked.append(1) or len(asked) > 2)
    assert (measured, len(asked)) == (0, 3)  # stopped at the third question, 4M tokens before the end
    assert model.training
    small = tmp_path / "small"
    small.mkdir()
    for split in ("train", "val"):
        (np.arange(300) % 65).astype(np.uint16).tofile(small / f"{split}.bin")
    (small / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 65}))
    whole, measured = train.full_split_loss(model, TokenData(str(small), 32, "cpu", seed=0), rt, "val", 4)
    assert measured == 299 and np.isfinite(whole)  # every target of the split, without a stop
