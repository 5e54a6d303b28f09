"""The tracker's parts on their own, through their public APIs: the step clock, the value
buffer, the sections, the report builder, the boundary scheduler, the anomaly checks, the
pauses, the pace (speed and ETA) and the argument checks."""

import logging
import math

import pytest
from helpers import FakeClock

from trainprogress.anomaly.config import AnomalyConfig
from trainprogress.arguments import LOSS_TYPES, check_int, check_loss, check_run_arguments
from trainprogress.value_buffer import LOSS_RING, ValueBuffer
from trainprogress.builder import ReportBuilder, Sections
from trainprogress.anomaly.checks import AnomalyChecks
from trainprogress.eta import EtaEstimator
from trainprogress.flops import PeakFlops
from trainprogress.pace import Pace
from trainprogress.pauses import Pauses
from trainprogress.progress_units import SECONDS, ProgressUnits
from trainprogress.report import SCHEDULED, Anomaly
from trainprogress.boundary_scheduler import BoundaryScheduler
from trainprogress.run_size import RunSize
from trainprogress.speed import SpeedWindow
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
    builder = ReportBuilder(RunSize(200), 0, tokens_per_iter=1000, flops_per_iter=1e12, peak=PeakFlops(1e14, "given"), sections=sections)
    report = builder.report(SCHEDULED, values, elapsed_s=10.0, paused_s=1.0, eta_s=30.0, iters_per_s=20.0, memory=(), anomalies=())
    assert (report.iteration, report.percent, report.ms_per_iter) == (50, 25.0, 50.0)
    assert report.mfu == pytest.approx(0.2) and report.peak_flops_source == "given"
    assert (report.tokens_processed, report.tokens_per_s) == (50_000, 20_000.0)
    assert (report.loss, report.lr, report.outcome, report.error) == (2.0, 6e-4, None, None)
    assert report.sections[0].lines == (("Params", 10),)
    tick = builder.tick(60, eta_s=25.0, iters_per_s=None, smoothed_loss=1.5)
    assert (tick.percent, tick.smoothed_loss, tick.iters_per_s) == (30.0, 1.5, None)


def test_boundary_scheduler_reports_every_interval_and_exchanges_on_the_same_boundaries():
    boundaries = BoundaryScheduler(RunSize(1000), 10, 0, reports=True, checks=None, exchanges=True)
    assert (boundaries.next_report, boundaries.next_sync, boundaries.next_check) == (100, 100, math.inf)
    assert boundaries.next_due(next_sample=7) == 7 and boundaries.next_due(next_sample=500) == 100
    assert not boundaries.check_due(100, now_s=0.0)  # no checks without an AnomalyConfig
    assert boundaries.advance(100, dense=False) is True
    assert (boundaries.next_report, boundaries.next_sync) == (200, 200)
    assert boundaries.advance(150, dense=False) is False and boundaries.next_report == 200


def test_boundary_scheduler_off_the_master_only_exchanges():
    size = RunSize(1000)
    boundaries = BoundaryScheduler(size, 10, 250, reports=False, checks=None, exchanges=True)
    assert (boundaries.next_report, boundaries.next_sync) == (math.inf, 300)
    size.total_iters = 2000
    boundaries.resize(250, dense=False)
    assert (boundaries.next_report, boundaries.next_sync) == (math.inf, 400)


def test_boundary_scheduler_switches_to_the_dense_schedule_and_back_keeping_this_boundary():
    config = AnomalyConfig(dense_percent=1, check_percent=1, min_check_steps=1, min_check_interval_s=0)
    boundaries = BoundaryScheduler(RunSize(1000), 10, 0, reports=True, checks=config, exchanges=False)
    assert boundaries.next_check == 10 and boundaries.next_report == 100
    boundaries.replan(37, dense=True)  # an anomaly raised at 37: reports every 1% from there
    assert boundaries.next_report == 40 and boundaries.report_after(40, dense=True) == 50
    boundaries.replan(100, dense=False)  # cleared at a regular boundary: its report stays due
    assert boundaries.next_report == 100
    assert boundaries.report_after(100, dense=False) == 200


