"""Straggler detection: which rank the others wait for, from per-rank data and compute times."""

from statistics import median

import pytest
from hypothesis import given, strategies as st

from trainprogress.stragglers import StragglerConfig, StragglerDetector, find_slow_ranks, medians_of_others

HOSTS = ("node-a", "node-a", "node-b", "node-b")


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=40))
def test_medians_of_others_match_the_definition(values):
    expected = [median(values[:i] + values[i + 1:]) for i in range(len(values))]
    assert medians_of_others(values) == pytest.approx(expected)


def test_a_data_straggler_is_named_and_the_ranks_waiting_for_it_are_not():
    # Under DDP the others wait for rank 2 inside the all-reduce: their compute time grows by
    # what rank 2 spends on data, so every whole step is equal.
    data = [0.3, 0.2, 20.6, 0.4]
    compute = [40.5, 40.6, 20.3, 40.4]
    slow = find_slow_ranks(StragglerConfig(), HOSTS, data, compute)
    assert [(s.rank, s.host, s.what) for s in slow] == [(2, "node-b", "data")]
    assert slow[0].describe() == "rank 2 on node-b: data 20.6 ms vs median 0.3 ms"


def test_two_ranks_compare_with_each_other():
    slow = find_slow_ranks(StragglerConfig(), HOSTS[:2], [0.2, 20.6], [40.8, 20.4])
    assert [(s.rank, s.what, s.median_ms) for s in slow] == [(1, "data", 0.2)]


def test_a_compute_straggler_without_a_collective_is_named():
    slow = find_slow_ranks(StragglerConfig(), HOSTS, [1.0, 1.0, 1.0, 1.0], [20.0, 21.0, 30.0, 20.5])
    assert [(s.rank, s.what) for s in slow] == [(2, "compute")]


def test_noise_in_tiny_figures_and_small_excess_name_nobody():
    config = StragglerConfig()
    assert find_slow_ranks(config, HOSTS, [0.05, 0.04, 0.12, 0.05], [30.0, 30.0, 29.9, 30.0]) == []
    assert find_slow_ranks(config, HOSTS, [1.0, 1.0, 1.1, 1.0], [30.0, 30.0, 30.0, 30.0]) == []
    assert find_slow_ranks(config, HOSTS[:1], [9.0], [1.0]) == []


def test_named_after_reports_in_a_row_and_cleared_after_as_many_fine_ones():
    detector = StragglerDetector(StragglerConfig(reports_in_a_row=3))
    slow = find_slow_ranks(detector.config, HOSTS, [0.3, 0.2, 20.6, 0.4], [40.5, 40.6, 20.3, 40.4])
    seen = [detector.observe(it, slow if it != 20 else [], 4) for it in (10, 20, 30, 40, 50)]
    # Slow at 10, fine at 20 (the run restarts), slow at 30, 40, 50: named at 50.
    assert seen[:4] == [None] * 4
    assert seen[4].kind == "straggler" and seen[4].since_iter == 50 and "rank 2 on node-b" in seen[4].message
    assert seen[4].subject == "rank 2" and seen[4].severity == pytest.approx(20.6 - 0.3)  # ms the others wait
    assert [s.rank for s in detector.named] == [2]
    assert detector.observe(60, [], 4) is not None and detector.observe(70, [], 4) is not None
    assert detector.observe(80, [], 4) is None and detector.named == ()


@pytest.mark.parametrize("kwargs, message", [
    ({"factor": 1.0}, "factor must be > 1"),
    ({"reports_in_a_row": 0}, "reports_in_a_row must be an int >= 1"),
    ({"min_excess_fraction": -1}, "min_excess_fraction must be >= 0"),
])
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StragglerConfig(**kwargs)
