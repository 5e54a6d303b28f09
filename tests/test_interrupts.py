"""Both trainers against real signals, a diverging learning rate and an unwritable out_dir.
The signal tests (the process tier) use real processes (torchrun with gloo for two ranks),
real signals and real files; the divergence and the unwritable out_dir are refused with a
ConfigError, checked in process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
import train_nanecho
from helpers import REPO, TINY_TRAIN, read_jsonl, run_script
from trainkit.checkpoint import NonFiniteStateError, load_checkpoint
from trainkit.config import ConfigError
from trainprogress import read_log

LONG = ["--max_iters=5000", "--report_interval=0.5", "--jsonl_log=True"]  # a report every 25 steps; minutes to finish


def start(script: str, args: list[str], out_dir: Path, processes: int = 1) -> tuple[subprocess.Popen, Path]:
    """Start ``script`` in the background (its output to out_dir/../console.txt) and return
    once it has written its first scheduled report: training is under way."""
    out_dir.mkdir(parents=True, exist_ok=True)
    console = out_dir.parent / f"{out_dir.name}-console.txt"
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    with open(console, "w") as sink:
        process = subprocess.Popen([*launcher, str(REPO / script), *args, f"--out_dir={out_dir}"], cwd=REPO, stdout=sink,
                                   stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"})
    log = out_dir / "progress.jsonl"
    deadline = time.monotonic() + 240
    while not (log.exists() and b'"kind": "scheduled"' in log.read_bytes()):
        assert process.poll() is None, console.read_text()
        assert time.monotonic() < deadline, "no report within 240 s"
        time.sleep(0.05)
    return process, console


def stop_and_check(process: subprocess.Popen, console: Path, out_dir: Path, signum: int) -> tuple[int, str, dict]:
    """Send ``signum``; return the exit code, the console output and the checkpoint, after
    checking the promises every stop keeps: one summary, one run_end "stopped", and a
    loadable checkpoint of exactly the stop iteration."""
    process.send_signal(signum)
    code = process.wait(timeout=120)
    text = console.read_text()
    records = read_jsonl(out_dir / "progress.jsonl")
    ends = [r for r in records if r["type"] == "run_end"]
    finals = [r for r in records if r["type"] == "report" and r["kind"] == "final"]
    assert len(ends) == 1 and ends[0]["status"] == "stopped", text[-3000:]
    assert len(finals) == 1 and text.count("TRAINING STOPPED") == 1
    ckpt = load_checkpoint(str(out_dir / "ckpt.pt"))
    assert ckpt["iter_num"] == ends[0]["iteration"] == finals[0]["iteration"] > 0
    assert f"after iteration {ckpt['iter_num']:,}: checkpoint" in text
    assert not [name for name in os.listdir(out_dir) if name.endswith(".tmp")]
    return code, text, ckpt


@pytest.mark.process
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_train_py_with_a_summary_and_a_checkpoint_of_the_stop(tmp_path, signum):
    out_dir = tmp_path / "out"
    process, console = start("train.py", [*TINY_TRAIN, *LONG], out_dir)
    code, text, ckpt = stop_and_check(process, console, out_dir, signum)
    assert code == 128 + signum  # 143 for SIGTERM, 130 for SIGINT
    assert f"{signal.Signals(signum).name} received" in text and "Traceback" not in text
    # The signal came after the first report (step 25): the stop kept more than the
    # evaluation's checkpoint of step 20 would have.
    assert ckpt["iter_num"] >= 25
    # And the run resumes from it, on to the end.
    run_script("train.py", *TINY_TRAIN, "--report_interval=0.5", "--jsonl_log=True", f"--out_dir={out_dir}",
               "--init_from=resume", f"--max_iters={ckpt['iter_num'] + 5}")
    run = read_log(out_dir / "progress.jsonl").runs[-1]
    assert run.status == "completed" and len(run.segments) == 2


@pytest.mark.process
def test_sigterm_stops_nanecho_with_a_summary_and_a_checkpoint_of_the_stop(tmp_path):
    out_dir = tmp_path / "out"
    args = ["--preset", "tiny", "--n_layer", "1", "--n_embd", "32", "--n_head", "2", "--block_size", "32",
            "--anomaly_detection", "False", "--eval_interval", "20", "--eval_iters", "2", "--sample_tokens", "8",
            "--max_iters", "4000", "--report_interval", "0.5", "--jsonl_log", "True"]
    process, console = start("train_nanecho.py", args, out_dir)
    code, _, ckpt = stop_and_check(process, console, out_dir, signal.SIGTERM)
    assert code == 143
    assert ckpt["percent"] == 100.0 * ckpt["iter_num"] / 4000 and ckpt["phase"] == "basic_awareness"


@pytest.mark.process
def test_sigterm_under_torchrun_stops_every_rank_at_one_step(tmp_path):
    out_dir = tmp_path / "out"
    process, console = start("train.py", [*TINY_TRAIN, *LONG, "--gradient_accumulation_steps=2", "--dist_timeout=60"],
                             out_dir, processes=2)
    began = time.monotonic()
    _, text, ckpt = stop_and_check(process, console, out_dir, signal.SIGTERM)  # to torchrun, which forwards it
    assert time.monotonic() - began < 30  # no rank left waiting for another in a collective
    assert text.count("SIGTERM received") == 2  # each worker got it
    assert len(ckpt["data"]) == 2  # both ranks' sampler states, saved together at the stop step


@pytest.mark.process
def test_a_killed_rank_ends_the_job_within_seconds_with_a_crash_summary(tmp_path):
    out_dir = tmp_path / "out"
    process, console = start("train.py", [*TINY_TRAIN, *LONG, "--gradient_accumulation_steps=2", "--dist_timeout=60"],
                             out_dir, processes=2)
    workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    began = time.monotonic()
    os.kill(int(workers[-1]), signal.SIGKILL)
    assert process.wait(timeout=60) != 0
    assert time.monotonic() - began < 30  # gloo sees the closed connection; nobody waits for dist_timeout
    run = read_log(out_dir / "progress.jsonl").runs[-1]
    assert run.status == "crashed" and run.error
    assert "TRAINING" in console.read_text()  # rank 0's crash summary


def test_a_diverging_resumed_run_keeps_the_good_checkpoint_and_says_why(tmp_path, capsys, as_a_script):
    """In process: the refusal is a NonFiniteStateError, a ConfigError, which train.py turns
    into one error line and exit 1 (test_config proves that path in a real process)."""
    common = [*TINY_TRAIN, f"--out_dir={tmp_path}", "--jsonl_log=True"]
    train.main([*common, "--max_iters=20"])
    good = load_checkpoint(str(tmp_path / "ckpt.pt"))
    with pytest.raises(NonFiniteStateError) as refused:
        train.main([*common, "--max_iters=40", "--init_from=resume", "--learning_rate=1e30"])
    message = str(refused.value)
    assert "diverged" in message and "after iteration 40" in message
    assert "--learning_rate" in message and "--init_from=resume" in message
    kept = load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert kept["iter_num"] == 20 and all(torch.equal(kept["model"][k], v) for k, v in good["model"].items())
    run = read_log(tmp_path / "progress.jsonl").runs[-1]
    assert run.status == "crashed" and "diverged" in run.error


def test_an_unwritable_out_dir_fails_before_training(tmp_path, capsys, as_a_script):
    """In process, for both trainers: a ConfigError (one error line and exit 1 from the
    script) before anything is built."""
    (tmp_path / "file").write_text("not a folder")
    out_dir = tmp_path / "file" / "out"
    for main, args in ((train.main, TINY_TRAIN), (train_nanecho.main, ["--preset=tiny"])):
        with pytest.raises(ConfigError) as refused:
            main([*args, f"--out_dir={out_dir}"])
        assert f"out_dir '{out_dir}' cannot be written" in str(refused.value)
        assert "Fix: set --out_dir" in str(refused.value)
        assert "model:" not in capsys.readouterr().out  # nothing was built


@pytest.mark.process
@pytest.mark.soak
def test_soak_both_trainers_with_every_signal():
    """A small soak: random SIGINT, SIGTERM and SIGKILL at random moments and inside saves,
    resumed until complete (benchmarks/soak_interrupts.py asserts each promise)."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak_interrupts.py"), "--chains", "1",
                             "--interruptions", "2", "--max_iters", "200", "--max_delay_s", "2", "--seed", "3", "--verbose"], capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "all promises held" in result.stdout
    assert result.stdout.count("exit 143") + result.stdout.count("exit 130") + result.stdout.count("exit -9") >= 3
    assert "train: " in result.stdout and "nanecho: " in result.stdout
