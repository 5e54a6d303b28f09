"""The TensorBoard sink end to end: a real tracker on a fake clock writes real event files,
read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import sys

import pytest

from helpers import FakeClock, RecordingSink
from trainprogress import ProgressTracker

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from trainprogress.sinks.tensorboard import TensorBoardSink  # noqa: E402


def run(log_dir, total, *, start_iter=0, stop_at=None, step_s=0.1):
    clock = FakeClock()
    recorder = RecordingSink()
    with ProgressTracker(
        total, start_iter=start_iter, interval_percent=10, sinks=[TensorBoardSink(log_dir), recorder],
        clock=clock, tokens_per_iter=512, flops_per_iter=1e9, peak_flops=1e11, run_config={"n_layer": 2},
    ) as tracker:
        for it in range(start_iter + 1, (stop_at or total) + 1):
            clock.advance(step_s)
            tracker.step(loss=4.0 - it / total, lr=6e-4, val_loss=3.5, connection_ratio=0.25)
    return recorder.reports


def load(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_report_scalars_read_back_at_their_iterations(tmp_path):
    reports = run(tmp_path, 100)
    acc = load(tmp_path)
    scheduled = [r for r in reports if r.kind == "scheduled"]
    expected_tags = set().union(*(r.scalars() for r in scheduled))  # the forecast's tags start at about 10%
    assert {"train/loss", "train/lr", "perf/mfu_pct", "perf/tokens_per_s", "mem/cpu_used_gib",
            "metrics/val_loss", "metrics/connection_ratio", "train/best_val_loss", "train/loss_forecast",
            "train/loss_forecast_low", "train/loss_forecast_high"} <= expected_tags
    assert set(acc.Tags()["scalars"]) == expected_tags
    for tag in ("train/loss", "perf/iters_per_s", "perf/mfu_pct", "metrics/connection_ratio"):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [r.iteration for r in scheduled] == list(range(10, 101, 10))
        assert [e.value for e in events] == pytest.approx([r.scalars()[tag] for r in scheduled], rel=1e-6)
    assert acc.Scalars("perf/mfu_pct")[0].value == pytest.approx(100 * 1e9 * 10 / 1e11, rel=1e-6)
    # The final summary (100%) does not duplicate the last point.
    assert len(acc.Scalars("train/loss")) == 10


def test_run_config_is_stored_as_text(tmp_path):
    run(tmp_path, 20)
    acc = load(tmp_path)
    assert "run/config/text_summary" in acc.Tags()["tensors"]
    text = acc.Tensors("run/config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"n_layer": 2' in text


def test_early_stop_logs_the_final_state_and_resume_continues(tmp_path):
    run(tmp_path, 100, stop_at=45)
    steps = [e.step for e in load(tmp_path).Scalars("train/loss")]
    assert steps == [10, 20, 30, 40, 45]  # the final summary past the last report
    run(tmp_path, 100, start_iter=45)
    steps = [e.step for e in load(tmp_path).Scalars("train/loss")]
    assert steps == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # the stale 45 is purged


def test_missing_tensorboard_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install tensorboard .*trainprogress\[tensorboard\]"):
        TensorBoardSink(tmp_path)
