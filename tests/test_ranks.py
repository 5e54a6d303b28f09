"""Cross-rank figures in one process: the figures' numbers, section and scalars, the data-wait
timer, and what cross_rank=True does without a process group."""

import math

import pytest

from helpers import FakeClock, RecordingSink
from trainprogress import ProgressTracker
from trainprogress.pauses import DataWaitTimer
from trainprogress.ranks import CrossRankConfig, RankFigures, peak_memory_bytes
from trainprogress.stragglers import SlowRank

GIB = 1024**3


def figures(**overrides):
    fields = dict(
        iteration=300, hosts=("node-a", "node-a", "node-b", "node-b"), nodes=2,
        data_ms=(0.3, 0.2, 20.6, 0.4), compute_ms=(40.5, 40.6, 20.3, 40.4),
        peak_memory_bytes=(60 * GIB, 61.5 * GIB, 59 * GIB, math.nan),
        loss=(1.0, 2.0, math.nan, 3.0), smoothed_loss=(1.5, 2.5, 3.5, 4.5), exchange_ms=1.25,
        slow=(SlowRank(2, "node-b", "data", 20.6, 0.3),),
    )
    fields.update(overrides)
    return RankFigures(**fields)


def test_global_losses_are_means_over_the_ranks_that_have_one():
    f = figures()
    assert f.global_loss == pytest.approx(2.0)  # the NaN (a rank without a loss) is left out
    assert f.global_smoothed_loss == pytest.approx(3.0)
    assert figures(loss=(math.nan,) * 4).global_loss is None


def test_scalars_are_the_ranks_key_family():
    s = figures().scalars()
    assert s == {
        "ranks/world_size": 4.0, "ranks/nodes": 2.0, "ranks/exchange_ms": 1.25, "ranks/stragglers": 1.0,
        "ranks/data_ms_median": pytest.approx(0.35), "ranks/data_ms_max": 20.6, "ranks/data_ms_max_rank": 2.0,
        "ranks/compute_ms_median": pytest.approx(40.45), "ranks/compute_ms_max": 40.6, "ranks/compute_ms_max_rank": 1.0,
        "ranks/peak_memory_gib_max": pytest.approx(61.5), "ranks/peak_memory_gib_max_rank": 1.0,
        "ranks/loss_smoothed_min": 1.5, "ranks/loss_smoothed_max": 4.5,
    }


def test_section_names_the_slowest_and_biggest_ranks():
    lines = figures().section_lines()
    assert lines["Ranks"] == "4 (2 nodes), at iteration 300"
    assert lines["Data wait"] == "max 20.6 ms/iter on rank 2 (node-b), the others' median 0.3 ms"
    assert lines["Compute"] == "max 40.6 ms/iter on rank 1 (node-a), the others' median 40.4 ms"
    assert lines["Peak memory"] == "max 61.50GB on rank 1, min 59.00GB"
    assert lines["Loss spread"].startswith("1.500000 (rank 0) to 4.500000 (rank 3)")
    assert lines["Slow now"] == "rank 2 on node-b: data 20.6 ms vs median 0.3 ms"
    assert "Slow now" not in figures(slow=()).section_lines()


def test_the_report_carries_ranks_scalars_into_the_flat_keys():
    sink = RecordingSink()
    tracker = ProgressTracker(10, sinks=[sink], is_master=True, interval_percent=100)
    for _ in range(10):
        tracker.step(loss=2.0)
    report = sink.reports[-1]
    assert report.ranks == {} and not any(k.startswith("ranks/") for k in report.scalars())


def test_single_process_cross_rank_pays_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    tracker = ProgressTracker(10, sinks=[], is_master=True, cross_rank=True)
    assert tracker._work.ranks is None and tracker._work.boundaries.next_sync == math.inf
    tracker.close()


def test_cross_rank_without_a_process_group_in_a_multi_process_job_says_what_to_do(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="call torch.distributed.init_process_group"):
        ProgressTracker(10, sinks=[], is_master=True, cross_rank=CrossRankConfig(timeout_s=5))
    with pytest.raises(TypeError, match="cross_rank must be True, False or an instance of CrossRankConfig"):
        ProgressTracker(10, sinks=[], is_master=True, cross_rank="on")
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        CrossRankConfig(timeout_s=0)


def test_data_wait_timer_adds_up_waits():
    clock = FakeClock()
    timer = DataWaitTimer(clock)
    with timer:
        assert timer.active
        clock.advance(0.25)
    assert not timer.active
    timer.add(0.5)
    assert timer.total_s == pytest.approx(0.75)
    tracker = ProgressTracker(10, sinks=[], clock=clock)
    with tracker.data_wait():
        clock.advance(1.0)
    assert tracker.data_wait().total_s == pytest.approx(1.0)


def test_peak_memory_is_the_process_peak_without_cuda():
    assert peak_memory_bytes() > 10 * 1024**2
