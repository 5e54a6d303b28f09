"""ProgressTracker's options, each wrong value answered by one TypeError or ValueError line
naming the argument, the problem and the fix; and a bool-or-config option's False means off."""

from __future__ import annotations

import math

import pytest

from helpers import FakeClock, RecordingSink
from trainprogress import ProgressTracker
from trainprogress.sinks import build_sinks


@pytest.mark.parametrize("option", ["anomaly", "cross_rank", "watchdog"])
@pytest.mark.parametrize("setting", [False, None])
def test_false_or_none_turns_a_bool_or_config_option_off(option, setting):
    sink = RecordingSink()
    clock = FakeClock()
    with ProgressTracker(20, interval_percent=50, sinks=[sink], clock=clock, **{option: setting}) as tracker:
        for _ in range(20):
            clock.advance(0.01)
            tracker.step(loss=1.0)
    assert len(sink.reports) == 3


@pytest.mark.parametrize("kwargs, error, names, fix", [
    ({"anomaly": "yes"}, TypeError, "anomaly must be True, False or an instance of AnomalyConfig, got str 'yes'", "pass anomaly=True"),
    ({"cross_rank": 1.5}, TypeError, "cross_rank must be True, False or an instance of CrossRankConfig", "pass cross_rank=True"),
    ({"watchdog": "on"}, TypeError, "watchdog must be True, False or an instance of WatchdogConfig", "pass watchdog=True"),
    ({"sinks": "console"}, TypeError, "sinks must be a list of Sink objects, got str 'console'", "build_sinks("),
    ({"sinks": 42}, TypeError, "sinks must be a list of Sink objects, got int 42", "build_sinks("),
    ({"sinks": [object()]}, TypeError, "sinks must hold Sink objects, got object", "build_sinks("),
    ({"clock": "x"}, TypeError, "clock must be callable, got str 'x'", "time.perf_counter"),
    ({"clock": lambda: math.nan}, TypeError, "clock() must return a finite number of seconds, got float nan", "time.perf_counter"),
    ({"clock": lambda: None}, TypeError, "clock() must return a finite number of seconds, got NoneType None", "time.perf_counter"),
    ({"run_config": [1, 2]}, TypeError, "run_config must be a mapping of names to values, got list [1, 2]", "run_config={"),
    ({"peak_flops": math.inf}, ValueError, "peak_flops must be a finite number of FLOP/s, got inf", "or None to detect it"),
    ({"precision": "int4"}, ValueError, "precision must be one of bf16, fp16, tf32, fp32 or None, got 'int4'", "precision='bf16'"),
])
def test_a_wrong_option_is_one_line_naming_it_and_the_fix(kwargs, error, names, fix):
    with pytest.raises(error) as raised:
        ProgressTracker(10, **kwargs)
    message = str(raised.value)
    assert names in message and fix in message and "\n" not in message, message


def test_build_sinks_refuses_a_jsonl_path_that_is_not_a_path():
    with pytest.raises(TypeError) as raised:
        build_sinks(console=False, jsonl=123)
    assert "jsonl must be a file path (str or Path), got int 123" in str(raised.value)
    assert "jsonl='out/progress.jsonl'" in str(raised.value)
