"""train.py and sample.py end to end, as real processes on the shipped corpus: the progress
reports they print, the checkpoint, resuming, and sampling from the result."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import train
from helpers import REPO, TINY_TRAIN, read_jsonl, run_script
from trainkit.config import ConfigError

# TINY_TRAIN: a tiny model; here 40 optimizer steps, a report every 10% (4 steps), evaluations at 20 and 40.
TOKENS_PER_ITER = 4 * 32
HEADER = re.compile(r"TRAINING PROGRESS: ([\d.]+)% \(([\d,]+)/([\d,]+) iterations\)")
TOKENS = re.compile(r"Tokens processed: ([\d,]+)")
FINAL_VAL = re.compile(r"final val loss over the whole val split \(103,649 tokens\): ([\d.]+)")


def reports(stdout: str) -> list[tuple[float, int, int, int | None]]:
    """(percent, iteration, total, tokens processed) of each progress block, in order."""
    out = []
    blocks = stdout.split("TRAINING PROGRESS:")[1:]
    for header, block in zip(HEADER.finditer(stdout), blocks):
        tokens = TOKENS.search(block.split("TRAINING COMPLETE")[0])
        out.append((float(header.group(1)), int(header.group(2).replace(",", "")), int(header.group(3).replace(",", "")),
                    int(tokens.group(1).replace(",", "")) if tokens else None))
    return out


@pytest.fixture
def straight(tiny_train_run) -> tuple[Path, str]:
    """40 steps in one process: the shared run of tests/conftest.py (every sink on)."""
    out_dir, result = tiny_train_run
    return out_dir, result.stdout


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> tuple[Path, str, str]:
    """The same 40 steps as 20, then a second process resuming to 40."""
    out_dir = tmp_path_factory.mktemp("resumed")
    first = run_script("train.py", *TINY_TRAIN, "--max_iters=20", f"--out_dir={out_dir}").stdout
    second = run_script("train.py", *TINY_TRAIN, "--max_iters=40", "--init_from=resume", f"--out_dir={out_dir}").stdout
    return out_dir, first, second


def test_reports_every_10_percent_ending_at_100(straight):
    out_dir, stdout = straight
    got = reports(stdout)
    assert [r[0] for r in got] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert [r[1] for r in got] == list(range(4, 41, 4))
    assert all(r[2] == 40 for r in got)
    assert [r[3] for r in got] == [i * TOKENS_PER_ITER for i in range(4, 41, 4)]
    assert stdout.count("TRAINING COMPLETE") == 1
    assert "=" * 80 in stdout


def test_report_carries_loss_lr_speed_memory_and_validation(straight):
    _, stdout = straight
    blocks = stdout.split("TRAINING PROGRESS:")
    first, after_eval = blocks[1], blocks[6]  # 10%, and 50% (after the eval at step 20)
    for label in ("Loss:", "Learning Rate:", "Elapsed:", "ETA:", "Speed:", "Time per iter:", "Memory", "Tokens processed:"):
        assert label in first, label
    assert "Validation Loss" not in first
    assert "Validation Loss:" in after_eval and "Best Validation Loss:" in after_eval


def test_one_line_log_and_final_full_val_loss(straight):
    out_dir, stdout = straight
    assert re.findall(r"^iter (\d+): loss [\d.]+, time [\d.]+ms", stdout, flags=re.M) == ["10", "20", "30", "40"]
    # The line shows the tracker's own speed: at iteration 40 the same as the 100% report's.
    last = next(r for r in read_jsonl(out_dir / "progress.jsonl") if r["type"] == "report" and r["iteration"] == 40)
    assert re.search(rf"^iter 40: loss [\d.]+, time {last['ms_per_iter']:.2f}ms", stdout, flags=re.M)
    assert re.findall(r"^step (\d+): train loss [\d.]+, val loss [\d.]+$", stdout, flags=re.M) == ["20", "40"]
    val = float(FINAL_VAL.search(stdout).group(1))
    assert 2.0 < val < 4.0  # below ln(76) = 4.33: it learned something in 40 tiny steps


def test_checkpoint_is_written(straight):
    out_dir, _ = straight
    # the plot: with matplotlib; tensorboard and wandb: this run's sinks
    assert set(os.listdir(out_dir)) - {"progress.png"} == {"ckpt.pt", "progress.jsonl", ".lock", "tensorboard", "wandb"}
    assert (out_dir / ".lock").read_text() == ""  # the run's lock, released: no holder named
    ckpt = torch.load(out_dir / "ckpt.pt", weights_only=True)
    assert ckpt["iter_num"] == 40
    assert ckpt["model_args"]["n_layer"] == 2 and ckpt["model_args"]["vocab_size"] == 76
    assert ckpt["config"]["max_iters"] == 40
    assert set(ckpt) >= {"model", "optimizer", "scaler", "best_val_loss", "data"}
    assert len(ckpt["data"]) == 1  # one data-sampler state per process


def test_resume_continues_percent_and_tokens(resumed):
    out_dir, first, second = resumed
    assert [r[0] for r in reports(first)] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # of a 20-step run
    got = reports(second)
    assert [r[0] for r in got] == [60, 70, 80, 90, 100]
    assert [r[1] for r in got] == [24, 28, 32, 36, 40]
    assert [r[3] for r in got] == [i * TOKENS_PER_ITER for i in (24, 28, 32, 36, 40)]  # earlier steps count
    first_block = second.split("TRAINING PROGRESS:")[1]
    assert "Best Validation Loss:" in first_block  # restored from the checkpoint, before any new eval
    assert torch.load(out_dir / "ckpt.pt", weights_only=True)["iter_num"] == 40


def test_resumed_run_matches_the_uninterrupted_one(straight, resumed):
    """Model, optimizer and the batch sampler's state all come back: the same final loss."""
    assert FINAL_VAL.search(resumed[2]).group(1) == FINAL_VAL.search(straight[1]).group(1)


