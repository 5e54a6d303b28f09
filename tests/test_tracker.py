"""The tracker's contract: master-only rendering, pauses, sections, crash and misuse."""

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import FakeClock, RecordingSink

from trainprogress import ProgressTracker

ROOT = Path(__file__).resolve().parent.parent


def run_python(code, env_extra=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout)


LOOP = """
    from trainprogress import ProgressTracker
    tracker = ProgressTracker(50, interval_percent=10)
    for i in range(50):
        tracker.step(loss=1.0 / (i + 1), lr=1e-3)
    tracker.close()
"""


def test_rank_zero_speaks_and_other_ranks_stay_silent():
    rank0 = run_python(LOOP, {"RANK": "0"})
    rank1 = run_python(LOOP, {"RANK": "1"})
    assert rank0.returncode == 0 and rank1.returncode == 0, rank0.stderr + rank1.stderr
    assert rank0.stdout.count("TRAINING PROGRESS") == 10
    assert rank1.stdout == "" and rank1.stderr == ""


def test_non_master_counts_silently():
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(100, sinks=[sink], clock=clock, is_master=False)
    for _ in range(100):
        clock.advance(0.1)
        assert tracker.step(loss=1.0) is None
    assert tracker.iteration == 100
    assert tracker.close() is None
    assert sink.reports == [] and sink.started == []


