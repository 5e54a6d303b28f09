"""The tracker's parts on their own, through their public APIs: the step clock, the value
buffer, the sections and the report builder."""

import logging
import math

import pytest
from helpers import FakeClock

from trainprogress.buffer import LOSS_RING, ValueBuffer
from trainprogress.builder import ReportBuilder, Sections
from trainprogress.flops import PeakFlops
from trainprogress.report import SCHEDULED
from trainprogress.timing import MAX_STRIDE, StepClock


def test_step_clock_times_slow_steps_one_by_one():
    clock = FakeClock()
    timer = StepClock(clock, start_iter=10)
    for it in range(11, 14):
        clock.advance(0.5)
        assert timer.next_sample == it  # a slow step closes a group of its own
        timer.sample(it)
    groups, first = timer.take_groups()
    assert groups == [(0.5, 1)] * 3 and first == 11
    assert timer.take_groups() == ([], 14)


def test_step_clock_groups_fast_steps_and_caps_the_stride():
    clock = FakeClock()
    timer = StepClock(clock, start_iter=0)
    clock.advance(1e-5)
    timer.sample(1)
    assert timer.next_sample == 1 + 101  # groups of about a millisecond: 1e-3 / 1e-5 + 1 steps
    clock.advance(1e-9 * 5)
    timer.sample(5)
    assert timer.next_sample == 5 + MAX_STRIDE
    groups, first = timer.take_groups()
    assert [steps for _, steps in groups] == [1, 4] and first == 1


def test_step_clock_excludes_pauses_and_reporting_time():
    clock = FakeClock()
    timer = StepClock(clock, start_iter=0)
    clock.advance(1.0)
    clock.advance(30.0)
    timer.exclude(30.0, paused=True)
    clock.advance(2.0)
    timer.exclude(2.0)  # the tracker's own cost: out of the step, not a pause
    assert timer.unsampled_s(clock()) == pytest.approx(1.0)
    timer.sample(1)
    assert timer.take_groups() == ([(pytest.approx(1.0), 1)], 1)
    assert timer.paused_s == 30.0 and timer.elapsed_s(clock()) == pytest.approx(33.0)


def test_value_buffer_materialises_named_fields_once_per_iteration():
    buffer = ValueBuffer(0, loss_window=3)
    for it in range(1, 6):
        buffer.loss_ring[it % LOSS_RING] = float(it)
        buffer.record({"grad_norm": it / 10, "phase": "warmup", "val_loss": None})
    values = buffer.materialise(5, lr=1e-3)
    assert (values.iteration, values.loss, values.smoothed_loss, values.lr) == (5, 5.0, 4.0, 1e-3)
    assert values.metrics == {"grad_norm": 0.5, "phase": "warmup"}
    assert buffer.materialise(5, lr=1e-3) is values  # a check and a report at one step share it


def test_value_buffer_tensors_become_floats_and_best_val_loss_only_falls():
    torch = pytest.importorskip("torch")
    buffer = ValueBuffer(0, loss_window=10, keep_unchecked=True)
    buffer.record({"best_val_loss": 1.7})
    buffer.loss_ring[1] = torch.tensor(2.5)
    buffer.record({"val_loss": torch.tensor(1.2)})
    first = buffer.materialise(1, lr=torch.tensor(3e-4))
    assert first.metrics == {"val_loss": 1.2000000476837158} and first.best_val_loss == pytest.approx(1.2)
    assert isinstance(first.lr, float) and first.lr == pytest.approx(3e-4)
    buffer.loss_ring[2] = math.nan
    buffer.record({"val_loss": 1.9})
    second = buffer.materialise(2, lr=None)
    assert second.best_val_loss == pytest.approx(1.2) and second.lr is None
    assert buffer.take_unchecked_losses()[0] == 2.5 and buffer.take_unchecked_losses() == []


def test_value_buffer_reads_only_the_ring_after_a_long_gap():
    buffer = ValueBuffer(0, loss_window=100)
    for it in range(1, 1001):
        buffer.loss_ring[it % LOSS_RING] = float(it)
    values = buffer.materialise(1000, lr=None)
    assert values.smoothed_loss == pytest.approx(sum(range(901, 1001)) / 100)


def test_sections_keep_order_replace_remove_and_drop_a_broken_one(caplog):
    sections = Sections()
    sections.set("A", {"x": 1})
    sections.set("B", lambda: {"y": 2}, into="memory")
    sections.set("Broken", lambda: {"z": 1 / 0})
    sections.set("A", {"x": 3})
    with caplog.at_level(logging.WARNING, logger="trainprogress"):
        built = sections.build()
        assert sections.build() == built
    assert [(s.title, s.lines, s.into) for s in built] == [("A", (("x", 3),), None), ("B", (("y", 2),), "memory")]
    assert sum("section 'Broken' failed" in r.message for r in caplog.records) == 1
    sections.set("A", None)
    assert [s.title for s in sections.build()] == ["B"]
    with pytest.raises(ValueError, match="into must be one of"):
        sections.set("C", {}, into="Memory")


def test_report_builder_derives_percent_mfu_and_tokens():
    buffer = ValueBuffer(0, loss_window=10)
    buffer.loss_ring[50 % LOSS_RING] = 2.0
    values = buffer.materialise(50, lr=6e-4)
    sections = Sections()
    sections.set("Model", {"Params": 10})
    builder = ReportBuilder(200, 0, tokens_per_iter=1000, flops_per_iter=1e12, peak=PeakFlops(1e14, "given"), sections=sections)
    report = builder.report(SCHEDULED, values, elapsed_s=10.0, paused_s=1.0, eta_s=30.0, iters_per_s=20.0, memory=(), anomalies=())
    assert (report.iteration, report.percent, report.ms_per_iter) == (50, 25.0, 50.0)
    assert report.mfu == pytest.approx(0.2) and report.peak_flops_source == "given"
    assert (report.tokens_processed, report.tokens_per_s) == (50_000, 20_000.0)
    assert (report.loss, report.lr, report.outcome, report.error) == (2.0, 6e-4, None, None)
    assert report.sections[0].lines == (("Params", 10),)
    tick = builder.tick(60, eta_s=25.0, iters_per_s=None, smoothed_loss=1.5)
    assert (tick.percent, tick.smoothed_loss, tick.iters_per_s) == (30.0, 1.5, None)