def test_boundary_scheduler_bounds_checks_between_reports_by_steps_and_seconds():
    config = AnomalyConfig(check_percent=1, min_check_steps=30, min_check_interval_s=5.0)
    size = RunSize(1000)
    boundaries = BoundaryScheduler(size, 50, 0, reports=True, checks=config, exchanges=False)
    assert boundaries.next_check == 30  # the 1% grid, but no sooner than 30 steps after the start
    assert not boundaries.check_due(30, now_s=100.0)  # the seconds start counting at the first ask
    assert not boundaries.check_due(31, now_s=104.0)
    assert boundaries.check_due(32, now_s=105.0)
    boundaries.advance(32, dense=False)
    assert boundaries.next_check == 70  # 30 steps after the check at 32, on the grid
    assert boundaries.check_due(500, now_s=105.1)  # a report is always a check
    size.total_iters = 2000
    boundaries.resize(600, dense=False)
    assert (boundaries.next_report, boundaries.next_check) == (1000, 640)


def test_anomaly_checks_raise_clear_and_blip_as_events():
    config = AnomalyConfig(clear_after_checks=2, grad_norm_max=10.0)
    checks = AnomalyChecks(config)
    checks.add_step_times([(0.2, 2), (0.1, 1)])
    first = checks.run(10, [2.0, math.nan], grad_norm=1.0, memory_bytes=None, active=())
    assert [a.kind for a in first.anomalies] == ["nonfinite_loss"] and first.anomalies[0].since_iter == 10
    assert [kind for kind, _ in first.events] == ["anomaly"] and first.raised
    assert first.events[0][1]["since_iter"] == 10

    # A gradient norm over the limit once is a blip; a straggler from elsewhere stays active.
    straggler = Anomaly("straggler", "rank 1 is slow", 20)
    second = checks.run(20, [2.0], grad_norm=50.0, memory_bytes=None, active=first.anomalies, extra=(straggler,))
    assert [a.kind for a in second.anomalies] == ["nonfinite_loss", "straggler"]
    assert [kind for kind, _ in second.events] == ["anomaly_blip", "anomaly"]
    blip = second.events[0][1]
    assert set(blip) == {"anomaly", "message"} and blip["anomaly"] == "grad_explosion" and "50" in blip["message"]
    assert second.events[1][1]["anomaly"] == "straggler"
    assert second.raised

    third = checks.run(30, [2.0], grad_norm=1.0, memory_bytes=None, active=second.anomalies)
    assert [a.kind for a in third.anomalies] == []
    assert {kind for kind, _ in third.events} == {"anomaly_cleared"}
    assert sorted(data["anomaly"] for _, data in third.events) == ["nonfinite_loss", "straggler"]
    assert not third.raised
    quiet = checks.run(40, [2.0], grad_norm=1.0, memory_bytes=None, active=())
    assert quiet.events == [] and not quiet.raised


def test_pauses_nest_and_only_the_outermost_counts():
    clock = FakeClock()
    pauses = Pauses(clock)
    assert not pauses.active and pauses.current_phase() == "compute"
    pauses.begin("eval")
    clock.advance(2.0)
    pauses.begin("checkpoint")  # inside the eval: no pause of its own
    assert pauses.active and pauses.current_phase() == "eval"
    clock.advance(3.0)
    assert pauses.end() is None
    assert pauses.end() == ("eval", 5.0)
    assert not pauses.active and pauses.phase == "compute"
    with pytest.raises(RuntimeError, match="call begin_pause"):
        pauses.end()


def test_pauses_say_data_while_a_batch_is_awaited():
    clock = FakeClock()
    pauses = Pauses(clock)
    with pauses.data_wait:
        clock.advance(0.25)
        assert pauses.current_phase() == "data"
    pauses.phase = "collective"
    assert pauses.current_phase() == "collective" and pauses.data_wait.total_s == 0.25


