"""The W&B sink end to end, offline: a real tracker on a fake clock logs a real offline run,
whose .wandb file is read back record by record with W&B's own protobuf schema."""

from __future__ import annotations

import sys

import pytest

from helpers import FakeClock, finished_records, items
from trainprogress import ProgressTracker

pytest.importorskip("wandb")

from trainprogress.sinks.wandb import WandbSink  # noqa: E402


@pytest.fixture
def offline(tmp_path, monkeypatch):
    # W&B reads its environment once per process, so each test also passes dir= itself.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    return tmp_path


def test_offline_run_holds_scalars_config_and_summary(offline):
    clock = FakeClock()
    reports = []
    with ProgressTracker(
        200, interval_percent=25, sinks=[WandbSink("trainprogress-test", name="tiny", dir=offline)], clock=clock,
        tokens_per_iter=256, run_config={"n_layer": 2, "lr": 3e-4},
    ) as tracker:
        for it in range(1, 201):
            clock.advance(0.1)
            report = tracker.step(loss=4.0 - it / 100, lr=6e-4, connection_ratio=0.5)
            if report is not None:
                reports.append(report)
    records = finished_records(offline)
    kinds = [r.WhichOneof("record_type") for r in records]

    run = records[kinds.index("run")].run
    assert (run.project, run.display_name) == ("trainprogress-test", "tiny")
    config = items(run.config.update)
    assert config["n_layer"] == 2 and config["lr"] == 3e-4
    assert config["trainprogress"]["total_iters"] == 200
    assert config["trainprogress"]["tokens_per_iter"] == 256

    history = [items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["_step"] for h in history] == [50, 100, 150, 200]
    for row, report in zip(history, reports):
        for key, value in report.scalars().items():
            assert row[key] == pytest.approx(value), key
    assert {"train/loss", "perf/tokens_per_s", "metrics/connection_ratio"} <= set(history[0])

    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(items(r.summary.update))
    assert summary["final/progress/iteration"] == 200
    assert summary["final/train/loss"] == pytest.approx(2.0)
    assert next(r.exit for r in records if r.WhichOneof("record_type") == "exit").exit_code == 0


def test_a_crash_finishes_the_run_with_exit_code_1(offline):
    clock = FakeClock()
    with pytest.raises(ValueError):
        with ProgressTracker(100, sinks=[WandbSink("trainprogress-test", dir=offline)], clock=clock) as tracker:
            for _ in range(30):
                clock.advance(0.1)
                tracker.step(loss=1.0)
            raise ValueError("bad batch")
    records = finished_records(offline)
    assert next(r.exit for r in records if r.WhichOneof("record_type") == "exit").exit_code == 1


def test_missing_wandb_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"pip install wandb .*trainprogress\[wandb\]"):
        WandbSink("p")


def test_the_callers_own_run_is_used_and_left_open(offline):
    import wandb

    run = wandb.init(project="mine", dir=offline)
    run.log({"user/x": 1})
    clock = FakeClock()
    with ProgressTracker(100, interval_percent=50, sinks=[WandbSink("ignored")], clock=clock) as tracker:
        for _ in range(100):
            clock.advance(0.1)
            tracker.step(loss=1.0)
    assert wandb.run is run  # still open for the caller
    run.log({"user/x": 2})
    run.finish()
    records = finished_records(offline)
    assert records[[r.WhichOneof("record_type") for r in records].index("run")].run.project == "mine"
    history = [items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    assert [h.get("progress/iteration") for h in history] == [None, 50, 100, None]
    assert [h["_step"] for h in history] == [0, 1, 2, 3]  # the caller's steps, untouched
    metrics = {r.metric.glob_name: r.metric.step_metric for r in records if r.WhichOneof("record_type") == "metric"}
    assert metrics["train/*"] == metrics["perf/*"] == "progress/iteration"