@pytest.mark.process
def test_torchrun_two_processes_only_rank_zero_reports(tmp_path):
    script = tmp_path / "ddp_loop.py"
    script.write_text(textwrap.dedent("""
        import torch
        import torch.distributed as dist
        from trainprogress import ProgressTracker
        dist.init_process_group("gloo")
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with ProgressTracker(20, interval_percent=25) as tracker:
            for _ in range(20):
                loss = model(torch.randn(4, 8)).pow(2).mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
                tracker.step(loss=loss.detach(), lr=0.1)
        dist.destroy_process_group()
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        capture_output=True, text=True, env=env, timeout=240,
    )
    output = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, output
    assert result.stdout.count("TRAINING PROGRESS") == 4, output
    assert result.stdout.count("TRAINING COMPLETE") == 1, output


def test_core_imports_and_reports_without_torch():
    result = run_python("""
        import sys
        sys.modules["torch"] = None  # any "import torch" now fails
        import trainprogress
        from trainprogress import ProgressTracker
        tracker = ProgressTracker(10, interval_percent=50, flops_per_iter=1e9)
        for i in range(10):
            tracker.step(loss=1.0, lr=1e-3)
        tracker.close()
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("TRAINING PROGRESS") == 2
    assert "MFU" not in result.stdout  # no way to know the peak without torch: no MFU
    assert "Process Memory (RSS)" in result.stdout


def test_importing_trainprogress_does_not_import_torch():
    result = run_python("import sys, trainprogress; print('torch' in sys.modules)")
    assert result.stdout.strip() == "False"


def test_crash_sends_event_and_a_stopped_summary():
    sink = RecordingSink()
    clock = FakeClock()
    with pytest.raises(RuntimeError):
        with ProgressTracker(100, sinks=[sink], clock=clock, is_master=True) as tracker:
            for i in range(30):
                clock.advance(0.1)
                tracker.step(loss=1.0)
            raise RuntimeError("CUDA out of memory")
    crash = [e for e in sink.events if e.kind == "crash"]
    assert crash and crash[0].data["error"] == "RuntimeError: CUDA out of memory" and crash[0].iteration == 30
    final = sink.reports[-1]
    assert final.kind == "final" and final.iteration == 30
    assert sink.closed == 1
    assert tracker.close() is None  # idempotent


def test_pause_is_excluded_from_speed_and_reported_as_event():
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(10, interval_percent=100, sinks=[sink], clock=clock, is_master=True)
    for i in range(10):
        clock.advance(0.5)
        tracker.step(loss=1.0)
        if i == 4:
            with tracker.pause("checkpoint"):
                with tracker.pause("inner"):  # nested: counted once, under the outer name
                    clock.advance(30.0)
    report = sink.reports[0]
    assert report.iters_per_s == pytest.approx(2.0)
    assert report.paused_s == pytest.approx(30.0) and report.elapsed_s == pytest.approx(35.0)
    pauses = [e for e in sink.events if e.kind == "pause"]
    assert [(e.data["name"], e.data["duration_s"], e.iteration) for e in pauses] == [("checkpoint", 30.0, 5)]
    tracker.close()


def test_sections_values_and_events_reach_the_report():
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(4, interval_percent=50, sinks=[sink], clock=clock, is_master=True)
    calls = []
    tracker.set_section("🧠 Model State", lambda: calls.append(1) or {"Active params": 10})
    tracker.set_section("Static", {"Phase": "basic_awareness"})
    for i in range(4):
        clock.advance(1.0)
        tracker.step(loss=1.0, connection_ratio=0.1 * (i + 1), phase="basic_awareness")
        if i == 2:
            tracker.set_section("Static", None)
            tracker.event("phase_change", phase="persona_dimensions")
    first, second = [r for r in sink.reports if r.kind == "scheduled"]
    assert [s.title for s in first.sections] == ["🧠 Model State", "Static"]
    assert first.sections[0].lines == (("Active params", 10),)
    assert [s.title for s in second.sections] == ["🧠 Model State"]
    assert len(calls) == 2  # providers run only when a report is built
    assert second.metrics["connection_ratio"] == pytest.approx(0.4) and second.metrics["phase"] == "basic_awareness"
    assert "metrics/connection_ratio" in second.scalars() and "metrics/phase" not in second.scalars()
    assert [(e.kind, e.data["phase"], e.iteration) for e in sink.events if e.kind == "phase_change"] == [("phase_change", "persona_dimensions", 3)]
    tracker.close()


def test_resume_counts_tokens_of_the_earlier_run():
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(100, start_iter=60, interval_percent=10, tokens_per_iter=512, sinks=[sink], clock=clock, is_master=True)
    for _ in range(40):
        clock.advance(0.1)
        tracker.step(loss=1.0, best_val_loss=1.7)
    reports = [r for r in sink.reports if r.kind == "scheduled"]
    assert [r.iteration for r in reports] == [70, 80, 90, 100]
    assert reports[0].tokens_processed == 70 * 512
    assert reports[-1].best_val_loss == 1.7
    tracker.close()


def test_steps_past_the_total_warn_once(caplog):
    clock = FakeClock()
    tracker = ProgressTracker(5, sinks=[], clock=clock, is_master=True)
    with caplog.at_level(logging.WARNING, logger="trainprogress"):
        for _ in range(8):
            clock.advance(0.1)
            tracker.step(loss=1.0)
    assert sum("past total_iters=5" in r.message for r in caplog.records) == 1
    assert tracker.iteration == 8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tokens_per_iter=0), "tokens_per_iter must be >= 1"),
        (dict(flops_per_iter=-1.0), "flops_per_iter must be > 0"),
        (dict(peak_flops=0.0), "peak_flops must be > 0"),
        (dict(loss_window=500), "loss_window must be <= 128"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProgressTracker(100, sinks=[], **kwargs)


def test_multi_element_loss_tensor_gets_a_clear_error():
    import torch

    tracker = ProgressTracker(1, sinks=[], is_master=True)
    with pytest.raises(ValueError, match="one-element tensor"):
        tracker.step(loss=torch.ones(3))


def test_a_failing_section_is_removed_with_one_warning(caplog):
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(4, interval_percent=50, sinks=[sink], clock=clock, is_master=True)
    tracker.set_section("Broken", lambda: {"x": 1 / 0})
    tracker.set_section("Fine", {"y": 2})
    with caplog.at_level(logging.WARNING, logger="trainprogress"):
        for _ in range(4):
            clock.advance(1.0)
            tracker.step(loss=1.0)
    assert [[s.title for s in r.sections] for r in sink.reports] == [["Fine"], ["Fine"]]
    assert sum("section 'Broken' failed" in r.message for r in caplog.records) == 1
    tracker.close()


@pytest.mark.parametrize("steps, error, outcome", [
    (10, None, "completed"),
    (4, None, "stopped"),
    (10, RuntimeError("disk full"), "crashed"),  # a crash after the last step is still a crash
])
def test_close_sets_the_outcome_once(steps, error, outcome):
    sink = RecordingSink()
    clock = FakeClock()
    tracker = ProgressTracker(10, interval_percent=50, sinks=[sink], clock=clock, is_master=True)
    for _ in range(steps):
        clock.advance(0.1)
        tracker.step(loss=1.0)
    final = tracker.close(error)
    assert (final.kind, final.outcome) == ("final", outcome)
    assert final.error == (None if error is None else "RuntimeError: disk full")
    assert all(r.outcome is None and r.error is None for r in sink.reports[:-1])
    assert tracker.close() is None


def smoothed_at_reports(losses, **sizing):
    """(iteration, smoothed loss) at each scheduled report of a run fed ``losses``, one a step."""
    clock, sink = FakeClock(), RecordingSink()
    tracker = ProgressTracker(**sizing, sinks=[sink], clock=clock, is_master=True)
    for loss in losses:
        clock.advance(0.1)
        tracker.step(loss=loss, **({"tokens": 1000} if "total_tokens" in sizing else {}))
    tracker.close()
    return [(r.iteration, r.smoothed_loss) for r in sink.reports if r.kind == "scheduled"]


@pytest.mark.parametrize("total, interval", [(400, 1.0), (400, 10.0), (10_000, 1.0), (100, 5.0)])
def test_the_smoothed_loss_lags_a_falling_loss_by_at_most_half_a_report_interval(total, interval):
    slope = 2.0 / total  # the loss falls from 4 to 2 over the run
    reports = smoothed_at_reports([4.0 - slope * it for it in range(1, total + 1)], total_iters=total,
                                  interval_percent=interval)
    steps_per_report = total * interval / 100
    assert len(reports) == round(100 / interval)
    for iteration, smoothed in reports:
        lag = smoothed - (4.0 - slope * iteration)
        assert 0 <= lag <= slope * steps_per_report / 2 + 1e-12, iteration


def test_the_smoothed_loss_of_a_run_sized_in_tokens_lags_at_most_half_a_report_interval():
    # 400 steps of 1,000 tokens: a report every 4 steps, so after the first the loss is smoothed over 4.
    slope = 0.005
    reports = smoothed_at_reports([4.0 - slope * it for it in range(1, 401)], total_tokens=400_000)
    assert len(reports) == 100
    assert all(0 <= smoothed - (4.0 - slope * iteration) <= slope * 2 for iteration, smoothed in reports)


def test_the_smoothed_loss_averages_noise_over_the_steps_between_reports():
    # Noise of sd 0.1 around 2.0; 2,000 steps at 1%: 20 steps a report, sd of their mean 0.1 / sqrt(20).
    import random
    import statistics

    rng = random.Random(3)
    reports = smoothed_at_reports([2.0 + rng.gauss(0, 0.1) for _ in range(2000)], total_iters=2000)
    errors = [smoothed - 2.0 for _, smoothed in reports]
    expected_sd = 0.1 / 20**0.5
    assert len(errors) == 100
    assert statistics.pstdev(errors) == pytest.approx(expected_sd, rel=0.25)
    assert max(abs(e) for e in errors) < 4 * expected_sd
