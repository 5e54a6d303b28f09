"""Curriculum phases: boundaries, the overlap rule, progress, sampling weights, custom tables."""

import pytest

from trainkit.config import ConfigError
from trainkit.nanecho.curriculum import DEFAULT_PHASES, DIMENSIONS, Curriculum, phases_from_config

CUR = Curriculum()


def test_the_default_table_is_the_issue_table():
    table = [(p.name, p.start_pct, p.end_pct, p.lr_multiplier, p.description) for p in DEFAULT_PHASES]
    assert table == [
        ("basic_awareness", 0, 20, 1.2, "Learning basic Echo Self identity"),
        ("persona_dimensions", 15, 50, 1.0, "Developing persona dimensions"),
        ("hypergraph_patterns", 40, 70, 0.9, "Learning hypergraph patterns"),
        ("recursive_reasoning", 60, 85, 0.8, "Mastering recursive reasoning"),
        ("adaptive_mastery", 80, 100, 0.7, "Achieving Echo Self mastery"),
    ]
    assert len(DIMENSIONS) == 8


@pytest.mark.parametrize("percent, phase, lr_mult", [
    (0.0, "basic_awareness", 1.2),
    (14.99, "basic_awareness", 1.2),
    (15.0, "persona_dimensions", 1.2),  # the later phase takes over at its start; lr blends from 1.2
    (17.5, "persona_dimensions", 1.1),  # half-way through the 15-20% overlap
    (20.0, "persona_dimensions", 1.0),  # overlap over: the phase's own multiplier
    (39.99, "persona_dimensions", 1.0),
    (40.0, "hypergraph_patterns", 1.0),
    (45.0, "hypergraph_patterns", 0.95),
    (50.0, "hypergraph_patterns", 0.9),
    (60.0, "recursive_reasoning", 0.9),
    (70.0, "recursive_reasoning", 0.8),
    (80.0, "adaptive_mastery", 0.8),
    (82.5, "adaptive_mastery", 0.75),
    (85.0, "adaptive_mastery", 0.7),
    (100.0, "adaptive_mastery", 0.7),
])
def test_named_phase_and_blended_lr_multiplier(percent, phase, lr_mult):
    state = CUR.state(percent)
    assert state.phase.name == phase
    assert state.lr_multiplier == pytest.approx(lr_mult)


def test_blend_weight_and_the_phase_blending_out():
    state = CUR.state(42.5)
    assert state.blending_from.name == "persona_dimensions"
    assert state.blend == pytest.approx(0.25)
    assert CUR.state(55).blending_from is None and CUR.state(55).blend == 1.0


def test_phase_progress_next_phase_and_label():
    state = CUR.state(55.0)
    assert state.progress == pytest.approx(0.5)  # 15 of hypergraph_patterns' 30 points
    assert state.next_phase.name == "recursive_reasoning"
    assert state.label == "hypergraph_patterns - Learning hypergraph patterns"
    last = CUR.state(100.0)
    assert last.progress == 1.0 and last.next_phase is None


def test_focus_dimensions_are_raised_without_dropping_others():
    weights = CUR.state(5.0).sampling_weights  # basic_awareness: cognitive, introspective x3
    assert set(weights) == set(DIMENSIONS)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["cognitive"] == pytest.approx(3 / 12) and weights["introspective"] == pytest.approx(3 / 12)
    assert weights["dynamic"] == pytest.approx(1 / 12)
    for percent in range(0, 101, 5):
        assert min(CUR.state(percent).sampling_weights.values()) > 0


def test_sampling_weights_blend_across_an_overlap():
    start = CUR.state(14.0).sampling_weights
    end = CUR.state(25.0).sampling_weights
    middle = CUR.state(17.5).sampling_weights
    for dim in DIMENSIONS:
        assert middle[dim] == pytest.approx((start[dim] + end[dim]) / 2)


def test_a_custom_table_from_config():
    table = phases_from_config([
        {"name": "warm", "start_pct": 0, "end_pct": 60, "lr_multiplier": 2.0, "description": "Warm", "focus": ["dynamic"]},
        {"name": "cool", "start_pct": 50, "end_pct": 100, "lr_multiplier": 0.5, "description": "Cool"},
    ])
    cur = Curriculum(table, focus_weight=5.0)
    assert cur.state(49).phase.name == "warm" and cur.state(49).lr_multiplier == 2.0
    assert cur.state(55).lr_multiplier == pytest.approx(1.25)
    assert cur.state(49).sampling_weights["dynamic"] == pytest.approx(5 / 12)


