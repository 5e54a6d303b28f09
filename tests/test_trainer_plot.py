"""Both trainers keep out_dir/progress.jsonl and draw out_dir/progress.png by default (the
plot extra is installed here), end by saying where and with which command to look, do it
too when the run is interrupted, and keep neither with --jsonl_log=False."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import train as train_py
from helpers import read_jsonl, TINY_TRAIN as TINY, png_size

from trainprogress import read_log
from trainprogress.reading import cli
from trainprogress.format import format_loss

def location_line(out_dir):
    return (f"log: {out_dir / 'progress.jsonl'}  picture: {out_dir / 'progress.png'}  "
            f"(trainprogress summary {out_dir}, trainprogress watch {out_dir})")


def test_a_fresh_clones_first_command_leaves_a_log_and_a_picture_that_the_cli_reads(tmp_path, capsys, as_a_script):
    """The README's first command, shortened, with no flag for the log (in process): it
    writes both files, its last line says where, and `trainprogress summary <out_dir>` prints the run."""
    train_py.main(["config/train_shakespeare_char.py", "--max_iters=20", "--eval_interval=10", "--eval_iters=2",
                   f"--out_dir={tmp_path}"])
    stdout = capsys.readouterr().out
    assert f"Progress plot: {tmp_path / 'progress.png'}\n" in stdout
    assert png_size(tmp_path / "progress.png") == (1600, 1000)
    assert stdout.splitlines()[-1] == location_line(tmp_path)
    final = next(r for r in read_jsonl(tmp_path / "progress.jsonl") if r["type"] == "report" and r["kind"] == "final")

    assert cli.main(["summary", str(tmp_path)]) == 0
    summary = capsys.readouterr().out
    assert summary.startswith(f"{tmp_path.name}: completed at 20/20 iterations (100%)")
    assert f"Loss {format_loss(final['loss'])}" in summary and "Average speed:" in summary


def test_train_nanecho_draws_progress_png_at_the_end(tiny_nanecho_run):
    out_dir, result = tiny_nanecho_run  # the shared 40-step run of tests/conftest.py
    assert f"Progress plot: {out_dir / 'progress.png'}\n" in result.stdout
    assert png_size(out_dir / "progress.png") == (1600, 1000)
    assert result.stdout.splitlines()[-1] == location_line(out_dir)


def test_jsonl_log_false_turns_off_the_log_and_the_picture(tmp_path, capsys, as_a_script):
    train_py.main([*TINY, "--max_iters=10", f"--out_dir={tmp_path}", "--jsonl_log=False"])
    stdout = capsys.readouterr().out
    assert not (tmp_path / "progress.png").exists() and not (tmp_path / "progress.jsonl").exists()
    assert "Progress plot" not in stdout and "log: " not in stdout


def test_an_interrupted_run_still_draws_its_plot(tmp_path, capsys, as_a_script):
    """A real SIGINT (Ctrl-C) to this process once the run has reported three times: the
    trainer's handler turns it into a graceful stop (checkpoint, summary, plot), then exit 130.
    In process: train.main installs its handlers for the run and restores them after."""
    log = tmp_path / "progress.jsonl"

    def interrupt_after_three_reports():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"type": "report"') < 3):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_after_three_reports, daemon=True)
    interrupter.start()
    with pytest.raises(SystemExit) as stopped:
        train_py.main([*TINY, "--max_iters=100000", "--report_interval=0.01", f"--out_dir={tmp_path}", "--jsonl_log=True"])
    interrupter.join()
    out = capsys.readouterr().out
    assert stopped.value.code == 130  # a graceful stop: checkpoint, summary, plot, then 128 + SIGINT
    assert f"Progress plot: {tmp_path / 'progress.png'}\n" in out
    assert png_size(tmp_path / "progress.png") == (1600, 1000)
    assert read_log(log).runs[-1].status == "stopped"
    assert out.splitlines()[-1] == location_line(tmp_path)  # also after a stop