def test_log_interval_zero_leaves_only_the_reports(tmp_path, capsys, as_a_script):
    train.main([*TINY_TRAIN, "--max_iters=3", "--log_interval=0", "--report_interval=1", "--final_full_eval=False",
                f"--out_dir={tmp_path}"])
    stdout = capsys.readouterr().out
    assert not re.search(r"^(iter|step) \d+", stdout, flags=re.M)
    got = reports(stdout)
    # fewer steps than 1% boundaries: one report per step, each with its real percent
    assert [(r[0], r[1]) for r in got] == [(33.33, 1), (66.67, 2), (100.0, 3)]


@pytest.mark.parametrize("args, message", [
    (["--max_iters=40"], "is already at iteration 40 of max_iters=40. Fix: raise --max_iters"),
    (["--max_iters=80", "--n_layer=3"], "holds a model with n_layer=2 (config: 3)"),
])
def test_resume_errors(resumed, tmp_path, as_a_script, args, message):
    """In process, on a copy of the finished run's checkpoint (a refused resume holds its
    out_dir's lock until this process ends); a ConfigError is what train.py turns into one
    `train.py: error:` line and a non-zero exit (test_config proves that path)."""
    shutil.copy(resumed[0] / "ckpt.pt", tmp_path / "ckpt.pt")
    with pytest.raises(ConfigError, match=re.escape(message)):
        train.main([*TINY_TRAIN, *args, "--init_from=resume", f"--out_dir={tmp_path}"])


def test_eval_only_leaves_the_checkpoint_alone(resumed):
    out_dir = resumed[0]
    before = (out_dir / "ckpt.pt").stat().st_mtime_ns
    stdout = run_script("train.py", *TINY_TRAIN, "--max_iters=40", "--init_from=resume", "--eval_only",
                 f"--out_dir={out_dir}").stdout
    assert re.search(r"^step 40: train loss [\d.]+, val loss [\d.]+$", stdout, flags=re.M)
    assert "TRAINING PROGRESS" not in stdout
    assert (out_dir / "ckpt.pt").stat().st_mtime_ns == before


def test_sample_prints_text_from_the_checkpoint(straight):
    out_dir, _ = straight
    stdout = run_script("sample.py", f"--out_dir={out_dir}", "--start=ROMEO:", "--num_samples=2",
                 "--max_new_tokens=50", "--device=cpu").stdout
    samples = stdout.split("---------------\n")
    assert len(samples) == 3 and samples[2] == ""
    for text in samples[:2]:
        assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 50 + 1  # plus print's newline


@pytest.mark.process
def test_ddp_two_processes_report_once(tmp_path):
    """torchrun with two CPU processes (gloo): only rank 0 prints, tokens count both ranks."""
    result = run_script("train.py", *TINY_TRAIN, "--gradient_accumulation_steps=2", "--max_iters=8", "--report_interval=25",
                        "--eval_interval=8", "--final_full_eval=False", f"--out_dir={tmp_path}", processes=2)
    got = reports(result.stdout)
    assert [(r[0], r[1]) for r in got] == [(25, 2), (50, 4), (75, 6), (100, 8)]
    assert got[-1][3] == 8 * 2 * TOKENS_PER_ITER  # 2 micro-batches per step: one on each rank
    assert result.stdout.count("TRAINING COMPLETE") == 1
    assert "world size 2" in result.stdout
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["iter_num"] == 8


def test_missing_data_is_prepared_from_the_shipped_corpus(tmp_path, capsys, as_a_script):
    dataset = tmp_path / "data" / "shakespeare_char"
    dataset.mkdir(parents=True)
    for name in ("input.txt", "prepare.py"):
        shutil.copy(REPO / "data" / "shakespeare_char" / name, dataset / name)
    train.main([*TINY_TRAIN, "--max_iters=2", "--final_full_eval=False", f"--data_dir={tmp_path / 'data'}",
                f"--out_dir={tmp_path / 'out'}"])
    stdout = capsys.readouterr().out
    assert "preparing data" in stdout and "train 932,846 / val 103,650 tokens" in stdout
    assert sorted(p.name for p in dataset.iterdir()) == ["input.txt", "meta.pkl", "prepare.py", "train.bin", "val.bin"]
