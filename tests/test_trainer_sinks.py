"""Every sink end to end in real short runs of both trainers, turned on by their flags."""

from __future__ import annotations

import pytest

from helpers import TOKEN, finished_records, items, read_jsonl


@pytest.fixture
def gpt_run(tiny_train_run):
    """The shared 40-step train.py run with every sink on (tests/conftest.py)."""
    return tiny_train_run


def test_gpt_jsonl_log(gpt_run):
    out, _ = gpt_run
    records = read_jsonl(out / "progress.jsonl")
    assert records[0]["type"] == "run_start" and records[0]["config"]["max_iters"] == 40
    reports = [r for r in records if r["type"] == "report" and r["kind"] == "scheduled"]
    assert [r["percent"] for r in reports] == [10.0 * k for k in range(1, 11)]
    assert all(r["schema"] == 1 for r in records)
    assert {"pause"} <= {r["event"] for r in records if r["type"] == "event"}
    assert records[-1]["type"] == "run_end" and records[-1]["status"] == "completed"
    assert reports[-1]["scalars"]["train/loss"] == pytest.approx(reports[-1]["loss"])


def test_gpt_tensorboard_read_back(gpt_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = gpt_run
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == [4 * k for k in range(1, 11)]
    assert {"train/lr", "perf/iters_per_s", "perf/tokens_per_s", "metrics/val_loss"} <= set(acc.Tags()["scalars"])


def test_gpt_wandb_offline_run(gpt_run):
    out, _ = gpt_run
    records = finished_records(out)
    history = [items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["_step"] for h in history] == [4 * k for k in range(1, 11)]
    assert all("train/loss" in h for h in history)
    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_record.display_name == "tiny" and items(run_record.config.update)["max_iters"] == 40


def test_gpt_notifications_and_no_secret_anywhere(gpt_run, trainer_webhook):
    out, result = gpt_run
    texts = trainer_webhook.texts()
    assert "started" in texts.lower() and "100%" in texts
    for text in (result.stdout, result.stderr, (out / "progress.jsonl").read_text()):
        assert TOKEN not in text and trainer_webhook.url not in text


def test_gpt_bar_on_a_pipe_writes_no_carriage_returns(gpt_run):
    _, result = gpt_run
    assert "\r" not in result.stderr


def test_nanecho_logs_phase_changes_and_connection_ratio(tiny_nanecho_run):
    out, _ = tiny_nanecho_run  # 40 steps, a report every 10%, TensorBoard on (tests/conftest.py)
    records = read_jsonl(out / "progress.jsonl")
    phases = [r["data"]["phase"] for r in records if r["type"] == "event" and r["event"] == "phase_change"]
    assert phases == ["basic_awareness", "persona_dimensions", "hypergraph_patterns", "recursive_reasoning", "adaptive_mastery"]
    reports = [r for r in records if r["type"] == "report" and r["kind"] == "scheduled"]
    assert len(reports) == 10 and all(0 < r["metrics"]["connection_ratio"] <= 1 for r in reports)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert len(acc.Scalars("metrics/connection_ratio")) == 10