def test_pace_turns_timed_groups_into_speed_and_eta():
    clock = FakeClock()
    timer = StepClock(clock, start_iter=0)
    pace = Pace(timer, EtaEstimator(RunSize(100), 10), SpeedWindow(10), None)
    assert pace.iters_per_s is None and pace.remaining_s(0, clock()) is None
    for it in range(1, 21):
        clock.advance(0.5)
        timer.sample(it)
    assert pace.drain() == [(0.5, 1)] * 20 and pace.drain() == []
    assert pace.iters_per_s == pytest.approx(2.0)
    assert pace.remaining_s(20, clock()) == pytest.approx(80 * 0.5)
    clock.advance(0.2)  # part of a step since the last sample: the ETA counts down, a pause does not
    assert pace.eta_s(20, clock(), paused=False) == pytest.approx(40.0 - 0.2)
    assert pace.eta_s(20, clock(), paused=True) == pytest.approx(40.0)
    clock.advance(9.8)
    timer.exclude(9.8, paused=True)
    assert pace.run_iters_per_s(20, clock()) == pytest.approx(20 / 10.2)
    assert pace.run_iters_per_s(0, clock()) is None and pace.tokens_per_s() is None


def test_pace_in_a_time_budget_counts_what_is_left_of_it():
    clock = FakeClock()
    timer = StepClock(clock, start_iter=0)
    pace = Pace(timer, EtaEstimator(RunSize(2**62), 10), SpeedWindow(10), ProgressUnits(SECONDS, 60.0, 1.0))
    clock.advance(15.0)
    timer.sample(1)
    pace.drain()
    assert pace.remaining_s(1, clock()) == pytest.approx(45.0) and pace.eta_s(1, clock(), paused=False) == pytest.approx(45.0)


def test_argument_checks_name_the_problem_and_the_fix():
    assert check_run_arguments(1000, 0, tokens_per_iter=None, flops_per_iter=None, peak_flops=None,
                               loss_window=100, window=None) == 20  # 2% of the run
    assert check_run_arguments(10, 0, tokens_per_iter=None, flops_per_iter=None, peak_flops=None,
                               loss_window=100, window=None) == 10  # at least 10
    assert check_run_arguments(10**6, 0, tokens_per_iter=None, flops_per_iter=None, peak_flops=None,
                               loss_window=100, window=None) == 2000  # at most 2,000
    with pytest.raises(ValueError, match=r"start_iter \(11\) is past total_iters \(10\)"):
        check_run_arguments(10, 11, tokens_per_iter=None, flops_per_iter=None, peak_flops=None, loss_window=100, window=None)
    with pytest.raises(ValueError, match="peak_flops must be > 0 FLOP/s.*pass None to detect it"):
        check_run_arguments(10, 0, tokens_per_iter=None, flops_per_iter=None, peak_flops=0, loss_window=100, window=None)
    with pytest.raises(ValueError, match=f"loss_window must be <= {LOSS_RING}"):
        check_run_arguments(10, 0, tokens_per_iter=None, flops_per_iter=None, peak_flops=None,
                            loss_window=LOSS_RING + 1, window=None)
    with pytest.raises(TypeError, match="window must be an int, got True; use e.g. 100 steps"):
        check_int("window", True, 1, "use e.g. 100 steps")
    assert check_int("total", 5, 5, "fix") == 5


def test_check_loss_accepts_numbers_once_and_refuses_the_rest():
    class Loss:
        def __float__(self):
            return 1.5

    check_loss(Loss())
    assert Loss in LOSS_TYPES
    for bad in (True, "2.5", [1.0]):
        with pytest.raises(TypeError, match="pass loss.detach\\(\\) or float\\(loss\\)"):
            check_loss(bad)
    assert str not in LOSS_TYPES and bool not in LOSS_TYPES
