"""Both trainers draw out_dir/progress.png at the end of a run with the JSONL log on (the
plot extra is installed here), say where, and do it too when the run is interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from helpers import NANECHO_TINY, REPO, run_script, TINY_TRAIN as TINY, png_size

from trainprogress import read_log

ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}


def train(script, *args):
    return run_script(script, *args, check=False)


def test_train_py_draws_progress_png_at_the_end(tmp_path):
    result = train("train.py", *TINY, "--max_iters=40", f"--out_dir={tmp_path}", "--jsonl_log=True")
    assert result.returncode == 0, result.stderr
    assert f"Progress plot: {tmp_path / 'progress.png'}\n" in result.stdout
    assert png_size(tmp_path / "progress.png") == (1600, 1000)
    assert read_log(tmp_path).runs[-1].status == "completed"


def test_train_nanecho_draws_progress_png_at_the_end(tmp_path):
    result = train("train_nanecho.py", *NANECHO_TINY, "--max_iters", "20", "--out_dir", str(tmp_path), "--jsonl_log", "True")
    assert result.returncode == 0, result.stderr
    assert f"Progress plot: {tmp_path / 'progress.png'}\n" in result.stdout
    assert png_size(tmp_path / "progress.png") == (1600, 1000)


def test_no_plot_without_the_jsonl_log(tmp_path):
    result = train("train.py", *TINY, "--max_iters=10", f"--out_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "Progress plot" not in result.stdout and not (tmp_path / "progress.png").exists()


def test_an_interrupted_run_still_draws_its_plot(tmp_path):
    log = tmp_path / "progress.jsonl"
    process = subprocess.Popen([sys.executable, "train.py", *TINY, "--max_iters=100000", "--report_interval=0.01",
                                f"--out_dir={tmp_path}", "--jsonl_log=True"],
                               cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"type": "report"') < 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)  # Ctrl-C
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err  # a graceful stop: checkpoint, summary, plot, then 128 + SIGINT
    assert f"Progress plot: {tmp_path / 'progress.png'}\n" in out
    assert png_size(tmp_path / "progress.png") == (1600, 1000)
    assert read_log(log).runs[-1].status == "stopped"