def phase(name, start, end, focus=()):
    return {"name": name, "start_pct": start, "end_pct": end, "lr_multiplier": 1.0, "description": name, "focus": list(focus)}


@pytest.mark.parametrize("entries, words", [
    ([phase("a", 0, 40), phase("b", 50, 100)], "gap between 'a'"),
    ([phase("a", 10, 100)], "cover 0-100"),
    ([phase("a", 0, 90)], "cover 0-100"),
    ([phase("a", 0, 60), phase("b", 20, 50), phase("c", 50, 100)], r"'b' \(20-50%\) lies inside 'a' \(0-60%\).*Fix: end 'a' "
                                                                   "before 50% or 'b' after 60%"),
    ([phase("a", 0, 100), phase("b", 50, 100)], r"'b' \(50-100%\) lies inside 'a'.*Fix: end 'a' before 100%\.$"),
    ([phase("a", 0, 60), phase("b", 30, 80), phase("c", 50, 100)], "at most two phases.*Fix: start 'c' at or after 60%"),
    ([phase("a", 0, 50), phase("b", 0, 100)], "'a' and 'b' both start at 0%.*Fix: start 'b' later"),
    ([phase("a", 60, 40), phase("b", 40, 100)], r"'a' ends at 40%, not after it starts \(60%\).*Fix"),
    ([phase("a", 0, 101)], "within 0-100; got 0-101"),
    ([phase("a", 0, float("nan"))], "within 0-100; got 0-nan"),
    ([phase("b", 50, 100), phase("a", 0, 60)], r"'a' \(starts 0%\) is listed after 'b'.*Fix: list the phases in order"),
    ([phase("", 0, 100)], "empty name"),
    ([{**phase("a", 0, 100), "name": None}], "name must be a string"),
    ([{**phase("a", 0, 100), "start_pct": False}], "start_pct must be a number, got False"),
    ([{**phase("a", 0, 100), "end_pct": "x"}], "end_pct must be a number, got 'x'"),
    ([{**phase("a", 0, 100), "lr_multiplier": float("inf")}], "lr_multiplier must be > 0 and finite"),
    ([{**phase("a", 0, 100), "focus": "dynamic"}], r"focus must be a list.*Fix: e.g. \"focus\": \[\"dynamic\"\]"),
    ([phase("a", 0, 50), phase("a", 40, 100)], r"unique: 'a' names phases\[0\] and phases\[1\].*Fix"),
    ([phase("a", 0, 100, ["recursve"])], "did you mean 'recursive'"),
    ([{**phase("a", 0, 100), "lr_mult": 1.0}], "did you mean 'lr_multiplier'"),
    ([{"name": "a", "start_pct": 0}], "missing end_pct"),
    ([{**phase("a", 0, 100), "lr_multiplier": 0}], "lr_multiplier must be > 0"),
    ([], "non-empty list"),
])
def test_impossible_tables_are_rejected_with_the_reason(entries, words):
    with pytest.raises(ConfigError, match=words):
        Curriculum(phases_from_config(entries))


@pytest.mark.parametrize("entries", [
    [phase("a", 0, 99), phase("b", 1, 100)],  # a long blend: 'b' is named from 1%
    [phase("a", 0, 40), phase("b", 20, 60), phase("c", 40, 100)],  # 'b' blends in from 'a', then out into 'c'
    [phase("a", 0, 50), phase("b", 50, 100)],  # touching, no overlap
])
def test_neighbour_overlaps_are_the_documented_blend(entries):
    cur = Curriculum(phases_from_config(entries))
    first, second = cur.phases[0], cur.phases[1]
    inside = (second.start_pct + first.end_pct) / 2  # the middle of their overlap (or the boundary)
    state = cur.state(inside)
    assert state.phase.name == second.name
    expected_blend = 0.5 if second.start_pct < first.end_pct else 1.0
    assert state.blend == pytest.approx(expected_blend)
    assert state.blending_from == (first if expected_blend < 1.0 else None)


def test_focus_weight_below_one_is_rejected():
    with pytest.raises(ConfigError, match="focus_weight"):
        Curriculum(focus_weight=0.5)
